"""The inference log's record format, shared by its writer (the model API,
`serving/api/inference_log.py`) and its reader (monitoring, `monitoring/inference_log.py`):
where the objects are, how they are named, and what one line holds.

Where: under `Settings.inference_log_uri` (env `ML_PIPELINE_INFERENCE_LOG`, default
`<storage root>/inference_log`), one object per flush, model and version::

    <uri>/<model>/v<version>/<yyyymmdd>/<stamp>-<host>-<pid>-<seq>.jsonl.gz

`<stamp>` (UTC, `20261201T142719123456Z`) and `<yyyymmdd>` are those of the newest record
in the object, so names sort by time and a reader skips an object older than its window
without fetching it; host, pid and the process's sequence number keep API processes
(and replicas on other machines) from ever writing the same name. An object is written
whole (a local one through a temporary name), so a reader never sees half of one.

One line per logged request, columnar (cheap to write for big batches)::

    {"timestamp": "2024-05-01T12:00:00.123456+00:00", "model_name": "churn",
     "model_version": "3", "traffic": "live", "latency_ms": 0.41, "rows": 2,
     "features": {"age": [41.0, null], "region": ["north", "east"], ...},
     "predictions": ["yes", "no"], "classes": ["no", "yes"],
     "probability_columns": [[0.31, 0.8], [0.69, 0.2]]}

`traffic` is the request's kind (`X-Traffic-Kind: smoke` or `benchmark`, else `live`).
`probability_columns` has one list per class, in `classes` order (null for a model
without `predict_proba`); missing numeric values are null. When the request was a
one-line JSON `dataframe_split` body, `features` is replaced by `"request": <that body,
embedded as received>` (it was validated against the model's columns and types before
the prediction; re-encoding 1,000 rows of floats cost ~0.2 ms per request). The reader
also accepts lines of the earlier forms (`probabilities` as rows, no `traffic`: live) and
the earlier flat files `inference-<stamp>-<pid>-<seq>.jsonl` in the log folder.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from include.ml_pipeline import storage

log = logging.getLogger("ml_pipeline.inference_log")

OBJECT_SUFFIX = ".jsonl.gz"
LEGACY_PREFIX, LEGACY_SUFFIX = "inference-", ".jsonl"  # flat files of the earlier writer
STAMP_FORMAT = "%Y%m%dT%H%M%S%fZ"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: Any) -> str:
    """`text` as one path segment of an object name (anything else becomes `_`)."""
    return _UNSAFE.sub("_", str(text)) or "_"


# --------------------------------------------------------------------------- the objects


def object_uri(base: str, model_name: str, version: str, newest: float, host: str, seq: int) -> str:
    """The name of an object of `model_name` v`version` whose newest record is at `newest`
    (a `time.time()`): the `seq`-th object this process (on `host`) writes under `base`."""
    when = datetime.fromtimestamp(newest, UTC)
    name = f"{when.strftime(STAMP_FORMAT)}-{host}-{os.getpid()}-{seq:06d}"
    return storage.join(
        base,
        safe_name(model_name),
        f"v{safe_name(version)}",
        when.strftime("%Y%m%d"),
        name + OBJECT_SUFFIX,
    )


@dataclass(frozen=True)
class LogObject:
    """One object of the log, from its name: `model`/`version` are None for a flat file
    of the earlier writer, `newest` the UTC time of its newest record (None: unknown)."""

    uri: str
    model: str | None
    version: str | None
    newest: datetime | None


def sort_key(uri: str) -> str:
    """Oldest first: object names start with a UTC stamp (also the earlier flat files)."""
    return uri.rsplit("/", 1)[-1].removeprefix(LEGACY_PREFIX)


def is_log_object(uri: str) -> bool:
    name = uri.rsplit("/", 1)[-1]
    return name.endswith(OBJECT_SUFFIX) or (
        name.startswith(LEGACY_PREFIX) and name.endswith(LEGACY_SUFFIX)
    )


def parse_object_uri(base: str, uri: str) -> LogObject | None:
    parts = uri[len(base) :].strip("/").split("/")
    name = parts[-1]
    if len(parts) == 1 and name.startswith(LEGACY_PREFIX) and name.endswith(LEGACY_SUFFIX):
        return LogObject(uri, None, None, None)
    if len(parts) != 4 or not parts[1].startswith("v") or not name.endswith(OBJECT_SUFFIX):
        return None
    try:
        newest = datetime.strptime(name.split("-", 1)[0], STAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        newest = None
    return LogObject(uri, parts[0], parts[1][1:], newest)


# --------------------------------------------------------------------------- the lines


def encode_line(
    batch: Any,
    labels: list[Any],
    proba: Any,
    classes: list[Any],
    model_name: str,
    version: Any,
    traffic: str,
    latency_ms: float,
    stamp: float,
    extra: dict[str, Any] | None = None,
    labels_json: bytes | None = None,
) -> bytes:
    """One request as one JSON line (see the module docstring), newline included.
    `extra`: keys added to the line (a release experiment's `request_id`, `arm`, ...:
    `release/records.py`); `batch` None: an answer that failed before its input was read;
    `labels_json`: `labels` already encoded as a JSON array by orjson (the answer's
    bytes: embedded as they are, the same line)."""
    import numpy as np
    import orjson

    line: dict[str, Any] = {
        "timestamp": datetime.fromtimestamp(stamp, UTC).isoformat(),
        "model_name": model_name,
        "model_version": str(version),
        "traffic": traffic,
        "latency_ms": round(float(latency_ms), 4),
        "rows": len(labels),
    }
    if extra:
        line.update(extra)
    if batch is None:
        pass
    elif batch.raw_split is not None:  # the validated body, embedded without re-encoding
        line["request"] = orjson.Fragment(batch.raw_split)
    else:
        by_column = np.ascontiguousarray(batch.numeric.T)
        features: dict[str, Any] = {
            name: by_column[j] for j, name in enumerate(batch.numeric_columns)
        }
        features.update(zip(batch.categorical_columns, batch.categorical, strict=False))
        line["features"] = features
    line["predictions"] = labels if labels_json is None else orjson.Fragment(labels_json)
    line["classes"] = [str(c) for c in classes]
    # one array per class: orjson writes 1-D arrays about twice as fast as a 2-D one
    line["probability_columns"] = None if proba is None else list(np.ascontiguousarray(proba.T))
    return orjson.dumps(line, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE)


def features_of(line: dict[str, Any]) -> dict[str, list[Any]]:
    """The logged features, by column, from either form of line."""
    request = line.get("request")
    if isinstance(request, dict) and isinstance(request.get("dataframe_split"), dict):
        split = request["dataframe_split"]
        by_column = list(zip(*split.get("data") or [], strict=True))
        return {
            str(c): list(by_column[i]) if by_column else []
            for i, c in enumerate(split.get("columns") or [])
        }
    return line.get("features") or {}


def log_objects(
    location: str | os.PathLike,
    *,
    model_name: str | None = None,
    model_version: str | None = None,
    since: datetime | None = None,
) -> list[LogObject]:
    """The objects under `location` that can hold records of `model_name` (any when
    None) / `model_version` at or after `since`, oldest first; the earlier flat files
    always (their names tell neither). A missing location has none."""
    base = storage.as_uri(location).rstrip("/")
    prefix = base
    if model_name is not None:
        prefix = storage.join(base, safe_name(model_name))
        if model_version is not None:
            prefix = storage.join(prefix, f"v{safe_name(model_version)}")
    found = list(storage.list_sizes(prefix))
    local = storage.local_path(base)
    if prefix != base and local is not None and local.is_dir():
        # the earlier writer's flat files (local only) sit at the top
        found += [storage.join(base, p.name) for p in local.glob(f"{LEGACY_PREFIX}*")]
    objects = []
    for uri in sorted(found, key=sort_key):
        item = parse_object_uri(base, uri)
        if item is None or item.model is None:
            if item is not None:
                objects.append(item)
            continue
        if model_name is not None and item.model != safe_name(model_name):
            continue
        if model_version is not None and item.version != safe_name(model_version):
            continue
        if since is not None and item.newest is not None and item.newest < since:
            continue
        objects.append(item)
    return objects


def read_lines(objects: list[LogObject]) -> list[bytes]:
    """The lines of every object, in the objects' order; an unreadable object (vanished,
    being pruned, truncated) is skipped with a warning."""
    contents = storage.read_many([item.uri for item in objects]) if objects else {}
    lines: list[bytes] = []
    for item in objects:
        data = contents.get(item.uri)
        if data is None:
            continue
        if item.uri.endswith(".gz"):
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError, zlib.error) as exc:
                log.warning("inference log: skipping unreadable %s: %r", item.uri, exc)
                continue
        lines.extend(data.splitlines())
    return lines
