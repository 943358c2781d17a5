"""Steps of `esperar_datos` and the `preparacion_datos` group: wait for the raw file, load
it into the warehouse, validate, clean and split it.

No step relies on another one's disk: each runs its SQL in its own in-memory warehouse
(`warehouse.task_warehouse`) that reads its input tables from, and writes its output
table to, the run's folder under the storage root (`runs.run_uri`); the payloads carry
those URIs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from include.ml_pipeline.config import get_settings
from include.ml_pipeline.errors import DataError
from include.ml_pipeline.orchestration.defaults import fail_without_retry
from include.ml_pipeline.payloads import (
    LoadResult,
    PreprocessResult,
    SplitResult,
    ValidationReport,
)
from include.ml_pipeline.runs import run_key, runs_uri, splits_uri, table_uri

if TYPE_CHECKING:  # pragma: no cover
    from include.ml_pipeline.data_preparation.ingest import RawSource

log = logging.getLogger(__name__)

#: Bad data or a bad Param: a retry cannot help, fail at once with the message.
_fail_at_once = fail_without_retry(DataError, ValueError, KeyError)


def fail_on_bad_data(func):
    """Fail at once (no retries) on bad data or a bad Param. An error of the warehouse
    engine on the data (a conversion, a query it cannot run on these columns) is
    deterministic too, and becomes a `DataError` in our words; only its I/O errors (a
    spill folder it cannot write, a full disk) are left to the retries."""
    import functools

    @functools.wraps(func)
    def engine_errors_as_data_errors(*args, **kwargs):
        import duckdb

        try:
            return func(*args, **kwargs)
        except duckdb.IOException:
            raise
        except duckdb.Error as exc:
            import re

            first = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
            first = re.sub(r"^[A-Za-z ]*Error:\s*", "", first.strip())
            raise DataError(
                f"{func.__name__}: the warehouse could not process this data ({first}); "
                "check the file's columns and values, or report it with the file attached"
            ) from exc

    return _fail_at_once(engine_errors_as_data_errors)


def raw_source(conn_id: str | None) -> RawSource:
    """How a remote `data_uri` is read -- the one place that chooses by Airflow line: on
    Airflow 2.11 through the Astro SDK's `File` (as the project asks; its hooks read
    `conn_id`), on Airflow 3 (where astro-sdk does not install) through fsspec
    (`storage.py`) with the storage options of `conn_id`, or, without one, those of the
    environment / storage root."""
    from include.ml_pipeline.data_preparation.ingest import AstroSdkSource, StorageSource
    from include.ml_pipeline.orchestration.compat import AIRFLOW_3

    if not AIRFLOW_3:
        return AstroSdkSource(conn_id)
    if not conn_id:
        return StorageSource()
    from include.ml_pipeline.orchestration.connections import storage_options_for

    return StorageSource(storage_options_for(conn_id))


def wait_for_data(params: Mapping[str, Any], started_at: Any) -> Any:
    """`esperar_datos`: done when the file at `data_uri` exists; otherwise reschedule after
    `sensor_poke_interval_seconds`, and time out after `sensor_timeout_seconds`. A local
    path whose folder does not exist is a typo, not a wait: it fails at once."""
    import pendulum

    from include.ml_pipeline.data_preparation.ingest import source_exists
    from include.ml_pipeline.orchestration.compat import (
        AirflowFailException,
        AirflowRescheduleException,
        AirflowSensorTimeout,
        PokeReturnValue,
    )
    from include.ml_pipeline.storage import local_path

    uri = params["data_uri"]
    if source_exists(uri, raw_source(params["data_conn_id"])):
        return PokeReturnValue(is_done=True, xcom_value=uri)
    path = local_path(uri)
    if path is not None and not path.parent.is_dir():
        raise AirflowFailException(
            f"data_uri {uri}: the folder {path.parent} does not exist, so the file can never "
            "arrive; fix data_uri (a local path or an s3://, gs://, abfs:// URI)"
        )
    waited = (pendulum.now("UTC") - started_at).total_seconds()
    if waited >= params["sensor_timeout_seconds"]:
        raise AirflowSensorTimeout(
            f"no data at {uri} after waiting {waited:.0f} s "
            f"(sensor_timeout_seconds={params['sensor_timeout_seconds']}); "
            "put the file there or trigger the run with another data_uri"
        )
    raise AirflowRescheduleException(
        pendulum.now("UTC").add(seconds=params["sensor_poke_interval_seconds"])
    )


@fail_on_bad_data
def load_raw_data(uri: str, params: Mapping[str, Any], run_id: str) -> dict:
    """`descargar_datos`: the raw file as a text table, rows numbered, stored as
    `<run>/tables/raw.parquet`. Old runs' tables are pruned first (never their splits)."""
    from include.ml_pipeline.data_preparation import ingest, warehouse

    settings = get_settings()
    key = run_key(run_id)
    pruned = warehouse.prune_old_tables(runs_uri(settings), keep=key)
    if pruned:
        log.info("pruned the tables of %d finished run(s): %s", len(pruned), ", ".join(pruned))
    table, uri_out = warehouse.table_name("raw", key), table_uri(settings, run_id, "raw")
    with warehouse.task_warehouse(outputs={table: uri_out}) as con:
        loaded = ingest.load_into_table(con, uri, table, raw_source(params["data_conn_id"]))
    return loaded.replace(table_uri=uri_out).to_dict()


@fail_on_bad_data
def validate_raw_data(loaded: dict, params: Mapping[str, Any]) -> dict:
    """`validar_datos`: schema and quality rules in SQL; a failure names column, rule, value."""
    from include.ml_pipeline.data_preparation import warehouse
    from include.ml_pipeline.data_preparation.validate import ValidationRules, validate_table

    raw = LoadResult.from_dict(loaded)
    rules = ValidationRules.from_params(dict(params))
    with warehouse.task_warehouse(inputs={raw.table: raw.table_uri}) as con:
        report = validate_table(
            con,
            raw.table,
            rules,
            raw.source_uri,
            load_warnings=raw.warnings,
            file_format=raw.file_format,
        )
    log.info("problem type: %s (%s)", report.problem_type, report.problem_reason)
    for warning in report.warnings:
        log.warning("data warning: %s", warning)
    return report.replace(table_uri=raw.table_uri).to_dict()


@fail_on_bad_data
def preprocess(validated: dict, params: Mapping[str, Any], run_id: str) -> dict:
    """`preprocesar_datos`: typed, cleaned columns and the chosen features, stored as
    `<run>/tables/clean.parquet`."""
    from include.ml_pipeline.data_preparation import warehouse
    from include.ml_pipeline.data_preparation.preprocess import preprocess_table

    report = ValidationReport.from_dict(validated)
    table = warehouse.table_name("clean", run_key(run_id))
    uri_out = table_uri(get_settings(), run_id, "clean")
    with warehouse.task_warehouse(
        inputs={report.table: report.table_uri}, outputs={table: uri_out}
    ) as con:
        result = preprocess_table(
            con,
            report.table,
            table,
            params["target"],
            report.kinds,
            exclude_columns=params["exclude_columns"],
            drop_duplicates=params["drop_duplicates"],
            problem_type=report.problem_type,
        )
    return result.replace(table_uri=uri_out).to_dict()


@fail_on_bad_data
def split(prepared: dict, loaded: dict, params: Mapping[str, Any], run_id: str) -> dict:
    """`dividir_datos`: stratified, seeded train/validation/test Parquet objects under
    `<run>/splits/`."""
    from include.ml_pipeline.data_preparation import warehouse
    from include.ml_pipeline.data_preparation.split import split_table

    clean = PreprocessResult.from_dict(prepared)
    raw = LoadResult.from_dict(loaded)
    with warehouse.task_warehouse(inputs={clean.table: clean.table_uri}) as con:
        result: SplitResult = split_table(
            con,
            clean.table,
            warehouse.table_name("split", run_key(run_id)),
            clean.feature_spec,
            splits_uri(get_settings(), run_id),
            test_size=params["test_size"],
            validation_size=params["validation_size"],
            seed=params["seed"],
        )
    return result.replace(source_uri=raw.source_uri, data_fingerprint=raw.fingerprint).to_dict()
