"""The Open Inference Protocol (KServe v2, REST) next to MLflow's scoring protocol: what
KServe, Triton and MLServer clients speak (`tritonclient.http`, MLServer's types).

* `GET /v2` (server metadata), `GET /v2/health/live`, `GET /v2/health/ready` (200 when
  every served model is loaded, else 503);
* `GET /v2/models/{name}` - metadata: one input per feature column with its datatype from
  the version's contract (`FP64` for numbers, `BYTES` for text), the outputs
  (`predictions`; `probabilities` `[rows, classes]` for a classifier);
* `GET /v2/models/{name}/ready`;
* `POST /v2/models/{name}/infer` - named input tensors, either one per column (shape
  `[rows]` or `[rows, 1]`) or a single table input of shape `[rows, columns]` whose columns
  are the model's in metadata order (or named in its `parameters.columns`). The rows go
  through the same parser, checks and predictor as `/invocations`, so the `predictions`
  output equals `/invocations`' answer for the same rows. JSON tensors only: the binary
  tensor extension is refused with a 400 that says so.

Errors are `{"error": "<message>"}` as the protocol says (the status codes are the
scoring protocol's: 400, 404, 413, 422, 503).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from include.ml_pipeline.serving.api.routes import API_VERSION, JSON, Routes, UnknownModel
from include.ml_pipeline.serving.api.state import ModelSlot
from include.ml_pipeline.serving.parsing import RequestError, load_json

ENDPOINT = "v2_infer"
#: The contract's JSON types as the protocol's tensor datatypes.
DATATYPES = {"number": "FP64", "string": "BYTES", "integer": "INT64", "boolean": "BOOL"}
BINARY_HEADER = "inference-header-content-length"
#: The protocol's tensor datatypes (a tensor naming another one is a 400).
KNOWN_DATATYPES = (
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
)  # fmt: skip


def _error(status: int, message: str) -> Response:
    return Response(orjson.dumps({"error": message}), status_code=status, media_type=JSON)


def _refusal(exc: RequestError) -> Response:
    """A refused request in the protocol's shape (the status is the scoring protocol's)."""
    return _error(exc.status, exc.message)


def _flatten(data: Any) -> list[Any]:
    """Row-major flat values of a (possibly nested) JSON tensor."""
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(item, list) for item in data):
        return data
    out: list[Any] = []
    for item in data:
        out.extend(_flatten(item))
    return out


def _shape(tensor: dict[str, Any], where: str) -> list[int]:
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise RequestError(400, "bad_format", f"{where}: 'shape' must be a list of sizes")
    return shape


def _values(tensor: dict[str, Any], where: str, size: int) -> list[Any]:
    if tensor.get("datatype") not in KNOWN_DATATYPES:
        raise RequestError(
            400,
            "bad_format",
            f"{where}: 'datatype' must be one of {', '.join(KNOWN_DATATYPES)}",
        )
    if not isinstance(tensor.get("data"), list):
        raise RequestError(400, "bad_format", f"{where}: 'data' must be a list of values")
    values = _flatten(tensor["data"])
    if len(values) != size:
        raise RequestError(
            400,
            "bad_format",
            f"{where}: 'data' holds {len(values)} values; its shape {tensor['shape']} needs {size}",
        )
    return values


def input_columns(served) -> list[dict[str, Any]]:
    """The model's inputs: name and datatype per feature column (the contract's types)."""
    kinds = {c["name"]: c.get("type") for c in (served.contract or {}).get("columns", [])}
    columns = []
    for name in served.parser.columns:
        kind = kinds.get(name) or ("number" if name in served.parser.numeric else "string")
        columns.append({"name": name, "datatype": DATATYPES.get(kind, "BYTES"), "shape": [-1]})
    return columns


def output_datatype(served) -> str:
    """The datatype of the `predictions` output: the label type (a regressor: FP64)."""
    target = (served.contract or {}).get("target") or {}
    if target.get("type") in DATATYPES:
        return DATATYPES[target["type"]]
    if not served.classes:
        return "FP64"
    first = served.classes[0]
    if isinstance(first, bool):
        return "BOOL"
    if isinstance(first, int):
        return "INT64"
    return "FP64" if isinstance(first, float) else "BYTES"


class OpenInference:
    """The v2 handlers, on the same slots, parser and predictor as `Routes`."""

    def __init__(self, routes: Routes):
        self.routes = routes
        self.state = routes.state

    def _slot(self, name: str) -> ModelSlot | Response:
        slot = self.state.slot(name)
        if slot is None:
            return _error(404, UnknownModel(name, self.state.served_names()).message)
        return slot

    async def server_metadata(self) -> Response:
        return Response(
            orjson.dumps({"name": "model-api", "version": API_VERSION, "extensions": []}),
            media_type=JSON,
        )

    async def live(self) -> Response:
        return Response(orjson.dumps({"live": True}), media_type=JSON)

    async def server_ready(self) -> Response:
        slots = list(self.state.slots.values())
        ready = all(slot.model is not None for slot in slots)
        return Response(
            orjson.dumps({"ready": ready}), status_code=200 if ready else 503, media_type=JSON
        )

    async def model_ready(self, name: str) -> Response:
        slot = self._slot(name)
        if isinstance(slot, Response):
            return slot
        ready = slot.model is not None
        return Response(
            orjson.dumps({"name": name, "ready": ready}),
            status_code=200 if ready else 503,
            media_type=JSON,
        )

    async def model_metadata(self, name: str) -> Response:
        slot = self._slot(name)
        if isinstance(slot, Response):
            return slot
        served = slot.model
        if served is None:
            return _error(503, f"model {name!r} is not loaded: {slot.not_served_reason()}")
        outputs = [{"name": "predictions", "datatype": output_datatype(served), "shape": [-1]}]
        if served.classes:
            outputs.append(
                {"name": "probabilities", "datatype": "FP64", "shape": [-1, len(served.classes)]}
            )
        document = {
            "name": served.name,
            "versions": [str(served.version)],
            "platform": f"mlflow-sklearn ({served.predict_path})",
            "inputs": input_columns(served),
            "outputs": outputs,
            "parameters": {"classes": [str(c) for c in served.classes]},
        }
        return Response(orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY), media_type=JSON)

    def batch(self, served, payload: Any):
        """The request's rows as a `Batch` (the same parser as `/invocations`)."""
        if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
            raise RequestError(400, "bad_format", 'the body must be {"inputs": [<tensor>, ...]}')
        if "id" in payload and not isinstance(payload["id"], str):
            raise RequestError(400, "bad_format", "'id' must be a string")
        if "parameters" in payload and not isinstance(payload["parameters"], dict):
            raise RequestError(400, "bad_format", "'parameters' must be an object")
        inputs = payload["inputs"]
        if not inputs or not all(
            isinstance(t, dict) and isinstance(t.get("name"), str) for t in inputs
        ):
            raise RequestError(
                400, "bad_format", "'inputs' must be a non-empty list of named tensors"
            )
        columns = set(served.parser.columns)
        if len(inputs) == 1 and inputs[0]["name"] not in columns:
            return self._table(served, inputs[0])
        data: dict[str, list[Any]] = {}
        for tensor in inputs:
            where = f"input {tensor['name']!r}"
            shape = _shape(tensor, where)
            if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
                raise RequestError(
                    400,
                    "bad_format",
                    f"{where}: a column tensor has shape [rows] or [rows, 1]; got {shape}",
                )
            if tensor["name"] in data:
                raise RequestError(400, "bad_format", f"{where} is given twice")
            data[tensor["name"]] = _values(tensor, where, shape[0])
        return served.parser.from_columns(data, "inputs")

    def _table(self, served, tensor: dict[str, Any]):
        where = f"input {tensor['name']!r}"
        shape = _shape(tensor, where)
        params = tensor.get("parameters") or {}
        columns = params.get("columns") if isinstance(params, dict) else None
        columns = columns or list(served.parser.columns)
        if len(shape) != 2 or shape[1] != len(columns):
            raise RequestError(
                400,
                "bad_format",
                f"{where} is not a column of the model, so it is read as one table: its "
                f"shape must be [rows, {len(columns)}] (columns "
                f"{', '.join(map(str, columns))}); got {shape}. Or send one input per "
                "column (GET /v2/models/<name> lists them)",
            )
        flat = _values(tensor, where, shape[0] * shape[1])
        width = shape[1]
        rows = [flat[i : i + width] for i in range(0, len(flat), width)]
        return served.parser.from_split(columns, rows)

    async def infer(self, request: Request, name: str) -> Response:
        """`POST /v2/models/{name}/infer`: parsed here, answered by `Routes.answer`, so
        a release experiment routes it as it routes `/invocations` (shadow copy, canary
        split, `X-Request-Id` / `X-Model-Version` / `X-Experiment-Arm`, log lines with
        the request id and the arm)."""
        routes = self.routes
        started = time.perf_counter()
        slot = self.state.slot(name)
        if slot is None:
            exc: RequestError = UnknownModel(name, self.state.served_names())
            routes.fail(ENDPOINT, started, exc)
            return _error(404, exc.message)
        served = slot.model
        if served is None:
            routes.fail(ENDPOINT, started, RequestError(503, "not_ready", ""), name)
            return _error(503, f"model {name!r} is not loaded: {slot.not_served_reason()}")
        try:
            if BINARY_HEADER in request.headers:
                raise RequestError(
                    400,
                    "binary_tensors",
                    "the binary tensor extension is not supported: send JSON tensors "
                    "(tritonclient: binary_data=False on inputs and outputs)",
                )
            payload = load_json(await routes.read_body(request))
            parsed = self.batch(served, payload)  # the inputs are checked first
            wanted = self._wanted(payload, served)
        except RequestError as exc:
            routes.fail(ENDPOINT, started, exc, name)
            return _error(exc.status, exc.message)

        def parse(model):
            return parsed if model is served else self.batch(model, payload)

        def render(model, result) -> bytes:
            return self.render(model, result, wanted, payload.get("id"))

        return await routes.answer(
            slot, served, request, started, ENDPOINT, parse, render, _refusal
        )

    @staticmethod
    def render(served, result, wanted: set[str], request_id: Any) -> bytes:
        """The protocol's response body: the `wanted` outputs of `served`'s `result`."""
        rows = len(result.labels)
        outputs = []
        if "predictions" in wanted:
            outputs.append(
                {
                    "name": "predictions",
                    "datatype": output_datatype(served),
                    "shape": [rows],
                    "data": result.labels,
                }
            )
        if "probabilities" in wanted and result.proba is not None:
            outputs.append(
                {
                    "name": "probabilities",
                    "datatype": "FP64",
                    "shape": [rows, len(served.classes)],
                    "data": result.proba.ravel().tolist(),
                    "parameters": {"classes": [str(c) for c in served.classes]},
                }
            )
        body: dict[str, Any] = {
            "model_name": served.name,
            "model_version": str(served.version),
            "outputs": outputs,
        }
        if isinstance(request_id, str):
            body["id"] = request_id
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)

    @staticmethod
    def _wanted(payload: dict[str, Any], served) -> set[str]:
        """The outputs asked for (all when none is named); an unknown one is a 400."""
        known = {"predictions", "probabilities"} if served.classes else {"predictions"}
        if "outputs" not in payload:
            return known
        asked = payload["outputs"]
        if not isinstance(asked, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in asked
        ):
            raise RequestError(400, "bad_format", "'outputs' must be a list of {\"name\": ...}")
        names = {o["name"] for o in asked} or known  # [] asks for every output
        unknown = names - known
        if unknown:
            raise RequestError(
                400,
                "unknown_output",
                f"unknown outputs: {', '.join(sorted(unknown))}; "
                f"this model has: {', '.join(sorted(known))}",
            )
        return names
