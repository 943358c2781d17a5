"""The model API's OpenAPI document: every status and content type each endpoint returns,
and request schemas generated from the feature spec of the model served now (rebuilt on
every `GET /openapi.json`, so it follows reloads).

What the schemas say, and where they are narrower than what the service accepts:

* a feature record has every feature column: numbers (double) or null for numeric
  columns, strings or null for categorical ones. Other keys are ignored (reported in
  `X-Ignored-Columns`) unless strict mode (`MODEL_API_STRICT_COLUMNS=true`) is on, when
  the schema forbids them as the service refuses them;
* `dataframe_split` is documented with its columns in the spec's order (any order and any
  superset of the columns is accepted, and records lacking a key inside a batch that has
  it elsewhere are read as missing values, as pandas does); a JSON schema cannot say
  "these names in any order", so the documented form is the canonical one;
* `text/csv` is documented by a pattern: the header in the spec's order, then rows;
* the per-model `POST` endpoints (`/models/{name}/invocations`, `/models/{name}/predict`,
  `/v2/models/{name}/infer`) are listed once per served model with that model's bodies
  (`/models/churn/invocations`, ...); the `GET` ones keep `{name}`, an enum of the served
  names; an Open Inference request is documented in its one-row, one-tensor-per-column
  form (any row count, and the single table input, are accepted too).
"""

from __future__ import annotations

import copy
import re
from importlib import resources
from typing import Any
from urllib.parse import quote

#: What each endpoint does (the document's `info.description`), a package data file.
DESCRIPTION = resources.files(__package__).joinpath("openapi.md").read_text(encoding="utf-8")
JSON = "application/json"
TEXT = "text/plain"
ERROR_REF = {"$ref": "#/components/schemas/Error"}
ERROR_CONTENT = {JSON: {"schema": ERROR_REF}}

ERROR_DESCRIPTIONS = {
    400: "malformed body: not JSON, wrong shape, empty batch, repeated columns, bad header",
    401: "missing or wrong bearer token",
    404: "no served model has this name (the message lists the served ones)",
    403: "reloads are disabled: MODEL_API_ADMIN_TOKEN is not set on the server",
    413: "too many rows (MODEL_API_MAX_ROWS) or too big a body (MODEL_API_MAX_BODY_BYTES)",
    415: "unsupported content type or charset (JSON or text/csv, UTF-8)",
    422: "missing columns, wrong value types, non-finite numbers, values the model refuses; "
    "in strict mode also columns the model does not take",
    409: "another version is served than the one named: nothing was unloaded",
    502: "the reload failed; the previous model keeps serving",
    503: "no model is being served yet (loading, or the last load failed)",
}
IGNORED_HEADER_DOC = {
    "description": "columns the request sent that the model does not take, ignored (as "
    "`mlflow models serve` does): percent-encoded names, comma-separated",
    "schema": {"type": "string"},
}
ANSWER_HEADERS = {
    "X-Ignored-Columns": IGNORED_HEADER_DOC,
    "X-Request-Id": {
        "description": "the request's id: the client's X-Request-Id (1-128 of A-Za-z0-9._:-) or "
        "a new one; send it back with the true label (POST /feedback)",
        "schema": {"type": "string"},
    },
    "X-Model-Version": {
        "description": "the model version that answered",
        "schema": {"type": "string"},
    },
    "X-Experiment-Arm": {
        "description": "champion or challenger (a canary experiment routed the request)",
        "schema": {"type": "string", "enum": ["champion", "challenger"]},
    },
}
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error_code", "kind", "message"],
    "properties": {
        "error_code": {"type": "string"},
        "kind": {"type": "string"},
        "message": {"type": "string"},
    },
}


def errors(*codes: int) -> dict[int, dict[str, Any]]:
    """The `responses` entries of these error statuses (JSON `Error` bodies)."""
    return {
        code: {"description": ERROR_DESCRIPTIONS[code], "content": {JSON: {"schema": ERROR_REF}}}
        for code in codes
    }


def ok(
    schema: dict[str, Any],
    description: str,
    media_type: str = JSON,
    headers: dict[str, Any] | None = None,
) -> dict[int, dict[str, Any]]:
    response: dict[str, Any] = {
        "description": description,
        "content": {media_type: {"schema": schema}},
    }
    if headers:
        response["headers"] = headers
    return {200: response}


PREDICTIONS = {
    "type": "object",
    "required": ["predictions"],
    "properties": {"predictions": {"type": "array"}},
}
PREDICT_RESPONSE = {
    "type": "object",
    "required": ["model_name", "model_version", "predictions"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "predictions": {
            "type": "array",
            "items": {
                "anyOf": [
                    {  # a classifier: the label and the class probabilities
                        "type": "object",
                        "required": ["label", "probabilities"],
                        "properties": {
                            "label": {},
                            "probabilities": {
                                "anyOf": [
                                    {
                                        "type": "object",
                                        "additionalProperties": {"type": "number"},
                                    },
                                    {"type": "null"},
                                ]
                            },
                        },
                    },
                    {  # a regressor: the predicted value
                        "type": "object",
                        "required": ["value"],
                        "properties": {"value": {"type": "number"}},
                    },
                ]
            },
        },
    },
}
VERSION = {
    "type": "object",
    "required": ["model_name", "model_version", "alias", "api_version"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": ["string", "null"]},
        "alias": {"type": "string"},
        "mlflow_version": {"type": ["string", "null"]},
        "api_version": {"type": "string"},
    },
}
READY = {
    "type": "object",
    "required": ["ready", "model_version"],
    "properties": {"ready": {"type": "boolean"}, "model_version": {"type": "string"}},
}
MODEL = {
    "type": "object",
    "required": ["name", "version", "alias", "feature_spec", "contract"],
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "string"},
        "alias": {"type": "string"},
        "feature_spec": {"type": "object"},
        "contract": {
            "type": ["object", "null"],
            "description": "the version's input contract: its columns in "
            "order with kind and the categories seen, the "
            "target's label type and set (null when the "
            "registry holds none)",
        },
    },
}
RELOADED = {
    "type": "object",
    "required": ["model_version", "predict_path", "seconds"],
    "properties": {
        "previous_version": {"type": ["string", "null"]},
        "model_version": {"type": "string"},
        "predict_path": {"type": "string"},
        "seconds": {"type": "number"},
    },
}
UNLOADED = {
    "type": "object",
    "required": ["previous_version", "model_version"],
    "properties": {
        "previous_version": {"type": ["string", "null"]},
        "model_version": {"type": "null"},
    },
}
UNLOAD_BODY = {
    "required": False,
    "content": {
        JSON: {
            "schema": {
                "type": "object",
                "properties": {"if_version": {"type": "string"}},
                "description": "unload only while this version serves",
            }
        }
    },
}
TEXT_BODY = {"type": "string"}
MODELS_LIST = {
    "type": "object",
    "required": ["default", "models"],
    "properties": {
        "default": {"type": "string"},
        "models": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "alias", "ready", "model_version"],
                "properties": {
                    "name": {"type": "string"},
                    "alias": {"type": "string"},
                    "ready": {"type": "boolean"},
                    "model_version": {"type": ["string", "null"]},
                    "predict_path": {"type": ["string", "null"]},
                    "reason": {"type": ["string", "null"]},
                },
            },
        },
    },
}
OIP_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
TENSOR = {
    "type": "object",
    "required": ["name", "datatype", "shape", "data"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "data": {"type": "array"},
        "parameters": {"type": "object"},
    },
}
OIP_METADATA = {
    "type": "object",
    "required": ["name", "versions", "platform", "inputs", "outputs"],
    "properties": {
        "name": {"type": "string"},
        "versions": {"type": "array", "items": {"type": "string"}},
        "platform": {"type": "string"},
        "inputs": {"type": "array"},
        "outputs": {"type": "array"},
        "parameters": {"type": "object"},
    },
}
OIP_INFERRED = {
    "type": "object",
    "required": ["model_name", "model_version", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "outputs": {"type": "array", "items": TENSOR},
    },
}


def oip_errors(*codes: int) -> dict[int, dict[str, Any]]:
    """Error statuses of the Open Inference endpoints (`{"error": ...}` bodies)."""
    return {
        code: {"description": ERROR_DESCRIPTIONS[code], "content": {JSON: {"schema": OIP_ERROR}}}
        for code in codes
    }


def _flag(name: str) -> dict[str, Any]:
    return {"type": "object", "required": [name], "properties": {name: {"type": "boolean"}}}


# (path, responses) of every endpoint; the request bodies are added by `document`.
RESPONSES: dict[str, dict[int, dict[str, Any]]] = {
    "/invocations": {
        **ok(
            PREDICTIONS,
            "one label per row, in order (MLflow's answer)",
            headers=ANSWER_HEADERS,
        ),
        **errors(400, 413, 415, 422, 503),
    },
    "/predict": {
        **ok(
            PREDICT_RESPONSE,
            "label and class probabilities per record",
            headers=ANSWER_HEADERS,
        ),
        **errors(400, 413, 422, 503),
    },
    "/ping": {**ok(TEXT_BODY, "a model is loaded (body: a newline)", TEXT), **errors(503)},
    "/health": {**ok(TEXT_BODY, "a model is loaded (body: a newline)", TEXT), **errors(503)},
    "/version": ok(VERSION, "the served model version"),
    "/ready": {**ok(READY, "a model is loaded"), **errors(503)},
    "/model": {
        **ok(MODEL, "the served model: version, run, metrics, feature spec, input contract"),
        **errors(503),
    },
    "/metrics": ok(TEXT_BODY, "Prometheus text exposition format", TEXT),
    "/admin/reload": {**ok(RELOADED, "the new version serves"), **errors(401, 403, 502)},
    "/admin/unload": {
        **ok(UNLOADED, "nothing is served until the next reload"),
        **errors(400, 401, 403, 409),
    },
}
RESPONSES["/models/{name}/invocations"] = {**RESPONSES["/invocations"], **errors(404)}
RESPONSES["/models/{name}/predict"] = {**RESPONSES["/predict"], **errors(404)}
RESPONSES["/models/{name}/version"] = {**RESPONSES["/version"], **errors(404)}
RESPONSES["/models/{name}/ready"] = {**RESPONSES["/ready"], **errors(404)}
RESPONSES["/models/{name}"] = {**RESPONSES["/model"], **errors(404)}
RESPONSES["/models"] = ok(MODELS_LIST, "every served model, loaded or not, and the default")
for _action in ("load", "reload"):
    RESPONSES[f"/admin/models/{{name}}/{_action}"] = RESPONSES["/admin/reload"]
RESPONSES["/admin/models/{name}/unload"] = {**RESPONSES["/admin/unload"], **errors(404)}
_OBJECT = {"type": "object"}
RESPONSES["/models/{name}/experiment"] = {
    **ok(_OBJECT, "the experiment (null: none), its breaker and counts"),
    **errors(404),
}
RESPONSES["/admin/models/{name}/experiment"] = {
    **ok(_OBJECT, "PUT: the experiment now running; DELETE: the one stopped (null: none)"),
    **errors(400, 401, 403, 404),
    409: {"description": "the model has no champion served", "content": ERROR_CONTENT},
    422: {"description": "an experiment field breaks its rule", "content": ERROR_CONTENT},
    502: {"description": "the challenger did not load: nothing changed", "content": ERROR_CONTENT},
}
RESPONSES["/feedback"] = {
    **ok(_OBJECT, "labels taken: how many, the corrections (a second label), repeats"),
    **errors(400, 503),
    404: {"description": "a request id (row) the API never answered", "content": ERROR_CONTENT},
    413: {"description": "too big a body or too many labels", "content": ERROR_CONTENT},
    422: {
        "description": "labels of the wrong type or outside the contract's label set",
        "content": ERROR_CONTENT,
    },
}
RESPONSES["/models/{name}/feedback"] = RESPONSES["/feedback"]  # GET: 200, 404, 422, 503
EXPERIMENT_BODY = {
    "required": True,
    "content": {
        JSON: {
            "schema": {
                "type": "object",
                "required": ["mode"],
                "additionalProperties": False,
                "properties": {
                    "mode": {"type": "string", "enum": ["shadow", "canary"]},
                    "share": {"type": "number", "minimum": 0, "maximum": 1},
                    "key_column": {"type": ["string", "null"], "minLength": 1},
                    "max_error_rate": {"type": "number", "minimum": 0, "maximum": 1},
                    "min_requests": {"type": "integer", "minimum": 1},
                    "window": {"type": "integer", "minimum": 1},
                    "timeout_ms": {"type": "number", "minimum": 1, "maximum": 600000},
                },
            }
        }
    },
}


def feedback_body(served: Any) -> dict[str, Any]:
    """The `POST /feedback` body: labels of `served`'s type (its classes; a number
    for a regressor) for request ids it answered."""
    classes = [c.item() if hasattr(c, "item") else c for c in served.classes or []]
    label: dict[str, Any] = {"enum": classes} if classes else {"type": "number"}
    item = {
        "type": "object",
        "required": ["request_id", "label"],
        "properties": {
            "request_id": {"type": "string", "minLength": 1},
            "label": label,
            "row": {"type": "integer", "minimum": 0},
            "timestamp": {"type": "string"},
        },
    }
    schema = {
        "type": "object",
        "required": ["labels"],
        "properties": {"labels": {"type": "array", "items": item, "maxItems": 10_000}},
    }
    return {"required": True, "content": {JSON: {"schema": schema}}}


RESPONSES["/v2"] = ok({"type": "object"}, "server name, version and extensions")
RESPONSES["/v2/health/live"] = ok(_flag("live"), "the server answers")
RESPONSES["/v2/health/ready"] = {
    **ok(_flag("ready"), "every served model is loaded"),
    503: {
        "description": "a served model is not loaded",
        "content": {JSON: {"schema": _flag("ready")}},
    },
}
RESPONSES["/v2/models/{name}"] = {
    **ok(OIP_METADATA, "the model's input tensors (one per column) and outputs"),
    **oip_errors(404, 503),
}
RESPONSES["/v2/models/{name}/ready"] = {
    **ok(_flag("ready"), "the model is loaded"),
    503: {"description": "the model is not loaded", "content": {JSON: {"schema": _flag("ready")}}},
    **oip_errors(404),
}
RESPONSES["/v2/models/{name}/infer"] = {
    **ok(
        OIP_INFERRED,
        "predictions (and probabilities) as output tensors",
        headers=ANSWER_HEADERS,
    ),
    **oip_errors(400, 404, 413, 422, 503),
}
ADMIN_PATHS = (
    "/admin/models/{name}/experiment",
    "/admin/reload",
    "/admin/unload",
    "/admin/models/{name}/load",
    "/admin/models/{name}/reload",
    "/admin/models/{name}/unload",
)
#: The per-model POST endpoints, listed once per served model (their bodies differ).
PER_MODEL = ("/models/{name}/invocations", "/models/{name}/predict", "/v2/models/{name}/infer")


def _value(kind: str) -> dict[str, Any]:
    if kind == "numeric":
        return {"type": ["number", "null"], "format": "double"}
    return {"type": ["string", "null"]}


def _columns(spec: Any) -> list[tuple[str, str]]:
    return [
        *((c, "numeric") for c in spec.numeric),
        *((c, "categorical") for c in spec.categorical),
    ]


def feature_record(spec: Any, strict: bool) -> dict[str, Any]:
    columns = _columns(spec)
    return {
        "type": "object",
        "required": [c for c, _ in columns],
        "properties": {c: _value(kind) for c, kind in columns},
        "additionalProperties": not strict,
        "description": "one row: every feature column"
        + ("" if strict else "; other keys are ignored (X-Ignored-Columns)"),
    }


def _csv_pattern(spec: Any) -> str:
    number = r"([-+]?([0-9]{1,15}(\.[0-9]{0,12})?|\.[0-9]{1,12})([eE][-+]?[0-9]{1,2})?)?"
    text = r"[^,\"\r\n]*"  # no quoting: a quoted field may hold commas or newlines
    columns = _columns(spec)
    row = ",".join(number if kind == "numeric" else text for _, kind in columns)
    header = ",".join(re.escape(c) for c, _ in columns)
    return f"^{header}(\\r?\\n{row})+(\\r?\\n)?$"


def infer_body(served: Any) -> dict[str, Any]:
    """The `/v2/models/{name}/infer` body of `served`, in its one-row form."""
    from include.ml_pipeline.serving.api.oip import KNOWN_DATATYPES, input_columns

    tensors = [
        {
            "type": "object",
            "required": ["name", "datatype", "shape", "data"],
            "properties": {
                "name": {"const": column["name"]},
                "datatype": {"type": "string", "enum": list(KNOWN_DATATYPES)},
                "shape": {"const": [1]},
                "data": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 1,
                    "items": _value("numeric" if column["datatype"] == "FP64" else "text"),
                },
            },
        }
        for column in input_columns(served)
    ]
    outputs = ["predictions", "probabilities"] if served.classes else ["predictions"]
    schema = {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "inputs": {
                "type": "array",
                "minItems": len(tensors),
                "maxItems": len(tensors),
                "prefixItems": tensors,
                "items": False,
            },
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"enum": outputs}},
                },
            },
            "parameters": {"type": "object"},
        },
    }
    return {"required": True, "content": {JSON: {"schema": schema}}}


def request_bodies(
    spec: Any, max_rows: int, strict: bool, *, inline: bool = False
) -> dict[str, dict[str, Any]]:
    """The request bodies of `/invocations` and `/predict` for the served feature spec
    (`inline`: the record schema in place, not a reference to the default model's)."""
    record = (
        feature_record(spec, strict) if inline else {"$ref": "#/components/schemas/FeatureRecord"}
    )
    records = {"type": "array", "minItems": 1, "maxItems": max_rows, "items": record}
    columns = _columns(spec)
    split = {
        "type": "object",
        "required": ["columns", "data"],
        "additionalProperties": False,
        "properties": {
            "columns": {
                "type": "array",
                "minItems": len(columns),
                "maxItems": len(columns),
                "prefixItems": [{"const": c} for c, _ in columns],
                "items": False,
            },
            "data": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_rows,
                "items": {
                    "type": "array",
                    "minItems": len(columns),
                    "maxItems": len(columns),
                    "prefixItems": [_value(kind) for _, kind in columns],
                    "items": False,
                },
            },
            "index": {"type": "array"},
        },
    }

    def one(key: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": [key],
            "additionalProperties": False,
            "properties": {key: schema, "params": {"type": "object"}},
        }

    invocations = {
        "oneOf": [
            one("dataframe_split", split),
            one("dataframe_records", records),
            one("instances", records),
            one("inputs", records),
        ],
        "description": "MLflow's scoring protocol: exactly one of "
        "dataframe_split, dataframe_records, instances, inputs",
    }
    csv = {
        "type": "string",
        "pattern": _csv_pattern(spec),
        "description": "a header row naming the feature columns, then one line per row",
    }
    return {
        "/invocations": {
            "required": True,
            "content": {JSON: {"schema": invocations}, "text/csv": {"schema": csv}},
        },
        "/predict": {
            "required": True,
            "content": {JSON: {"schema": predict_request(record, max_rows)}},
        },
    }


def predict_request(record: dict[str, Any], max_rows: int) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["records"],
        "additionalProperties": False,
        "properties": {
            "records": {"type": "array", "minItems": 1, "maxItems": max_rows, "items": record}
        },
    }


def _per_model(paths: dict[str, Any], served: dict[str, Any], max_rows: int, strict: bool) -> None:
    """Replace each `PER_MODEL` template by one path per served model, with its bodies;
    give the other `{name}` paths the served names as an enum."""
    loose = {"required": True, "content": {JSON: {"schema": {"type": "object"}}}}
    for template in PER_MODEL:
        methods = paths.pop(template, None)
        if methods is None:
            continue
        for name, model in served.items():
            if model is None:
                bodies = {"/invocations": loose, "/predict": loose}
                infer = loose
            else:
                bodies = request_bodies(model.spec, max_rows, strict, inline=True)
                infer = infer_body(model)
            concrete = copy.deepcopy(methods)
            for operation in concrete.values():
                operation["responses"] = {
                    str(code): dict(doc) for code, doc in RESPONSES[template].items()
                }
                operation.pop("parameters", None)
                operation["operationId"] = f"{operation.get('operationId', template)}_{name}"
                tail = template.rsplit("/", 1)[1]
                operation["requestBody"] = infer if tail == "infer" else bodies[f"/{tail}"]
            paths[template.replace("{name}", quote(name, safe=""))] = concrete
    names = list(served)
    for path, methods in paths.items():
        if "{name}" not in path:
            continue
        for operation in methods.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "name" and parameter.get("in") == "path":
                    parameter["schema"] = {"type": "string", "enum": names}


def document(
    schema: dict[str, Any],
    served: Any,
    max_rows: int,
    strict: bool,
    *,
    models: dict[str, Any] | None = None,
) -> dict:
    """Complete FastAPI's generated `schema` in place: responses, request bodies, the
    error and record components, the bearer scheme of the admin calls. `served`: the
    default model; `models`: every served model by name (None when not loaded)."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    components["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "MODEL_API_ADMIN_TOKEN of the server",
        }
    }
    bodies: dict[str, Any] = {}
    if served is not None:
        schemas["FeatureRecord"] = feature_record(served.spec, strict)
        schemas["PredictRequest"] = predict_request(
            {"$ref": "#/components/schemas/FeatureRecord"}, max_rows
        )
        bodies = request_bodies(served.spec, max_rows, strict)
        bodies["/predict"] = {
            "required": True,
            "content": {JSON: {"schema": {"$ref": "#/components/schemas/PredictRequest"}}},
        }
        bodies["/feedback"] = bodies["/models/{name}/feedback"] = feedback_body(served)
    else:  # no model yet: any body gets 503
        schemas["FeatureRecord"] = {"type": "object", "description": "model not loaded yet"}
        loose = {"required": True, "content": {JSON: {"schema": {"type": "object"}}}}
        bodies = {"/invocations": loose, "/predict": loose}
    for path, methods in schema.get("paths", {}).items():
        for method, operation in methods.items():
            if path in RESPONSES:
                operation["responses"] = {
                    str(code): dict(doc) for code, doc in RESPONSES[path].items()
                }
            if path in bodies and method == "post":
                operation["requestBody"] = bodies[path]
            if path in ("/admin/unload", "/admin/models/{name}/unload"):
                operation["requestBody"] = UNLOAD_BODY
            if path == "/admin/models/{name}/experiment" and method == "put":
                operation["requestBody"] = EXPERIMENT_BODY
            if path in ADMIN_PATHS:
                operation["security"] = [{"bearer": []}]
    _per_model(schema.get("paths", {}), models or {}, max_rows, strict)
    schema.get("components", {}).get("schemas", {}).pop("HTTPValidationError", None)
    schema.get("components", {}).get("schemas", {}).pop("ValidationError", None)
    return schema
