"""
# ml_model_monitoring

Watches the deployed model (`models:/<model_name>@champion`) for data drift and, when
the data has moved, starts a retraining run of `ml_model_deployment_advanced`.

**When it runs:** every hour (`0 * * * *` UTC) *and* whenever one of its Datasets is
updated: new inference log data (`INFERENCE_LOG_DATASET`) or new raw data
(`RAW_DATA_DATASET`), see `include/ml_pipeline/orchestration/assets.py`.

| task | what it does |
|---|---|
| `find_champion` | the champion version, its feature spec and training split; none: run skipped |
| `load_reference` | checks the champion's training split (version tag `train_path`) |
| `load_current` | inference log rows of that version (last `window_hours`) or the batch file |
| `compute_drift` | KS / chi-square + PSI per feature, prediction drift; report JSON |
| `log_to_mlflow` | run in experiment `ml_model_monitoring`: metrics, report, dashboard |
| `drift_detected` | branch: retrain on dataset drift (once per `retrain_cooldown_hours`) |
| `prepare_retraining` | the conf of the retraining run: `{"retrain_reason": ...}` |
| `trigger_retraining` | `TriggerDagRunOperator` for `ml_model_deployment_advanced` |
| `notify_drift` | event `drift`: local log, Slack / e-mail when their connections exist |
| `no_drift` | the quiet path |

The current data is frozen to Parquet (`storage_root/monitoring/<run>/`) so a retried
task sees the same rows; the report goes to `reports_dir/monitoring/`.

Thresholds are Params (`alpha`, `psi_threshold`, `ks_threshold`, `drift_share`,
`min_rows`, ...); the statistics are explained in `include/ml_pipeline/monitoring/drift.py`.
Run it locally with `make monitor` (optionally `SEND=1500` drifted requests to the API first).
"""

from __future__ import annotations

import pendulum
from airflow.decorators import dag, task
from airflow.models.param import Param
from airflow.operators.empty import EmptyOperator
from airflow.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.timetables.datasets import DatasetOrTimeSchedule
from airflow.timetables.trigger import CronTriggerTimetable

from include.ml_pipeline.config import get_settings
from include.ml_pipeline.monitoring.monitor_job import MonitoringError
from include.ml_pipeline.orchestration.assets import INFERENCE_LOG_DATASET, RAW_DATA_DATASET
from include.ml_pipeline.orchestration.defaults import (
    SLACK_CONN_ID,
    SMTP_CONN_ID,
    default_args,
    fail_without_retry,
)

DEPLOYMENT_DAG_ID = "ml_model_deployment_advanced"
THRESHOLD_KEYS = ("alpha", "psi_threshold", "ks_threshold", "drift_share", "min_rows", "max_rows")


params = {
    "model_name": Param(
        get_settings().model_name, type="string", description="Registered model to watch"
    ),
    "current_source": Param(
        "inference_log",
        type="string",
        description='"inference_log" (the model API\'s log) or a CSV/Parquet batch path or URI',
    ),
    "window_hours": Param(
        24, type="number", exclusiveMinimum=0, description="Inference log window, back from now"
    ),
    "alpha": Param(
        0.05,
        type="number",
        exclusiveMinimum=0,
        exclusiveMaximum=1,
        description="Family-wise significance level (Bonferroni across features)",
    ),
    "psi_threshold": Param(
        0.1, type="number", minimum=0, description="PSI at or above which a shift is material"
    ),
    "ks_threshold": Param(
        0.1,
        type="number",
        minimum=0,
        maximum=1,
        description="KS statistic at or above which a numeric shift is material",
    ),
    "drift_share": Param(
        0.3,
        type="number",
        exclusiveMinimum=0,
        maximum=1,
        description="Share of drifted features that makes the dataset drifted",
    ),
    "min_rows": Param(
        100, type="integer", minimum=1, description="Fewer current rows: insufficient data"
    ),
    "max_rows": Param(50_000, type="integer", minimum=1, description="Sub-sample above this"),
    "retrain_cooldown_hours": Param(
        12,
        type="number",
        minimum=0,
        description="Do not request another retraining of the same version within this time",
    ),
    "email_to": Param(
        None, type=["null", "string"], description="Drift e-mail recipients (comma-separated)"
    ),
}


_fail_on_bad_config = fail_without_retry(MonitoringError, FileNotFoundError, KeyError, ValueError)


@dag(
    dag_id="ml_model_monitoring",
    schedule=DatasetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 * * * *", timezone="UTC"),
        datasets=(INFERENCE_LOG_DATASET | RAW_DATA_DATASET),
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    params=params,
    tags=["mlops", "mlflow", "monitoring", "drift"],
    doc_md=__doc__,
)
def ml_model_monitoring():
    @task.short_circuit
    @_fail_on_bad_config
    def find_champion(params=None, ti=None) -> dict | None:
        """The champion version and its metadata; skip the whole run when there is none."""
        from include.ml_pipeline.monitoring.monitor_job import find_champion as lookup

        settings = get_settings()
        champion = lookup(params["model_name"], tracking_uri=settings.mlflow_tracking_uri)
        if champion is None:
            ti.log.info(
                "No champion for model %r in %s: nothing deployed, nothing to monitor; "
                "skipping this run.",
                params["model_name"],
                settings.mlflow_tracking_uri,
            )
            return None
        ti.log.info("Monitoring %s (run %s)", champion["model_uri"], champion["run_id"])
        return champion

    @task
    @_fail_on_bad_config
    def load_reference(champion: dict) -> dict:
        """Check the champion's training split: it is the drift reference."""
        from include.ml_pipeline.monitoring.monitor_job import load_reference as load

        frame = load(champion["train_path"], champion["feature_spec"])
        return {"path": champion["train_path"], "rows": len(frame)}

    @task
    @_fail_on_bad_config
    def load_current(champion: dict, params=None, run_id=None, logical_date=None) -> dict:
        """The recent inference log of the champion (or a batch file), frozen to Parquet."""
        from include.ml_pipeline.monitoring import monitor_job
        from include.ml_pipeline.runs import run_key

        settings = get_settings()
        source = params["current_source"]
        since = monitor_job.window_start(logical_date, params["window_hours"])
        frame = monitor_job.load_current(
            source,
            champion["feature_spec"],
            model_version=champion["version"],
            inference_log_dir=settings.inference_log_dir,
            since=since,
            max_rows=params["max_rows"],
        )
        path = settings.storage_root / "monitoring" / run_key(run_id) / "current.parquet"
        monitor_job.snapshot_current(frame, path)
        window = since.isoformat() if source == monitor_job.INFERENCE_LOG_SOURCE else None
        return {"path": str(path), "rows": len(frame), "source": source, "since": window}

    @task
    @_fail_on_bad_config
    def compute_drift(
        champion: dict, reference: dict, current: dict, params=None, run_id=None, ti=None
    ) -> dict:
        """Feature and prediction drift; the report JSON goes under `reports_dir`."""
        import pandas as pd

        from include.ml_pipeline.monitoring import monitor_job
        from include.ml_pipeline.runs import run_key

        settings = get_settings()
        spec = champion["feature_spec"]
        reference_frame = monitor_job.load_reference(reference["path"], spec)
        current_frame = pd.read_parquet(current["path"])
        try:
            model = monitor_job.load_model(
                champion["model_uri"], tracking_uri=settings.mlflow_tracking_uri
            )
        except Exception as exc:  # prediction drift is a bonus, feature drift still runs
            ti.log.warning("champion model not loadable, no prediction drift: %r", exc)
            model = None
        thresholds = {k: params[k] for k in THRESHOLD_KEYS}
        report = monitor_job.run_drift_check(
            reference_frame, current_frame, spec, thresholds, model=model
        )
        summary = report.summary()
        path = monitor_job.write_report(
            report,
            champion,
            reports_dir=settings.reports_dir,
            run_key=run_key(run_id),
            extra={
                "airflow_run_id": run_id,
                "source": current["source"],
                "since": current["since"],
            },
        )
        ti.log.info("drift summary: %s", summary)
        ti.log.info("report: %s", path)
        return {
            "summary": summary,
            "report_path": str(path),
            "reason": monitor_job.drift_reason(summary, champion, current["source"]),
        }

    @task
    def log_to_mlflow(
        champion: dict,
        drift: dict,
        current: dict,
        params=None,
        run_id=None,
        logical_date=None,
        ti=None,
    ) -> dict:
        """A run in experiment `ml_model_monitoring`: drift metrics, report, dashboard;
        also decides whether to request a retraining (dataset drift, outside the cool-down)."""
        import json
        from pathlib import Path

        import pandas as pd

        from include.ml_pipeline.monitoring import monitor_job
        from include.ml_pipeline.notifications import airflow_run_url

        settings = get_settings()
        report = json.loads(Path(drift["report_path"]).read_text(encoding="utf-8"))
        previous = None
        if drift["summary"]["dataset_drift"] and params["retrain_cooldown_hours"] > 0:
            previous = monitor_job.recent_retrain_request(
                champion["model_name"],
                champion["version"],
                tracking_uri=settings.mlflow_tracking_uri,
                since=monitor_job.window_start(logical_date, params["retrain_cooldown_hours"]),
                exclude_airflow_run_id=run_id,
            )
        retrain, why = monitor_job.retrain_decision(drift["summary"], previous)
        ti.log.info("decision: %s", why)
        traffic = None
        if current["source"] == monitor_job.INFERENCE_LOG_SOURCE and current["rows"]:
            traffic = pd.read_parquet(current["path"])
            traffic["timestamp"] = pd.to_datetime(traffic["timestamp"], utc=True, format="ISO8601")
        dashboard = monitor_job.render_monitoring_dashboard(
            report,
            champion,
            out_dir=settings.reports_dir / "monitoring",
            traffic=traffic,
            airflow_run_url=airflow_run_url("ml_model_monitoring", run_id),
            api_url=settings.api_url,
        )
        mlflow_run_id = monitor_job.log_monitoring_run(
            report,
            champion,
            tracking_uri=settings.mlflow_tracking_uri,
            airflow_run_id=run_id,
            artifact_location=settings.mlflow_artifact_root,
            params={
                "current_source": current["source"],
                "window_since": current["since"],
                "reference_path": champion["train_path"],
                **{k: params[k] for k in THRESHOLD_KEYS},
            },
            tags={"airflow_dag_id": "ml_model_monitoring"},
            retrain_requested=retrain,
            report_path=drift["report_path"],
            dashboard_path=dashboard,
        )
        return {
            "mlflow_run_id": mlflow_run_id,
            "dashboard_path": str(dashboard),
            "retrain": retrain,
            "decision": why,
        }

    @task.branch
    def drift_detected(logged: dict) -> list[str] | str:
        """Retrain and notify on dataset drift; otherwise the quiet path."""
        if logged["retrain"]:
            return ["prepare_retraining", "notify_drift"]
        return "no_drift"

    @task
    def prepare_retraining(drift: dict, run_id=None) -> dict:
        """The retraining run's conf: why it was started."""
        return {"retrain_reason": f"{drift['reason']} (ml_model_monitoring run {run_id})"}

    @task
    def notify_drift(
        champion: dict, drift: dict, logged: dict, params=None, run_id=None, ti=None
    ) -> dict:
        """Tell people: local notifications log always, Slack / e-mail when configured."""
        from include.ml_pipeline.notifications import (
            Notification,
            airflow_run_url,
            describe_outcomes,
            send_notification,
        )

        settings = get_settings()
        summary = drift["summary"]
        notification = Notification(
            event="drift",
            title=f"Data drift on {champion['model_name']} v{champion['version']}; "
            "retraining started",
            model_name=champion["model_name"],
            version=champion["version"],
            metrics={
                "share_drifted": summary["share_drifted"],
                "n_drifted": summary["n_drifted"],
                "current_rows": summary["current_rows"],
            },
            reasons=[drift["reason"], logged["decision"]],
            airflow_run_url=airflow_run_url("ml_model_monitoring", run_id),
            api_url=settings.api_url,
            dashboard_path=logged["dashboard_path"],
            dag_id="ml_model_monitoring",
            run_id=run_id,
            details={"report": drift["report_path"], "mlflow_run_id": logged["mlflow_run_id"]},
        )
        outcomes = send_notification(
            notification,
            slack_conn_id=SLACK_CONN_ID,
            smtp_conn_id=SMTP_CONN_ID,
            email_to=params["email_to"],
        )
        ti.log.info("notification: %s", describe_outcomes(outcomes))
        return outcomes

    champion = find_champion()
    reference = load_reference(champion)
    current = load_current(champion)
    drift = compute_drift(champion, reference, current)
    logged = log_to_mlflow(champion, drift, current)
    branch = drift_detected(logged)
    retrain_conf = prepare_retraining(drift)
    # Airflow 2.11 has no standard provider to import these operators from.
    trigger_retraining = TriggerDagRunOperator(  # noqa: AIR312
        task_id="trigger_retraining",
        trigger_dag_id=DEPLOYMENT_DAG_ID,
        trigger_run_id="retrain__{{ run_id }}",
        conf=retrain_conf,
        skip_when_already_exists=True,
        wait_for_completion=False,
    )
    notified = notify_drift(champion, drift, logged)
    no_drift = EmptyOperator(task_id="no_drift")  # noqa: AIR312
    branch >> [retrain_conf, notified, no_drift]
    retrain_conf >> trigger_retraining


ml_model_monitoring()
