"""When drift asks for a retraining: on dataset drift, unless one was already requested for
the same champion version within the cool-down (looked up in the monitoring experiment),
so a drift that retraining cannot fix (the new model was rejected, the champion stays)
does not start a retraining every hour.

With labels coming back (`live_performance.py`), the champion's live metric may ask for a
retraining too, when a `LiveRule` is set: live accuracy below `min_accuracy`
(classification), or live RMSE above `max_rmse_ratio` times the version's test RMSE
(regression). With fewer than `min_labels` labelled answers the rule is not judged, and
the decision says so; the same cool-down applies."""

from __future__ import annotations

from dataclasses import dataclass
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
from include.ml_pipeline.payloads import Champion, LiveCheck, RetrainDecision


@dataclass(frozen=True)
class LiveRule:
    """When the champion's live metric asks for a retraining (None: never)."""

    min_accuracy: float | None = None  # classification: live accuracy below this
    max_rmse_ratio: float | None = None  # regression: live RMSE / test RMSE above this
    min_labels: int = 50  # fewer labelled answers: not judged

    def applies(self, regression: bool) -> bool:
        return (self.max_rmse_ratio if regression else self.min_accuracy) is not None


def live_verdict(live: LiveCheck | None, champion: Champion, rule: LiveRule) -> tuple[bool, str]:
    """(retrain?, what the live metric says) for the champion: its value on how many
    labelled answers (and its test value), and the rule's verdict when one is set."""
    if live is None:
        return False, ""
    version = f"v{champion.version}"
    if live.problem:
        return False, f"live performance of {version} not measured: {live.problem}"
    if not live.answers:
        return False, f"no live answers of {version} with a request id: live performance unknown"
    if not live.labelled:
        return False, (
            f"no true labels came back for {version}'s {live.answers} live answers: "
            "live performance unknown"
        )
    name = "rmse" if live.regression else "accuracy"
    value = live.metrics.get(name)
    tested = champion.metrics.get(name)
    if value is None:
        return False, f"no live {name} of {version} measured: live performance unknown"
    share = live.labelled / live.answers if live.answers else 0.0
    said = (
        f"live {name} of {version} {value:.4g} on {live.labelled} labelled answers "
        f"({share:.0%} of {live.answers})"
        + (f", test {name} {tested:.4g}" if tested is not None else "")
    )
    if not rule.applies(live.regression):
        return False, said
    if live.labelled < rule.min_labels:
        return False, (
            f"{said}: too few labels to judge (min_live_labels {rule.min_labels}); "
            "no retraining on live performance"
        )
    if live.regression:
        limit = rule.max_rmse_ratio
        if not tested or limit is None:
            return False, f"{said}: no test rmse on {version}, max_live_rmse_ratio not judged"
        ratio = value / tested
        where = "above" if ratio > limit else "within"
        return (
            ratio > limit,
            f"{said}: {ratio:.2f}x the test rmse, {where} max_live_rmse_ratio {limit:g}",
        )
    if rule.min_accuracy is None:
        return False, said
    if value < rule.min_accuracy:
        return True, f"{said}: below min_live_accuracy {rule.min_accuracy:g}"
    return False, f"{said}: at or above min_live_accuracy {rule.min_accuracy:g}"


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
    summary: dict[str, Any],
    previous_request: dict[str, Any] | None,
    live: tuple[bool, str] | None = None,
) -> tuple[bool, str]:
    """(retrain?, why) from the drift summary, an earlier request in the cool-down and
    the live verdict (`live_verdict`: retrain?, what it says), whose text is appended."""
    live_retrain, live_text = live or (False, "")
    retrain, why = _drift_decision(summary, previous_request, live_retrain)
    return retrain, f"{why}; {live_text}" if live_text else why


def _drift_decision(
    summary: dict[str, Any], previous_request: dict[str, Any] | None, live_retrain: bool
) -> tuple[bool, str]:
    status = summary.get("status")
    drifted = bool(summary.get("dataset_drift"))
    if not drifted and not live_retrain:
        if status == "insufficient_data":
            return False, (
                f"not enough current data to judge drift ({summary.get('current_rows', 0)} "
                "rows); no retraining"
            )
        return False, "no dataset drift; no retraining"
    what = "dataset drift" if drifted else "live performance below the rule"
    if previous_request:
        return False, (
            f"{what}, but a retraining of this champion version was already requested "
            f"at {previous_request['start_time']} (monitoring run "
            f"{previous_request.get('airflow_run_id')}); within the cool-down, not again"
        )
    if drifted:
        return True, "dataset drift above the threshold; retraining requested"
    return True, "no dataset drift, but live performance is below the rule; retraining requested"


def should_retrain(
    summary: dict[str, Any],
    champion: Champion,
    *,
    cooldown_hours: float,
    tracking_uri: str,
    logical_date: datetime | str | None,
    airflow_run_id: str | None,
    live: LiveCheck | None = None,
    live_rule: LiveRule | None = None,
) -> RetrainDecision:
    """The decision for one check of `champion`: the monitoring experiment is searched
    only on dataset drift (or a live metric breaking `live_rule`) with a cool-down > 0;
    the current Airflow run's own MLflow run (a retried task) does not count."""
    verdict = live_verdict(live, champion, live_rule or LiveRule())
    previous = None
    if (summary.get("dataset_drift") or verdict[0]) and cooldown_hours > 0:
        previous = recent_retrain_request(
            champion.model_name,
            champion.version,
            tracking_uri=tracking_uri,
            since=window_start(logical_date, cooldown_hours),
            exclude_airflow_run_id=airflow_run_id,
        )
    retrain, why = retrain_decision(summary, previous, verdict)
    shift = prediction_shift_text(summary, champion.feature_spec.target)
    if shift:  # a regressor: what its predictions did, in the target's units
        why = f"{why}; {shift}"
    return RetrainDecision(retrain=retrain, decision=why, previous_request=previous)
