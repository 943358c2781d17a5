"""The start of every task (`pre_execute` in `defaults.default_args`, so it runs in the
task's own process on any executor, on Airflow 2.11 and 3.x, under `dag.test()` too):

1. the storage root's connection (`ml_pipeline_storage`) goes to `storage.configure`, and
   MLflow is pointed at the `mlflow_tracking` connection (`connections.apply_task_services`);
2. the DAG's first tasks (those with no upstream task: `esperar_datos`, `find_champion`)
   check that the services the run will need are usable — the storage root's bucket exists
   and the credentials are accepted; the MLflow server answers as MLflow. A failed check is
   a configuration error: the task fails at once, without retries, naming the URI, where
   its setting came from and the fix — before any work is done.

Later tasks do not repeat the checks: once a run has seen the services work, a refused
connection or a 5xx is an outage, retried with exponential backoff (`default_args`).
The model API is checked by the first task that needs it (`desplegar_api`).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

log = logging.getLogger(__name__)

WAIT_ENV = "ML_PIPELINE_PREFLIGHT_WAIT_SECONDS"
#: Checks that passed in this process (kind, uri): a sensor's pokes do not repeat them.
_PASSED: set[tuple[str, str]] = set()


def wait_seconds() -> float:
    """How long a check waits for a service that refuses connections or answers 5xx."""
    return float(os.environ.get(WAIT_ENV, "30"))


def check_storage_root(uri: str, *, credentials: str = "the environment") -> float | None:
    """The storage root's bucket (container) exists and the credentials are accepted: one
    metadata request (`info` of the bucket). Returns the seconds it took, None for a local
    root. Raises `storage.StorageError` naming `uri`, the credentials' source and the fix."""
    from include.ml_pipeline import storage

    if not storage.is_remote(uri):
        return None
    started = time.monotonic()
    fs, path = storage.filesystem(uri)
    bucket = path.strip("/").split("/", 1)[0]
    try:
        fs.info(bucket)
    except FileNotFoundError as exc:
        raise storage.StorageError(
            f"storage root {uri}: bucket {bucket!r} does not exist (or these credentials "
            f"cannot see it; credentials from {credentials}); create the bucket or fix "
            "ML_PIPELINE_STORAGE"
        ) from exc
    except PermissionError as exc:
        raise storage.StorageError(
            f"storage root {uri}: access denied ({exc}); credentials from {credentials}: fix "
            "the connection ml_pipeline_storage (login = access key id, password = secret) "
            "or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
        ) from exc
    except storage.StorageError:
        raise
    except Exception as exc:  # the store is unreachable: endpoint, DNS, TLS
        raise storage.StorageError(
            f"storage root {uri}: cannot reach the object store ({type(exc).__name__}: {exc});"
            " check endpoint_url in the extra of connection ml_pipeline_storage, or "
            "AWS_ENDPOINT_URL"
        ) from exc
    return time.monotonic() - started


def check_services(applied: dict[str, str]) -> dict[str, float | None]:
    """Check the storage root and the MLflow server (each once per process); returns the
    seconds each check took. Raises `StorageError` / `MlflowServerError`."""
    from include.ml_pipeline.config import get_settings
    from include.ml_pipeline.registry.mlflow_setup import check_tracking_server

    settings = get_settings()
    done: dict[str, float | None] = {}
    root = settings.storage_uri
    if ("storage", root) not in _PASSED:
        done["storage"] = check_storage_root(root, credentials=applied["storage_credentials"])
        _PASSED.add(("storage", root))
    uri = settings.mlflow_tracking_uri
    if ("mlflow", uri) not in _PASSED:
        done["mlflow"] = check_tracking_server(
            uri, source=applied["mlflow_source"], wait_seconds=wait_seconds()
        )
        _PASSED.add(("mlflow", uri))
    return done


def prepare_task(context: dict[str, Any]) -> None:
    """`pre_execute` of every task: apply the service connections; at a DAG's first task,
    check the services. A configuration error fails the task at once (no retry)."""
    from include.ml_pipeline.orchestration import connections
    from include.ml_pipeline.orchestration.compat import AirflowFailException
    from include.ml_pipeline.registry.mlflow_setup import MlflowServerError
    from include.ml_pipeline.storage import StorageError

    task = context.get("task")
    try:
        applied = connections.apply_task_services()
        log.info(
            "storage root %s (credentials from %s); MLflow %s (from %s)",
            applied["storage_root"],
            applied["storage_credentials"],
            applied["mlflow"],
            applied["mlflow_source"],
        )
        if task is not None and not task.upstream_task_ids:
            for name, seconds in check_services(applied).items():
                if seconds is not None:
                    log.info("preflight: %s answers (%.2f s)", name, seconds)
    except (StorageError, MlflowServerError) as exc:
        raise AirflowFailException(str(exc)) from exc
