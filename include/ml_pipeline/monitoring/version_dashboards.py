"""What goes on a model version's dashboard (`dashboard.py` draws the page): at deployment,
the gate's decision, the comparison with the previous champion, the evaluation plots the
training run logged and the version's recent traffic; at each monitoring check, the test
metrics, the checked window's traffic and the drift table. Pages are objects under the
reports URI; each is logged to MLflow from memory."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.ml_pipeline.names import CHAMPION
from include.ml_pipeline.payloads import Champion, Decision, RegisteredModel

if TYPE_CHECKING:  # pragma: no cover
    import os

    import pandas as pd

    from include.ml_pipeline.monitoring.drift import DriftReport
    from include.ml_pipeline.monitoring.live_performance import LivePerformance

PLOTS_ARTIFACT_DIR = "plots"


def render_monitoring_dashboard(
    report: DriftReport | dict[str, Any],
    champion: Champion,
    *,
    out: str | os.PathLike,
    traffic: pd.DataFrame | None = None,
    mlflow_run_url: str | None = None,
    airflow_run_url: str | None = None,
    api_url: str | None = None,
    batch_runs: list[dict[str, Any]] | None = None,
    live: LivePerformance | None = None,
) -> str:
    """The dashboard (test metrics, traffic if any, live performance, drift table,
    batch-scoring runs) of the champion, written under `out` (the reports' monitoring
    folder, so the deployment's own dashboard is kept); returns its URI."""
    from include.ml_pipeline.monitoring.dashboard import DashboardContext, render_dashboard

    has_traffic = traffic is not None and len(traffic) and "timestamp" in traffic.columns
    context = DashboardContext(
        model_name=champion.model_name,
        version=champion.version,
        alias=champion.alias,
        run_id=champion.run_id,
        model_uri=champion.model_uri,
        mlflow_run_url=mlflow_run_url,
        airflow_run_url=airflow_run_url,
        api_url=api_url,
        metrics=dict(champion.metrics),
        traffic=traffic if has_traffic else None,
        drift=report,
        batch_runs=batch_runs,
        live=live,
    )
    return render_dashboard(context, out)


def run_plots(tracking_uri: str, run_id: str) -> dict[str, str | Path | bytes]:
    """The PNG plots that evaluation logged under `plots/` of the run, by title (read
    through a temporary download that this task removes)."""
    from include.ml_pipeline.registry.mlflow_setup import configure_mlflow

    client = configure_mlflow(tracking_uri)
    images: dict[str, str | Path | bytes] = {}
    with tempfile.TemporaryDirectory(prefix="ml_pipeline_plots_") as tmp:
        for item in client.list_artifacts(run_id, PLOTS_ARTIFACT_DIR):
            if item.path.endswith(".png"):
                local = client.download_artifacts(run_id, item.path, tmp)
                images[Path(item.path).stem.replace("_", " ")] = Path(local).read_bytes()
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
    out: str | os.PathLike,
    window_hours: float = 24.0,
    inference_log_dir: str | Path | None = None,
    batch_runs: list[dict[str, Any]] | None = None,
) -> tuple[str, list[str], int]:
    """Render the dashboard of the version that went live under `out` and log it to its
    training run. Returns (its URI, plot titles, traffic rows shown)."""
    from include.ml_pipeline.monitoring.dashboard import DashboardContext, render_dashboard
    from include.ml_pipeline.monitoring.mlflow_logging import log_dashboard
    from include.ml_pipeline.monitoring.windows import recent_traffic, window_start
    from include.ml_pipeline.registry.mlflow_setup import configure_mlflow, run_url

    traffic = recent_traffic(
        window_start(None, window_hours),
        model_version=model.version,
        inference_log_dir=inference_log_dir,
    )
    images = run_plots(tracking_uri, model.run_id)
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
        batch_runs=batch_runs,
    )
    uri = render_dashboard(context, out)
    log_dashboard(configure_mlflow(tracking_uri), model.run_id, uri)
    return uri, sorted(images), len(traffic)
