"""
# ml_model_deployment_advanced

An Airflow DAG that takes a tabular model (binary, multiclass or regression: the problem type
inferred from the label column, or set by the `problem_type` Param) from raw data to a live,
monitored HTTP API, and puts it back the way it was when something goes wrong.

Left to right, as the Graph view shows it:

- `esperar_datos`: sensor (reschedule mode), waits for the raw file at `data_uri`.
- `preparacion_datos`: `descargar_datos` loads the file into the warehouse (text columns,
  rows numbered); `validar_datos` decides the problem type (and says why) and checks
  schema and quality rules in SQL;
  `preprocesar_datos` types and cleans the columns and chooses the features;
  `dividir_datos` writes a stratified (by class, or by quantile bins of a regression
  target), seeded train/validation/test split as Parquet.
- `entrenamiento_evaluacion`: `iniciar_experimento` opens this run's MLflow parent run
  once the split exists (data that fails at the door never opens one) with the candidates
  of its problem type;
  `entrenar_modelo` fits each candidate (mapped) as a nested run; `evaluar_modelo` scores
  the best on the test split beside the current champion; `registrar_mlflow` registers it
  as a new version with alias `challenger`.
- `decidir_despliegue`: the deploy gate (beat the class-prior or mean baseline, optional absolute
  thresholds, not worse than the champion on the same test split, the same input
  contract), recorded on the version; branches to
  `despliegue_modelo` or `notificar_modelo_rechazado`.
- `despliegue_modelo`: `generar_artefactos` verifies the challenger as served, stores its
  serving artifact, replays it on the champion's logged live requests and promotes it to
  `champion`; `desplegar_api` makes the model API serve it; `pruebas_api` smoke-tests the
  live API; `revertir_despliegue` puts the previous champion back when the deployment
  failed. With `release_strategy` shadow or canary, `generar_artefactos` does not promote
  (a failed replay aborts there), and `desplegar_api`, a sensor in reschedule mode, runs
  the challenger next to the champion in shadow, then at each of `canary_steps`, takes
  one planned look per stage (`release_min_requests` per stage or
  `release_max_wait_minutes`) and promotes on a pass at the last look; a fail or too
  little traffic fails it with the decision as its message (the champion untouched,
  `revertir_despliegue` skipped, `notificar_fallo` says why).
- `notificar_modelo_rechazado`: the rejected path, with the gate's reasons.
- `visualizacion_monitoreo`: `configurar_monitoreo` measures drift of recent traffic
  against the training split; `configurar_dashboards` renders the version's dashboard.
- `notificaciones`: `notificar_despliegue_exitoso` on success; `notificar_fallo` when any
  task failed (each task's failure callback records the error it failed on).
- `fin`: succeeds when one path succeeded and nothing failed.

**Params** (the Trigger form): data (`data_uri`, `data_conn_id`, sensor poke interval and
timeout), validation rules (`target`, `problem_type`, `required_columns`, `numeric_columns`,
`categorical_columns`, `exclude_columns`, `value_ranges`, `min_rows`, null, duplicate and
class-count limits, `leakage_threshold`, `drop_duplicates`), the split (`test_size`,
`validation_size`, `seed`), training (`candidates`, `selection_metric`, `model_name`), the
deploy gate (`min_lift_over_baseline` over the class-prior or mean baseline, the optional
`min_roc_auc`, `min_accuracy`, `max_log_loss`, `min_f1`, `max_rmse`, `min_r2`,
`primary_metric`, `tolerance`,
`allow_contract_change`), deployment (`latency_p95_budget_ms`, `api_timeout_seconds`,
the release: `release_strategy`, `canary_steps`, `release_min_requests`,
`release_max_wait_minutes`, `release_poke_seconds`, `release_abort_on_replay_fail`),
drift at deployment (`drift_*`), and notifications (`slack_conn_id`, `smtp_conn_id`,
`email_to`); see `include/ml_pipeline/orchestration/params.py`.

Run it locally without Docker with `make run` (or `make run DATA=file.csv TARGET=column`),
or with `astro dev start` and the Trigger button. Only references (table names, paths,
run ids, versions) and small summaries travel through XCom.
"""

from __future__ import annotations

from include.ml_pipeline.names import (
    DECISION_TASK_ID,
    DECISION_XCOM_KEY,
    DEPLOYMENT_DAG_ID,
)
from include.ml_pipeline.orchestration.assets import RAW_DATA_DATASET, REGISTERED_MODEL_DATASET
from include.ml_pipeline.orchestration.compat import (
    EmptyOperator,
    dag,
    keyed_output,
    task,
    task_group,
)
from include.ml_pipeline.orchestration.defaults import dag_settings
from include.ml_pipeline.orchestration.params import SENSOR_MAX_TIMEOUT_SECONDS, deployment_params
from include.ml_pipeline.orchestration.steps.deployment_dag import (
    data_preparation,
    decision,
    deployment,
    monitoring,
    notifications,
    training,
)


@dag(
    dag_id=DEPLOYMENT_DAG_ID,
    schedule="@daily",
    **dag_settings(),
    params=deployment_params(),
    tags=["mlops", "mlflow", "astro-sdk", "classification"],
    doc_md=__doc__,
)
def ml_model_deployment_advanced():
    # The Params decide the poke interval and the wait; the decorator's timeout is a ceiling.
    @task.sensor(mode="reschedule", poke_interval=30, timeout=SENSOR_MAX_TIMEOUT_SECONDS)
    def esperar_datos(params=None, dag_run=None):
        """Wait for the raw data at `data_uri`."""
        return data_preparation.wait_for_data(params, dag_run.start_date)

    @task_group
    def preparacion_datos(uri: str):
        """Load, validate, clean and split the raw data inside the warehouse."""

        @task(outlets=[RAW_DATA_DATASET])
        def descargar_datos(uri: str, params=None, run_id=None) -> dict:
            """Load the raw file into a warehouse table (text columns, rows numbered)."""
            return data_preparation.load_raw_data(uri, params, run_id)

        @task
        def validar_datos(loaded: dict, params=None) -> dict:
            """Check schema and quality rules in SQL; a failure names column, rule and value."""
            return data_preparation.validate_raw_data(loaded, params)

        @task
        def preprocesar_datos(validated: dict, params=None, run_id=None) -> dict:
            """Type and clean the columns, choose the features (fitted steps live in the model)."""
            return data_preparation.preprocess(validated, params, run_id)

        @task
        def dividir_datos(prepared: dict, loaded: dict, params=None, run_id=None) -> dict:
            """Stratified, seeded train/validation/test split written as Parquet files."""
            return data_preparation.split(prepared, loaded, params, run_id)

        loaded = descargar_datos(uri)
        return dividir_datos(preprocesar_datos(validar_datos(loaded)), loaded)

    @task_group
    def entrenamiento_evaluacion(split: dict):
        """Train every candidate (mapped), evaluate the best on the test split, register it."""

        @task
        def iniciar_experimento(split: dict, params=None, run_id=None, dag=None) -> list[dict]:
            """Open this run's MLflow parent run; one training job per candidate."""
            return training.start_experiment(params, split, dag_id=dag.dag_id, run_id=run_id)

        @task(max_active_tis_per_dag=2)
        def entrenar_modelo(job: dict, split: dict, params=None, ti=None) -> dict:
            """Fit one candidate pipeline, score it on validation, log a nested MLflow run."""
            return training.train_candidate(job, split, params, ti)

        @task
        def evaluar_modelo(results, split: dict, params=None) -> dict:
            """Pick the best candidate, score it and the current champion on the test split."""
            return training.evaluate_best(results, split, params)

        @task(outlets=[REGISTERED_MODEL_DATASET])
        def registrar_mlflow(evaluation: dict, split: dict, params=None, run_id=None) -> dict:
            """Register the chosen model as a new version with alias `challenger` (idempotent)."""
            return training.register(evaluation, split, params, run_id=run_id)

        jobs = iniciar_experimento(split)  # the candidates of the split's problem type
        results = entrenar_modelo.partial(split=split).expand(job=jobs)
        return registrar_mlflow(evaluar_modelo(results, split), split)

    @task.branch(task_id=DECISION_TASK_ID)
    def decidir_despliegue(registered: dict, params=None, ti=None) -> str:
        """Deploy only if the challenger clears the gate and does not lose to the champion."""
        return decision.decide(
            registered,
            params,
            ti,
            deploy_to="despliegue_modelo.generar_artefactos",
            reject_to="notificar_modelo_rechazado",
        )

    @task_group
    def despliegue_modelo(decided: dict):
        """Promote, roll out to the model API, smoke-test it, and roll back on failure."""

        @task
        def generar_artefactos(decided: dict, params=None, dag=None, run_id=None) -> dict:
            """Verify the challenger as served, replay it, promote it (direct), write manifest."""
            return deployment.release(decided, params, dag_id=dag.dag_id, run_id=run_id)

        # A sensor so that a shadow / canary release waits for its evidence without a slot.
        @task.sensor(
            mode="reschedule", poke_interval=30, timeout=SENSOR_MAX_TIMEOUT_SECONDS, retries=1
        )
        def desplegar_api(release: dict, params=None):
            """Make the model API serve the new champion (shadow / canary: after the stated
            decision on live evidence promoted it); wait until it does."""
            return deployment.roll_out(release, params)

        @task
        def pruebas_api(rollout: dict, params=None) -> dict:
            """Smoke tests on the live URL with rows of this run's test split."""
            return deployment.test_live_api(rollout, params)

        @task(trigger_rule="one_failed", retries=0)
        def revertir_despliegue(release: dict | None, params=None, ti=None) -> None:
            """Point `champion` back to the previous version, reload, verify, then fail."""
            deployment.roll_back(release, params, ti)

        release = generar_artefactos(decided)
        rollout = desplegar_api(release)
        live = pruebas_api(rollout)
        [rollout, live] >> revertir_despliegue(release)
        return {"release": release, "live": live}

    @task
    def notificar_modelo_rechazado(decided: dict, params=None, dag=None, run_id=None) -> dict:
        """Tell the team the challenger was rejected, with the gate's reasons."""
        return notifications.notify_rejected(decided, params, dag_id=dag.dag_id, run_id=run_id)

    @task_group
    def visualizacion_monitoreo(deployed: dict):
        """Drift of recent traffic vs. the training data, and the model's HTML dashboard."""

        @task
        def configurar_monitoreo(deployed: dict, params=None) -> dict:
            """KS / chi-square / PSI drift against the training split; results to MLflow."""
            return monitoring.check_drift(deployed, params)

        @task
        def configurar_dashboards(
            deployed: dict, drift: dict, params=None, dag=None, run_id=None
        ) -> dict:
            """The deployed version's self-contained HTML dashboard, also logged to MLflow."""
            return monitoring.render_dashboard(
                deployed, drift, params, dag_id=dag.dag_id, run_id=run_id
            )

        return configurar_dashboards(deployed, configurar_monitoreo(deployed))

    @task_group(prefix_group_id=False)  # the seed's ids: notificar_despliegue_exitoso, ...
    def notificaciones(dashboard: dict, rejected):
        """Tell people once: the new champion, or which task failed and why."""

        @task
        def notificar_despliegue_exitoso(dashboard: dict, params=None, dag=None, run_id=None):
            """Tell the team a new champion is live: version, metrics, links."""
            return notifications.notify_deployed(
                dashboard, params, dag_id=dag.dag_id, run_id=run_id
            )

        @task(trigger_rule="one_failed", retries=0)
        def notificar_fallo(params=None, ti=None, dag=None, run_id=None) -> dict:
            """Runs when any task failed: which one, the error it failed on, the rollback."""
            return notifications.notify_failure(params, ti, dag_id=dag.dag_id, run_id=run_id)

        success = notificar_despliegue_exitoso(dashboard)
        failure = notificar_fallo()
        [success, rejected] >> failure
        return [success, failure]

    # Succeeds when one path (deployed or rejected) succeeded and nothing failed.
    fin = EmptyOperator(task_id="fin", trigger_rule="none_failed_min_one_success")

    uri = esperar_datos()
    split = preparacion_datos(uri)
    registered = entrenamiento_evaluacion(split)
    gate = decidir_despliegue(registered)
    decided = keyed_output(gate, DECISION_XCOM_KEY)  # the verdict with the model it judged
    deployed = despliegue_modelo(decided)
    rejected = notificar_modelo_rechazado(decided)
    dashboard = visualizacion_monitoreo(deployed["live"])
    notificaciones(dashboard, rejected) >> fin
    rejected >> fin


ml_model_deployment_advanced()
