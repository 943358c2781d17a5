"""Steps of `esperar_datos` and the `preparacion_datos` group: wait for the raw file, load
it into the warehouse, validate, clean and split it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from include.ml_pipeline.config import get_settings
from include.ml_pipeline.contracts.payloads import (
    LoadResult,
    PreprocessResult,
    SplitResult,
    ValidationReport,
)
from include.ml_pipeline.data_preparation.errors import DataError
from include.ml_pipeline.orchestration import connections
from include.ml_pipeline.orchestration.defaults import fail_without_retry
from include.ml_pipeline.runs import run_dir, run_key

log = logging.getLogger(__name__)

#: Bad data or a bad Param: a retry cannot help, fail at once with the message.
_fail_at_once = fail_without_retry(DataError, ValueError, KeyError)


def fail_on_bad_data(func):
    """Fail at once (no retries) on bad data or a bad Param. An error of the warehouse
    engine on the data (a conversion, a query it cannot run on these columns) is
    deterministic too, and becomes a `DataError` in our words; only its I/O errors (a
    locked or unwritable database file) are left to the retries."""
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
    if source_exists(uri, params["data_conn_id"]):
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
    """`descargar_datos`: the raw file as a text table, rows numbered."""
    from include.ml_pipeline.data_preparation import ingest, warehouse

    key = run_key(run_id)
    with warehouse.connect(connections.duckdb_path()) as con:
        warehouse.prune_run_tables(con, keep_keys={key})
        loaded = ingest.load_into_table(
            con,
            uri,
            warehouse.table_name("raw", key),
            run_dir(get_settings(), run_id) / "staging",
            params["data_conn_id"],
        )
    return loaded.to_dict()


@fail_on_bad_data
def validate_raw_data(loaded: dict, params: Mapping[str, Any]) -> dict:
    """`validar_datos`: schema and quality rules in SQL; a failure names column, rule, value."""
    from include.ml_pipeline.data_preparation import warehouse
    from include.ml_pipeline.data_preparation.validate import ValidationRules, validate_table

    raw = LoadResult.from_dict(loaded)
    rules = ValidationRules.from_params(dict(params))
    with warehouse.connect(connections.duckdb_path()) as con:
        report = validate_table(
            con,
            raw.table,
            rules,
            raw.source_uri,
            load_warnings=raw.warnings,
            file_format=raw.file_format,
        )
    for warning in report.warnings:
        log.warning("data warning: %s", warning)
    return report.to_dict()


@fail_on_bad_data
def preprocess(validated: dict, params: Mapping[str, Any], run_id: str) -> dict:
    """`preprocesar_datos`: typed, cleaned columns and the chosen features."""
    from include.ml_pipeline.data_preparation import warehouse
    from include.ml_pipeline.data_preparation.preprocess import preprocess_table

    report = ValidationReport.from_dict(validated)
    with warehouse.connect(connections.duckdb_path()) as con:
        result = preprocess_table(
            con,
            report.table,
            warehouse.table_name("clean", run_key(run_id)),
            params["target"],
            report.kinds,
            exclude_columns=params["exclude_columns"],
            drop_duplicates=params["drop_duplicates"],
        )
    return result.to_dict()


@fail_on_bad_data
def split(prepared: dict, loaded: dict, params: Mapping[str, Any], run_id: str) -> dict:
    """`dividir_datos`: stratified, seeded train/validation/test Parquet files."""
    from include.ml_pipeline.data_preparation import warehouse
    from include.ml_pipeline.data_preparation.split import split_table
    from include.ml_pipeline.features import FeatureSpec

    clean = PreprocessResult.from_dict(prepared)
    raw = LoadResult.from_dict(loaded)
    with warehouse.connect(connections.duckdb_path()) as con:
        result: SplitResult = split_table(
            con,
            clean.table,
            warehouse.table_name("split", run_key(run_id)),
            FeatureSpec.from_dict(clean.feature_spec),
            run_dir(get_settings(), run_id) / "splits",
            test_size=params["test_size"],
            validation_size=params["validation_size"],
            seed=params["seed"],
        )
    return result.replace(source_uri=raw.source_uri, data_fingerprint=raw.fingerprint).to_dict()
