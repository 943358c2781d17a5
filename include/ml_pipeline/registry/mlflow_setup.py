"""Point MLflow at the configured store and make sure the experiment exists.

The same calls work with the embedded store (`sqlite:///<file>` plus a local artifact
folder) and with a tracking server (`http://host:port`):

* a `sqlite:///` store gets its parent folder created on first use;
* the experiment is created if absent, with `artifact_location` for a *local* store.
  A tracking server owns its artifact storage (`--artifacts-destination`, proxied as
  `mlflow-artifacts:/`), so a local `file:` artifact location is not sent to it — the
  clients of a server do not share that folder. A non-`file:` location (e.g. `s3://…`)
  is passed through in both cases;
* creating the experiment tolerates a concurrent creator (two tasks starting at once).

Tracking and registry URIs are set together, process-wide (MLflow keeps them in globals);
each function that talks to MLflow in this package takes `tracking_uri` and calls
`configure_mlflow` so a task never depends on what another task in the same process set.

`check_tracking_server` is the preflight of a tracking server: it answers as MLflow, with
these credentials, within a bounded wait, else `MlflowServerError` names the URI, where
it came from and the fix.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.ml_pipeline.config import tracking_auth_headers

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient


class MlflowServerError(RuntimeError):
    """The MLflow tracking server cannot be used as configured (unknown host, nothing
    answering, not an MLflow server, credentials refused): a configuration error."""


#: The cheapest authenticated read of the tracking API (any MLflow server answers it).
_PROBE = "/api/2.0/mlflow/experiments/search?max_results=1"


def check_tracking_server(
    uri: str, *, source: str = "MLFLOW_TRACKING_URI", wait_seconds: float = 30.0
) -> float | None:
    """Preflight of a tracking server (`http(s)://`): its host resolves, and the tracking
    API answers 200 with the configured credentials. A server that refuses connections,
    times out or answers 5xx is polled with backoff for up to `wait_seconds` (a restart
    is ridden out). Returns the seconds it took, None for a local store (nothing to
    check). Raises `MlflowServerError` naming `uri`, `source` and the fix."""
    from include.ml_pipeline.service_probe import Unreachable, Unresolvable, answer

    if not uri.startswith(("http://", "https://")):
        return None
    where = f"MLflow tracking server {uri} (from {source})"
    fix = (
        "start the server or point the Airflow connection mlflow_tracking (host, port, "
        "schema) or MLFLOW_TRACKING_URI at it"
    )
    started = time.monotonic()
    try:
        response = answer(
            uri.rstrip("/") + _PROBE, wait_seconds=wait_seconds, headers=tracking_auth_headers()
        )
    except Unresolvable as exc:
        raise MlflowServerError(f"{where}: {exc}; {fix}") from exc
    except Unreachable as exc:
        raise MlflowServerError(
            f"{where} did not answer in {wait_seconds:.0f} s (last: {exc.last}); {fix}"
        ) from exc
    if response.status_code in (401, 403):
        raise MlflowServerError(
            f"{where} refused the credentials ({response.status_code}); set login and "
            "password of the connection mlflow_tracking (or MLFLOW_TRACKING_USERNAME / "
            "MLFLOW_TRACKING_PASSWORD, MLFLOW_TRACKING_TOKEN)"
        )
    if response.status_code != 200:
        raise MlflowServerError(
            f"{where} answered {response.status_code} to {_PROBE}: not an MLflow "
            f"tracking server at this address (wrong port or path?); {fix}"
        )
    return time.monotonic() - started


def is_remote_tracking_uri(uri: str) -> bool:
    """True for a tracking server (`http://`, `https://`, `databricks`)."""
    return uri.startswith(("http://", "https://", "databricks"))


def run_url(tracking_uri: str, run_id: str) -> str | None:
    """A link to the run in the MLflow UI (for an http tracking server), else None."""
    if not tracking_uri.startswith("http"):
        return None
    from mlflow import MlflowClient

    experiment_id = MlflowClient(tracking_uri=tracking_uri).get_run(run_id).info.experiment_id
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def configure_mlflow(tracking_uri: str) -> MlflowClient:
    """Set the process-wide tracking and registry URI; return a client bound to it."""
    import mlflow
    from mlflow import MlflowClient

    if not tracking_uri:
        raise ValueError("tracking_uri is empty")
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _artifact_location_for(tracking_uri: str, artifact_location: str | None) -> str | None:
    if not artifact_location:
        return None
    is_local = artifact_location.startswith("file:") or "://" not in artifact_location
    if is_remote_tracking_uri(tracking_uri) and is_local:
        return None
    if is_local and artifact_location.startswith("file:"):
        from urllib.parse import urlparse
        from urllib.request import url2pathname

        Path(url2pathname(urlparse(artifact_location).path)).mkdir(parents=True, exist_ok=True)
    return artifact_location


def ensure_experiment(
    tracking_uri: str, experiment: str, artifact_location: str | None = None
) -> str:
    """Configure MLflow and return the id of `experiment`, creating it if absent.

    A deleted experiment of that name is restored rather than failing.
    """
    from mlflow.exceptions import MlflowException

    client = configure_mlflow(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return found.experiment_id
    try:
        return client.create_experiment(
            experiment, artifact_location=_artifact_location_for(tracking_uri, artifact_location)
        )
    except MlflowException:
        # Lost a race with a concurrent creator: use theirs.
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise
        return found.experiment_id


def setup_from_settings(settings=None) -> tuple[str, str]:
    """`ensure_experiment` with `include.ml_pipeline.config.get_settings()` values.

    Returns `(tracking_uri, experiment_id)`.
    """
    if settings is None:
        from include.ml_pipeline.config import get_settings

        settings = get_settings()
    experiment_id = ensure_experiment(
        settings.mlflow_tracking_uri, settings.mlflow_experiment, settings.mlflow_artifact_root
    )
    return settings.mlflow_tracking_uri, experiment_id


def load_sklearn_model(model_uri: str) -> Any:
    """The fitted scikit-learn model at `model_uri` (`models:/...`, `runs:/...`), its
    artifacts downloaded into a temporary folder that is removed once it is in memory:
    MLflow's own download folder would stay in the worker's TMPDIR after every task."""
    import tempfile

    os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    import mlflow.sklearn

    with tempfile.TemporaryDirectory(prefix="mlflow_model_") as tmp:
        return mlflow.sklearn.load_model(model_uri, dst_path=tmp)
