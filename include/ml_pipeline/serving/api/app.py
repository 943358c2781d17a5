"""The model API: a FastAPI app serving `models:/<name>@<alias>` (default `champion`) of
one or several registered models side by side (`state.py`: one slot each), over MLflow's
scoring protocol (bare routes: the default model; `/models/{name}/...`: any served one)
and the Open Inference Protocol (`/v2/...`, `oip.py`).

What each endpoint does is told once, in `openapi.md`: the description of the OpenAPI
document (`/openapi.json`, `/docs`), to which `openapi.py` adds every status and content
type of each endpoint and the request schemas of the model served now.

Errors are JSON `{"error_code", "kind", "message"}`: malformed JSON / bad shape -> 400,
missing / wrongly typed columns -> 422, too many rows or too big a body -> 413,
unsupported content type -> 415, no model loaded -> 503.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from enum import Enum
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from include.ml_pipeline.serving.api.oip import OpenInference
from include.ml_pipeline.serving.api.openapi import DESCRIPTION, document
from include.ml_pipeline.serving.api.routes import API_VERSION, Routes
from include.ml_pipeline.serving.api.settings import ServingSettings, get_serving_settings
from include.ml_pipeline.serving.api.state import ServiceState

log = logging.getLogger("ml_pipeline.serving")

SCORING: list[str | Enum] = ["mlflow scoring protocol"]
MODEL: list[str | Enum] = ["model"]
OPERATIONS: list[str | Enum] = ["operations"]
MODELS: list[str | Enum] = ["several models"]
OIP: list[str | Enum] = ["open inference protocol (v2)"]
RELEASE: list[str | Enum] = ["safe release"]


class OneWrite:
    """A transport that keeps what is written until `flush`, then writes it as one
    piece; any other use of the transport (`close`, `is_closing`, ...) flushes first.

    uvicorn's httptools protocol writes an answer's head and its body separately, and
    uvloop sends each write at once: two `write` calls, two TCP segments (with
    `TCP_NODELAY`), and a client that wakes twice per answer. One write halves that.
    Measured (issue 22, 1-row requests, wrk, paired against the two writes, 4 runs of
    5 s alternating, load ~5.5-6 on 2 cores): requests/s 1.07x at 1 connection, 1.13x
    at 8, 1.14x at 64; the slowest request at 64 connections 125 against 209 ms."""

    __slots__ = ("cycle", "parts", "transport")

    def __init__(self, transport: Any, cycle: Any = None):
        self.transport = transport
        self.cycle = cycle
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.parts.append(bytes(data))

    def flush(self) -> None:
        parts = self.parts
        if parts:
            self.parts = []
            self.transport.write(parts[0] if len(parts) == 1 else b"".join(parts))

    def restore(self) -> None:
        """Give the cycle its own transport back, then write what was kept."""
        if self.cycle is not None:
            self.cycle.transport = self.transport
        self.flush()

    def __getattr__(self, name: str) -> Any:
        self.flush()
        return getattr(self.transport, name)


def one_write(send: Send) -> OneWrite | None:
    """Lend uvicorn's request-response cycle a `OneWrite` around its transport when `send`
    is that cycle's `send` (uvicorn's httptools or h11 protocol; `restore()` after the
    answer), else None (other servers, test clients: nothing changes)."""
    cycle: Any = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if cycle is None or transport is None or not callable(getattr(transport, "write", None)):
        return None
    joined = OneWrite(transport, cycle)
    cycle.transport = joined
    return joined


class ModelAPI(FastAPI):
    """FastAPI with `POST /invocations` (the hot path) handed straight to its handler.

    FastAPI's middleware, routing and endpoint wrapper cost about 57 us of CPU per
    request here (in process, 1-row request: 0.227 ms through the app, 0.170 ms to the
    handler directly), a fifth of a 1-row request's CPU: what decides requests/s over 8
    connections on 2 cores. The handler takes the request as it does under FastAPI and
    answers the same response; an unexpected error gets the app's 500 answer
    (`Routes.unexpected`). Every other method and path goes through FastAPI."""

    invocations: Any = None  # Routes.invocations, set by create_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        # requests in the app: the shadow runs its jobs between them (experiment.py)
        shadow = self.state.service.shadow
        shadow.enter()
        try:
            if (
                scope["path"] == "/invocations"
                and scope["method"] == "POST"
                and self.invocations is not None
            ):
                scope["app"] = self
                request = Request(scope, receive)
                try:
                    response = await self.invocations(request)
                except Exception as exc:
                    response = await self.state.routes.unexpected(request, exc)
                joined = one_write(send)
                try:
                    await response(scope, receive, send)
                finally:
                    if joined is not None:
                        joined.restore()
                return
            await super().__call__(scope, receive, send)
        finally:
            shadow.leave()


def create_app(
    settings: ServingSettings | None = None,
    *,
    loader=None,
    load_on_startup: bool = True,
    pending=None,
    model_loader=None,
) -> FastAPI:
    """Build the app. `loader` (tests) replaces the MLflow loader of the default model: a
    callable returning a `ServedModel`; `model_loader(name)` that of any model. With
    `load_on_startup` the first loads run in the background, so the port answers
    immediately (`/ping` is 503 until the default model is in). `pending` is a
    `loading.load.PendingLoad` already running; its model's first load waits for it."""
    settings = settings or get_serving_settings()
    state = ServiceState(settings, loader, pending, model_loader)
    routes = Routes(state)
    v2 = OpenInference(routes)
    app = ModelAPI(
        title="Model API",
        version=API_VERSION,
        lifespan=_lifespan(state, load_on_startup),
        description=DESCRIPTION,
    )
    app.state.service = state
    app.state.routes = routes  # its micro-batcher's counters (tests, profiling)
    app.invocations = routes.invocations  # the hot path, past FastAPI's routing (ModelAPI)

    # Starlette types a handler as taking any Exception; each of ours takes the one class
    # it is registered for, which its Callable[[Request, Exception], ...] cannot express
    app.add_exception_handler(StarletteHTTPException, routes.http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, routes.validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, routes.unexpected)

    get, post, put, delete = "GET", "POST", "PUT", "DELETE"
    endpoints: list[tuple[str, str, Callable[..., Any], list[str | Enum], str]] = [
        # (method, path, handler, tags, summary)
        (post, "/invocations", routes.invocations, SCORING, "MLflow scoring protocol: labels"),
        (get, "/health", routes.ping, SCORING, "same as /ping"),
        (get, "/ping", routes.ping, SCORING, "200 when a model is loaded"),
        (get, "/version", routes.version, SCORING, "served model version (JSON, unlike MLflow)"),
        (post, "/predict", routes.predict_endpoint, MODEL, "Typed prediction with probabilities"),
        (get, "/ready", routes.ready, OPERATIONS, "200 once a model is loaded"),
        (get, "/model", routes.model_info, OPERATIONS, "the served model"),
        (get, "/metrics", routes.metrics, OPERATIONS, "Prometheus metrics"),
        (post, "/admin/reload", routes.admin_reload, OPERATIONS, "load what the alias is now"),
        (post, "/admin/unload", routes.admin_unload, OPERATIONS, "stop serving (until reload)"),
        (get, "/models", routes.list_models, MODELS, "served models"),
        (get, "/models/{name}", routes.named_model_info, MODELS, "the model (as GET /model)"),
        (post, "/models/{name}/invocations", routes.model_invocations, MODELS, "MLflow protocol"),
        (post, "/models/{name}/predict", routes.model_predict, MODELS, "typed prediction"),
        (get, "/models/{name}/version", routes.model_version, MODELS, "its served version"),
        (get, "/models/{name}/ready", routes.model_ready, MODELS, "200 once it is loaded"),
        (post, "/admin/models/{name}/load", routes.admin_model_reload, OPERATIONS, "add, load"),
        (post, "/admin/models/{name}/reload", routes.admin_model_reload, OPERATIONS, "reload"),
        (post, "/admin/models/{name}/unload", routes.admin_model_unload, OPERATIONS, "unload"),
        (get, "/models/{name}/experiment", routes.experiment, RELEASE, "the experiment, live"),
        (put, "/admin/models/{name}/experiment", routes.set_experiment, RELEASE, "shadow/canary"),
        (delete, "/admin/models/{name}/experiment", routes.stop_experiment, RELEASE, "kill switch"),
        (post, "/feedback", routes.feedback, RELEASE, "true labels of the default model"),
        (post, "/models/{name}/feedback", routes.model_feedback, RELEASE, "true labels"),
        (get, "/models/{name}/feedback", routes.feedback_summary, RELEASE, "labels joined"),
        (get, "/v2", v2.server_metadata, OIP, "server metadata"),
        (get, "/v2/health/live", v2.live, OIP, "the server is up"),
        (get, "/v2/health/ready", v2.server_ready, OIP, "every served model is loaded"),
        (get, "/v2/models/{name}", v2.model_metadata, OIP, "inputs (contract types), outputs"),
        (get, "/v2/models/{name}/ready", v2.model_ready, OIP, "the model is loaded"),
        (post, "/v2/models/{name}/infer", v2.infer, OIP, "named input tensors in, outputs out"),
    ]
    for method, path, handler, tags, summary in endpoints:
        app.add_api_route(path, handler, methods=[method], tags=tags, summary=summary)

    def openapi() -> dict:
        """The schema with every status and content type, and the request bodies of the
        models served now (rebuilt on every call: it follows reloads)."""
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        served = {name: slot.model for name, slot in state.slots.items()}
        return document(
            schema, state.model, settings.max_rows, settings.strict_columns, models=served
        )

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _lifespan(state: ServiceState, load_on_startup: bool):
    """Start the inference log; with `load_on_startup`, load every served model in the
    background; on shutdown stop that load and flush the log."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.logger.start()
        state.shadow.start()
        task = None
        if load_on_startup:
            task = asyncio.create_task(state.load_all())
        try:
            yield
        finally:
            if task is not None and not task.done():
                task.cancel()
            await state.shadow.stop()
            state.close_models()
            await asyncio.to_thread(state.logger.close, 5.0)

    return lifespan
