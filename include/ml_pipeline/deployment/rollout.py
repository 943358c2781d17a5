"""Roll out and roll back: make the model API serve `champion`, or put it back; and the
rows `pruebas_api` sends to it.

Two modes, chosen by the orchestration layer (`connections.model_api()`) and logged:

* **service** (the `model_api` connection is defined): the API is its own service (a
  container, a Deployment). A task never starts or stops a process: it checks the service
  answers (`check_service`; it may serve other models too), asks it to load or reload
  *this* model (`POST /admin/models/<name>/reload` with the admin token) and waits
  (bounded) until `/models/<name>/version` reports the new version.
* **embedded** (no connection, `make run`): a local process on loopback (`MODEL_API_URL`),
  started when none answers there (`deployment/api_process.py`), else asked to load or
  reload this model: a second `model_name` deployed in the same home is added next to the
  first, which keeps serving untouched.

`restore_champion` points `champion` back to `previous_champion` (only if `champion` is
still the failed version), reloads the API the same way and checks it serves the restored
version. With no previous champion, the model is unloaded (a service, or a local API
that serves other models too) or the local API is stopped (it served only this model).

Configuration errors (no token, a token the service refuses, a host that does not resolve,
nothing answering within the wait) raise `ModelApiConfigError`
naming the URL, where it came from and the fix: a retry cannot help. A reload that fails
on the service side (502) or a dropped connection is `ModelApiError`: retried.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from include.ml_pipeline import storage
from include.ml_pipeline.config import Settings
from include.ml_pipeline.names import CHAMPION, MODEL_API_CONN_ID
from include.ml_pipeline.payloads import Release, Rollback, Rollout, SplitResult

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

log = logging.getLogger(__name__)

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
SERVICE = "service"
EMBEDDED = "embedded"


class ModelApiConfigError(RuntimeError):
    """The model API cannot be used as configured: a retry cannot fix it."""


@dataclass(frozen=True)
class ModelApiEndpoint:
    url: str
    token: str | None = field(repr=False)
    #: `service` (never start a process: only reload) or `embedded` (a local process).
    mode: str = EMBEDDED
    #: Where the endpoint came from, for messages: the connection id or the variable.
    source: str = "MODEL_API_URL"

    @property
    def is_service(self) -> bool:
        return self.mode == SERVICE

    def describe(self) -> str:
        how = "a service: reload only" if self.is_service else "embedded: local process"
        return f"model API {self.url} ({how}; from {self.source})"


def is_loopback(url: str) -> bool:
    return (urlparse(url).hostname or "") in LOOPBACK


def served_model(url: str, model_name: str | None = None) -> dict[str, Any] | None:
    """The API's `GET /version` document (model name and version) of `model_name` (default:
    its default model), None if unreachable, {} if it does not serve that model."""
    import httpx

    from include.ml_pipeline.deployment.api_client import model_path

    try:
        response = httpx.get(url.rstrip("/") + model_path(model_name, "/version"), timeout=5.0)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else {}


def check_service(
    endpoint: ModelApiEndpoint, model_name: str, *, wait_seconds: float = 30.0
) -> dict[str, Any]:
    """Preflight of a model API service: an admin token is set, the host resolves, `/version`
    answers within `wait_seconds` (refused connections and 5xx are polled with backoff).
    The service may serve other models: the rollout loads `model_name` next to them.
    Returns its `/version`; raises `ModelApiConfigError`."""
    from include.ml_pipeline.service_probe import Unreachable, Unresolvable, answer

    where = endpoint.describe()
    fix = f"fix host/port of the connection {MODEL_API_CONN_ID!r}"
    if not endpoint.token:
        raise ModelApiConfigError(
            f"{where}: no admin token; set the password of the Airflow connection "
            f"{MODEL_API_CONN_ID!r} (or MODEL_API_ADMIN_TOKEN) to the service's "
            "MODEL_API_ADMIN_TOKEN"
        )
    try:
        response = answer(endpoint.url.rstrip("/") + "/version", wait_seconds=wait_seconds)
    except Unresolvable as exc:
        raise ModelApiConfigError(f"{where}: {exc}; {fix}") from exc
    except Unreachable as exc:
        raise ModelApiConfigError(
            f"{where} did not answer in {wait_seconds:.0f} s (last: {exc.last}); start the "
            f"service or {fix}"
        ) from exc
    if response.status_code != 200:
        raise ModelApiConfigError(
            f"{where}: GET /version answered {response.status_code}: not the model API "
            f"(wrong port or path?); {fix}"
        )
    info = response.json()
    if info.get("model_name") != model_name:
        log.info(
            "%s serves %r by default; %r is loaded next to it",
            where,
            info.get("model_name"),
            model_name,
        )
    return info


def reload_service(
    endpoint: ModelApiEndpoint, model_name: str, *, timeout: float
) -> dict[str, Any]:
    """`POST /admin/models/<name>/reload` on the service (loads the model if it is new);
    a refused token is a configuration error."""
    from include.ml_pipeline.deployment.api_client import ModelApiError, reload_model

    try:
        return reload_model(
            endpoint.url, token=endpoint.token, timeout=timeout, model_name=model_name
        )
    except ModelApiError as exc:
        if "(401)" in str(exc) or "(403)" in str(exc):
            raise ModelApiConfigError(
                f"{endpoint.describe()} refused the reload: {exc}; set the password of the "
                f"connection {MODEL_API_CONN_ID!r} (or MODEL_API_ADMIN_TOKEN) to the service's "
                "MODEL_API_ADMIN_TOKEN"
            ) from exc
        raise


def _api_answers(url: str) -> bool:
    """Embedded mode: True when a model API answers at `url` (it will be asked to load or
    reload the model, next to any others it serves). False when none answers: the caller
    starts the local one. A local process recorded for another URL is stopped first."""
    from include.ml_pipeline.deployment import api_process

    running = api_process.api_status()
    if running is not None and running.url.rstrip("/") != url.rstrip("/"):
        api_process.stop_api()
    return served_model(url) is not None


@dataclass(frozen=True)
class Serving:
    """What `serve_version` did: the API at `url` (in `mode`) serves `version`, as its
    `/version` document `version_info` says; `started` is the local process when this
    call started it, else None."""

    url: str
    version: str
    mode: str
    started: dict[str, Any] | None
    version_info: dict[str, Any]

    def of(self, release: Release) -> Rollout:
        """The `desplegar_api` payload: `release`, served like this."""
        return Rollout(
            release=release,
            url=self.url,
            version=self.version,
            started=self.started,
            version_info=self.version_info,
            mode=self.mode,
        )


def serve_version(
    settings: Settings,
    endpoint: ModelApiEndpoint,
    model_name: str,
    version: str,
    *,
    timeout: float = 180.0,
) -> Serving:
    """Make the API at `endpoint` serve `version` (the champion)."""
    log.info("rolling out %s v%s to the %s", model_name, version, endpoint.describe())
    started, document = _serve_champion(settings, endpoint, model_name, version, timeout=timeout)
    return Serving(
        url=endpoint.url,
        version=str(version),
        mode=endpoint.mode,
        started=started,
        version_info=document,
    )


def _serve_champion(
    settings: Settings,
    endpoint: ModelApiEndpoint,
    model_name: str,
    version: str,
    *,
    timeout: float,
) -> tuple[dict | None, dict[str, Any]]:
    """Service: check, reload. Embedded: start the local API on loopback when none answers
    (or when it goes away between that check and the reload), else reload. Then wait
    (bounded) until it serves `version`."""
    from include.ml_pipeline.deployment import api_client, api_process

    url = endpoint.url
    started = None

    def start() -> dict:
        return api_process.start_api(
            url=url,
            model_name=model_name,
            tracking_uri=settings.mlflow_tracking_uri,
            admin_token=endpoint.token,
            timeout=timeout,
        ).to_dict()

    if endpoint.is_service:
        check_service(endpoint, model_name)
        reload_service(endpoint, model_name, timeout=timeout)
    elif not is_loopback(url):
        raise ModelApiConfigError(
            f"MODEL_API_URL={url} is not a loopback address: the embedded mode starts the "
            f"model API on this machine. For an API service, define the Airflow connection "
            f"{MODEL_API_CONN_ID!r} (host, port, schema; password = admin token)"
        )
    elif not _api_answers(url):
        started = start()
    else:
        try:
            _reload_embedded(settings, url, endpoint.token, model_name, timeout=timeout)
        except api_client.ModelApiError:
            # The local API went away between the check and the reload (killed, crashed):
            # start it, as when none answered. One still up (a failed reload) re-raises.
            if api_process.api_status() is not None or served_model(url) is not None:
                raise
            log.warning("the model API at %s went away before the reload; starting it", url)
            started = start()
    document = api_client.wait_for_version(url, version, timeout=timeout, model_name=model_name)
    return started, document


def _reload_embedded(
    settings: Settings, url: str, token: str | None, model_name: str, *, timeout: float
) -> None:
    """Reload the API answering at `url` in the embedded mode. One that refuses this
    home's token was started elsewhere (another `ML_PIPELINE_HOME`, e.g. the other
    AIRFLOW= line's `make run`, holds the port): a configuration error that says so."""
    from include.ml_pipeline.deployment import api_client, api_process

    try:
        api_client.reload_model(url, token=token, timeout=timeout, model_name=model_name)
    except api_client.ModelApiError as exc:
        if api_process.api_status() is None and ("(401)" in str(exc) or "(403)" in str(exc)):
            raise ModelApiConfigError(
                f"the model API at {url} was not started from this ML_PIPELINE_HOME "
                f"({settings.home}) and refused its token: stop it where it was started "
                "(`make stop`, with the AIRFLOW= of that setup), or run on another port "
                "(make run API_PORT=8001)"
            ) from exc
        raise


def restore_champion(
    settings: Settings,
    name: str,
    failed_version: str,
    endpoint: ModelApiEndpoint,
    *,
    reason: str,
    timeout: float = 180.0,
) -> Rollback:
    """Put `champion` back on the previous version and make the API serve it again."""
    from include.ml_pipeline.deployment import api_client, api_process
    from include.ml_pipeline.registry.registry import (
        get_alias_version,
        remove_champion,
        rollback_champion,
    )

    uri = settings.mlflow_tracking_uri
    champion = get_alias_version(name, CHAMPION, tracking_uri=uri)
    if champion != str(failed_version):
        return Rollback(
            rolled_back=False,
            champion=champion,
            detail=f"champion is {champion}, not the failed version {failed_version}",
        )
    try:
        restored = rollback_champion(name, tracking_uri=uri, reason=reason)
    except LookupError:
        # First deployment ever: nothing to go back to. Take the alias away so no one
        # serves a version that failed; a service (or a local API serving other models
        # too) keeps its process and unloads this model (503 until a champion), a local
        # API serving only this model is stopped.
        remove_champion(name, tracking_uri=uri)
        if endpoint.is_service or _serves_others(endpoint.url, name):
            unloaded = api_client.unload_model(
                endpoint.url,
                token=endpoint.token,
                if_version=str(failed_version),
                timeout=timeout,
                model_name=name,
            )
            return Rollback(
                rolled_back=True,
                champion=None,
                api_stopped=False,
                unloaded=unloaded["previous_version"],
                detail=f"no previous champion: alias removed; the model API at "
                f"{endpoint.url} unloaded {name} v{failed_version} (any other model it "
                "serves is untouched) and answers 503 for it until a champion is deployed",
            )
        stopped = api_process.stop_api() if is_loopback(endpoint.url) else False
        return Rollback(
            rolled_back=True,
            champion=None,
            api_stopped=stopped,
            detail="no previous champion: alias removed",
        )
    log.info("rolling back %s to v%s on the %s", name, restored, endpoint.describe())
    _serve_champion(settings, endpoint, name, restored, timeout=timeout)
    api_client.check_health(endpoint.url, model_name=name)
    return Rollback(rolled_back=True, champion=restored, detail=f"API serves v{restored}")


def _serves_others(url: str, model_name: str) -> bool:
    """True when the API at `url` serves a model other than `model_name` (`GET /models`)."""
    import httpx

    try:
        response = httpx.get(url.rstrip("/") + "/models", timeout=5.0)
    except httpx.HTTPError:
        return False
    if response.status_code != 200:
        return False
    return any(
        m.get("ready") and m.get("name") != model_name for m in response.json().get("models", [])
    )


def smoke_rows(split: SplitResult, rows: int = 32) -> pd.DataFrame:
    """The first `rows` rows of the run's test split (a `file://` or remote URI, read with
    the storage root's options), feature columns only: the fixed sample `pruebas_api`
    sends, whatever the dataset."""
    import pandas as pd

    with storage.local_copy(split.uris["test"]) as local:
        return pd.read_parquet(local, columns=split.feature_spec.columns).head(rows)
