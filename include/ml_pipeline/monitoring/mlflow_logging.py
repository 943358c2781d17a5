"""Drift results into MLflow: the drift metrics and report artifacts of one check on a
run (the deployed version's training run at deployment, or a run of the monitoring
experiment for each scheduled check), and that monitoring run itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.ml_pipeline.contracts.names import (
    AIRFLOW_RUN_TAG,
    MONITORED_MODEL_TAG,
    MONITORED_VERSION_TAG,
    MONITORING_EXPERIMENT,
    MONITORING_ROLE,
    RETRAIN_REQUESTED_TAG,
    ROLE_TAG,
)

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

    from include.ml_pipeline.monitoring.drift import DriftReport

DASHBOARD_ARTIFACT_DIR = "dashboard"


def quoted(value: str) -> str:
    """`value` as a string literal of an MLflow search filter."""
    if "'" in value or "\\" in value:
        raise ValueError(f"value must not contain quotes or backslashes: {value!r}")
    return f"'{value}'"


def _as_report(report: DriftReport | dict[str, Any]) -> DriftReport:
    from include.ml_pipeline.monitoring.drift import DriftReport as Report

    return report if isinstance(report, Report) else Report.from_dict(report)


def log_drift(
    client: MlflowClient,
    run_id: str,
    report: DriftReport | dict[str, Any],
    *,
    artifact_dir: str,
    report_path: str | Path | None = None,
) -> None:
    """Log one drift check on `run_id`: `DriftReport.mlflow_metrics()` plus the row counts,
    and under `artifact_dir` the report (`drift_report.json`), the drift table
    (`drift_table.html`) and the report file written for it, if any."""
    import time

    from mlflow.entities import Metric

    from include.ml_pipeline.monitoring.drift_report import drift_table_html

    report = _as_report(report)
    now = int(time.time() * 1000)
    metrics = {
        **report.mlflow_metrics(),
        "reference_rows": float(report.reference_rows),
        "current_rows": float(report.current_rows),
    }
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()])
    client.log_dict(run_id, report.to_dict(), f"{artifact_dir}/drift_report.json")
    client.log_text(run_id, drift_table_html(report), f"{artifact_dir}/drift_table.html")
    if report_path:
        client.log_artifact(run_id, str(report_path), artifact_path=artifact_dir)


def log_dashboard(client: MlflowClient, run_id: str, path: str | Path) -> None:
    """The dashboard HTML as an artifact of `run_id` (under `dashboard/`)."""
    client.log_artifact(run_id, str(path), artifact_path=DASHBOARD_ARTIFACT_DIR)


def log_monitoring_run(
    report: DriftReport | dict[str, Any],
    champion: dict[str, Any],
    *,
    tracking_uri: str,
    airflow_run_id: str,
    experiment: str = MONITORING_EXPERIMENT,
    artifact_location: str | None = None,
    params: dict[str, Any] | None = None,
    tags: dict[str, Any] | None = None,
    retrain_requested: bool = False,
    report_path: str | Path | None = None,
    dashboard_path: str | Path | None = None,
) -> str:
    """Log one scheduled drift check as a run of `experiment`; return its run id.

    `log_drift` under `drift/`, the dashboard under `dashboard/`. Tags: model
    name/version, status, the Airflow run id, `retrain_requested`. Idempotent per Airflow
    run: a repeat logs into the run that run already created.
    """
    import mlflow
    from mlflow.entities import ViewType

    from include.ml_pipeline.registry.mlflow_setup import configure_mlflow, ensure_experiment

    report = _as_report(report)
    experiment_id = ensure_experiment(tracking_uri, experiment, artifact_location)
    client = configure_mlflow(tracking_uri)
    summary = report.summary()
    run_tags = {str(k): str(v) for k, v in (tags or {}).items()}
    run_tags.update(
        {
            AIRFLOW_RUN_TAG: airflow_run_id,
            ROLE_TAG: MONITORING_ROLE,
            MONITORED_MODEL_TAG: champion["model_name"],
            MONITORED_VERSION_TAG: str(champion["version"]),
            "model_uri": str(champion.get("model_uri")),
            "drift_status": str(summary["status"]),
            "dataset_drift": str(bool(summary["dataset_drift"])).lower(),
            "drifted_features": ",".join(summary["drifted_features"])[:5000],
            RETRAIN_REQUESTED_TAG: str(bool(retrain_requested)).lower(),
        }
    )
    existing = client.search_runs(
        [experiment_id],
        filter_string=f"tags.{AIRFLOW_RUN_TAG} = {quoted(airflow_run_id)}",
        run_view_type=ViewType.ACTIVE_ONLY,
        max_results=1,
    )
    run_id = existing[0].info.run_id if existing else None
    name = f"drift {champion['model_name']} v{champion['version']}"
    with mlflow.start_run(
        run_id=run_id,
        experiment_id=None if run_id else experiment_id,
        run_name=None if run_id else name,
        tags=run_tags,
    ) as run:
        if run_id:
            mlflow.set_tags(run_tags)
        mlflow.log_params({str(k): _param(v) for k, v in (params or {}).items()})
        log_drift(client, run.info.run_id, report, artifact_dir="drift", report_path=report_path)
        if dashboard_path:
            log_dashboard(client, run.info.run_id, dashboard_path)
        return run.info.run_id


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:6000]
