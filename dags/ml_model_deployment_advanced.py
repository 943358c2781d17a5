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
from datetime import timedelta

import pendulum
from airflow.decorators import dag, task, task_group
from airflow.exceptions import AirflowFailException
from airflow.models.param import Param

from include.ml_pipeline.config import get_settings
from include.ml_pipeline.data import generate
from include.ml_pipeline.runs import default_data_uri

DUCKDB_CONN_ID = "duckdb_default"
SETTINGS = get_settings()

default_args = {
    "owner": "ml-platform",
    "retries": 2,
    "retry_delay": timedelta(seconds=int(os.environ.get("ML_PIPELINE_RETRY_DELAY_SECONDS", "120"))),
}

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
    "target": Param(generate.TARGET, type="string", description="Label column"),
    "required_columns": Param(
        [*generate.NUMERIC_COLUMNS, *generate.CATEGORICAL_COLUMNS],
        type="array",
        description="Columns the file must have",
    ),
    "numeric_columns": Param(
        list(generate.NUMERIC_COLUMNS),
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
}


def _duckdb_path() -> str:
    """The warehouse file named by the `duckdb_default` connection (host = file path)."""
    from airflow.hooks.base import BaseHook

    return BaseHook.get_connection(DUCKDB_CONN_ID).host or str(SETTINGS.duckdb_path)


def _fail_on_bad_data(func):
    """Bad input is not transient: fail at once, without retries, with the message."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from include.ml_pipeline.data.errors import DataError

        try:
            return func(*args, **kwargs)
        except (DataError, ValueError, KeyError) as exc:
            raise AirflowFailException(str(exc)) from exc

    return wrapper


@dag(
    dag_id="ml_model_deployment_advanced",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    params=params,
    tags=["mlops", "mlflow", "astro-sdk", "classification"],
    doc_md=__doc__,
)
def ml_model_deployment_advanced():
    @task.sensor(task_id="esperar_datos", mode="reschedule", poke_interval=30, timeout=24 * 3600)
    def esperar_datos(params=None, dag_run=None):
        """Wait for the raw data at `data_uri`; poke interval and timeout are Params."""
        import pendulum as pdl
        from airflow.exceptions import AirflowRescheduleException, AirflowSensorTimeout
        from airflow.sensors.base import PokeReturnValue

        from include.ml_pipeline.data.ingest import source_exists

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

        @task
        @_fail_on_bad_data
        def descargar_datos(uri: str, params=None, run_id=None) -> dict:
            """Load the raw file into a DuckDB table (text columns, rows numbered)."""
            from include.ml_pipeline.data import ingest, warehouse
            from include.ml_pipeline.runs import run_dir

            key = warehouse.run_key(run_id)
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
            from include.ml_pipeline.data import warehouse
            from include.ml_pipeline.data.validate import ValidationRules, validate_table

            rules = ValidationRules.from_params(dict(params))
            with warehouse.connect(_duckdb_path()) as con:
                report = validate_table(con, loaded["table"], rules, loaded["source_uri"])
            return {**report.to_dict(), "table": loaded["table"]}

        @task
        @_fail_on_bad_data
        def preprocesar_datos(validated: dict, params=None, run_id=None) -> dict:
            """Type and clean the columns, choose the features (fitted steps live in the model)."""
            from include.ml_pipeline.data import warehouse
            from include.ml_pipeline.data.preprocess import preprocess_table

            with warehouse.connect(_duckdb_path()) as con:
                result = preprocess_table(
                    con,
                    validated["table"],
                    warehouse.table_name("clean", warehouse.run_key(run_id)),
                    params["target"],
                    validated["kinds"],
                    exclude_columns=params["exclude_columns"],
                    drop_duplicates=params["drop_duplicates"],
                )
            return result.to_dict()

        @task
        @_fail_on_bad_data
        def dividir_datos(prepared: dict, params=None, run_id=None) -> dict:
            """Stratified, seeded train/validation/test split written as Parquet files."""
            from include.ml_pipeline.data import warehouse
            from include.ml_pipeline.data.split import split_table
            from include.ml_pipeline.features import FeatureSpec
            from include.ml_pipeline.runs import run_dir

            with warehouse.connect(_duckdb_path()) as con:
                result = split_table(
                    con,
                    prepared["table"],
                    warehouse.table_name("split", warehouse.run_key(run_id)),
                    FeatureSpec.from_dict(prepared["feature_spec"]),
                    run_dir(SETTINGS, run_id) / "splits",
                    test_size=params["test_size"],
                    validation_size=params["validation_size"],
                    seed=params["seed"],
                )
            return {**result.to_dict(), "feature_spec": prepared["feature_spec"]}

        loaded = descargar_datos(uri)
        return dividir_datos(preprocesar_datos(validar_datos(loaded)))

    uri = esperar_datos()
    preparacion_datos(uri)


ml_model_deployment_advanced()
