"""
# ml_model_deployment_advanced

Takes a tabular classification model from raw data to a live, monitored HTTP API.

| group | what it does |
|---|---|
| `esperar_datos` | waits (reschedule mode) for the raw file at `data_uri` |
| `preparacion_datos` | loads the file into the DuckDB warehouse, validates it with SQL rules,
  types and cleans it, splits it (stratified, seeded) into Parquet files |

Run it locally without Docker with `make run` (or `make run DATA=file.csv TARGET=column`),
or with `astro dev start` and the Trigger button; every setting is a Param of the run.
Only references (table names, paths) and small summaries travel through XCom.
"""

from __future__ import annotations

import os

import pendulum
from airflow.decorators import dag, task, task_group
from airflow.exceptions import AirflowFailException
from airflow.models.param import Param
from airflow.operators.empty import EmptyOperator

from include.ml_pipeline.config import get_settings
from include.ml_pipeline.data_preparation import sample_data
from include.ml_pipeline.data_preparation.errors import DataError
from include.ml_pipeline.orchestration.assets import RAW_DATA_DATASET, REGISTERED_MODEL_DATASET
from include.ml_pipeline.orchestration.defaults import (
    SLACK_CONN_ID,
    SMTP_CONN_ID,
    default_args,
    fail_without_retry,
)
from include.ml_pipeline.runs import default_data_uri, run_key
from include.ml_pipeline.training.candidates import DEFAULT_CANDIDATES

DUCKDB_CONN_ID = "duckdb_default"
MODEL_API_CONN_ID = "model_api"
SETTINGS = get_settings()


def _notify_dag_failure(context):
    """DAG-level failure callback: one notification with the failed run's facts."""
    from include.ml_pipeline.notifications import notify_failure_from_context

    notify_failure_from_context(context, log_path=SETTINGS.notifications_log)


params = {
    "data_uri": Param(
        default_data_uri(SETTINGS),
        type="string",
        description="Raw CSV or Parquet: a local path or any URI the Astro SDK reads",
    ),
    "data_conn_id": Param(
        None,
        type=["null", "string"],
        description="Airflow connection for a remote data_uri (s3, gcs, ...)",
    ),
    "target": Param(sample_data.TARGET, type="string", description="Label column"),
    "required_columns": Param(
        [*sample_data.NUMERIC_COLUMNS, *sample_data.CATEGORICAL_COLUMNS],
        type="array",
        description="Columns the file must have",
    ),
    "numeric_columns": Param(
        list(sample_data.NUMERIC_COLUMNS),
        type="array",
        description="Columns that must parse as numbers (others inferred)",
    ),
    "categorical_columns": Param(
        [], type="array", description="Columns always treated as categories"
    ),
    "exclude_columns": Param([], type="array", description="Columns never used as features"),
    "value_ranges": Param(
        {"age": [0, 120], "tenure_months": [0, 1200]},
        type="object",
        description="{column: [min, max]} ranges that values must respect",
    ),
    "min_rows": Param(200, type="integer", minimum=1),
    "max_null_fraction": Param(0.5, type="number", minimum=0, maximum=1),
    "max_target_null_fraction": Param(0.01, type="number", minimum=0, maximum=1),
    "max_duplicate_fraction": Param(0.1, type="number", minimum=0, maximum=1),
    "min_class_count": Param(10, type="integer", minimum=1),
    "drop_duplicates": Param(True, type="boolean"),
    "test_size": Param(0.2, type="number", exclusiveMinimum=0, exclusiveMaximum=1),
    "validation_size": Param(0.2, type="number", exclusiveMinimum=0, exclusiveMaximum=1),
    "seed": Param(42, type="integer"),
    "sensor_poke_interval_seconds": Param(30, type="integer", minimum=1),
    "sensor_timeout_seconds": Param(6 * 3600, type="integer", minimum=1),
    "candidates": Param(
        DEFAULT_CANDIDATES,
        type="array",
        description='Models to try: [{"name", "estimator", "params"}]; '
        "estimators: logistic_regression, hist_gradient_boosting, random_forest, dummy",
    ),
    "selection_metric": Param(
        "roc_auc", type="string", description="Validation metric that picks the best candidate"
    ),
    "model_name": Param(
        SETTINGS.model_name, type="string", description="Registered model name in MLflow"
    ),
    "min_roc_auc": Param(0.75, type=["null", "number"], description="Deploy gate"),
    "min_accuracy": Param(0.70, type=["null", "number"], description="Deploy gate"),
    "max_log_loss": Param(0.60, type=["null", "number"], description="Deploy gate"),
    "min_f1": Param(None, type=["null", "number"], description="Deploy gate"),
    "primary_metric": Param(
        "roc_auc", type="string", description="Metric compared with the champion"
    ),
    "tolerance": Param(
        0.01,
        type="number",
        minimum=0,
        description="How much worse than the champion is still acceptable",
    ),
}
params.update(
    {
        "latency_p95_budget_ms": Param(
            50.0,
            type="number",
            exclusiveMinimum=0,
            description="pruebas_api: p95 of 1-row requests",
        ),
        "api_timeout_seconds": Param(
            180, type="integer", minimum=5, description="Bound on starting/reloading the model API"
        ),
        "drift_alpha": Param(0.05, type="number", exclusiveMinimum=0, maximum=1),
        "drift_psi_threshold": Param(0.1, type="number", minimum=0),
        "drift_ks_threshold": Param(0.1, type="number", minimum=0),
        "drift_share": Param(
            0.3,
            type="number",
            minimum=0,
            maximum=1,
            description="Share of drifted features that means dataset drift",
        ),
        "drift_window_hours": Param(24, type="number", exclusiveMinimum=0),
        "slack_conn_id": Param(SLACK_CONN_ID, type=["null", "string"]),
        "smtp_conn_id": Param(SMTP_CONN_ID, type=["null", "string"]),
        "email_to": Param([], type="array", description="E-mail recipients"),
        "retrain_reason": Param(
            None,
            type=["null", "string"],
            description="Set by ml_model_monitoring when drift triggers this run",
        ),
    }
)
GATE_KEYS = ("min_roc_auc", "min_accuracy", "max_log_loss", "min_f1", "primary_metric", "tolerance")


def _duckdb_path() -> str:
    """The warehouse file named by the `duckdb_default` connection (host = file path)."""
    from airflow.hooks.base import BaseHook

    return BaseHook.get_connection(DUCKDB_CONN_ID).host or str(SETTINGS.duckdb_path)


def _model_api() -> tuple[str, str | None]:
    """URL and admin token of the model API: the `model_api` connection when defined
    (docker-compose service), else the embedded default (a local process on loopback)."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.hooks.base import BaseHook

    try:
        conn = BaseHook.get_connection(MODEL_API_CONN_ID)
    except AirflowNotFoundException:
        return SETTINGS.api_url, os.environ.get("MODEL_API_ADMIN_TOKEN")
    url = f"{conn.schema or 'http'}://{conn.host}:{conn.port or 8000}"
    return url, conn.password or os.environ.get("MODEL_API_ADMIN_TOKEN")


def _send(note, params) -> dict:
    from include.ml_pipeline.notifications import send_notification

    outcomes = send_notification(
        note,
        slack_conn_id=params["slack_conn_id"],
        smtp_conn_id=params["smtp_conn_id"],
        email_to=params["email_to"] or None,
        log_path=SETTINGS.notifications_log,
    )
    return {"event": note.event, "title": note.title, "outcomes": outcomes}


def _notify(event, registered, params, ti, dag_id, run_id, dashboard_path=None) -> dict:
    from include.ml_pipeline.monitoring.deployment_report import mlflow_run_url
    from include.ml_pipeline.notifications import Notification, airflow_run_url

    decision = ti.xcom_pull(task_ids="decidir_despliegue", key="decision") or {}
    name, version = registered["model_name"], registered["version"]
    verb = "is live as champion" if event == "deployed" else "was rejected"
    note = Notification(
        event=event,
        title=f"{name} v{version} {verb}",
        model_name=name,
        version=version,
        metrics=registered["metrics"],
        reasons=list(decision.get("reasons", [])),
        mlflow_run_url=mlflow_run_url(SETTINGS, registered["run_id"]),
        airflow_run_url=airflow_run_url(dag_id, run_id),
        api_url=_model_api()[0] if event == "deployed" else None,
        dashboard_path=dashboard_path,
        dag_id=dag_id,
        run_id=run_id,
    )
    return _send(note, params)


_fail_on_bad_data = fail_without_retry(DataError, ValueError, KeyError)


@dag(
    dag_id="ml_model_deployment_advanced",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    params=params,
    tags=["mlops", "mlflow", "astro-sdk", "classification"],
    doc_md=__doc__,
    on_failure_callback=_notify_dag_failure,
)
def ml_model_deployment_advanced():
    @task.sensor(task_id="esperar_datos", mode="reschedule", poke_interval=30, timeout=24 * 3600)
    def esperar_datos(params=None, dag_run=None):
        """Wait for the raw data at `data_uri`; poke interval and timeout are Params."""
        import pendulum as pdl
        from airflow.exceptions import AirflowRescheduleException, AirflowSensorTimeout
        from airflow.sensors.base import PokeReturnValue

        from include.ml_pipeline.data_preparation.ingest import source_exists

        uri = params["data_uri"]
        if source_exists(uri, params["data_conn_id"]):
            return PokeReturnValue(is_done=True, xcom_value=uri)
        waited = (pdl.now("UTC") - dag_run.start_date).total_seconds()
        if waited >= params["sensor_timeout_seconds"]:
            raise AirflowSensorTimeout(
                f"no data at {uri} after waiting {waited:.0f} s "
                f"(sensor_timeout_seconds={params['sensor_timeout_seconds']}); "
                "put the file there or trigger the run with another data_uri"
            )
        raise AirflowRescheduleException(
            pdl.now("UTC").add(seconds=params["sensor_poke_interval_seconds"])
        )

    @task_group(group_id="preparacion_datos")
    def preparacion_datos(uri):
        """Load, validate, clean and split the raw data inside the warehouse."""

        @task(outlets=[RAW_DATA_DATASET])
        @_fail_on_bad_data
        def descargar_datos(uri: str, params=None, run_id=None) -> dict:
            """Load the raw file into a DuckDB table (text columns, rows numbered)."""
            from include.ml_pipeline.data_preparation import ingest, warehouse
            from include.ml_pipeline.runs import run_dir

            key = run_key(run_id)
            with warehouse.connect(_duckdb_path()) as con:
                warehouse.prune_run_tables(con, keep_keys={key})
                result = ingest.load_into_table(
                    con,
                    uri,
                    warehouse.table_name("raw", key),
                    run_dir(SETTINGS, run_id) / "staging",
                    params["data_conn_id"],
                )
            return result.to_dict()

        @task
        @_fail_on_bad_data
        def validar_datos(loaded: dict, params=None) -> dict:
            """Check schema and quality rules in SQL; a failure names column, rule and value."""
            from include.ml_pipeline.data_preparation import warehouse
            from include.ml_pipeline.data_preparation.validate import (
                ValidationRules,
                validate_table,
            )

            rules = ValidationRules.from_params(dict(params))
            with warehouse.connect(_duckdb_path()) as con:
                report = validate_table(con, loaded["table"], rules, loaded["source_uri"])
            return {**report.to_dict(), "table": loaded["table"]}

        @task
        @_fail_on_bad_data
        def preprocesar_datos(validated: dict, params=None, run_id=None) -> dict:
            """Type and clean the columns, choose the features (fitted steps live in the model)."""
            from include.ml_pipeline.data_preparation import warehouse
            from include.ml_pipeline.data_preparation.preprocess import preprocess_table

            with warehouse.connect(_duckdb_path()) as con:
                result = preprocess_table(
                    con,
                    validated["table"],
                    warehouse.table_name("clean", run_key(run_id)),
                    params["target"],
                    validated["kinds"],
                    exclude_columns=params["exclude_columns"],
                    drop_duplicates=params["drop_duplicates"],
                )
            return result.to_dict()

        @task
        @_fail_on_bad_data
        def dividir_datos(prepared: dict, loaded: dict, params=None, run_id=None) -> dict:
            """Stratified, seeded train/validation/test split written as Parquet files."""
            from include.ml_pipeline.data_preparation import warehouse
            from include.ml_pipeline.data_preparation.split import split_table
            from include.ml_pipeline.features import FeatureSpec
            from include.ml_pipeline.runs import run_dir

            with warehouse.connect(_duckdb_path()) as con:
                result = split_table(
                    con,
                    prepared["table"],
                    warehouse.table_name("split", run_key(run_id)),
                    FeatureSpec.from_dict(prepared["feature_spec"]),
                    run_dir(SETTINGS, run_id) / "splits",
                    test_size=params["test_size"],
                    validation_size=params["validation_size"],
                    seed=params["seed"],
                )
            return {
                **result.to_dict(),
                "feature_spec": prepared["feature_spec"],
                "source_uri": loaded["source_uri"],
                "data_fingerprint": loaded["fingerprint"],
            }

        loaded = descargar_datos(uri)
        return dividir_datos(preprocesar_datos(validar_datos(loaded)), loaded)

    @task_group(group_id="entrenamiento_evaluacion")
    def entrenamiento_evaluacion(split: dict):
        """Train every candidate (mapped), evaluate the best on the test split, register it."""

        @task
        @_fail_on_bad_data
        def iniciar_experimento(params=None, run_id=None, dag=None) -> list[dict]:
            """Create (or find again) the MLflow parent run of this Airflow run; return one
            training job per candidate (the list `entrenar_modelo` is mapped over)."""
            from include.ml_pipeline.registry.mlflow_setup import setup_from_settings
            from include.ml_pipeline.training.candidates import validate_candidates
            from include.ml_pipeline.training.train import start_parent_run

            candidates = validate_candidates(params["candidates"])
            tracking_uri, _ = setup_from_settings(SETTINGS)
            parent = start_parent_run(
                tracking_uri=tracking_uri,
                experiment=SETTINGS.mlflow_experiment,
                airflow_run_id=run_id,
                artifact_location=SETTINGS.mlflow_artifact_root,
                run_name=f"{dag.dag_id} {run_id}",
                tags={"airflow_dag_id": dag.dag_id},
            )
            return [{"candidate": c, "parent_run_id": parent} for c in candidates]

        @task(max_active_tis_per_dag=2)
        def entrenar_modelo(job: dict, split: dict, params=None, run_id=None, ti=None) -> dict:
            """Fit one candidate pipeline, score it on validation, log a nested MLflow run."""
            from include.ml_pipeline.training.train import train_candidate

            return train_candidate(
                job["candidate"],
                split["paths"]["train"],
                split["paths"]["validation"],
                split["feature_spec"],
                tracking_uri=SETTINGS.mlflow_tracking_uri,
                experiment=SETTINGS.mlflow_experiment,
                parent_run_id=job["parent_run_id"],
                tags={
                    "airflow_dag_id": ti.dag_id,
                    "airflow_run_id": run_id,
                    "airflow_task_id": ti.task_id,
                    "airflow_map_index": ti.map_index,
                },
                seed=params["seed"],
                artifact_location=SETTINGS.mlflow_artifact_root,
            )

        @task
        def evaluar_modelo(results, split: dict, params=None) -> dict:
            """Pick the best candidate, score it and the current champion on the test split."""
            from include.ml_pipeline.training.evaluate import evaluate_on_test, select_best

            best = select_best(list(results), metric=params["selection_metric"])
            evaluation = evaluate_on_test(
                best["model_uri"],
                split["paths"]["test"],
                split["feature_spec"],
                tracking_uri=SETTINGS.mlflow_tracking_uri,
                run_id=best["run_id"],
                model_name=params["model_name"],
                seed=params["seed"],
            )
            return {
                **evaluation,
                "candidate": best["candidate"],
                "selection": best.get("selection"),
            }

        @task(outlets=[REGISTERED_MODEL_DATASET])
        def registrar_mlflow(
            evaluation: dict, jobs: list[dict], split: dict, params=None, run_id=None
        ) -> dict:
            """Register the chosen model as a new version with alias `challenger` (idempotent)."""
            from include.ml_pipeline.registry.registry import (
                describe_version,
                get_alias_version,
                register_challenger,
            )
            from include.ml_pipeline.training.train import finish_parent_run

            name = params["model_name"]
            version = register_challenger(
                evaluation["model_uri"],
                name,
                airflow_run_id=run_id,
                metrics=evaluation["metrics"],
                data_fingerprint=split["data_fingerprint"],
                tags={
                    "candidate": evaluation["candidate"],
                    "mlflow_run_id": evaluation["run_id"],
                    "train_path": split["paths"]["train"],
                },
                tracking_uri=SETTINGS.mlflow_tracking_uri,
            )
            finish_parent_run(
                tracking_uri=SETTINGS.mlflow_tracking_uri, run_id=jobs[0]["parent_run_id"]
            )
            champion = get_alias_version(
                name, "champion", tracking_uri=SETTINGS.mlflow_tracking_uri
            )
            return {
                "model_name": name,
                "version": version,
                "run_id": evaluation["run_id"],
                "model_uri": f"models:/{name}/{version}",
                "metrics": evaluation["metrics"],
                "champion_version": champion,
                "champion_metrics": (evaluation.get("champion") or {}).get("metrics"),
                "candidate": evaluation["candidate"],
                "version_info": describe_version(
                    name, version, tracking_uri=SETTINGS.mlflow_tracking_uri
                ),
            }

        jobs = iniciar_experimento()
        results = entrenar_modelo.partial(split=split).expand(job=jobs)
        evaluation = evaluar_modelo(results, split)
        return registrar_mlflow(evaluation, jobs, split)

    @task.branch
    def decidir_despliegue(registered: dict, params=None, ti=None) -> str:
        """Deploy only if the challenger clears the thresholds and does not lose to the champion."""
        from include.ml_pipeline.registry.decision import Thresholds, decide_deployment
        from include.ml_pipeline.registry.registry import record_decision

        thresholds = Thresholds.from_dict({k: params[k] for k in GATE_KEYS})
        decision = decide_deployment(
            registered["metrics"], registered["champion_metrics"], thresholds
        )
        record_decision(
            registered["model_name"],
            registered["version"],
            decision,
            tracking_uri=SETTINGS.mlflow_tracking_uri,
        )
        for reason in decision.reasons:
            ti.log.info("decision reason: %s", reason)
        ti.xcom_push(key="decision", value=decision.to_dict())
        if decision.deploy:
            return "despliegue_modelo.generar_artefactos"
        return "notificar_modelo_rechazado"

    @task_group(group_id="despliegue_modelo")
    def despliegue_modelo(registered: dict, split: dict):
        """Promote, roll out to the model API, smoke-test it, and roll back on failure."""

        @task
        def generar_artefactos(registered: dict, dag=None, run_id=None) -> dict:
            """Verify the challenger as served, promote it to champion, write the manifest."""
            from include.ml_pipeline.deployment.rollout import prepare_release

            return prepare_release(
                SETTINGS,
                registered["model_name"],
                registered["version"],
                airflow={"dag_id": dag.dag_id, "run_id": run_id},
            )

        @task(retries=1)
        def desplegar_api(manifest: dict, params=None, ti=None) -> dict:
            """Make the running model API serve the new champion; wait until it does."""
            from include.ml_pipeline.deployment.rollout import roll_out

            url, token = _model_api()
            try:
                return roll_out(
                    SETTINGS,
                    url,
                    manifest["model_name"],
                    manifest["version"],
                    token=token,
                    timeout=params["api_timeout_seconds"],
                )
            except Exception as exc:
                ti.xcom_push(key="failure", value=f"desplegar_api: {exc}")
                raise

        @task
        def pruebas_api(manifest: dict, rollout: dict, split: dict, params=None, ti=None) -> dict:
            """Smoke tests on the live URL with rows of this run's test split: health,
            predictions equal to the registered version's, a 4xx, p95 latency."""
            from include.ml_pipeline.deployment.rollout import smoke_frame
            from include.ml_pipeline.serving.client import ModelApiError, smoke_test

            try:
                report = smoke_test(
                    rollout["url"],
                    SETTINGS.mlflow_tracking_uri,
                    manifest["model_name"],
                    manifest["version"],
                    frame=smoke_frame(split["paths"]["test"], split["feature_spec"]),
                    p95_budget_ms=params["latency_p95_budget_ms"],
                )
            except ModelApiError as exc:  # deterministic: roll back now, no retries
                ti.xcom_push(key="failure", value=f"pruebas_api: {exc}")
                raise AirflowFailException(str(exc)) from exc
            return report.to_dict()

        @task(trigger_rule="one_failed")
        def revertir_despliegue(manifest: dict, params=None, ti=None) -> None:
            """Point `champion` back to the previous version, reload, verify, then fail."""
            from include.ml_pipeline.deployment.rollout import roll_back

            reasons = [
                r
                for r in ti.xcom_pull(
                    task_ids=["despliegue_modelo.desplegar_api", "despliegue_modelo.pruebas_api"],
                    key="failure",
                )
                if r
            ]
            reason = "; ".join(reasons) or "deployment failed"
            url, token = _model_api()
            outcome = roll_back(
                SETTINGS,
                manifest["model_name"],
                manifest["version"],
                url,
                reason=reason,
                token=token,
                timeout=params["api_timeout_seconds"],
            )
            ti.xcom_push(key="rollback", value=outcome)
            raise AirflowFailException(
                f"deployment of {manifest['model_name']} v{manifest['version']} failed "
                f"({reason}); rollback: {outcome['detail']}"
            )

        manifest = generar_artefactos(registered)
        rollout = desplegar_api(manifest)
        smoke = pruebas_api(manifest, rollout, split)
        rollback = revertir_despliegue(manifest)
        [rollout, smoke] >> rollback
        return {"manifest": manifest, "rollout": rollout, "smoke": smoke, "rollback": rollback}

    @task_group(group_id="visualizacion_monitoreo")
    def visualizacion_monitoreo(registered: dict, split: dict, deployed: dict):
        """Drift of recent traffic vs. training data, and the model's HTML dashboard."""

        @task
        def configurar_monitoreo(registered: dict, split: dict, params=None) -> dict:
            """KS / chi-square / PSI drift against the training split; results to MLflow."""
            from include.ml_pipeline.monitoring.deployment_report import drift_at_deployment

            return drift_at_deployment(
                SETTINGS,
                split_paths=split["paths"],
                spec=split["feature_spec"],
                thresholds={
                    "alpha": params["drift_alpha"],
                    "psi_threshold": params["drift_psi_threshold"],
                    "ks_threshold": params["drift_ks_threshold"],
                    "drift_share": params["drift_share"],
                },
                run_id=registered["run_id"],
                version=registered["version"],
                window_hours=params["drift_window_hours"],
            )

        @task
        def configurar_dashboards(
            registered: dict,
            manifest: dict,
            rollout: dict,
            drift: dict,
            params=None,
            ti=None,
            dag=None,
            run_id=None,
        ) -> dict:
            """The deployed version's self-contained HTML dashboard, also logged to MLflow."""
            from include.ml_pipeline.monitoring.deployment_report import deployment_dashboard
            from include.ml_pipeline.notifications import airflow_run_url

            decision = ti.xcom_pull(task_ids="decidir_despliegue", key="decision")
            return deployment_dashboard(
                SETTINGS,
                registered=registered,
                manifest=manifest,
                decision=decision,
                drift=drift,
                api_url=rollout["url"],
                airflow_run_url=airflow_run_url(dag.dag_id, run_id),
                window_hours=params["drift_window_hours"],
            )

        drift = configurar_monitoreo(registered, split)
        deployed["smoke"] >> drift  # monitor only what passed its smoke tests
        return configurar_dashboards(registered, deployed["manifest"], deployed["rollout"], drift)

    @task
    def notificar_despliegue_exitoso(
        registered: dict, dashboard: dict, params=None, ti=None, dag=None, run_id=None
    ) -> dict:
        """Tell the team a new champion is live: version, metrics, links."""
        return _notify(
            "deployed", registered, params, ti, dag.dag_id, run_id, dashboard_path=dashboard["path"]
        )

    @task
    def notificar_modelo_rechazado(
        registered: dict, params=None, ti=None, dag=None, run_id=None
    ) -> dict:
        """Tell the team the challenger was rejected, with the gate's reasons."""
        return _notify("rejected", registered, params, ti, dag.dag_id, run_id)

    @task(trigger_rule="one_failed")
    def notificar_fallo(params=None, ti=None, dag=None, run_id=None) -> dict:
        """Runs when any task failed: which one, and where the logs are."""
        from include.ml_pipeline.notifications import Notification

        failed = [t.task_id for t in ti.get_dagrun().get_task_instances(state="failed")]
        rollback = ti.xcom_pull(task_ids="despliegue_modelo.revertir_despliegue", key="rollback")
        note = Notification(
            event="failed",
            title=f"{dag.dag_id}: run {run_id} failed",
            reasons=[f"failed task: {t}" for t in failed]
            + ([f"rollback: {rollback['detail']}"] if rollback else []),
            dag_id=dag.dag_id,
            run_id=run_id,
        )
        return _send(note, params)

    # Airflow 3 moves EmptyOperator to the standard provider, absent from the 2.11 image.
    fin = EmptyOperator(task_id="fin", trigger_rule="none_failed_min_one_success")  # noqa: AIR312

    uri = esperar_datos()
    split = preparacion_datos(uri)
    registered = entrenamiento_evaluacion(split)
    branch = decidir_despliegue(registered)
    deployed = despliegue_modelo(registered, split)
    branch >> [deployed["manifest"], rejected := notificar_modelo_rechazado(registered)]
    dashboard = visualizacion_monitoreo(registered, split, deployed)
    success = notificar_despliegue_exitoso(registered, dashboard)
    failure = notificar_fallo()
    [uri, split, registered, branch, deployed["smoke"], dashboard, success, rejected] >> failure
    # fin fails when any of these failed (a rolled-back deploy included), else succeeds
    # when one path (deployed or rejected) succeeded.
    [success, rejected, failure, deployed["smoke"], deployed["rollback"]] >> fin


ml_model_deployment_advanced()
