"""The model API: a FastAPI app serving `models:/<name>@<alias>` (default `champion`).

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
from contextlib import asynccontextmanager
from enum import Enum

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from include.ml_pipeline.serving.api.openapi import DESCRIPTION, document
from include.ml_pipeline.serving.api.routes import API_VERSION, Routes
from include.ml_pipeline.serving.api.settings import ServingSettings, get_serving_settings
from include.ml_pipeline.serving.api.state import ServiceState

log = logging.getLogger("ml_pipeline.serving")

SCORING: list[str | Enum] = ["mlflow scoring protocol"]
MODEL: list[str | Enum] = ["model"]
OPERATIONS: list[str | Enum] = ["operations"]


def create_app(
    settings: ServingSettings | None = None,
    *,
    loader=None,
    load_on_startup: bool = True,
    pending=None,
) -> FastAPI:
    """Build the app. `loader` (tests) replaces the MLflow loader: a callable returning a
    `ServedModel`. With `load_on_startup` the first load runs in the background, so the
    port answers immediately (`/ping` is 503 until the model is in). `pending` is an
    `loading.load.PendingLoad` already running; the first load waits for it."""
    settings = settings or get_serving_settings()
    state = ServiceState(settings, loader, pending)
    routes = Routes(state)
    app = FastAPI(
        title="Model API",
        version=API_VERSION,
        lifespan=_lifespan(state, load_on_startup),
        description=DESCRIPTION,
    )
    app.state.service = state

    # Starlette types a handler as taking any Exception; each of ours takes the one class
    # it is registered for, which its Callable[[Request, Exception], ...] cannot express
    app.add_exception_handler(StarletteHTTPException, routes.http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, routes.validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, routes.unexpected)

    route = app.add_api_route
    route(
        "/invocations",
        routes.invocations,
        methods=["POST"],
        tags=SCORING,
        summary="MLflow scoring protocol: labels for a batch",
    )
    route("/health", routes.ping, methods=["GET"], tags=SCORING, summary="same as /ping")
    route("/ping", routes.ping, methods=["GET"], tags=SCORING, summary="200 when a model is loaded")
    route(
        "/version",
        routes.version,
        methods=["GET"],
        tags=SCORING,
        summary="served model version (JSON, unlike MLflow's plain text)",
    )
    route(
        "/predict",
        routes.predict_endpoint,
        methods=["POST"],
        tags=MODEL,
        summary="Typed prediction with probabilities",
    )
    route(
        "/ready",
        routes.ready,
        methods=["GET"],
        tags=OPERATIONS,
        summary="200 once a model is loaded",
    )
    route("/model", routes.model_info, methods=["GET"], tags=OPERATIONS, summary="the served model")
    route(
        "/metrics", routes.metrics, methods=["GET"], tags=OPERATIONS, summary="Prometheus metrics"
    )
    route(
        "/admin/reload",
        routes.admin_reload,
        methods=["POST"],
        tags=OPERATIONS,
        summary="load the version the alias points to now and swap it in",
    )
    route(
        "/admin/unload",
        routes.admin_unload,
        methods=["POST"],
        tags=OPERATIONS,
        summary="stop serving (until the next reload)",
    )

    def openapi() -> dict:
        """The schema with every status and content type, and the request bodies of the
        model served now (rebuilt on every call: it follows reloads)."""
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        return document(schema, state.model, settings.max_rows, settings.strict_columns)

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _lifespan(state: ServiceState, load_on_startup: bool):
    """Start the inference log; with `load_on_startup`, load the first model in the
    background; on shutdown stop that load and flush the log."""

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

    return lifespan
