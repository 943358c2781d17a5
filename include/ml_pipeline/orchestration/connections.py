"""Where the services are, read from Airflow connections with the embedded defaults as
fallback: the DuckDB warehouse file and the model API (URL and admin token)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from include.ml_pipeline.config import get_settings
from include.ml_pipeline.contracts.names import DUCKDB_CONN_ID, MODEL_API_CONN_ID


@dataclass(frozen=True)
class ModelApiEndpoint:
    url: str
    token: str | None


def duckdb_path() -> str:
    """The warehouse file named by the `duckdb_default` connection (host = file path)."""
    from include.ml_pipeline.orchestration.compat import AirflowNotFoundException, BaseHook

    try:
        host = BaseHook.get_connection(DUCKDB_CONN_ID).host
    except AirflowNotFoundException:
        host = None
    return host or str(get_settings().duckdb_path)


def model_api() -> ModelApiEndpoint:
    """The `model_api` connection when defined (a separate service), else the embedded
    default (a local process on loopback, `MODEL_API_URL`)."""
    from include.ml_pipeline.orchestration.compat import AirflowNotFoundException, BaseHook

    token = os.environ.get("MODEL_API_ADMIN_TOKEN")
    try:
        conn = BaseHook.get_connection(MODEL_API_CONN_ID)
    except AirflowNotFoundException:
        return ModelApiEndpoint(get_settings().api_url, token)
    url = f"{conn.schema or 'http'}://{conn.host}:{conn.port or 8000}"
    return ModelApiEndpoint(url, conn.password or token)
