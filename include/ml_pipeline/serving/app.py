"""The model API: a FastAPI app serving `models:/<name>@<alias>` (default `champion`).

Endpoints
---------
MLflow scoring protocol (any MLflow client works against it):

* `POST /invocations` - JSON (`dataframe_split`, `dataframe_records`, `instances`,
  `inputs`) or `text/csv`; answers `{"predictions": [<label>, ...]}` exactly like
  `mlflow models serve` does for a scikit-learn model (pyfunc `predict` = labels).
* `GET /ping`, `GET /health` - 200 with body `"\\n"` when a model is loaded, else 503.
* `GET /version` - differs from MLflow on purpose: MLflow answers its own package version
  as plain text; this service answers JSON
  `{"model_name", "model_version", "alias", "mlflow_version", "api_version"}` so a
  deployment can wait until the *served model version* is the one it promoted.

Own endpoints:

* `POST /predict` - `{"records": [{feature: value, ...}, ...]}` in; out
  `{"model_name", "model_version", "predictions": [{"label", "probabilities"}]}`.
  The record schema is generated from the served model's feature spec (see `/docs`).
* `GET /ready` (200 once a model is loaded), `GET /model` (name, version, alias, run id,
  run metrics, feature spec, which predictor path serves it), `GET /metrics` (Prometheus).
* `POST /admin/reload` - `Authorization: Bearer <MODEL_API_ADMIN_TOKEN>`. Resolves the
  alias *now*, loads, compiles and verifies the new model in a worker thread while the
  old one keeps serving, then swaps a single reference. Requests already running finish
  on the model they started with. When `MODEL_API_ADMIN_TOKEN` is unset every reload is
  refused with 403 (safe default: nobody can change what is served); a wrong or missing
  token gets 401. Concurrent reloads are serialised. A failed reload leaves the old model
  serving and answers 502 with the reason (the previous model is still healthy).

Errors are JSON `{"error_code", "kind", "message"}`: malformed JSON / bad shape -> 400,
missing / unknown / wrongly typed columns -> 422, too many rows or too big a body -> 413,
unsupported content type -> 415, no model loaded -> 503.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import time
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from include.ml_pipeline.monitoring.inference_log import InferenceLogger
from include.ml_pipeline.serving.metrics import ApiMetrics
from include.ml_pipeline.serving.parsing import RequestError, load_json
from include.ml_pipeline.serving.settings import ServingSettings, get_serving_settings

log = logging.getLogger("ml_pipeline.serving")
API_VERSION = "1.0"
JSON = "application/json"
_ERROR_CODES = {400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                404: "NOT_FOUND", 405: "BAD_REQUEST", 413: "BAD_REQUEST",
                415: "BAD_REQUEST", 422: "BAD_REQUEST", 502: "INTERNAL_ERROR",
                503: "TEMPORARILY_UNAVAILABLE", 500: "INTERNAL_ERROR"}


def _pkg_version(name: str) -> str | None:
    try:
        return package_version(name)
    except PackageNotFoundError:
        return None


def error_response(status: int, kind: str, message: str) -> Response:
    body = orjson.dumps({"error_code": _ERROR_CODES.get(status, "BAD_REQUEST"),
                         "kind": kind, "message": message})
    return Response(body, status_code=status, media_type=JSON)


class ServiceState:
    """The one mutable thing in the service: which `ServedModel` answers requests."""

    def __init__(self, settings: ServingSettings, loader=None, pending=None):
        from include.ml_pipeline.serving.isolated import load_served_model_isolated

        self.settings = settings
        self.model = None  # ServedModel | None, replaced atomically by reloads
        self.metrics = ApiMetrics()
        self.logger = InferenceLogger(
            settings.log_dir,
            sample_rate=settings.log_sample_rate,
            max_file_bytes=settings.log_max_file_bytes,
            max_total_bytes=settings.log_max_total_bytes,
            queue_size=settings.log_queue_size,
        )
        self.metrics.log_dropped.set_function(lambda: self.logger.dropped)
        self.metrics.log_written.set_function(lambda: self.logger.written_records)
        self.reload_lock = asyncio.Lock()
        self.last_load_error: str | None = None
        self.loading = False
        # MLflow and scikit-learn run in short-lived child processes (see isolated.py).
        self._loader = loader or (
            lambda: load_served_model_isolated(settings.tracking_uri, settings.model_name,
                                               settings.alias, max_rows=settings.max_rows)
        )
        self._pending = pending  # a load started before the app was built (__main__)
        self.mlflow_version = _pkg_version("mlflow")

    def load_now(self):
        """Build a new ServedModel (blocking; call from a worker thread)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            return pending.result()
        return self._loader()

    def swap(self, served) -> None:
        self.model = served  # a single reference assignment: atomic for readers
        # Move the long-lived objects (libraries, model) out of the collector's view so
        # full collections during requests stay short (fewer latency spikes).
        gc.collect()
        gc.freeze()
        self.last_load_error = None
        self.metrics.model_loaded(served.name, served.version, served.alias,
                                  served.predict_path)

    async def reload(self) -> tuple[Any, Any]:
        """Load what the alias points to now and swap it in; returns (old, new)."""
        async with self.reload_lock:
            self.loading = True
            try:
                served = await asyncio.to_thread(self.load_now)
            except Exception as exc:
                self.last_load_error = str(exc)
                raise
            finally:
                self.loading = False
            old = self.model
            self.swap(served)
            return old, served


def _record_model(served):
    """A pydantic model of one input record, generated from the feature spec (docs)."""
    from pydantic import ConfigDict, Field, create_model

    fields: dict[str, Any] = {}
    for column in served.spec.numeric:
        fields[column] = (float | None, Field(default=..., description="numeric feature"))
    for column in served.spec.categorical:
        fields[column] = (str | None, Field(default=..., description="categorical feature"))
    return create_model("FeatureRecord", __config__=ConfigDict(extra="forbid"), **fields)


def create_app(settings: ServingSettings | None = None, *, loader=None,
               load_on_startup: bool = True, pending=None) -> FastAPI:
    """Build the app. `loader` (tests) replaces the MLflow loader: a callable returning a
    `ServedModel`. With `load_on_startup` the first load runs in the background, so the
    port answers immediately (`/ping` is 503 until the model is in). `pending` is an
    `isolated.PendingLoad` already running; the first load waits for it."""
    settings = settings or get_serving_settings()
    state = ServiceState(settings, loader, pending)
    max_body = settings.max_body_bytes

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.logger.start()
        task = None
        if load_on_startup:
            async def first_load():
                try:
                    await state.reload()
                except Exception as exc:
                    log.error("initial model load failed: %s", exc)
                    state.metrics.reloads.labels("failed").inc()

            task = asyncio.create_task(first_load())
        try:
            yield
        finally:
            if task is not None and not task.done():
                task.cancel()
            await asyncio.to_thread(state.logger.close, 5.0)

    app = FastAPI(title="Model API", version=API_VERSION, lifespan=lifespan,
                  description=__doc__.split("Errors are JSON")[0])
    app.state.service = state

    # ------------------------------------------------------------------ error handlers

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        state.metrics.error(f"http_{exc.status_code}")
        return error_response(exc.status_code, f"http_{exc.status_code}", str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        state.metrics.error("validation")
        return error_response(422, "validation", str(exc.errors()))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path)
        state.metrics.error("internal")
        return error_response(500, "internal", f"internal error: {exc!r}")

    # ------------------------------------------------------------------ helpers

    async def read_body(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                raise RequestError(400, "bad_header", "Content-Length is not a number") from None
            if declared > max_body:
                raise RequestError(413, "body_too_large", f"the body has {declared} bytes; "
                                   f"the limit is {max_body} (MODEL_API_MAX_BODY_BYTES)")
            return await request.body()
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                raise RequestError(413, "body_too_large", f"the body exceeds {max_body} bytes "
                                   "(MODEL_API_MAX_BODY_BYTES)")
            chunks.append(chunk)
        return b"".join(chunks)

    def fail(endpoint: str, started: float, exc: RequestError) -> Response:
        state.metrics.error(exc.kind)
        state.metrics.observe(endpoint, exc.status, time.perf_counter() - started)
        return error_response(exc.status, exc.kind, exc.message)

    def not_ready(endpoint: str, started: float) -> Response:
        reason = state.last_load_error or ("loading" if state.loading else "no model loaded")
        return fail(endpoint, started, RequestError(503, "not_ready",
                                                    f"no model is being served: {reason}"))

    def predict(served, batch):
        try:
            return served.predictor.predict(batch)
        except Exception as exc:
            if served.predictor is served.reference:
                raise RequestError(422, "model_rejected_input",
                                   f"the model rejected the input: {exc}") from exc
            log.warning("fast path failed (%r); using the sklearn pipeline", exc)
            state.metrics.error("fast_path_fallback")
            try:
                return served.reference.predict(batch)
            except Exception as exc2:
                raise RequestError(422, "model_rejected_input",
                                   f"the model rejected the input: {exc2}") from exc2

    def after_predict(endpoint, started, served, batch, result):
        elapsed = time.perf_counter() - started
        state.metrics.observe(endpoint, 200, elapsed)
        state.metrics.predicted(result.labels, result.label_index, served.classes)
        state.logger.submit(batch, result.labels, result.proba, served.classes,
                            served.version, elapsed * 1000.0)

    # ------------------------------------------------------------------ scoring protocol

    @app.post("/invocations", tags=["mlflow scoring protocol"],
              summary="MLflow scoring protocol: labels for a batch",
              openapi_extra={"requestBody": {"required": True, "content": {
                  JSON: {"schema": {"type": "object", "description":
                                    "one of dataframe_split, dataframe_records, "
                                    "instances, inputs"}},
                  "text/csv": {"schema": {"type": "string"}}}}})
    async def invocations(request: Request) -> Response:
        started = time.perf_counter()
        served = state.model  # this request uses this model to the end
        if served is None:
            return not_ready("invocations", started)
        try:
            content_type = request.headers.get("content-type", JSON)
            mime, _, params = content_type.partition(";")
            mime = mime.strip().lower()
            if params and "utf-8" not in params.lower() and "charset" in params.lower():
                raise RequestError(415, "unsupported_charset",
                                   "the scoring server only supports UTF-8")
            body = await read_body(request)
            if mime == JSON or mime == "":
                batch = served.parser.parse_json_body(body)
            elif mime == "text/csv":
                batch = served.parser.parse_csv_body(body)
            else:
                raise RequestError(415, "unsupported_media_type",
                                   f"content type {mime!r} is not supported; use "
                                   f"'{JSON}' or 'text/csv'")
            result = predict(served, batch)
        except RequestError as exc:
            return fail("invocations", started, exc)
        payload = orjson.dumps({"predictions": result.labels})
        after_predict("invocations", started, served, batch, result)
        return Response(payload, media_type=JSON)

    @app.get("/ping", tags=["mlflow scoring protocol"], summary="200 when a model is loaded")
    @app.get("/health", tags=["mlflow scoring protocol"], summary="same as /ping")
    async def ping() -> Response:
        if state.model is None:
            return error_response(503, "not_ready", "no model is being served")
        return Response(b"\n", media_type=JSON)

    @app.get("/version", tags=["mlflow scoring protocol"],
             summary="served model version (JSON, unlike MLflow's plain text)")
    async def version() -> Response:
        served = state.model
        return Response(orjson.dumps({
            "model_name": served.name if served else settings.model_name,
            "model_version": served.version if served else None,
            "alias": settings.alias,
            "mlflow_version": state.mlflow_version,
            "api_version": API_VERSION,
        }), media_type=JSON)

    # ------------------------------------------------------------------ own API

    @app.post("/predict", tags=["model"], summary="Typed prediction with probabilities",
              openapi_extra={"requestBody": {"required": True, "content": {JSON: {"schema": {
                  "$ref": "#/components/schemas/PredictRequest"}}}}})
    async def predict_endpoint(request: Request) -> Response:
        started = time.perf_counter()
        served = state.model
        if served is None:
            return not_ready("predict", started)
        try:
            payload = load_json(await read_body(request))
            if not isinstance(payload, dict) or set(payload) != {"records"}:
                raise RequestError(400, "bad_format",
                                   'the body must be {"records": [{feature: value, ...}]}')
            batch = served.parser.from_records(payload["records"], "records")
            result = predict(served, batch)
        except RequestError as exc:
            return fail("predict", started, exc)
        names = [str(c) for c in served.classes]
        if result.proba is not None:
            rows = result.proba.tolist()
            predictions = [{"label": label, "probabilities": dict(zip(names, row, strict=False))}
                           for label, row in zip(result.labels, rows, strict=False)]
        else:
            predictions = [{"label": label, "probabilities": None} for label in result.labels]
        body = orjson.dumps({"model_name": served.name, "model_version": served.version,
                             "predictions": predictions})
        after_predict("predict", started, served, batch, result)
        return Response(body, media_type=JSON)

    @app.get("/ready", tags=["operations"], summary="200 once a model is loaded")
    async def ready() -> Response:
        served = state.model
        if served is None:
            reason = state.last_load_error or ("loading" if state.loading else "not loaded")
            return error_response(503, "not_ready", f"no model is being served: {reason}")
        return Response(orjson.dumps({"ready": True, "model_version": served.version}),
                        media_type=JSON)

    @app.get("/model", tags=["operations"], summary="the served model")
    async def model_info() -> Response:
        served = state.model
        if served is None:
            return error_response(503, "not_ready", "no model is being served")
        info = served.info()
        info["inference_log"] = state.logger.stats()
        return Response(orjson.dumps(info, option=orjson.OPT_SERIALIZE_NUMPY),
                        media_type=JSON)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(state.metrics.registry),
                        media_type=CONTENT_TYPE_LATEST)

    @app.post("/admin/reload", tags=["operations"],
              summary="load the version the alias points to now and swap it in")
    async def admin_reload(request: Request) -> Response:
        token = settings.admin_token
        if not token:
            state.metrics.reloads.labels("refused").inc()
            return error_response(403, "reload_disabled", "reloads are disabled: "
                                  "MODEL_API_ADMIN_TOKEN is not set on the server")
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(),
                                                                 token.encode()):
            state.metrics.reloads.labels("unauthorized").inc()
            return error_response(401, "unauthorized", "a valid 'Authorization: Bearer "
                                  "<MODEL_API_ADMIN_TOKEN>' header is required")
        started = time.perf_counter()
        try:
            old, new = await state.reload()
        except Exception as exc:
            state.metrics.reloads.labels("failed").inc()
            current = state.model.version if state.model else None
            return error_response(502, "reload_failed", f"reload failed, still serving "
                                  f"version {current}: {exc}")
        state.metrics.reloads.labels("ok").inc()
        return Response(orjson.dumps({
            "previous_version": old.version if old else None,
            "model_version": new.version,
            "predict_path": new.predict_path,
            "seconds": round(time.perf_counter() - started, 3),
        }), media_type=JSON)

    # ------------------------------------------------------------------ OpenAPI

    def openapi() -> dict:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version,
                             description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        served = state.model
        if served is not None:
            record = _record_model(served).model_json_schema()
        else:
            record = {"type": "object", "description": "model not loaded yet"}
        components["FeatureRecord"] = record
        components["PredictRequest"] = {
            "type": "object", "required": ["records"], "additionalProperties": False,
            "properties": {"records": {"type": "array", "minItems": 1,
                                       "maxItems": settings.max_rows,
                                       "items": {"$ref": "#/components/schemas/FeatureRecord"}}},
        }
        return schema  # rebuilt on every call: the schema follows reloads

    app.openapi = openapi  # type: ignore[method-assign]
    return app
