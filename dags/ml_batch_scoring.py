"""
# ml_batch_scoring

An Airflow DAG that scores a whole table with the deployed model
(`models:/<model_name>@champion`): in bounded memory, in parts scored side by side, every
row either predicted or written to a rejects file with its reason.

**When it runs:** whenever the Dataset (Asset) `BATCH_INPUT_DATASET`
(`<storage root>/batch_scoring/incoming`) is updated, or when triggered with an
`input_uri`; see `include/ml_pipeline/orchestration/assets.py`.

Left to right, as the Graph view shows it:

- `wait_for_input`: sensor (reschedule mode), waits for a Parquet or CSV file, or a
  folder of them, at `input_uri` (a path or any storage URI).
- `pin_champion`: the version `champion` names now; every later task, and every part,
  scores with that version even if the alias moves during the run.
- `check_input`: each file's schema against that version's input contract, before any
  row is scored: a missing or retyped column fails the run, naming it; extra columns are
  passed through; the key columns are chosen (`key_columns`, else id-like columns, else
  the row number).
- `plan_parts`: the input split into parts of about `part_rows` rows (Parquet row
  groups, or one CSV file each), from metadata; `plan.json` under
  `<storage root>/batch_scoring/runs/<run>/`. It also loads the pinned version and
  verifies its compiled predictor once, for every part: the verified scorer is stored
  beside the plan and its SHA-256 handed to each part (a part checks the digest; on any
  mismatch it loads and verifies the version itself).
- `score_part` (mapped, one task per part): takes the verified scorer, reads its part in
  chunks of `chunk_rows`,
  rejects the rows that cannot be scored (missing required value; with
  `strict_categories`, a category never seen in training), scores the rest with the
  compiled and verified predictor (the scikit-learn path for models the compiler does not
  know), and writes its own Parquet objects (predictions, rejects, a drift sample, its
  report) under temporary names moved into place: a retried part rewrites only itself.
- `finalize_output` (runs whatever the parts did): `_manifest.json` with rows in, out,
  refused and why, the model version and the input's fingerprint; `complete` only when
  every part is there with the pinned version, else `incomplete` and the run fails.
- `compute_drift`: the batch's sample against the training split, with the online
  check's statistics; `drift_report.json` beside the manifest.
- `log_to_mlflow`: a run of experiment `ml_batch_scoring` (scoring facts, drift, manifest).
- `drift_detected`: branch to `notify_drift` (like online drift: a notification object
  always, Slack / e-mail / Apprise / Jira when configured) or `no_drift`.

**Params** (`batch_scoring_params()` in `include/ml_pipeline/orchestration/params.py`):
`model_name`, `input_uri`, the sensor's `sensor_poke_interval_seconds` and
`sensor_timeout_seconds`, `key_columns`,
`non_null_columns`, `strict_categories`, `part_rows`, `chunk_rows`, the drift thresholds
shared with the other DAGs (`drift_*`), and the notification channels (`slack_conn_id`,
`smtp_conn_id`, `email_to`, `apprise_conn_id`, `jira_conn_id`).

Run it locally with `make score DATA=file_or_folder`.
"""

from __future__ import annotations

from include.ml_pipeline.names import BATCH_SCORING_DAG_ID
from include.ml_pipeline.orchestration.assets import (
    BATCH_INPUT_DATASET,
    BATCH_PREDICTIONS_DATASET,
)
from include.ml_pipeline.orchestration.compat import EmptyOperator, dag, task
from include.ml_pipeline.orchestration.defaults import dag_settings
from include.ml_pipeline.orchestration.params import (
    SENSOR_MAX_TIMEOUT_SECONDS,
    batch_scoring_params,
)
from include.ml_pipeline.orchestration.steps import batch_scoring_dag


@dag(
    dag_id=BATCH_SCORING_DAG_ID,
    schedule=[BATCH_INPUT_DATASET],
    **dag_settings(),
    params=batch_scoring_params(),
    tags=["mlops", "mlflow", "batch", "scoring"],
    doc_md=__doc__,
)
def ml_batch_scoring():
    @task.sensor(mode="reschedule", poke_interval=30, timeout=SENSOR_MAX_TIMEOUT_SECONDS)
    def wait_for_input(params=None, dag_run=None):
        """Wait for a Parquet or CSV file (or a folder of them) at `input_uri`."""
        return batch_scoring_dag.wait_for_input(params, dag_run.start_date)

    @task
    def pin_champion(params=None) -> dict:
        """The version the champion alias names now: the whole run scores with it."""
        return batch_scoring_dag.pin_champion(params)

    @task
    def check_input(champion: dict, found: dict, params=None) -> dict:
        """The input against the pinned version's input contract, before any scoring."""
        return batch_scoring_dag.check_input(champion, found, params)

    @task
    def plan_parts(champion: dict, found: dict, checked: dict, params=None, run_id=None):
        """The input split into parts (metadata only); one mapped task per part."""
        return batch_scoring_dag.plan_parts(champion, found, checked, params, run_id=run_id)

    @task
    def score_part(planned: dict, champion: dict, checked: dict, params=None, run_id=None) -> dict:
        """One part, in chunks, into its own Parquet objects (a retry rewrites only them)."""
        return batch_scoring_dag.score_part(planned, champion, checked, params, run_id=run_id)

    @task(trigger_rule="all_done", outlets=[BATCH_PREDICTIONS_DATASET])
    def finalize_output(run_id=None) -> dict:
        """The manifest: complete only when every part is there with the pinned version."""
        return batch_scoring_dag.finalize_output(run_id=run_id)

    @task
    def compute_drift(champion: dict, output: dict, params=None, run_id=None) -> dict:
        """The batch's drift against the training split; report beside the manifest."""
        return batch_scoring_dag.compute_drift(champion, output, params, run_id=run_id)

    @task
    def log_to_mlflow(
        champion: dict, output: dict, drift: dict, params=None, dag=None, run_id=None
    ):
        """A run of experiment `ml_batch_scoring`: scoring facts, drift, manifest."""
        return batch_scoring_dag.log_to_mlflow(
            champion, output, drift, params, dag_id=dag.dag_id, run_id=run_id
        )

    @task.branch
    def drift_detected(logged: dict) -> str:
        """Notify when the batch drifted; otherwise the quiet path."""
        return batch_scoring_dag.drift_detected(
            logged, drifted="notify_drift", otherwise="no_drift"
        )

    @task
    def notify_drift(
        champion: dict, output: dict, drift: dict, logged: dict, params=None, dag=None, run_id=None
    ) -> dict:
        """Tell people, as online drift does: a notification object always, Slack / e-mail
        when configured."""
        return batch_scoring_dag.notify_drift(
            champion, output, drift, logged, params, dag_id=dag.dag_id, run_id=run_id
        )

    found = wait_for_input()
    champion = pin_champion()
    found >> champion
    checked = check_input(champion, found)
    planned = plan_parts(champion, found, checked)
    scored = score_part.partial(champion=champion, checked=checked).expand(planned=planned)
    output = finalize_output()
    scored >> output
    drift = compute_drift(champion, output)
    logged = log_to_mlflow(champion, output, drift)
    branch = drift_detected(logged)
    branch >> [notify_drift(champion, output, drift, logged), EmptyOperator(task_id="no_drift")]


ml_batch_scoring()
