"""Where the services are, read from Airflow connections with the embedded defaults as
fallback. One function per service:

- `storage_options_for(conn_id)`: fsspec storage options from any connection
  (`ml_pipeline_storage` for the storage root, a Param's `data_conn_id` for raw data);
- `mlflow_tracking()`: the `mlflow_tracking` connection (type http: schema, host, port;
  login/password), else `MLFLOW_TRACKING_URI`, else the embedded SQLite store;
- `model_api()`: the `model_api` connection (type http: schema, host, port; password =
  admin token) means a service; without it, the embedded local process (`MODEL_API_URL`).

There is no warehouse connection: each data task runs its SQL in its own in-memory DuckDB
over Parquet objects on the storage root (data_preparation/warehouse.py).

`apply_task_services()` runs at the start of every task (`preflight.prepare_task`, the
`pre_execute` of `defaults.default_args`): it hands the storage root's connection to
`storage.configure` and points MLflow at the tracking connection, in the task's process.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from include.ml_pipeline.config import get_settings
from include.ml_pipeline.deployment.rollout import (
    EMBEDDED,
    SERVICE,
    ModelApiConfigError,
    ModelApiEndpoint,
)
from include.ml_pipeline.names import (
    MLFLOW_CONN_ID,
    MODEL_API_CONN_ID,
    STORAGE_CONN_ID,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MlflowTracking:
    uri: str
    #: The connection id, `MLFLOW_TRACKING_URI`, or `embedded` (the local SQLite store).
    source: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def _connection(conn_id: str):
    """The Airflow connection `conn_id`, or None when it is not defined."""
    from include.ml_pipeline.orchestration.compat import AirflowNotFoundException, BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


def _extra(conn) -> dict[str, Any]:
    from include.ml_pipeline.storage import StorageError

    try:
        extra = conn.extra_dejson
    except Exception as exc:  # a malformed extra: name the connection
        raise StorageError(f"connection {conn.conn_id!r}: extra is not valid JSON ({exc})") from exc
    return dict(extra or {})


def storage_options_for(conn_id: str, *, required: bool = True) -> dict[str, Any] | None:
    """fsspec storage options from the Airflow connection `conn_id`.

    Type `aws`: login = access key id, password = secret access key, extra
    `endpoint_url`, `region_name` (and `aws_session_token`) -> `{"key", "secret",
    "token", "client_kwargs": {"endpoint_url", "region_name"}}` (s3fs). Any other type
    (`google_cloud_platform`, `wasb`, ...): its extra, as storage options. A connection
    without credentials gives `{}`: the filesystem's own chain (role, workload identity).

    Not defined: `StorageError` naming `conn_id` and the fix, or None if not `required`.
    """
    from include.ml_pipeline.storage import StorageError

    conn = _connection(conn_id)
    if conn is None:
        if required:
            raise StorageError(
                f"Airflow connection {conn_id!r} is not defined; create it (type aws: login = "
                "access key id, password = secret, extra endpoint_url / region_name) or "
                "leave the connection id empty to use the environment's credentials"
            )
        return None
    extra = _extra(conn)
    if (conn.conn_type or "").lower() not in ("aws", "s3"):
        return extra
    options: dict[str, Any] = {}
    if conn.login:
        options["key"] = conn.login
    if conn.password:
        options["secret"] = conn.password
    if extra.get("aws_session_token"):
        options["token"] = extra["aws_session_token"]
    client_kwargs = {k: extra[k] for k in ("endpoint_url", "region_name") if extra.get(k)}
    if client_kwargs:
        options["client_kwargs"] = client_kwargs
    return options


def configure_storage_root(uri: str | None = None) -> bool:
    """Hand the `ml_pipeline_storage` connection (when defined) to `storage.configure`
    for the storage root's protocol. True when it was defined."""
    from include.ml_pipeline import storage

    root = uri or get_settings().storage_uri
    options = storage_options_for(STORAGE_CONN_ID, required=False)
    if options is None:
        return False
    storage.configure(storage.protocol(root), options)
    return True


def _http_url(conn, default_port: int | None, error: type[Exception], what: str) -> str:
    """`<schema>://<host>[:<port>]` of an http connection (a host may carry its scheme and
    port itself); `error` naming the connection when it has no host."""
    host = (conn.host or "").strip().rstrip("/")
    if not host:
        raise error(
            f"Airflow connection {conn.conn_id!r} has no host; set host, port and "
            f"schema (http/https) to {what}"
        )
    base = host if "://" in host else f"{conn.schema or 'http'}://{host}"
    port = conn.port or default_port
    return f"{base}:{port}" if port and ":" not in base.split("://", 1)[1] else base


def mlflow_tracking() -> MlflowTracking:
    """The MLflow tracking server: the `mlflow_tracking` connection when defined
    (`<schema>://<host>:<port>`, login/password for a server with authentication), else
    `MLFLOW_TRACKING_URI`, else the embedded SQLite store."""
    conn = _connection(MLFLOW_CONN_ID)
    if conn is not None:
        from include.ml_pipeline.registry.mlflow_setup import MlflowServerError

        uri = _http_url(conn, None, MlflowServerError, "the MLflow tracking server")
        return MlflowTracking(uri, MLFLOW_CONN_ID, conn.login or None, conn.password or None)
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return MlflowTracking(os.environ["MLFLOW_TRACKING_URI"], "MLFLOW_TRACKING_URI")
    return MlflowTracking(get_settings().mlflow_tracking_uri, "embedded")


def configure_mlflow_tracking() -> MlflowTracking:
    """Point this process's MLflow at `mlflow_tracking()`: `MLFLOW_TRACKING_URI` (read by
    `Settings`, so every stage and the local model API see it) and, from the connection,
    `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`."""
    tracking = mlflow_tracking()
    if tracking.source == MLFLOW_CONN_ID:
        os.environ["MLFLOW_TRACKING_URI"] = tracking.uri
        for name, value in (
            ("MLFLOW_TRACKING_USERNAME", tracking.username),
            ("MLFLOW_TRACKING_PASSWORD", tracking.password),
        ):
            if value:
                os.environ[name] = value
    return tracking


def apply_task_services() -> dict[str, str]:
    """At the start of a task: the storage root's credentials and the MLflow server from
    their connections (when defined). Returns what was applied, for the task log."""
    root = get_settings().storage_uri
    applied = {
        "storage_root": root,
        "storage_credentials": (
            f"connection {STORAGE_CONN_ID}" if configure_storage_root(root) else "the environment"
        ),
    }
    tracking = configure_mlflow_tracking()
    applied["mlflow"] = tracking.uri
    applied["mlflow_source"] = tracking.source
    return applied


def model_api() -> ModelApiEndpoint:
    """The `model_api` connection when defined: a separate service (`<schema>://<host>:
    <port>`, admin token = its password, else `MODEL_API_ADMIN_TOKEN`) that tasks only ask
    to reload. Else the embedded default: a local process on loopback at `MODEL_API_URL`."""
    token = os.environ.get("MODEL_API_ADMIN_TOKEN") or None
    conn = _connection(MODEL_API_CONN_ID)
    if conn is None:
        return ModelApiEndpoint(get_settings().api_url, token, EMBEDDED, "MODEL_API_URL")
    url = _http_url(
        conn,
        8000,
        ModelApiConfigError,
        "the model API service (or delete it for the embedded local API)",
    )
    return ModelApiEndpoint(url, conn.password or token, SERVICE, MODEL_API_CONN_ID)
