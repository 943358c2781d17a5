"""The release experiment of a live model API, from the outside (the DAG's release
stages call these): set one, stop it (the kill switch), read its live counts. The API side
is `serving/api/experiment.py`; the admin calls carry the bearer token like reloads
(`api_client`)."""

from __future__ import annotations

from typing import Any

from include.ml_pipeline.deployment.api_client import (
    ModelApiError,
    _admin_post,
    _get,
    admin_path,
    model_path,
)


def start_experiment(
    url: str,
    model_name: str,
    mode: str,
    *,
    share: float | None = None,
    key_column: str | None = None,
    token: str | None = None,
    timeout: float = 300.0,
    **limits: Any,
) -> dict[str, Any]:
    """`PUT /admin/models/<name>/experiment`: load the model's `challenger` alias and run
    `mode` (`shadow` | `canary` with `share` of traffic, split by `X-Experiment-Key` or
    `key_column`); `limits`: `max_error_rate`, `min_requests`, `window`, `timeout_ms`.
    Returns the experiment's state; `ModelApiError` when refused (the API's message)."""
    body: dict[str, Any] = {"mode": mode, **limits}
    if share is not None:
        body["share"] = share
    if key_column is not None:
        body["key_column"] = key_column
    return _admin_post(
        url, admin_path(model_name, "experiment"), token, timeout, body, method="PUT"
    )


def stop_experiment(
    url: str, model_name: str, *, token: str | None = None, timeout: float = 30.0
) -> dict[str, Any] | None:
    """`DELETE /admin/models/<name>/experiment`: every request goes to the champion at
    once; the stopped experiment's last state (None: none was running)."""
    answer = _admin_post(url, admin_path(model_name, "experiment"), token, timeout, method="DELETE")
    return answer.get("stopped")


def experiment_status(url: str, model_name: str, timeout: float = 5.0) -> dict[str, Any] | None:
    """`GET /models/<name>/experiment`: the running experiment (config, challenger
    version, breaker, counts), None when there is none."""
    return experiment_state(url, model_name, timeout)["experiment"]


def experiment_state(url: str, model_name: str, timeout: float = 5.0) -> dict[str, Any]:
    """The whole answer of `GET /models/<name>/experiment`: `experiment` (None when there
    is none) with the `champion_version` served at that moment (None while the API is
    still loading it: a starting API restores a recorded experiment before it loads the
    champion, so one answer says whether "no experiment" is final)."""
    response = _get(url, model_path(model_name, "/experiment"), timeout)
    if response.status_code != 200:
        raise ModelApiError(
            f"GET {url}{model_path(model_name, '/experiment')} answered "
            f"{response.status_code}: {response.text[:500]}"
        )
    return response.json()
