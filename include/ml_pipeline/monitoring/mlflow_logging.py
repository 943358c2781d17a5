"""Drift results into MLflow: the drift metrics and report artifacts of one check on a
run (the deployed version's training run at deployment, or a run of the monitoring
experiment for each scheduled check), and that monitoring run itself.

Reports and dashboards are objects under the reports URI (maybe on S3): they are read
into memory and logged with `log_text`, so no local file is handed from task to task."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from include.ml_pipeline import storage
from include.ml_pipeline.names import (
    AIRFLOW_RUN_TAG,
    MONITORED_MODEL_TAG,
    MONITORED_VERSION_TAG,
    MONITORING_EXPERIMENT,
    MONITORING_ROLE,
    RETRAIN_REQUESTED_TAG,
    ROLE_TAG,
)

if TYPE_CHECKING:  # pragma: no cover
    import os

    from mlflow import MlflowClient

    from include.ml_pipeline.monitoring.drift import DriftReport
    from include.ml_pipeline.monitoring.live_performance import LivePerformance
    from include.ml_pipeline.payloads import Champion

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
    report_uri: str | os.PathLike | None = None,
) -> None:
    """Log one drift check on `run_id`: `DriftReport.mlflow_metrics()` plus the row counts,
    and under `artifact_dir` the report (`drift_report.json`), the drift table
    (`drift_table.html`) and the report object written for it (at `report_uri`), if any."""
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
    if report_uri:
        log_object(client, run_id, report_uri, artifact_dir)


def log_live_performance(
    client: MlflowClient, run_id: str, live: LivePerformance, version: str
) -> None:
    """`version`'s live metrics on `run_id` (`LivePerformance.mlflow_metrics`), its
    headline metric per time bucket as `live_<metric>_over_time` (step: the bucket's
    index, time: its start), and the whole report as `live/live_performance.json`."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, 0) for k, v in live.mlflow_metrics(version).items()]
    for step, part in enumerate(live.history(version)):
        value = part.metrics.get(live.metric)
        if value is not None and part.start:
            stamp = int(datetime.fromisoformat(part.start).timestamp() * 1000)
            metrics.append(Metric(f"live_{live.metric}_over_time", value, stamp, step))
    client.log_batch(run_id, metrics=metrics)
    client.log_dict(run_id, live.to_dict(), "live/live_performance.json")


def log_dashboard(client: MlflowClient, run_id: str, uri: str | os.PathLike) -> None:
    """The dashboard HTML at `uri` as an artifact of `run_id` (under `dashboard/`)."""
    log_object(client, run_id, uri, DASHBOARD_ARTIFACT_DIR)


def log_object(
    client: MlflowClient, run_id: str, uri: str | os.PathLike, artifact_dir: str
) -> None:
    """The text object at `uri` (local or remote) as `<artifact_dir>/<its name>` of
    `run_id`, logged from memory."""
    name = storage.as_uri(uri).rstrip("/").rsplit("/", 1)[-1]
    client.log_text(run_id, storage.read_text(uri), f"{artifact_dir}/{name}")


def log_monitoring_run(
    report: DriftReport | dict[str, Any],
    champion: Champion,
    *,
    tracking_uri: str,
    airflow_run_id: str,
    experiment: str = MONITORING_EXPERIMENT,
    artifact_location: str | None = None,
    params: dict[str, Any] | None = None,
    tags: dict[str, Any] | None = None,
    retrain_requested: bool = False,
    report_uri: str | os.PathLike | None = None,
    dashboard_uri: str | os.PathLike | None = None,
    live: LivePerformance | None = None,
) -> str:
    """Log one scheduled drift check as a run of `experiment`; return its run id.

    `log_drift` under `drift/`, the champion's live performance (`log_live_performance`)
    when `live` is given, the dashboard under `dashboard/`. Tags: model
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
            MONITORED_MODEL_TAG: champion.model_name,
            MONITORED_VERSION_TAG: str(champion.version),
            "model_uri": str(champion.model_uri),
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
    name = f"drift {champion.model_name} v{champion.version}"
    with mlflow.start_run(
        run_id=run_id,
        experiment_id=None if run_id else experiment_id,
        run_name=None if run_id else name,
        tags=run_tags,
    ) as run:
        if run_id:
            mlflow.set_tags(run_tags)
        mlflow.log_params({str(k): _param(v) for k, v in (params or {}).items()})
        log_drift(client, run.info.run_id, report, artifact_dir="drift", report_uri=report_uri)
        if live is not None:
            log_live_performance(client, run.info.run_id, live, str(champion.version))
        if dashboard_uri:
            log_dashboard(client, run.info.run_id, dashboard_uri)
        return run.info.run_id


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:6000]
