"""
# ml_model_monitoring

An Airflow DAG that watches the deployed model (`models:/<model_name>@champion`) for data
drift and, when the data has moved, starts a retraining run of
`ml_model_deployment_advanced`.

**When it runs:** every hour (`0 * * * *` UTC) *and* whenever one of its Datasets is
updated: new inference log data (`INFERENCE_LOG_DATASET`) or new raw data
(`RAW_DATA_DATASET`), see `include/ml_pipeline/orchestration/assets.py`.

Left to right, as the Graph view shows it:

- `find_champion`: the champion version, its feature spec (model metadata, version tag or
  signature), training split (version tag `train_path`, else the run's training input)
  and test metrics. No champion: the rest of the run is skipped.
- `load_reference`: checks that the training split, the drift reference, is readable and
  has every feature.
- `load_current`: the champion version's inference-log rows of the last
  `drift_window_hours` before the logical date (at most `drift_max_rows`), or the batch
  file `current_source`, frozen to Parquet at `<storage root>/monitoring/<run>/` so a
  retried task sees the same rows.
- `compute_drift`: KS / chi-square + PSI per feature, and prediction drift with the
  champion's own predictions on the reference; report JSON under `<reports>/monitoring/`.
- `live_performance`: each version's live accuracy (or RMSE and MAE) over the last
  `live_window_hours`, on the answers whose true labels came back (`POST /feedback`, label
  files under `<storage root>/labels/<model>/`), per version and over time, with the
  counts and the share labelled; report JSON under `<reports>/monitoring/`.
- `decide_retraining`: retrain on dataset drift, or on a live metric below
  `min_live_accuracy` / above `max_live_rmse_ratio` x the test RMSE (given at least
  `min_live_labels` labels; fewer: not judged, and the decision says so), unless a
  retraining of the same version was requested within `retrain_cooldown_hours` (looked
  up in the monitoring experiment).
- `log_to_mlflow`: the champion's monitoring dashboard (beside the report), and a run in experiment
  `ml_model_monitoring` with the drift metrics, report, drift table, the champion's live
  metrics (`live_accuracy` or `live_rmse`, `live_labelled`, `live_label_share`), dashboard
  and the decision (tag `retrain_requested`).
- `drift_detected`: branch to `prepare_retraining` + `notify_drift` when the decision is
  to retrain, else to `no_drift`.
- `prepare_retraining`: the conf of the retraining run, `{"retrain_reason": ...}`.
- `trigger_retraining`: `TriggerDagRunOperator` for `ml_model_deployment_advanced` (run
  id `retrain__<this run id>`).
- `notify_drift`: event `drift`, one object under `<storage root>/notifications/` always, Slack /
  e-mail when their connections exist.
- `no_drift`: the quiet path.

**Params** (`monitoring_params()` in `include/ml_pipeline/orchestration/params.py`):
`model_name` (registered model to watch), `current_source` (`"inference_log"` or a
CSV/Parquet batch path or URI), the drift thresholds shared with the deployment DAG
(`drift_alpha` family-wise significance level, `drift_psi_threshold`,
`drift_ks_threshold`, `drift_share` of drifted features that makes the dataset drifted,
`drift_min_rows` below which the data is insufficient, `drift_max_rows` sub-sampling
bound, `drift_window_hours`), `retrain_cooldown_hours`, the live performance rule
(`live_window_hours`, `min_live_accuracy`, `max_live_rmse_ratio`, `min_live_labels`),
and the notification channels
(`slack_conn_id`, `smtp_conn_id`, `email_to`).

The statistics are explained in `include/ml_pipeline/monitoring/drift.py`. Run it
locally with `make monitor` (optionally `SEND=1500` drifted requests to the API first).
"""

from __future__ import annotations

from include.ml_pipeline.names import DEPLOYMENT_DAG_ID, MONITORING_DAG_ID
from include.ml_pipeline.orchestration.assets import INFERENCE_LOG_DATASET, RAW_DATA_DATASET
from include.ml_pipeline.orchestration.compat import (
    CronTriggerTimetable,
    EmptyOperator,
    TriggerDagRunOperator,
    asset_or_time_schedule,
    dag,
    logical_date,
    task,
)
from include.ml_pipeline.orchestration.defaults import dag_settings
from include.ml_pipeline.orchestration.params import monitoring_params
from include.ml_pipeline.orchestration.steps import monitoring_dag


@dag(
    dag_id=MONITORING_DAG_ID,
    schedule=asset_or_time_schedule(
        CronTriggerTimetable("0 * * * *", timezone="UTC"),
        INFERENCE_LOG_DATASET | RAW_DATA_DATASET,
    ),
    **dag_settings(),
    params=monitoring_params(),
    tags=["mlops", "mlflow", "monitoring", "drift"],
    doc_md=__doc__,
)
def ml_model_monitoring():
    @task.short_circuit
    def find_champion(params=None) -> dict | None:
        """The champion version and its metadata; skip the whole run when there is none."""
        return monitoring_dag.find_champion(params)

    @task
    def load_reference(champion: dict) -> dict:
        """Check the champion's training split: it is the drift reference."""
        return monitoring_dag.load_reference(champion)

    @task
    def load_current(champion: dict, params=None, run_id=None, **context) -> dict:
        """The recent inference log of the champion (or a batch file), frozen to Parquet."""
        return monitoring_dag.load_current(
            champion, params, run_id=run_id, logical_date=logical_date(context)
        )

    @task
    def compute_drift(
        champion: dict, reference: dict, current: dict, params=None, run_id=None
    ) -> dict:
        """Feature and prediction drift; the report JSON goes under the reports URI."""
        return monitoring_dag.compute_drift(champion, reference, current, params, run_id=run_id)

    @task
    def live_performance(champion: dict, params=None, run_id=None, **context) -> dict:
        """Each version's live accuracy (or RMSE) from the true labels that came back."""
        return monitoring_dag.live_performance(
            champion, params, run_id=run_id, logical_date=logical_date(context)
        )

    @task
    def decide_retraining(
        champion: dict, drift: dict, live: dict, params=None, run_id=None, **context
    ) -> dict:
        """Retrain on dataset drift or poor live performance, at most once per version per
        cool-down."""
        return monitoring_dag.decide_retraining(
            champion, drift, params, run_id=run_id, logical_date=logical_date(context), live=live
        )

    @task
    def log_to_mlflow(
        champion: dict,
        current: dict,
        drift: dict,
        decision: dict,
        live: dict,
        params=None,
        dag=None,
        run_id=None,
    ) -> dict:
        """A run in experiment `ml_model_monitoring`: drift metrics, report, live
        performance, dashboard, and the retraining decision."""
        return monitoring_dag.log_to_mlflow(
            champion, current, drift, decision, params, dag_id=dag.dag_id, run_id=run_id, live=live
        )

    @task.branch
    def drift_detected(logged: dict) -> list[str] | str:
        """Retrain and notify when the decision says so; otherwise the quiet path."""
        return monitoring_dag.drift_detected(
            logged, retrain=["prepare_retraining", "notify_drift"], otherwise="no_drift"
        )

    @task
    def prepare_retraining(drift: dict, logged: dict, dag=None, run_id=None) -> dict:
        """The retraining run's conf: why it was started."""
        return monitoring_dag.prepare_retraining(
            drift, dag_id=dag.dag_id, run_id=run_id, logged=logged
        )

    @task
    def notify_drift(
        champion: dict, drift: dict, logged: dict, params=None, dag=None, run_id=None
    ) -> dict:
        """Tell people: a notification object always, Slack / e-mail when configured."""
        return monitoring_dag.notify_drift(
            champion, drift, logged, params, dag_id=dag.dag_id, run_id=run_id
        )

    champion = find_champion()
    reference = load_reference(champion)
    current = load_current(champion)
    drift = compute_drift(champion, reference, current)
    live = live_performance(champion)
    decision = decide_retraining(champion, drift, live)
    logged = log_to_mlflow(champion, current, drift, decision, live)
    branch = drift_detected(logged)
    retrain_conf = prepare_retraining(drift, logged)
    trigger_retraining = TriggerDagRunOperator(
        task_id="trigger_retraining",
        trigger_dag_id=DEPLOYMENT_DAG_ID,
        trigger_run_id="retrain__{{ run_id }}",
        conf=retrain_conf,
        skip_when_already_exists=True,
        wait_for_completion=False,
    )
    notified = notify_drift(champion, drift, logged)
    no_drift = EmptyOperator(task_id="no_drift")
    branch >> [retrain_conf, notified, no_drift]
    retrain_conf >> trigger_retraining


ml_model_monitoring()
