"""HTTP helpers for deploying and checking a running model API (the deployment DAG's
`desplegar_api`, `pruebas_api` and `revertir_despliegue`): which version it serves,
reload, health, predictions against the registered model's, latency. The smoke tests'
requests carry `X-Traffic-Kind: smoke`, so monitoring leaves them out. One API serves
several models: given a `model_name`, each call uses that model's routes
(`/models/<name>/invocations`, `/admin/models/<name>/reload`, ...), without one the
default model's (`/invocations`, `/admin/reload`). Failures raise
`ModelApiError` saying what failed; nothing here imports Airflow or MLflow at module level.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from include.ml_pipeline.names import SMOKE_TRAFFIC, TRAFFIC_HEADER

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


class ModelApiError(RuntimeError):
    """The model API is unreachable, unhealthy, or answered something unexpected."""


def model_path(model_name: str | None, path: str) -> str:
    """The route `path` of the default model's (`/invocations`, `/version`, `/ready`,
    `/model`) for `model_name`: `/models/<name>/invocations`, ..., `/models/<name>`."""
    if not model_name:
        return path
    from urllib.parse import quote

    base = f"/models/{quote(model_name, safe='')}"
    return base if path == "/model" else base + path


def admin_path(model_name: str | None, action: str) -> str:
    """`/admin/<action>` (the default model) or `/admin/models/<name>/<action>`."""
    if not model_name:
        return f"/admin/{action}"
    from urllib.parse import quote

    return f"/admin/models/{quote(model_name, safe='')}/{action}"


def _client(timeout: float):
    import httpx

    return httpx.Client(timeout=timeout)


def _get(url: str, path: str, timeout: float = 5.0):
    import httpx

    try:
        with _client(timeout) as client:
            return client.get(url.rstrip("/") + path)
    except httpx.HTTPError as exc:
        raise ModelApiError(f"GET {url}{path} failed: {exc!r}") from exc


def served_version(url: str, timeout: float = 5.0, *, model_name: str | None = None) -> str | None:
    """The version of `model_name` (default: the default model) the API serves now (`GET
    /version`), None if none is loaded."""
    path = model_path(model_name, "/version")
    response = _get(url, path, timeout)
    if response.status_code != 200:
        raise ModelApiError(
            f"GET {url}{path} answered {response.status_code}: {response.text[:300]}"
        )
    return response.json().get("model_version")


def wait_for_version(
    url: str,
    version: str | int,
    timeout: float = 120.0,
    interval: float = 0.5,
    *,
    model_name: str | None = None,
) -> dict[str, Any]:
    """Poll `/version` (of `model_name`, when given) until it reports `version`; return
    that document. Raises `ModelApiError` after `timeout` seconds with the last answer."""
    deadline = time.monotonic() + timeout
    last: Any = None
    path = model_path(model_name, "/version")
    while True:
        try:
            response = _get(url, path)
            last = response.json() if response.status_code == 200 else response.text[:300]
            if isinstance(last, dict) and str(last.get("model_version")) == str(version):
                return last
        except (ModelApiError, ValueError) as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            raise ModelApiError(
                f"{url}{path} does not serve version {version} after "
                f"{timeout:.0f}s; last /version answer: {last}"
            )
        time.sleep(interval)


def reload_model(
    url: str,
    token: str | None = None,
    timeout: float = 300.0,
    *,
    model_name: str | None = None,
) -> dict[str, Any]:
    """`POST /admin/reload` (with `model_name`: `/admin/models/<name>/reload`, which adds
    the model when the API does not serve it yet) with the bearer token (default: the
    local service's saved token, see `api_process.read_admin_token`). Returns
    `{"previous_version", "model_version", "predict_path", "seconds"}`; raises
    `ModelApiError` otherwise."""
    return _admin_post(url, admin_path(model_name, "reload"), token, timeout)


def unload_model(
    url: str,
    token: str | None = None,
    *,
    if_version: str | None = None,
    timeout: float = 30.0,
    model_name: str | None = None,
) -> dict[str, Any]:
    """`POST /admin/unload` (or `/admin/models/<name>/unload`): the API stops serving that
    model (503) until its next reload, the others untouched; with `if_version` only while
    that version serves. Returns `{"previous_version", "model_version": None}`; raises
    `ModelApiError` otherwise (409: another version)."""
    body = {} if if_version is None else {"if_version": str(if_version)}
    return _admin_post(url, admin_path(model_name, "unload"), token, timeout, body)


def _admin_post(
    url: str,
    path: str,
    token: str | None,
    timeout: float,
    body: dict[str, Any] | None = None,
    method: str = "POST",
) -> dict[str, Any]:
    """An admin call (`method`, default POST) with the bearer token; its JSON answer."""
    import httpx

    if token is None:
        from include.ml_pipeline.deployment.api_process import read_admin_token

        token = read_admin_token()
    if not token:
        raise ModelApiError("no admin token: pass token= or set MODEL_API_ADMIN_TOKEN")
    try:
        with _client(timeout) as client:
            response = client.request(
                method,
                url.rstrip("/") + path,
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            )
    except httpx.HTTPError as exc:
        raise ModelApiError(f"{method} {url}{path} failed: {exc!r}") from exc
    if response.status_code != 200:
        raise ModelApiError(
            f"{path} refused by {url} ({response.status_code}): {response.text[:500]}"
        )
    return response.json()


def check_health(url: str, *, model_name: str | None = None) -> dict[str, Any]:
    """`/ping` and `/ready` (for `model_name`: its own `/models/<name>/ready`; `/ping` is the
    default model's) answer 200; returns the model's `/model`."""
    paths = ("/ping", "/ready") if model_name is None else (model_path(model_name, "/ready"),)
    for path in paths:
        response = _get(url, path)
        if response.status_code != 200:
            raise ModelApiError(
                f"{url}{path} answered {response.status_code}: {response.text[:300]}"
            )
    path = model_path(model_name, "/model")
    response = _get(url, path)
    if response.status_code != 200:
        raise ModelApiError(f"{url}{path} answered {response.status_code}")
    return response.json()


def split_payload(frame: pd.DataFrame) -> bytes:
    """A `dataframe_split` JSON body for `frame` (NaN/None as null)."""
    import orjson

    columns = list(frame.columns)
    rows = [
        [None if (isinstance(v, float) and v != v) else v for v in row]
        for row in frame.astype(object).itertuples(index=False, name=None)
    ]
    return orjson.dumps(
        {"dataframe_split": {"columns": columns, "data": rows}}, option=orjson.OPT_SERIALIZE_NUMPY
    )


def _headers(traffic: str | None) -> dict[str, str]:
    """JSON content type, and the traffic kind (`smoke`, `benchmark`) when it is not live
    traffic, so monitoring leaves these requests out."""
    headers = {"Content-Type": "application/json"}
    if traffic:
        headers[TRAFFIC_HEADER] = traffic
    return headers


def predict_labels(
    url: str,
    frame: pd.DataFrame,
    timeout: float = 30.0,
    traffic: str | None = None,
    *,
    model_name: str | None = None,
) -> list[Any]:
    """Labels for `frame` from `POST /invocations` (dataframe_split) of `model_name`
    (default: the default model); `traffic` marks the requests (`smoke`, `benchmark`;
    None: live)."""
    import httpx

    path = model_path(model_name, "/invocations")
    try:
        with _client(timeout) as client:
            response = client.post(
                url.rstrip("/") + path,
                content=split_payload(frame),
                headers=_headers(traffic),
            )
    except httpx.HTTPError as exc:
        raise ModelApiError(f"POST {url}{path} failed: {exc!r}") from exc
    if response.status_code != 200:
        raise ModelApiError(f"{url}{path} answered {response.status_code}: {response.text[:500]}")
    return response.json()["predictions"]


def offline_predictions(
    tracking_uri: str, model_name: str, version: str | int, frame: pd.DataFrame
) -> list[Any]:
    """Labels of `models:/<model_name>/<version>` for `frame`, computed in this process
    with `mlflow.pyfunc` on the frame passed through `coerce_features` (the reference
    the served predictions must equal)."""
    import os

    import mlflow
    import mlflow.pyfunc
    import numpy as np

    from include.ml_pipeline.features import FeatureSpec, coerce_features

    os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{model_name}/{version}")
    spec_dict = (model.metadata.metadata or {}).get("feature_spec")
    if spec_dict:
        frame = coerce_features(frame, FeatureSpec.from_dict(spec_dict))
    return np.asarray(model.predict(frame)).tolist()


def check_predictions(
    url: str,
    frame: pd.DataFrame,
    expected: list[Any],
    traffic: str | None = SMOKE_TRAFFIC,
    *,
    model_name: str | None = None,
) -> None:
    """The API's labels for `frame` equal `expected` exactly (requests marked `traffic`);
    a regressor's numbers within `verify.VALUE_RTOL` relative."""
    got = predict_labels(url, frame, traffic=traffic, model_name=model_name)
    if len(got) != len(expected):
        raise ModelApiError(f"the API returned {len(got)} predictions for {len(expected)} rows")
    if expected and all(isinstance(v, float) for v in expected):
        from include.ml_pipeline.serving.compiled.verify import values_differ

        why = values_differ(got, expected)
        if why:
            raise ModelApiError(f"served predictions differ from the registered model's: {why}")
        return
    mismatches = [i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b]
    if mismatches:
        i = mismatches[0]
        raise ModelApiError(
            f"{len(mismatches)} of {len(expected)} served predictions differ "
            f"from the registered model's; first at row {i}: served "
            f"{got[i]!r}, offline {expected[i]!r}"
        )


def check_bad_payload(url: str, *, model_name: str | None = None) -> int:
    """A payload with an unknown column must get a 4xx; returns the status code."""
    import httpx

    body = b'{"dataframe_records": [{"__not_a_feature__": 1}]}'
    path = model_path(model_name, "/invocations")
    try:
        with _client(10.0) as client:
            response = client.post(
                url.rstrip("/") + path, content=body, headers=_headers(SMOKE_TRAFFIC)
            )
    except httpx.HTTPError as exc:
        raise ModelApiError(f"POST {url}{path} failed: {exc!r}") from exc
    if not 400 <= response.status_code < 500:
        raise ModelApiError(
            f"a bad payload got {response.status_code}, expected a 4xx: {response.text[:300]}"
        )
    return response.status_code


def measure_latency(
    url: str,
    frame: pd.DataFrame,
    requests: int = 200,
    warmup: int = 10,
    traffic: str | None = SMOKE_TRAFFIC,
    *,
    model_name: str | None = None,
) -> dict[str, float]:
    """Send `requests` sequential 1-row requests (rows of `frame` in turn, marked
    `traffic`) over one keep-alive connection; returns `{"p50_ms", "p95_ms", "p99_ms",
    "max_ms", "requests"}`.
    """
    import httpx
    import numpy as np

    bodies = [split_payload(frame.iloc[[i % len(frame)]]) for i in range(min(len(frame), 50))]
    timings = []
    headers = _headers(traffic)
    target = url.rstrip("/") + model_path(model_name, "/invocations")
    try:
        with _client(10.0) as client:
            for i in range(warmup + requests):
                started = time.perf_counter()
                response = client.post(target, content=bodies[i % len(bodies)], headers=headers)
                elapsed = (time.perf_counter() - started) * 1000.0
                if response.status_code != 200:
                    raise ModelApiError(
                        f"latency probe got {response.status_code}: {response.text[:300]}"
                    )
                if i >= warmup:
                    timings.append(elapsed)
    except httpx.HTTPError as exc:
        raise ModelApiError(f"latency probe failed: {exc!r}") from exc
    values = np.asarray(timings)
    return {
        "requests": float(len(values)),
        "p50_ms": float(np.percentile(values, 50)),
        "p95_ms": float(np.percentile(values, 95)),
        "p99_ms": float(np.percentile(values, 99)),
        "max_ms": float(values.max()),
    }


@dataclass
class SmokeReport:
    url: str
    version: str
    rows_checked: int
    bad_payload_status: int
    latency: dict[str, float]
    p95_budget_ms: float
    model: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def smoke_test(
    url: str,
    tracking_uri: str,
    model_name: str,
    version: str | int,
    *,
    frame: pd.DataFrame,
    p95_budget_ms: float = 50.0,
    latency_requests: int = 200,
) -> SmokeReport:
    """Smoke tests against a live API: it serves `version`; health; labels for `frame`
    (feature columns) equal the registered version's offline labels; a bad payload gets a
    4xx; p95 latency of 1-row requests is within `p95_budget_ms`. Every request goes to
    `model_name`'s own routes (the API may serve other models too). Raises
    `ModelApiError` naming the first failed check."""
    current = served_version(url, model_name=model_name)
    if str(current) != str(version):
        raise ModelApiError(f"{url} serves version {current} of {model_name!r}, expected {version}")
    model = check_health(url, model_name=model_name)
    expected = offline_predictions(tracking_uri, model_name, version, frame)
    check_predictions(url, frame, expected, model_name=model_name)
    problem = implausible_values(expected, model.get("contract"))
    if problem:
        raise ModelApiError(problem)
    status = check_bad_payload(url, model_name=model_name)
    latency = measure_latency(url, frame, latency_requests, model_name=model_name)
    if latency["p95_ms"] > p95_budget_ms:
        raise ModelApiError(
            f"p95 latency {latency['p95_ms']:.2f} ms exceeds the budget of {p95_budget_ms:.2f} ms"
        )
    return SmokeReport(
        url=url,
        version=str(version),
        rows_checked=len(frame),
        bad_payload_status=status,
        latency=latency,
        p95_budget_ms=p95_budget_ms,
        model=model,
    )


#: A regressor's predictions may leave the training target's range by this share of its
#: width on either side before the smoke test calls them implausible.
PLAUSIBLE_MARGIN = 1.0


def implausible_values(values: list[Any], contract: dict[str, Any] | None) -> str | None:
    """For a regressor (its contract's target has a `range`): None when every value is a
    finite number within the training range widened by `PLAUSIBLE_MARGIN` of its width
    (or of its upper end's size, when larger),
    else a sentence naming the first bad value. Classifiers: always None."""
    import math

    target = (contract or {}).get("target") or {}
    if target.get("problem_type") != "regression" or not target.get("range"):
        return None
    low, high = (float(v) for v in target["range"])
    margin = PLAUSIBLE_MARGIN * max(high - low, abs(high), 1e-12)
    lo, hi = low - margin, high + margin
    for i, value in enumerate(values):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or not lo <= value <= hi:
            return (
                f"prediction {value!r} at row {i} is not a finite number within the "
                f"plausible range [{lo:g}, {hi:g}] (training target {target.get('name')!r} "
                f"ranged {low:g} to {high:g})"
            )
    return None
