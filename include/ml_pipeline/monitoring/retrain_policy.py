"""When drift asks for a retraining: on dataset drift, unless one was already requested for
the same champion version within the cool-down (looked up in the monitoring experiment),
so a drift that retraining cannot fix (the new model was rejected, the champion stays)
does not start a retraining every hour."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from include.ml_pipeline.monitoring.drift_check import prediction_shift_text
from include.ml_pipeline.monitoring.windows import window_start
from include.ml_pipeline.names import (
    AIRFLOW_RUN_TAG,
    MONITORED_MODEL_TAG,
    MONITORED_VERSION_TAG,
    MONITORING_EXPERIMENT,
    RETRAIN_REQUESTED_TAG,
)
from include.ml_pipeline.payloads import Champion, RetrainDecision


def recent_retrain_request(
    model_name: str,
    version: str,
    *,
    tracking_uri: str,
    since: datetime,
    experiment: str = MONITORING_EXPERIMENT,
    exclude_airflow_run_id: str | None = None,
) -> dict[str, Any] | None:
    """The latest monitoring run since `since` that requested a retraining of this
    champion version (`{"run_id", "airflow_run_id", "start_time"}`), or None."""
    from mlflow.entities import ViewType

    from include.ml_pipeline.monitoring.mlflow_logging import quoted
    from include.ml_pipeline.registry.mlflow_setup import configure_mlflow

    client = configure_mlflow(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    since_ms = int(since.timestamp() * 1000)
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=(
            f"tags.{RETRAIN_REQUESTED_TAG} = 'true' "
            f"and tags.{MONITORED_MODEL_TAG} = {quoted(model_name)} "
            f"and tags.{MONITORED_VERSION_TAG} = {quoted(str(version))} "
            f"and attributes.start_time >= {since_ms}"
        ),
        run_view_type=ViewType.ACTIVE_ONLY,
        order_by=["attributes.start_time DESC"],
        max_results=10,
    )
    for run in runs:
        airflow_run_id = run.data.tags.get(AIRFLOW_RUN_TAG)
        if exclude_airflow_run_id and airflow_run_id == exclude_airflow_run_id:
            continue
        return {
            "run_id": run.info.run_id,
            "airflow_run_id": airflow_run_id,
            "start_time": datetime.fromtimestamp(run.info.start_time / 1000, UTC).isoformat(),
        }
    return None


def retrain_decision(
    summary: dict[str, Any], previous_request: dict[str, Any] | None
) -> tuple[bool, str]:
    """(retrain?, why) from the drift summary and an earlier request in the cool-down."""
    status = summary.get("status")
    if not summary.get("dataset_drift"):
        if status == "insufficient_data":
            return False, (
                f"not enough current data to judge drift ({summary.get('current_rows', 0)} "
                "rows); no retraining"
            )
        return False, "no dataset drift; no retraining"
    if previous_request:
        return False, (
            "dataset drift, but a retraining of this champion version was already requested "
            f"at {previous_request['start_time']} (monitoring run "
            f"{previous_request.get('airflow_run_id')}); within the cool-down, not again"
        )
    return True, "dataset drift above the threshold; retraining requested"


def should_retrain(
    summary: dict[str, Any],
    champion: Champion,
    *,
    cooldown_hours: float,
    tracking_uri: str,
    logical_date: datetime | str | None,
    airflow_run_id: str | None,
) -> RetrainDecision:
    """The decision for one check of `champion`: the monitoring experiment is searched
    only on dataset drift with a cool-down > 0; the current Airflow run's own MLflow run
    (a retried task) does not count."""
    previous = None
    if summary.get("dataset_drift") and cooldown_hours > 0:
        previous = recent_retrain_request(
            champion.model_name,
            champion.version,
            tracking_uri=tracking_uri,
            since=window_start(logical_date, cooldown_hours),
            exclude_airflow_run_id=airflow_run_id,
        )
    retrain, why = retrain_decision(summary, previous)
    shift = prediction_shift_text(summary, champion.feature_spec.target)
    if shift:  # a regressor: what its predictions did, in the target's units
        why = f"{why}; {shift}"
    return RetrainDecision(retrain=retrain, decision=why, previous_request=previous)
