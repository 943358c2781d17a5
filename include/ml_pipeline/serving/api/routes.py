"""The model API's request handlers: one `Routes` object per app, its methods the
endpoints and error handlers, all sharing the app's `ServiceState` (`app.py` registers
them; the endpoints are described there).

Every model endpoint exists twice: bare (`/invocations`, `/predict`, `/version`, `/ready`,
`/model`: the default model) and per model (`/models/{name}/invocations`, ...). Both run
the same handler on the model's `ModelSlot`; an unknown name is a 404 that lists the
served models."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from include.ml_pipeline.names import LIVE_TRAFFIC, TRAFFIC_HEADER, TRAFFIC_KINDS
from include.ml_pipeline.release.records import CANARY, CHALLENGER, CHAMPION
from include.ml_pipeline.serving.api.experiment import (
    ARM_HEADER,
    KEY_HEADER,
    REQUEST_ID_HEADER,
    VERSION_HEADER,
    Experiment,
    choose_arm,
)
from include.ml_pipeline.serving.api.microbatch import MicroBatcher
from include.ml_pipeline.serving.api.state import ModelSlot, ServiceState
from include.ml_pipeline.serving.parsing import RequestError, load_json

log = logging.getLogger("ml_pipeline.serving")
API_VERSION = "1.0"
JSON = "application/json"
IGNORED_COLUMNS_HEADER = "X-Ignored-Columns"
_ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "BAD_REQUEST",
    413: "BAD_REQUEST",
    415: "BAD_REQUEST",
    422: "BAD_REQUEST",
    502: "INTERNAL_ERROR",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    500: "INTERNAL_ERROR",
}
_MARKED = frozenset(TRAFFIC_KINDS) - {LIVE_TRAFFIC}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id(header: str | None) -> str:
    """The client's `X-Request-Id` when it is 1-128 characters of `A-Za-z0-9._:-`,
    else a new one (`new_request_id`)."""
    if header and _REQUEST_ID.match(header):
        return header
    return new_request_id()


_ID_BATCH = 1024
_ids: list[str] = []
_ids_lock = threading.Lock()


def new_request_id() -> str:
    """A new request id: what `uuid.uuid4().hex` gives (32 hex digits, 122 random bits
    from the OS, version 4 and variant bits set), without its `getrandom` call and UUID
    object per request (4 us of the event loop's ~150 us per 1-row request): the OS's
    random bytes are read for 1,024 ids at a time."""
    try:
        return _ids.pop()
    except IndexError:
        pass
    with _ids_lock:
        if not _ids:
            raw = bytearray(os.urandom(16 * _ID_BATCH))
            for i in range(0, len(raw), 16):  # as uuid.UUID(bytes=..., version=4) sets them
                raw[i + 6] = (raw[i + 6] & 0x0F) | 0x40
                raw[i + 8] = (raw[i + 8] & 0x3F) | 0x80
            digits = raw.hex()
            _ids.extend(digits[i : i + 32] for i in range(0, len(digits), 32))
        return _ids.pop()


class JSONAnswer(Response):
    """A 200 JSON answer: `Response(body, media_type=JSON, headers=headers)` with the same
    head (the given headers, then content-length and content-type, as Starlette orders
    them), built without Starlette's general header handling (the hot path's answer)."""

    media_type = JSON

    def __init__(self, body: bytes, headers: dict[str, str]):
        self.status_code = 200
        self.background = None
        self.body = body
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        raw.append((b"content-length", str(len(body)).encode("latin-1")))
        raw.append((b"content-type", b"application/json"))
        self.raw_headers = raw


async def whole_body(request: Request) -> bytes:
    """`await request.body()`: the same bytes, the same `ClientDisconnect`, and the body
    kept on the request as Starlette keeps it, read from the ASGI messages directly
    instead of through Starlette's stream generator (~1.8 us less of a 1-row request's
    event-loop CPU, in process)."""
    if hasattr(request, "_body") or request._stream_consumed:
        return await request.body()
    receive = request.receive
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        elif message["type"] == "http.disconnect":
            request._is_disconnected = True
            raise ClientDisconnect()
    request._stream_consumed = True
    body = request._body = b"".join(chunks)
    return body


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app takes on the request's path (a path served by
    one route per method, e.g. PUT and DELETE of an experiment)."""
    from starlette.routing import Match

    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def column_key(batch, column: str) -> str | None:
    """The first row's value of `column` as text (a canary's split key), None when the
    batch has no such column or the value is missing."""
    if column in batch.numeric_columns:
        value = batch.numeric[0, batch.numeric_columns.index(column)]
        return None if value != value else repr(float(value))
    if column in batch.categorical_columns:
        found = batch.categorical[batch.categorical_columns.index(column)][0]
        return None if found is None else str(found)
    return None


def traffic_kind(header: str | None) -> str:
    """The kind of traffic a request is (header `X-Traffic-Kind`): `smoke` or
    `benchmark` as sent, anything else (or nothing) `live`."""
    if header:
        kind = header.strip().lower()
        if kind in _MARKED:
            return kind
    return LIVE_TRAFFIC


def ignored_header(names: tuple[str, ...], limit: int = 2000) -> str:
    """`X-Ignored-Columns`: the names, each percent-encoded (RFC 3986), comma-separated;
    cut with `,...` past `limit` characters."""
    text = ",".join(quote(name, safe="") for name in names)
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(",", 1)[0] + ",..."


def error_response(status: int, kind: str, message: str) -> Response:
    body = orjson.dumps(
        {"error_code": _ERROR_CODES.get(status, "BAD_REQUEST"), "kind": kind, "message": message}
    )
    return Response(body, status_code=status, media_type=JSON)


def render_invocations(served, result) -> bytes:
    """The body of a `/invocations` answer: `{"predictions": [...]}` as orjson writes it,
    the labels' JSON kept on `result` for the log line (`Prediction.labels_json`)."""
    labels = result.labels_json = orjson.dumps(result.labels)
    return b'{"predictions":' + labels + b"}"


def render_predict(served, result) -> bytes:
    """The body of a `/predict` answer: labels with probabilities, or values."""
    names = [str(c) for c in served.classes]
    if not served.classes:  # a regressor
        predictions = [{"value": value} for value in result.labels]
    elif result.proba is not None:
        rows = result.proba.tolist()
        predictions = [
            {"label": label, "probabilities": dict(zip(names, row, strict=False))}
            for label, row in zip(result.labels, rows, strict=False)
        ]
    else:
        predictions = [{"label": label, "probabilities": None} for label in result.labels]
    return orjson.dumps(
        {"model_name": served.name, "model_version": served.version, "predictions": predictions}
    )


class UnknownModel(RequestError):
    """A request named a model this API does not serve."""

    def __init__(self, name: str, served: list[str]):
        listed = ", ".join(served) or "none"
        super().__init__(
            404,
            "unknown_model",
            f"model {name!r} is not served here; served models: {listed} (GET /models)",
        )


class Routes:
    """The handlers of one app. Each request reads its slot's model once and uses that
    model to the end, so a reload never changes the model under a running request."""

    def __init__(self, state: ServiceState):
        self.state = state
        self.settings = state.settings
        self.max_body = state.settings.max_body_bytes
        self.batcher = MicroBatcher(self.predict, state.settings.micro_batch_rows)

    # ------------------------------------------------------------------ error handlers

    async def http_error(self, request: Request, exc: StarletteHTTPException):
        self.state.metrics.error(f"http_{exc.status_code}")
        response = error_response(exc.status_code, f"http_{exc.status_code}", str(exc.detail))
        response.headers.update(exc.headers or {})  # e.g. Allow on a 405
        if exc.status_code == 405:  # Starlette names the first route's methods only
            response.headers["Allow"] = ", ".join(allowed_methods(request))
        return response

    async def validation_error(self, request: Request, exc: RequestValidationError):
        self.state.metrics.error("validation")
        return error_response(422, "validation", str(exc.errors()))

    async def unexpected(self, request: Request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path)
        self.state.metrics.error("internal")
        return error_response(500, "internal", f"internal error: {exc!r}")

    # ------------------------------------------------------------------ helpers

    async def read_body(self, request: Request) -> bytes:
        max_body = self.max_body
        length = request.headers.get("content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                raise RequestError(400, "bad_header", "Content-Length is not a number") from None
            if declared > max_body:
                raise RequestError(
                    413,
                    "body_too_large",
                    f"the body has {declared} bytes; "
                    f"the limit is {max_body} (MODEL_API_MAX_BODY_BYTES)",
                )
            return await whole_body(request)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                raise RequestError(
                    413,
                    "body_too_large",
                    f"the body exceeds {max_body} bytes (MODEL_API_MAX_BODY_BYTES)",
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def slot(self, name: str) -> ModelSlot:
        """The slot of the model `name`; `UnknownModel` (404) when it is not served."""
        found = self.state.slot(name)
        if found is None:
            raise UnknownModel(name, self.state.served_names())
        return found

    def unknown(self, endpoint: str, started: float, name: str) -> Response:
        return self.fail(endpoint, started, UnknownModel(name, self.state.served_names()))

    def fail(self, endpoint: str, started: float, exc: RequestError, model: str = "") -> Response:
        self.state.metrics.error(exc.kind, model)
        self.state.metrics.observe(endpoint, exc.status, time.perf_counter() - started, model)
        return error_response(exc.status, exc.kind, exc.message)

    def not_ready(self, endpoint: str, started: float, slot: ModelSlot) -> Response:
        return self.fail(
            endpoint,
            started,
            RequestError(503, "not_ready", f"no model is being served: {slot.not_served_reason()}"),
            slot.name,
        )

    def ignored(self, batch, served, endpoint: str) -> dict[str, str] | None:
        """The response header naming the columns the model does not take (ignored, as
        `mlflow models serve` does), counted; in strict mode a 422 naming them."""
        names = batch.ignored_columns
        if not names:
            return None
        if self.settings.strict_columns:
            raise RequestError(
                422,
                "unknown_columns",
                f"unknown columns: {', '.join(names)}. "
                f"The model takes: {', '.join(served.parser.columns)} (this "
                "API runs with MODEL_API_STRICT_COLUMNS=true, which refuses "
                "columns it would otherwise ignore)",
            )
        self.state.metrics.ignored_columns.labels(endpoint, served.name).inc()
        return {IGNORED_COLUMNS_HEADER: ignored_header(names)}

    async def predict_async(self, served, batch):
        """`predict`, off the event loop when the predictor waits on another process (a
        model served by an isolated worker: `loading/worker.py`)."""
        if getattr(served.predictor, "blocking", False):
            return await asyncio.to_thread(self.predict, served, batch)
        return self.predict(served, batch)

    def predict(self, served, batch):
        """The fast path's prediction, else (it raised) the sklearn pipeline's."""
        try:
            return served.predictor.predict(batch)
        except RequestError:
            raise  # the isolated worker could not answer: its own 5xx
        except Exception as exc:
            if served.predictor is served.reference:
                raise RequestError(
                    422, "model_rejected_input", f"the model rejected the input: {exc}"
                ) from exc
            log.warning("fast path failed (%r); using the sklearn pipeline", exc)
            self.state.metrics.error("fast_path_fallback", served.name)
            try:
                return served.reference.predict(batch)
            except Exception as exc2:
                raise RequestError(
                    422, "model_rejected_input", f"the model rejected the input: {exc2}"
                ) from exc2

    def after_predict(self, endpoint, started, served, batch, result, request, extra=None) -> None:
        """Metrics and the log line of an answer (`extra`: its request id, arm, ...;
        default: a new request id, the champion's)."""
        state = self.state
        elapsed = time.perf_counter() - started
        state.metrics.observe(endpoint, 200, elapsed, served.name)
        state.metrics.predicted(result.labels, result.label_index, served.classes, served.name)
        if extra is None:
            extra = {"request_id": request_id(request.headers.get(REQUEST_ID_HEADER))}
            extra["arm"] = CHAMPION
        state.remember(served.name, extra["request_id"], len(result.labels))
        state.logger.submit(
            batch,
            result.labels,
            result.proba,
            served.classes,
            served.version,
            elapsed * 1000.0,
            model_name=served.name,
            traffic=traffic_kind(request.headers.get(TRAFFIC_HEADER)),
            extra=extra,
            labels_json=result.labels_json,
            later=True,  # after this turn's answers went out
        )

    async def answer(
        self,
        slot: ModelSlot,
        served,
        request: Request,
        started: float,
        endpoint: str,
        parse: Callable[[Any], Any],
        render: Callable[[Any, Any], bytes],
        refuse: Callable[[RequestError], Response] | None = None,
    ) -> Response:
        """Parse (`parse(served)` -> Batch), predict, render (`render(served, result)`)
        and log one request on `slot`: the champion alone, or by the model's release
        experiment (`experiment.py`). Every answer carries its request id, the version
        and the arm that answered. `refuse(error)`: the body of a refusal in another
        protocol's shape (default: the scoring protocol's)."""
        rid = request_id(request.headers.get(REQUEST_ID_HEADER))
        experiment = slot.experiment
        try:
            batch = parse(served)
            headers = self.ignored(batch, served, endpoint) or {}
            if experiment is not None and experiment.active:
                routed = await self.route(
                    experiment, served, batch, request, rid, parse, endpoint, render
                )
                if routed is not None:
                    return routed(started, headers)
            if (
                experiment is None
                and not getattr(served.predictor, "blocking", False)  # a worker: off the loop
                and self.batcher.wants(served, batch)
            ):
                result = await self.batcher.predict(served, batch)
            else:
                result = await self.predict_async(served, batch)
        except RequestError as exc:
            refused = self.fail(endpoint, started, exc, slot.name)
            return refused if refuse is None else refuse(exc)
        extra: dict[str, Any] = {"request_id": rid, "arm": CHAMPION}
        if experiment is not None:
            extra["experiment"] = experiment.config.mode
            extra["served"] = True
            experiment.counts.requests += 1
            experiment.counts.served[CHAMPION] += 1
            self.state.metrics.experiment_requests.labels(slot.name, CHAMPION).inc()
        body = render(served, result)
        self.after_predict(endpoint, started, served, batch, result, request, extra)
        if experiment is not None and experiment.active and experiment.config.mode != CANARY:
            challenger = experiment.challenger.model
            self.off_path(experiment, challenger, parse, rid, request, True, batch.rows)
        headers[REQUEST_ID_HEADER] = rid
        headers[VERSION_HEADER] = str(served.version)
        headers[ARM_HEADER] = CHAMPION
        return JSONAnswer(body, headers)

    async def route(
        self, experiment: Experiment, champion, batch, request, rid, parse, endpoint, render
    ):
        """A canary request the challenger answers: a callable building its response
        (the champion's answer is computed off the path); None: the champion answers
        (shadow, the champion's share, or the challenger failed: counted, logged, and
        the client gets the champion's answer)."""
        config = experiment.config
        if config.mode != CANARY:
            return None
        key = request.headers.get(KEY_HEADER)
        if key is None and config.key_column:
            key = column_key(batch, config.key_column)
        if key is None:
            experiment.counts.random_split += 1
        if choose_arm(config.share, key) != CHALLENGER:
            return None
        challenger = experiment.challenger.model
        split = {"split": "key" if key is not None else "random"}
        begun = time.perf_counter()
        try:
            own = parse(challenger)
            result = await self.predict_async(challenger, own)
        except Exception as exc:
            self.challenger_failed(experiment, challenger, rid, request, exc, begun, split)
            return None
        experiment.breaker.record(False)
        experiment.counts.requests += 1
        experiment.counts.served[CHALLENGER] += 1
        name = experiment.challenger.name
        self.state.metrics.experiment_requests.labels(name, CHALLENGER).inc()

        def respond(started: float, headers: dict[str, str]) -> Response:
            body = render(challenger, result)
            extra = {
                "request_id": rid,
                "arm": CHALLENGER,
                "experiment": CANARY,
                "served": True,
                **split,
            }
            self.after_predict(endpoint, started, challenger, own, result, request, extra)
            self.off_path(experiment, champion, parse, rid, request, False, own.rows)
            headers[REQUEST_ID_HEADER] = rid
            headers[VERSION_HEADER] = str(challenger.version)
            headers[ARM_HEADER] = CHALLENGER
            return Response(body, media_type=JSON, headers=headers)

        return respond

    def challenger_failed(self, experiment, challenger, rid, request, error, begun, split=None):
        """A challenger prediction that failed: counted, fed to the breaker, logged."""
        message = error.message if isinstance(error, RequestError) else str(error)
        experiment.counts.challenger_errors += 1
        experiment.breaker.record(True)
        name = experiment.challenger.name
        self.state.metrics.challenger_errors.labels(name).inc()
        self.state.metrics.breaker_open.labels(name).set(1 if experiment.breaker.open else 0)
        self.state.logger.submit(
            None,
            [],
            None,
            challenger.classes,
            challenger.version,
            (time.perf_counter() - begun) * 1000.0,
            model_name=name,
            traffic=traffic_kind(request.headers.get(TRAFFIC_HEADER)),
            extra={
                "request_id": rid,
                "arm": CHALLENGER,
                "experiment": experiment.config.mode,
                "served": False,
                "error": message,
                **(split or {}),
            },
        )

    def off_path(self, experiment, served, parse, rid, request, is_challenger: bool, rows: int):
        """Queue `served`'s prediction of the same request (`rows` rows) after the response
        (shadow: the challenger; canary: the champion of a request the challenger
        answered); its log line has the same request id and `served: false`. A full queue
        drops it, and the queue skips it when it waited past the timeout (both counted:
        not in the comparison)."""
        if served is None:
            return
        traffic = traffic_kind(request.headers.get(TRAFFIC_HEADER))
        arm = CHALLENGER if is_challenger else CHAMPION
        name = experiment.challenger.name
        predict = self.predict

        def job():
            begun = time.perf_counter()
            batch = parse(served)
            return batch, predict(served, batch), begun, time.perf_counter()

        def done(outcome, error) -> None:
            counts = experiment.counts
            counts.off_path += 1
            if error is not None:
                counts.off_path_errors += 1
                counts.timeouts += error.startswith("timeout")
                if is_challenger:
                    self.challenger_failed(
                        experiment, served, rid, request, RuntimeError(error), time.perf_counter()
                    )
                return
            batch, result, begun, ended = outcome
            if is_challenger:
                experiment.breaker.record(False)
            self.state.logger.submit(
                batch,
                result.labels,
                result.proba,
                served.classes,
                served.version,
                (ended - begun) * 1000.0,
                model_name=name,
                traffic=traffic,
                extra={
                    "request_id": rid,
                    "arm": arm,
                    "experiment": experiment.config.mode,
                    "served": False,
                },
            )

        def skipped(waited: bool = True) -> None:
            experiment.counts.dropped += 1
            experiment.counts.skipped += waited
            self.state.metrics.shadow_dropped.labels(name).inc()

        # a model predicting in another process waits: always the runner's thread
        key = (
            None
            if getattr(served.predictor, "blocking", False)
            else (id(served.predictor), rows.bit_length())
        )
        timeout = experiment.config.timeout_ms / 1000.0
        if not self.state.shadow.submit(job, timeout, done, key=key, skipped=skipped):
            skipped(False)

    # ------------------------------------------------------------------ scoring protocol

    async def invocations(self, request: Request) -> Response:
        """`POST /invocations`: the default model."""
        return await self.score(self.state.default, request, time.perf_counter())

    async def model_invocations(self, request: Request, name: str) -> Response:
        """`POST /models/{name}/invocations`: the same protocol, for the model `name`."""
        started = time.perf_counter()
        slot = self.state.slot(name)
        if slot is None:
            return self.unknown("invocations", started, name)
        return await self.score(slot, request, started)

    async def score(self, slot: ModelSlot, request: Request, started: float) -> Response:
        """MLflow's scoring protocol on `slot`'s model."""
        served = slot.model  # this request uses this model to the end
        if served is None:
            return self.not_ready("invocations", started, slot)
        try:
            content_type = request.headers.get("content-type", JSON)
            mime, _, params = content_type.partition(";")
            mime = mime.strip().lower()
            if params and "utf-8" not in params.lower() and "charset" in params.lower():
                raise RequestError(
                    415, "unsupported_charset", "the scoring server only supports UTF-8"
                )
            if mime not in (JSON, "", "text/csv"):
                raise RequestError(
                    415,
                    "unsupported_media_type",
                    f"content type {mime!r} is not supported; use '{JSON}' or 'text/csv'",
                )
            body = await self.read_body(request)
        except RequestError as exc:
            return self.fail("invocations", started, exc, slot.name)
        if mime == "text/csv":

            def parse(model):
                return model.parser.parse_csv_body(body)
        else:

            def parse(model):
                return model.parser.parse_json_body(body)

        return await self.answer(
            slot, served, request, started, "invocations", parse, render_invocations
        )

    async def ping(self) -> Response:
        if self.state.model is None:
            return error_response(503, "not_ready", "no model is being served")
        return Response(b"\n", media_type="text/plain")

    async def version(self) -> Response:
        return self.version_of(self.state.default)

    async def model_version(self, name: str) -> Response:
        slot = self.state.slot(name)
        if slot is None:
            return self.unknown("version", time.perf_counter(), name)
        return self.version_of(slot)

    def version_of(self, slot: ModelSlot) -> Response:
        served = slot.model
        return Response(
            orjson.dumps(
                {
                    "model_name": served.name if served else slot.name,
                    "model_version": served.version if served else None,
                    "alias": slot.alias,
                    "mlflow_version": self.state.mlflow_version,
                    "api_version": API_VERSION,
                }
            ),
            media_type=JSON,
        )

    # ------------------------------------------------------------------ own API

    async def predict_endpoint(self, request: Request) -> Response:
        """`POST /predict`: the default model."""
        return await self.predict_typed(self.state.default, request, time.perf_counter())

    async def model_predict(self, request: Request, name: str) -> Response:
        """`POST /models/{name}/predict`."""
        started = time.perf_counter()
        slot = self.state.slot(name)
        if slot is None:
            return self.unknown("predict", started, name)
        return await self.predict_typed(slot, request, started)

    async def predict_typed(self, slot: ModelSlot, request: Request, started: float) -> Response:
        served = slot.model
        if served is None:
            return self.not_ready("predict", started, slot)
        try:
            payload = load_json(await self.read_body(request))
            if not isinstance(payload, dict) or set(payload) != {"records"}:
                raise RequestError(
                    400, "bad_format", 'the body must be {"records": [{feature: value, ...}]}'
                )
        except RequestError as exc:
            return self.fail("predict", started, exc, slot.name)

        def parse(model):
            return model.parser.from_records(payload["records"], "records", complete=True)

        return await self.answer(slot, served, request, started, "predict", parse, render_predict)

    async def ready(self) -> Response:
        return self.ready_of(self.state.default)

    async def model_ready(self, name: str) -> Response:
        slot = self.state.slot(name)
        if slot is None:
            return self.unknown("ready", time.perf_counter(), name)
        return self.ready_of(slot)

    def ready_of(self, slot: ModelSlot) -> Response:
        served = slot.model
        if served is None:
            reason = slot.last_load_error or ("loading" if slot.loading else "not loaded")
            return error_response(503, "not_ready", f"no model is being served: {reason}")
        return Response(
            orjson.dumps({"ready": True, "model_version": served.version}), media_type=JSON
        )

    async def model_info(self) -> Response:
        return self.info_of(self.state.default)

    async def named_model_info(self, name: str) -> Response:
        """`GET /models/{name}`: what `GET /model` says, for the model `name`."""
        slot = self.state.slot(name)
        if slot is None:
            return self.unknown("model", time.perf_counter(), name)
        return self.info_of(slot)

    def info_of(self, slot: ModelSlot) -> Response:
        served = slot.model
        if served is None:
            return error_response(
                503, "not_ready", f"no model is being served: {slot.not_served_reason()}"
            )
        info = served.info()
        info["inference_log"] = self.state.logger.stats()
        return Response(orjson.dumps(info, option=orjson.OPT_SERIALIZE_NUMPY), media_type=JSON)

    async def list_models(self) -> Response:
        """`GET /models`: every served model, ready or not, and the default one."""
        state = self.state
        return Response(
            orjson.dumps(
                {
                    "default": state.default_name,
                    "models": [slot.status() for slot in state.slots.values()],
                }
            ),
            media_type=JSON,
        )

    async def metrics(self) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(
            generate_latest(self.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
        )

    def refuse_admin(self, request: Request, name: str) -> Response | None:
        """The answer to an admin request without the server's bearer token (403 when
        the server has none: admin calls are disabled), else None."""
        state = self.state
        token = self.settings.admin_token
        if not token:
            state.metrics.reloads.labels(name, "refused").inc()
            return error_response(
                403,
                "reload_disabled",
                "reloads are disabled: MODEL_API_ADMIN_TOKEN is not set on the server",
            )
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            value.strip().encode(), token.encode()
        ):
            state.metrics.reloads.labels(name, "unauthorized").inc()
            return error_response(
                401,
                "unauthorized",
                "a valid 'Authorization: Bearer <MODEL_API_ADMIN_TOKEN>' header is required",
            )
        return None

    async def admin_reload(self, request: Request) -> Response:
        """`POST /admin/reload`: the default model."""
        return await self.reload_named(request, self.state.default_name)

    async def admin_model_reload(self, request: Request, name: str) -> Response:
        """`POST /admin/models/{name}/reload` (and `/load`): load what `name`'s alias
        points to now, adding the model when it is not served yet."""
        return await self.reload_named(request, name)

    async def reload_named(self, request: Request, name: str) -> Response:
        state = self.state
        refused = self.refuse_admin(request, name)
        if refused is not None:
            return refused
        started = time.perf_counter()
        try:
            old, new = await state.reload(name)
        except Exception as exc:
            state.metrics.reloads.labels(name, "failed").inc()
            slot = state.slot(name)
            current = slot.model.version if slot is not None and slot.model else None
            return error_response(
                502,
                "reload_failed",
                f"reload of {name!r} failed, still serving version {current}: {exc}",
            )
        state.metrics.reloads.labels(name, "ok").inc()
        return Response(
            orjson.dumps(
                {
                    "model_name": name,
                    "previous_version": old.version if old else None,
                    "model_version": new.version,
                    "predict_path": new.predict_path,
                    "seconds": round(time.perf_counter() - started, 3),
                }
            ),
            media_type=JSON,
        )

    async def admin_unload(self, request: Request) -> Response:
        """`POST /admin/unload`: the default model."""
        return await self.unload_named(request, self.state.default_name)

    async def admin_model_unload(self, request: Request, name: str) -> Response:
        """`POST /admin/models/{name}/unload`."""
        return await self.unload_named(request, name)

    async def unload_named(self, request: Request, name: str) -> Response:
        """Stop serving the model `name` (the others are untouched): after a failed first
        deployment there is no champion to go back to, and a service must not keep
        answering with the version that failed. `{"if_version": "3"}` unloads only while
        version 3 serves (409 otherwise)."""
        refused = self.refuse_admin(request, name)
        if refused is not None:
            return refused
        slot = self.state.slot(name)
        if slot is None:
            return self.unknown("admin_unload", time.perf_counter(), name)
        body = await request.body()
        try:
            wanted = orjson.loads(body).get("if_version") if body.strip() else None
        except (orjson.JSONDecodeError, AttributeError):
            return error_response(
                400,
                "bad_request",
                'the body must be a JSON object: {"if_version": "<version>"} or empty',
            )
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        reason = f"unloaded by POST /admin/unload at {stamp}"
        old = await self.state.unload(None if wanted is None else str(wanted), reason, name)
        if old is False:
            current = slot.model.version if slot.model else None
            return error_response(
                409,
                "version_mismatch",
                f"version {current} is served, not {wanted}: nothing was unloaded",
            )
        return Response(
            orjson.dumps({"previous_version": old.version if old else None, "model_version": None}),
            media_type=JSON,
        )

    # ------------------------------------------------------------------ safe release

    async def experiment(self, name: str) -> Response:
        """`GET /models/{name}/experiment`: the running experiment, its breaker and
        counts (`{"experiment": null}` without one)."""
        slot = self.state.slot(name)
        if slot is None:
            return self.unknown("experiment", time.perf_counter(), name)
        running = slot.experiment
        return Response(
            orjson.dumps(
                {
                    "model_name": name,
                    "champion_version": slot.model.version if slot.model else None,
                    "experiment": running.status() if running else None,
                    "shadow_queue": {
                        "size": self.state.shadow.size,
                        "dropped": self.state.shadow.dropped,
                        "skipped": self.state.shadow.skipped,
                        "inline": self.state.shadow.inline,
                    },
                }
            ),
            media_type=JSON,
        )

    async def set_experiment(self, request: Request, name: str) -> Response:
        """`PUT /admin/models/{name}/experiment` (token): load the model's `challenger`
        and run a shadow or canary experiment on it (replacing a running one)."""
        from include.ml_pipeline.serving.api.experiment import ExperimentConfig, ExperimentError

        refused = self.refuse_admin(request, name)
        if refused is not None:
            return refused
        slot = self.state.slot(name)
        if slot is None:
            return self.unknown("experiment", time.perf_counter(), name)
        if slot.model is None:
            return error_response(
                409,
                "no_champion",
                f"model {name!r} has no champion served ({slot.not_served_reason()}): "
                "load it before an experiment",
            )
        try:
            config = ExperimentConfig.parse(orjson.loads(await self.read_body(request) or b"{}"))
        except orjson.JSONDecodeError as exc:
            return error_response(400, "bad_request", f"the body is not JSON: {exc}")
        except ExperimentError as exc:
            return error_response(422, "bad_experiment", f"experiment of {name!r}: {exc}")
        try:
            await self.state.start_experiment(name, config)
        except Exception as exc:
            return error_response(
                502,
                "challenger_load_failed",
                f"the challenger of {name!r} did not load ({exc}); nothing changed: the "
                "champion answers every request",
            )
        return await self.experiment(name)

    async def stop_experiment(self, request: Request, name: str) -> Response:
        """`DELETE /admin/models/{name}/experiment` (token): the kill switch, every
        request goes to the champion at once; answers the experiment's last state."""
        refused = self.refuse_admin(request, name)
        if refused is not None:
            return refused
        if self.state.slot(name) is None:
            return self.unknown("experiment", time.perf_counter(), name)
        stopped = self.state.stop_experiment(name)
        return Response(
            orjson.dumps({"model_name": name, "stopped": stopped.status() if stopped else None}),
            media_type=JSON,
        )

    async def feedback(self, request: Request) -> Response:
        """`POST /feedback`: true labels for the default model's answers."""
        return await self.take_feedback(request, self.state.default_name)

    async def model_feedback(self, request: Request, name: str) -> Response:
        """`POST /models/{name}/feedback`: true labels for `name`'s answers."""
        return await self.take_feedback(request, name)

    async def take_feedback(self, request: Request, name: str) -> Response:
        """Labels checked against the served version's contract and joined to the
        answers by request id (`labels.py`); a refusal names the problem and is counted
        (`model_api_feedback{outcome=<problem>}`)."""
        from include.ml_pipeline.release.feedback import FeedbackError
        from include.ml_pipeline.serving.api.labels import label_target

        started = time.perf_counter()
        counter = self.state.metrics.feedback
        slot = self.state.slot(name)
        if slot is None:
            return self.unknown("feedback", started, name)
        served = slot.model
        if served is None:
            return self.not_ready("feedback", started, slot)
        try:
            body = load_json(await self.read_body(request))
        except RequestError as exc:
            counter.labels(name, exc.kind).inc()
            return self.fail("feedback", started, exc, name)
        if not isinstance(body, dict):
            counter.labels(name, "body_shape").inc()
            return self.fail(
                "feedback",
                started,
                RequestError(
                    422,
                    "body_shape",
                    'feedback body: expected {"labels": [{"request_id": ..., "label": ...}]}',
                ),
                name,
            )
        try:
            taken = await self.state.labels.take(name, body, label_target(served))
        except FeedbackError as exc:
            counter.labels(name, exc.problem).inc(exc.count)
            return self.fail("feedback", started, RequestError(exc.status, exc.problem, str(exc)))
        counter.labels(name, "accepted").inc(taken["accepted"])
        counter.labels(name, "correction").inc(len(taken["corrections"]))
        counter.labels(name, "repeat").inc(taken["repeats"])
        self.state.metrics.observe("feedback", 200, time.perf_counter() - started, name)
        return Response(orjson.dumps(taken), media_type=JSON)

    async def feedback_summary(self, name: str) -> Response:
        """`GET /models/{name}/feedback`: the labels under the storage root (label files
        and `POST /feedback`), corrections, and how many join the log by request id; a
        label file that breaks the contract is a 422 naming it."""
        from include.ml_pipeline.release.feedback import FeedbackError
        from include.ml_pipeline.serving.api.labels import label_target

        started = time.perf_counter()
        slot = self.state.slot(name)
        if slot is None:
            return self.unknown("feedback", started, name)
        served = slot.model
        if served is None:
            return self.not_ready("feedback", started, slot)
        try:
            summary = await self.state.labels.summary(name, label_target(served))
        except FeedbackError as exc:
            self.state.metrics.feedback.labels(name, exc.problem).inc(exc.count)
            return self.fail("feedback", started, RequestError(exc.status, exc.problem, str(exc)))
        return Response(orjson.dumps(summary), media_type=JSON)
