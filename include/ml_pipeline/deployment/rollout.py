"""Roll out and roll back: make the model API serve `champion`, or put it back.

`roll_out` makes the running API serve the new champion: in the embedded default it
starts the local process when none runs, otherwise it asks the API to reload, and it waits
(bounded) until `/version` reports the new version. `roll_back` points `champion` back to
`previous_champion` (only if `champion` is still the failed version), reloads the API and
checks it serves the restored version.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from include.ml_pipeline.config import Settings
from include.ml_pipeline.contracts.names import CHAMPION

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def is_loopback(url: str) -> bool:
    return (urlparse(url).hostname or "") in LOOPBACK


def served_model(url: str) -> dict[str, Any] | None:
    """The API's `GET /version` document (model name and version), None if unreachable."""
    import httpx

    try:
        response = httpx.get(url.rstrip("/") + "/version", timeout=5.0)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else {}


def _api_ready_for(url: str, model_name: str) -> bool:
    """True when an API for `model_name` answers at `url` (it will be asked to reload).

    False when none answers: the caller starts the local one. A local process recorded
    for another URL, or serving another model, is stopped first (a later start replaces
    it); a remote API serving another model is an error, not something to reload.
    """
    from include.ml_pipeline.serving import process

    running = process.api_status()
    if running is not None and running.url.rstrip("/") != url.rstrip("/"):
        process.stop_api()
        running = None
    info = served_model(url)
    if info is None:
        return False
    serving = info.get("model_name")
    if serving and serving != model_name:
        if running is None:
            raise RuntimeError(
                f"the model API at {url} serves model {serving!r}, not "
                f"{model_name!r}; point the model_api connection at its API"
            )
        process.stop_api()
        return False
    return True


def roll_out(
    settings: Settings,
    url: str,
    model_name: str,
    version: str,
    *,
    token: str | None = None,
    timeout: float = 180.0,
) -> dict[str, Any]:
    """Make the API at `url` serve `version` (the champion); return what happened."""
    started, document = _serve_champion(
        settings, url, model_name, version, token=token, timeout=timeout
    )
    return {"url": url, "version": str(version), "started": started, "version_info": document}


def _serve_champion(
    settings: Settings,
    url: str,
    model_name: str,
    version: str,
    *,
    token: str | None,
    timeout: float,
) -> tuple[dict | None, dict[str, Any]]:
    """Start the local API on loopback when none answers at `url`, else ask it to reload;
    wait (bounded) until it serves `version`. Returns (started process or None, /version)."""
    from include.ml_pipeline.serving import client, process

    started = None
    if is_loopback(url) and not _api_ready_for(url, model_name):
        started = process.start_api(
            url=url,
            model_name=model_name,
            tracking_uri=settings.mlflow_tracking_uri,
            admin_token=token,
            timeout=timeout,
        ).to_dict()
    else:
        client.reload_model(url, token=token, timeout=timeout)
    return started, client.wait_for_version(url, version, timeout=timeout)


def roll_back(
    settings: Settings,
    name: str,
    failed_version: str,
    url: str,
    *,
    reason: str,
    token: str | None = None,
    timeout: float = 180.0,
) -> dict[str, Any]:
    """Put `champion` back on the previous version and make the API serve it again."""
    from include.ml_pipeline.registry.registry import (
        get_alias_version,
        remove_champion,
        rollback_champion,
    )
    from include.ml_pipeline.serving import client, process

    uri = settings.mlflow_tracking_uri
    champion = get_alias_version(name, CHAMPION, tracking_uri=uri)
    if champion != str(failed_version):
        return {
            "rolled_back": False,
            "champion": champion,
            "detail": f"champion is {champion}, not the failed version {failed_version}",
        }
    try:
        restored = rollback_champion(name, tracking_uri=uri, reason=reason)
    except LookupError:
        # First deployment ever: there is nothing to go back to. Take the alias away so
        # no one serves a version that failed, and stop the local API that serves it.
        remove_champion(name, tracking_uri=uri)
        stopped = process.stop_api() if is_loopback(url) else False
        return {
            "rolled_back": True,
            "champion": None,
            "api_stopped": stopped,
            "detail": "no previous champion: alias removed",
        }
    _serve_champion(settings, url, name, restored, token=token, timeout=timeout)
    client.check_health(url)
    return {"rolled_back": True, "champion": restored, "detail": f"API serves v{restored}"}
