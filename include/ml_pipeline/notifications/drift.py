"""What the monitoring DAG tells people when the champion's data drifted and a retraining
was started, worded once."""

from __future__ import annotations

from include.ml_pipeline.notifications.message import EVENT_DRIFT, Notification
from include.ml_pipeline.payloads import Champion, DriftCheck, MonitoringRun


def drift_detected(
    champion: Champion,
    drift: DriftCheck,
    logged: MonitoringRun,
    *,
    api_url: str | None,
    airflow_run_url: str | None,
    dag_id: str,
    run_id: str,
) -> Notification:
    """`notify_drift`: which version drifted and how much, why retraining started, the
    dashboard, the report and the check's MLflow run."""
    summary = drift.summary
    return Notification(
        event=EVENT_DRIFT,
        title=f"Data drift on {champion.model_name} v{champion.version}; retraining started",
        model_name=champion.model_name,
        version=champion.version,
        metrics={
            "share_drifted": summary["share_drifted"],
            "n_drifted": summary["n_drifted"],
            "current_rows": summary["current_rows"],
        },
        reasons=[drift.reason, logged.decision],
        airflow_run_url=airflow_run_url,
        api_url=api_url,
        dashboard_uri=logged.dashboard_uri,
        dag_id=dag_id,
        run_id=run_id,
        details={"report": drift.report_uri, "mlflow_run_id": logged.mlflow_run_id},
    )
