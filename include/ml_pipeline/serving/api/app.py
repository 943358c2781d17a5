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
from contextlib import asynccontextmanager
from enum import Enum

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

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

    route("/models", routes.list_models, methods=["GET"], tags=MODELS, summary="served models")
    route(
        "/models/{name}",
        routes.named_model_info,
        methods=["GET"],
        tags=MODELS,
        summary="the model `name` (as GET /model)",
    )
    route(
        "/models/{name}/invocations",
        routes.model_invocations,
        methods=["POST"],
        tags=MODELS,
        summary="MLflow scoring protocol for the model `name`",
    )
    route(
        "/models/{name}/predict",
        routes.model_predict,
        methods=["POST"],
        tags=MODELS,
        summary="typed prediction with probabilities, model `name`",
    )
    route(
        "/models/{name}/version",
        routes.model_version,
        methods=["GET"],
        tags=MODELS,
        summary="served version of the model `name`",
    )
    route(
        "/models/{name}/ready",
        routes.model_ready,
        methods=["GET"],
        tags=MODELS,
        summary="200 once the model `name` is loaded",
    )
    for action in ("load", "reload"):
        route(
            f"/admin/models/{{name}}/{action}",
            routes.admin_model_reload,
            methods=["POST"],
            tags=OPERATIONS,
            summary="load what the alias of `name` points to now (adding the model)",
        )
    route(
        "/admin/models/{name}/unload",
        routes.admin_model_unload,
        methods=["POST"],
        tags=OPERATIONS,
        summary="stop serving the model `name` (the others are untouched)",
    )
    route("/v2", v2.server_metadata, methods=["GET"], tags=OIP, summary="server metadata")
    route("/v2/health/live", v2.live, methods=["GET"], tags=OIP, summary="the server is up")
    route(
        "/v2/health/ready",
        v2.server_ready,
        methods=["GET"],
        tags=OIP,
        summary="every served model is loaded",
    )
    route(
        "/v2/models/{name}",
        v2.model_metadata,
        methods=["GET"],
        tags=OIP,
        summary="inputs (datatypes from the contract) and outputs",
    )
    route(
        "/v2/models/{name}/ready",
        v2.model_ready,
        methods=["GET"],
        tags=OIP,
        summary="the model is loaded",
    )
    route(
        "/v2/models/{name}/infer",
        v2.infer,
        methods=["POST"],
        tags=OIP,
        summary="named input tensors in, predictions (and probabilities) out",
    )

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
        task = None
        if load_on_startup:
            task = asyncio.create_task(state.load_all())
        try:
            yield
        finally:
            if task is not None and not task.done():
                task.cancel()
            await asyncio.to_thread(state.logger.close, 5.0)

    return lifespan
