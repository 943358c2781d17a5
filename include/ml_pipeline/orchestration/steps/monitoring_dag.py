"""Steps of `ml_model_monitoring`: find the champion, load its reference and the current
window, check drift, decide on retraining, log the check to MLflow, and start the
retraining and the drift notification when the decision says so. What one step hands the
next is an object under the storage root (the frozen window, the report, the dashboard),
named by its URI, so each step may run on another worker."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from include.ml_pipeline.config import get_settings
from include.ml_pipeline.errors import MonitoringError
from include.ml_pipeline.names import AIRFLOW_DAG_TAG, INFERENCE_LOG_SOURCE
from include.ml_pipeline.orchestration.defaults import fail_without_retry
from include.ml_pipeline.orchestration.params import drift_thresholds
from include.ml_pipeline.payloads import (
    Champion,
    CurrentWindow,
    DriftCheck,
    LiveCheck,
    MonitoringRun,
    ReferenceData,
    RetrainDecision,
    RetrainRequest,
)
from include.ml_pipeline.runs import batch_runs_uri, run_key
from include.ml_pipeline.storage import join

#: The frozen current window of a run: `<storage_uri>/monitoring/<run key>/current.parquet`.
SNAPSHOT_FOLDER = "monitoring"
SNAPSHOT_NAME = "current.parquet"

#: The live performance Params, logged on the monitoring run with the drift thresholds.
LIVE_PARAMS = ("live_window_hours", "min_live_accuracy", "max_live_rmse_ratio", "min_live_labels")

#: Where the steps log by default: the task log (Airflow 3's task instance has no `.log`).
LOG = logging.getLogger(__name__)

#: A check that cannot run as configured (no reference, a bad source, a bad Param): a
#: retry cannot help, fail at once with the message.
fail_on_bad_config = fail_without_retry(MonitoringError, FileNotFoundError, KeyError, ValueError)


@fail_on_bad_config
def find_champion(params: Mapping[str, Any], *, log: logging.Logger = LOG) -> dict | None:
    """`find_champion`: the champion version and its metadata, or None (nothing deployed:
    the run stops here)."""
    from include.ml_pipeline.monitoring.champion import read_champion

    settings = get_settings()
    champion = read_champion(params["model_name"], tracking_uri=settings.mlflow_tracking_uri)
    if champion is None:
        log.info(
            "No champion for model %r in %s: nothing deployed, nothing to monitor; "
            "skipping this run.",
            params["model_name"],
            settings.mlflow_tracking_uri,
        )
        return None
    log.info("Monitoring %s (run %s)", champion.model_uri, champion.run_id)
    return champion.to_dict()


@fail_on_bad_config
def load_reference(champion: dict) -> dict:
    """`load_reference`: check the champion's training split, the drift reference."""
    from include.ml_pipeline.monitoring.windows import reference_frame

    model = Champion.from_dict(champion)
    frame = reference_frame(model.train_path, model.feature_spec)
    return ReferenceData(uri=str(model.train_path), rows=len(frame)).to_dict()


@fail_on_bad_config
def load_current(
    champion: dict, params: Mapping[str, Any], *, run_id: str, logical_date: Any
) -> dict:
    """`load_current`: the champion's inference-log rows of the last `drift_window_hours`
    before the logical date (or the batch file `current_source`), frozen to a Parquet
    object `<storage_uri>/monitoring/<run key>/current.parquet`."""
    from include.ml_pipeline.monitoring import windows

    model = Champion.from_dict(champion)
    settings = get_settings()
    source = params["current_source"]
    since = windows.window_start(logical_date, params["drift_window_hours"])
    frame = windows.current_frame(
        source,
        model.feature_spec,
        model_version=model.version,
        model_name=model.model_name,
        since=since,
        max_rows=params["drift_max_rows"],
    )
    uri = join(settings.storage_uri, SNAPSHOT_FOLDER, run_key(run_id), SNAPSHOT_NAME)
    windows.snapshot_current(frame, uri)
    return CurrentWindow(
        uri=uri,
        rows=len(frame),
        source=source,
        since=since.isoformat() if source == INFERENCE_LOG_SOURCE else None,
    ).to_dict()


@fail_on_bad_config
def compute_drift(
    champion: dict,
    reference: dict,
    current: dict,
    params: Mapping[str, Any],
    *,
    run_id: str,
    log: logging.Logger = LOG,
) -> dict:
    """`compute_drift`: feature drift and, with the champion loaded, prediction drift; the
    report JSON is an object under `<reports_uri>/monitoring/`."""
    from include.ml_pipeline.monitoring.champion import load_model
    from include.ml_pipeline.monitoring.drift_check import check_drift, drift_reason
    from include.ml_pipeline.monitoring.drift_report import (
        monitoring_report_uri,
        write_drift_report,
    )
    from include.ml_pipeline.monitoring.windows import read_snapshot, reference_frame

    model = Champion.from_dict(champion)
    window = CurrentWindow.from_dict(current)
    settings = get_settings()
    reference_rows = reference_frame(ReferenceData.from_dict(reference).uri, model.feature_spec)
    try:
        fitted = load_model(model.model_uri, tracking_uri=settings.mlflow_tracking_uri)
    except Exception as exc:  # prediction drift is a bonus, feature drift still runs
        log.warning("champion model not loadable, no prediction drift: %r", exc)
        fitted = None
    report = check_drift(
        reference_rows,
        read_snapshot(window.uri),
        model.feature_spec,
        drift_thresholds(params),
        model=fitted,
    )
    uri = write_drift_report(
        report,
        monitoring_report_uri(
            settings.reports_uri, model.model_name, model.version, run_key(run_id)
        ),
        facts={
            "model_name": model.model_name,
            "version": model.version,
            "model_uri": model.model_uri,
            "airflow_run_id": run_id,
            "source": window.source,
            "since": window.since,
        },
        latest=True,
    )
    summary = report.summary()
    log.info("drift summary: %s", summary)
    log.info("report: %s", uri)
    return DriftCheck(
        summary=summary,
        report_uri=uri,
        reason=drift_reason(summary, model, window.source),
    ).to_dict()


@fail_on_bad_config
def live_performance(
    champion: dict,
    params: Mapping[str, Any],
    *,
    run_id: str,
    logical_date: Any,
    log: logging.Logger = LOG,
) -> dict:
    """`live_performance`: every version's live accuracy (or RMSE and MAE) over the last
    `live_window_hours`, from the answers logged with a request id and the true labels
    under `<storage root>/labels/<model>/`; the report (per version, per time bucket)
    is an object under `<reports_uri>/monitoring/`."""
    from include.ml_pipeline.monitoring import windows
    from include.ml_pipeline.monitoring.drift_report import monitoring_report_uri
    from include.ml_pipeline.monitoring.live_performance import (
        read_live_performance,
        write_live_report,
    )
    from include.ml_pipeline.registry.contract import load_contract
    from include.ml_pipeline.release.feedback import FeedbackError, LabelTarget

    model = Champion.from_dict(champion)
    settings = get_settings()
    contract = load_contract(settings.mlflow_tracking_uri, model.model_name, model.version)
    if contract and contract.get("target"):
        target = LabelTarget.of(contract)
    else:  # a version registered before contracts: its feature spec tells the type
        regression = model.feature_spec.is_regression
        target = LabelTarget(regression, "number" if regression else "string")
    since = windows.window_start(logical_date, params["live_window_hours"])
    try:
        live = read_live_performance(
            settings.inference_log_uri,
            settings.storage_uri,
            model.model_name,
            target,
            since=since,
        )
    except FeedbackError as exc:  # a client's broken label file must not stop drift checks
        log.error("live performance not measured: %s", exc)
        return LiveCheck(model.version, target.regression, 0, 0, {}, problem=str(exc)).to_dict()
    uri = write_live_report(
        live,
        monitoring_report_uri(
            settings.reports_uri, model.model_name, model.version, run_key(run_id), "live"
        ),
        {"version": model.version, "airflow_run_id": run_id},
    )
    check = live.check(model.version, uri)
    log.info(
        "live performance of v%s: %s on %d labelled of %d answers (%d labels, %d unknown); "
        "report %s",
        model.version,
        check.metrics or "no labelled answers",
        check.labelled,
        check.answers,
        live.labels,
        live.unknown_labels,
        uri,
    )
    return check.to_dict()


def decide_retraining(
    champion: dict,
    drift: dict,
    params: Mapping[str, Any],
    *,
    run_id: str,
    logical_date: Any,
    live: dict | None = None,
    log: logging.Logger = LOG,
) -> dict:
    """`decide_retraining`: retrain on dataset drift, or on a live metric that breaks
    `min_live_accuracy` / `max_live_rmse_ratio` (given `min_live_labels` labels), unless
    this champion version's retraining was already requested within
    `retrain_cooldown_hours`."""
    from include.ml_pipeline.monitoring.retrain_policy import LiveRule, should_retrain

    decision = should_retrain(
        DriftCheck.from_dict(drift).summary,
        Champion.from_dict(champion),
        cooldown_hours=params["retrain_cooldown_hours"],
        tracking_uri=get_settings().mlflow_tracking_uri,
        logical_date=logical_date,
        airflow_run_id=run_id,
        live=LiveCheck.from_dict(live) if live else None,
        live_rule=LiveRule(
            min_accuracy=params.get("min_live_accuracy"),
            max_rmse_ratio=params.get("max_live_rmse_ratio"),
            min_labels=params.get("min_live_labels", LiveRule.min_labels),
        ),
    )
    log.info("decision: %s", decision.decision)
    return decision.to_dict()


def log_to_mlflow(
    champion: dict,
    current: dict,
    drift: dict,
    decision: dict,
    params: Mapping[str, Any],
    *,
    dag_id: str,
    run_id: str,
    live: dict | None = None,
) -> dict:
    """`log_to_mlflow`: the champion's monitoring dashboard (an object under
    `<reports_uri>/monitoring/`), and a run in experiment `ml_model_monitoring` with the
    drift metrics, report, the live performance, dashboard and the decision."""
    from include.ml_pipeline.batch_scoring.manifest import list_runs
    from include.ml_pipeline.monitoring.drift_report import MONITORING_FOLDER, read_drift_report
    from include.ml_pipeline.monitoring.live_performance import read_live_report
    from include.ml_pipeline.monitoring.mlflow_logging import log_monitoring_run
    from include.ml_pipeline.monitoring.version_dashboards import render_monitoring_dashboard
    from include.ml_pipeline.monitoring.windows import read_snapshot
    from include.ml_pipeline.orchestration.alerts import airflow_run_url

    model = Champion.from_dict(champion)
    window = CurrentWindow.from_dict(current)
    checked = DriftCheck.from_dict(drift)
    decided = RetrainDecision.from_dict(decision)
    settings = get_settings()
    report = read_drift_report(checked.report_uri)
    checked_live = LiveCheck.from_dict(live) if live else None
    performance = None
    if checked_live is not None and checked_live.report_uri:
        performance = read_live_report(checked_live.report_uri)
    traffic = None
    if window.source == INFERENCE_LOG_SOURCE and window.rows:
        traffic = read_snapshot(window.uri)
    dashboard = render_monitoring_dashboard(
        report,
        model,
        out=join(settings.reports_uri, MONITORING_FOLDER),
        traffic=traffic,
        airflow_run_url=airflow_run_url(dag_id, run_id),
        api_url=settings.api_url,
        batch_runs=list_runs(batch_runs_uri(settings), model.model_name),
        live=performance,
    )
    mlflow_run_id = log_monitoring_run(
        report,
        model,
        tracking_uri=settings.mlflow_tracking_uri,
        airflow_run_id=run_id,
        artifact_location=settings.mlflow_artifact_root,
        params={
            "current_source": window.source,
            "window_since": window.since,
            "reference_path": model.train_path,
            **drift_thresholds(params),
            **{name: params[name] for name in LIVE_PARAMS if name in params},
        },
        tags={AIRFLOW_DAG_TAG: dag_id},
        retrain_requested=decided.retrain,
        report_uri=checked.report_uri,
        dashboard_uri=dashboard,
        live=performance,
    )
    return MonitoringRun(
        mlflow_run_id=mlflow_run_id,
        dashboard_uri=dashboard,
        retrain=decided.retrain,
        decision=decided.decision,
    ).to_dict()


def drift_detected(logged: dict, *, retrain: list[str], otherwise: str) -> list[str] | str:
    """`drift_detected`: the task ids to follow, `retrain` when the logged decision asks
    for a retraining, else `otherwise`."""
    return retrain if MonitoringRun.from_dict(logged).retrain else otherwise


def prepare_retraining(
    drift: dict, *, dag_id: str, run_id: str, logged: dict | None = None
) -> dict:
    """`prepare_retraining`: the retraining run's conf, saying why it was started (the
    drift's reason; the logged decision when no dataset drift asked for it: the live
    performance did)."""
    checked = DriftCheck.from_dict(drift)
    reason = checked.reason
    if logged is not None and not checked.summary.get("dataset_drift"):
        reason = MonitoringRun.from_dict(logged).decision
    return RetrainRequest(retrain_reason=f"{reason} ({dag_id} run {run_id})").to_dict()


def notify_drift(
    champion: dict,
    drift: dict,
    logged: dict,
    params: Mapping[str, Any],
    *,
    dag_id: str,
    run_id: str,
) -> dict:
    """`notify_drift`: one notification object under `notifications_uri` always, Slack /
    e-mail when configured."""
    from include.ml_pipeline.notifications import events
    from include.ml_pipeline.orchestration.alerts import airflow_run_url, deliver

    settings = get_settings()
    note = events.drifted(
        Champion.from_dict(champion),
        DriftCheck.from_dict(drift),
        MonitoringRun.from_dict(logged),
        api_url=settings.api_url,
        airflow_run_url=airflow_run_url(dag_id, run_id),
        dag_id=dag_id,
        run_id=run_id,
    )
    return deliver(note, params)
