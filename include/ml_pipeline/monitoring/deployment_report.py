"""The `visualizacion_monitoreo` steps: drift at deployment time and the model dashboard.

`drift_at_deployment` compares the training split (the reference) with the most recent
inference-log traffic when there is enough of it, else with the untouched test split
(a baseline that should show no drift), logs the result to the model's MLflow run and
writes the JSON report. `deployment_dashboard` renders the self-contained HTML dashboard
of the deployed version (metrics, comparison with the previous champion, the evaluation
plots logged in MLflow, feature importances, traffic, drift) and logs it to MLflow too.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from include.ml_pipeline.config import Settings
from include.ml_pipeline.features import FeatureSpec


def recent_traffic(settings: Settings, hours: float, version: str | None = None):
    """Inference-log rows of the last `hours` (optionally of one model version)."""
    from include.ml_pipeline.monitoring.inference_log import read_inference_log

    since = datetime.now(UTC) - timedelta(hours=hours)
    return read_inference_log(settings.inference_log_dir, since=since, model_version=version)


def drift_at_deployment(
    settings: Settings,
    *,
    split_paths: dict[str, str],
    spec: dict[str, Any],
    thresholds: dict[str, Any],
    run_id: str,
    version: str,
    window_hours: float = 24.0,
) -> dict[str, Any]:
    """Drift of recent traffic (or the test split) against the training split."""
    import mlflow
    import pandas as pd

    from include.ml_pipeline.monitoring.drift import DriftThresholds, compute_drift

    feature_spec = FeatureSpec.from_dict(spec)
    limits = DriftThresholds.from_dict(thresholds)
    reference = pd.read_parquet(split_paths["train"])
    traffic = recent_traffic(settings, window_hours)
    if len(traffic):  # repeated rows (smoke tests, retries) are one observation each
        traffic = traffic.drop_duplicates(subset=feature_spec.columns)
    if len(traffic) >= limits.min_rows:
        current, source = traffic, f"inference log, last {window_hours:g} h ({len(traffic)} rows)"
    else:
        current = pd.read_parquet(split_paths["test"])
        source = f"test split ({len(current)} rows; too little traffic yet: {len(traffic)} rows)"
    report = compute_drift(reference, current, feature_spec, limits)
    summary = {**report.summary(), "current_source": source, "reference": split_paths["train"]}
    path = settings.reports_dir / f"drift_v{version}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"summary": summary, "report": report.to_dict()}, indent=2, default=str)
    )
    client = mlflow.MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    for key, value in report.mlflow_metrics().items():
        client.log_metric(run_id, key, value)
    client.log_artifact(run_id, str(path), artifact_path="monitoring")
    return {**summary, "report_path": str(path), "report": report.to_dict()}


def _run_plots(settings: Settings, run_id: str, out: Path) -> dict[str, Path]:
    """Download the PNG plots that evaluation logged under `plots/` of the run."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    images = {}
    for item in client.list_artifacts(run_id, "plots"):
        if item.path.endswith(".png"):
            local = client.download_artifacts(run_id, item.path, str(out))
            images[Path(item.path).stem.replace("_", " ")] = Path(local)
    return images


def deployment_dashboard(
    settings: Settings,
    *,
    registered: dict[str, Any],
    manifest: dict[str, Any],
    decision: dict[str, Any] | None,
    drift: dict[str, Any] | None,
    api_url: str | None,
    airflow_run_url: str | None,
    window_hours: float = 24.0,
) -> dict[str, Any]:
    """Render the dashboard of the deployed version; return its path and what it shows."""
    import tempfile

    import mlflow

    from include.ml_pipeline.monitoring.dashboard import DashboardContext, render_dashboard

    run_id = registered["run_id"]
    version = str(registered["version"])
    traffic = recent_traffic(settings, window_hours, version)
    with tempfile.TemporaryDirectory() as tmp:
        images = _run_plots(settings, run_id, Path(tmp))
        context = DashboardContext(
            model_name=registered["model_name"],
            version=version,
            alias="champion",
            run_id=run_id,
            model_uri=registered["model_uri"],
            mlflow_run_url=mlflow_run_url(settings, run_id),
            airflow_run_url=airflow_run_url,
            api_url=api_url,
            metrics=registered["metrics"],
            previous_version=manifest.get("previous_champion"),
            previous_metrics=registered.get("champion_metrics"),
            decision="deploy" if (decision or {}).get("deploy") else None,
            reasons=list((decision or {}).get("reasons", [])),
            images=images,
            traffic=traffic if len(traffic) else None,
            drift=(drift or {}).get("report"),
        )
        path = render_dashboard(context, settings.reports_dir)
    client = mlflow.MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    client.log_artifact(run_id, str(path), artifact_path="dashboard")
    return {"path": str(path), "plots": sorted(images), "traffic_rows": len(traffic)}


def mlflow_run_url(settings: Settings, run_id: str) -> str | None:
    """A link to the run in the MLflow UI (for an http tracking server), else None."""
    uri = settings.mlflow_tracking_uri
    if not uri.startswith("http"):
        return None
    import mlflow

    experiment_id = mlflow.MlflowClient(tracking_uri=uri).get_run(run_id).info.experiment_id
    return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
