"""Drift of a scored batch against the champion's training split, with the statistics of
the online path (`monitoring/drift_check.run_drift_check`: KS / chi-square + PSI per
feature, the same Params and thresholds), on the uniform sample the parts kept (at most
`drift_max_rows` rows in all, so the check's memory does not grow with the batch).

For a classifier the batch's own predictions (`prediction`, `proba_<class>`) are compared
with the champion's predictions on the training split (prediction drift, as online); a
regressor's batch is compared on its features.

The report is written beside the run's manifest (`drift_report.json`) and logged, with the
scoring facts (rows in / out / refused, rows per second) and the manifest, as a run of the
MLflow experiment `ml_batch_scoring`; a drifted batch is announced like online drift.
"""

from __future__ import annotations

from typing import Any

from include.ml_pipeline import storage
from include.ml_pipeline.batch_scoring.manifest import DRIFT_REPORT
from include.ml_pipeline.batch_scoring.model import PREDICTION, PROBA_PREFIX
from include.ml_pipeline.batch_scoring.part import SAMPLES
from include.ml_pipeline.names import AIRFLOW_DAG_TAG, BATCH_SCORING_EXPERIMENT
from include.ml_pipeline.notifications.message import EVENT_DRIFT, Notification
from include.ml_pipeline.payloads import Champion

BATCH_ROLE = "batch_scoring"


def read_sample(run_uri: str) -> Any:
    """The scored rows the parts kept for the drift check, as one frame."""
    from include.ml_pipeline.monitoring.windows import read_frame

    return read_frame(storage.join(run_uri, SAMPLES))


def check_batch(
    run_uri: str,
    champion: Champion,
    manifest: dict[str, Any],
    thresholds: dict[str, Any],
    *,
    tracking_uri: str,
) -> tuple[Any, str]:
    """Drift of the batch's sample against `champion`'s training split; the report goes
    to `<run_uri>/drift_report.json`. Returns the `DriftReport` and its URI."""
    from include.ml_pipeline.monitoring.champion import load_model
    from include.ml_pipeline.monitoring.drift_check import check_drift
    from include.ml_pipeline.monitoring.drift_report import write_drift_report
    from include.ml_pipeline.monitoring.windows import reference_frame

    spec = champion.feature_spec
    reference = reference_frame(champion.train_path, spec)
    current = read_sample(run_uri)
    model = None
    if any(c.startswith(PROBA_PREFIX) for c in current.columns):
        model = load_model(champion.model_uri, tracking_uri=tracking_uri)
    else:  # a regressor: its values are not categories, compare the features only
        current = current.drop(columns=[PREDICTION], errors="ignore")
    report = check_drift(reference, current, spec, thresholds, model=model)
    uri = write_drift_report(
        report,
        storage.join(run_uri, DRIFT_REPORT),
        facts={
            "model_name": champion.model_name,
            "version": champion.version,
            "model_uri": champion.model_uri,
            "scoring_run_id": manifest["scoring_run_id"],
            "source": manifest["input"]["uri"],
            "rows_scored": manifest["rows_out"],
        },
    )
    return report, uri


def batch_drift_reason(summary: dict[str, Any], champion: Champion, source: str) -> str:
    """One sentence: what drifted in the batch, for the notification and the MLflow run."""
    from include.ml_pipeline.monitoring.drift_check import drift_reason

    return "batch " + drift_reason(summary, champion, source)


def log_batch_run(
    report: dict[str, Any],
    champion: Champion,
    manifest: dict[str, Any],
    *,
    tracking_uri: str,
    artifact_location: str | None,
    airflow_run_id: str,
    dag_id: str,
    report_uri: str,
    manifest_uri: str,
    params: dict[str, Any],
) -> str:
    """One run of experiment `ml_batch_scoring`: the drift metrics and report (as the
    monitoring runs log them), the scoring facts as metrics, the manifest as an artifact.
    Returns its run id (the same run when a retry logs again)."""
    import time

    from mlflow.entities import Metric

    from include.ml_pipeline.monitoring.mlflow_logging import log_monitoring_run, log_object
    from include.ml_pipeline.names import ROLE_TAG
    from include.ml_pipeline.registry.mlflow_setup import configure_mlflow

    run_id = log_monitoring_run(
        report,
        champion,
        tracking_uri=tracking_uri,
        airflow_run_id=airflow_run_id,
        experiment=BATCH_SCORING_EXPERIMENT,
        artifact_location=artifact_location,
        params={"input": manifest["input"]["uri"], **params},
        tags={
            AIRFLOW_DAG_TAG: dag_id,
            "scoring_run_id": manifest["scoring_run_id"],
            "output_status": manifest["status"],
            "input_fingerprint": manifest["input"]["fingerprint"],
        },
        report_uri=report_uri,
    )
    client = configure_mlflow(tracking_uri)
    client.set_tag(run_id, ROLE_TAG, BATCH_ROLE)
    seconds = manifest["scoring_seconds"] or 0.0
    facts = {
        "rows_in": manifest["rows_in"],
        "rows_out": manifest["rows_out"],
        "rows_rejected": manifest["rows_rejected"],
        "parts": manifest["parts_done"],
        "scoring_seconds": seconds,
        "rows_per_second": manifest["rows_out"] / seconds if seconds else 0.0,
    }
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in facts.items()])
    log_object(client, run_id, manifest_uri, "batch")
    return run_id


def drift_notification(
    champion: Champion,
    manifest: dict[str, Any],
    summary: dict[str, Any],
    reason: str,
    *,
    report_uri: str,
    mlflow_run_id: str,
    airflow_run_url: str | None,
    api_url: str | None,
    dag_id: str,
    run_id: str,
) -> Notification:
    """`notify_drift` of a batch: which version scored a drifted batch, how much drifted,
    where the predictions, the report and the MLflow run are."""
    return Notification(
        event=EVENT_DRIFT,
        title=f"Data drift in a batch scored by {champion.model_name} v{champion.version}",
        model_name=champion.model_name,
        version=champion.version,
        metrics={
            "share_drifted": summary["share_drifted"],
            "n_drifted": summary["n_drifted"],
            "rows_scored": manifest["rows_out"],
        },
        reasons=[reason],
        airflow_run_url=airflow_run_url,
        api_url=api_url,
        dag_id=dag_id,
        run_id=run_id,
        details={
            "report": report_uri,
            "predictions": manifest["predictions"],
            "mlflow_run_id": mlflow_run_id,
        },
    )
