"""What goes on a model version's dashboard (`dashboard.py` draws the page): at deployment,
the gate's decision, the comparison with the previous champion, the evaluation plots the
training run logged and the version's recent traffic; at each monitoring check, the test
metrics, the checked window's traffic and the drift table."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.ml_pipeline.contracts.names import CHAMPION
from include.ml_pipeline.contracts.payloads import Decision, RegisteredModel

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from include.ml_pipeline.monitoring.drift import DriftReport

PLOTS_ARTIFACT_DIR = "plots"


def render_monitoring_dashboard(
    report: DriftReport | dict[str, Any],
    champion: dict[str, Any],
    *,
    out_dir: str | Path,
    traffic: pd.DataFrame | None = None,
    mlflow_run_url: str | None = None,
    airflow_run_url: str | None = None,
    api_url: str | None = None,
) -> Path:
    """The dashboard (test metrics, traffic if any, drift table) of the champion, written
    to `out_dir` (the monitoring folder, so the deployment's own dashboard is kept)."""
    from include.ml_pipeline.monitoring.dashboard import DashboardContext, render_dashboard

    has_traffic = traffic is not None and len(traffic) and "timestamp" in traffic.columns
    context = DashboardContext(
        model_name=champion["model_name"],
        version=champion["version"],
        alias=champion.get("alias"),
        run_id=champion.get("run_id"),
        model_uri=champion.get("model_uri"),
        mlflow_run_url=mlflow_run_url,
        airflow_run_url=airflow_run_url,
        api_url=api_url,
        metrics=dict(champion.get("metrics") or {}),
        traffic=traffic if has_traffic else None,
        drift=report,
    )
    return render_dashboard(context, out_dir=out_dir)


def run_plots(tracking_uri: str, run_id: str, out: Path) -> dict[str, Path]:
    """Download the PNG plots that evaluation logged under `plots/` of the run."""
    from include.ml_pipeline.registry.mlflow_setup import configure_mlflow

    client = configure_mlflow(tracking_uri)
    images = {}
    for item in client.list_artifacts(run_id, PLOTS_ARTIFACT_DIR):
        if item.path.endswith(".png"):
            local = client.download_artifacts(run_id, item.path, str(out))
            images[Path(item.path).stem.replace("_", " ")] = Path(local)
    return images


def render_deployment_dashboard(
    model: RegisteredModel,
    *,
    decision: Decision | None,
    previous_champion: str | None,
    drift_report: dict[str, Any] | None,
    api_url: str | None,
    airflow_run_url: str | None,
    tracking_uri: str,
    out_dir: str | Path,
    window_hours: float = 24.0,
    inference_log_dir: str | Path | None = None,
) -> tuple[Path, list[str], int]:
    """Render the dashboard of the version that went live and log it to its training run.
    Returns (path, plot titles, traffic rows shown)."""
    from include.ml_pipeline.monitoring.dashboard import DashboardContext, render_dashboard
    from include.ml_pipeline.monitoring.mlflow_logging import log_dashboard
    from include.ml_pipeline.monitoring.windows import recent_traffic, window_start
    from include.ml_pipeline.registry.mlflow_setup import configure_mlflow, run_url

    traffic = recent_traffic(
        window_start(None, window_hours),
        model_version=model.version,
        inference_log_dir=inference_log_dir,
    )
    with tempfile.TemporaryDirectory() as tmp:
        images = run_plots(tracking_uri, model.run_id, Path(tmp))
        context = DashboardContext(
            model_name=model.model_name,
            version=model.version,
            alias=CHAMPION,
            run_id=model.run_id,
            model_uri=model.model_uri,
            mlflow_run_url=run_url(tracking_uri, model.run_id),
            airflow_run_url=airflow_run_url,
            api_url=api_url,
            metrics=model.metrics,
            previous_version=previous_champion,
            previous_metrics=model.champion_metrics,
            decision="deploy" if decision is not None and decision.deploy else None,
            reasons=list(decision.reasons) if decision is not None else [],
            images=images,
            traffic=traffic if len(traffic) else None,
            drift=drift_report,
        )
        path = render_dashboard(context, out_dir)
    log_dashboard(configure_mlflow(tracking_uri), model.run_id, path)
    return path, sorted(images), len(traffic)
