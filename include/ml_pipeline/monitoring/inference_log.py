"""Reading the inference log the model API writes (`serving/api/inference_log.py`; the
objects and their lines are described in `include/ml_pipeline/inference_records.py`).

Reading: `read_inference_log(location, since=None, model_version=None, limit=None,
model_name=None, kinds=("live",))` returns one DataFrame row per record: by default only
live traffic, which is what monitoring compares with the training data.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from include.ml_pipeline.inference_records import (
    features_of,
    log_objects,
    read_lines,
)
from include.ml_pipeline.names import LIVE_TRAFFIC

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

log = logging.getLogger("ml_pipeline.inference_log")

BASE_COLUMNS = ["prediction", "model_version", "traffic_kind", "latency_ms", "timestamp"]


def read_inference_log(
    location: str | os.PathLike,
    since: datetime | None = None,
    model_version: str | None = None,
    limit: int | None = None,
    *,
    model_name: str | None = None,
    kinds: tuple[str, ...] | None = (LIVE_TRAFFIC,),
) -> pd.DataFrame:
    """Read the inference log under `location` (a path or URI) into one row per record.

    Columns: the feature columns, `prediction`, one `proba_<class>` per class, then
    `model_version` (str), `traffic_kind` (str), `latency_ms` (float, the whole request's
    latency) and `timestamp` (pandas datetime64, UTC). Rows are in chronological order.

    `since` keeps records at or after that time (a naive datetime is taken as UTC);
    `model_version` keeps one version, `model_name` one model (any when None); `kinds`
    keeps those traffic kinds (default: live traffic only; None: every kind); `limit`
    keeps the *most recent* `limit` records after filtering. A missing or empty location
    gives an empty frame with the base columns. Truncated or corrupt lines are skipped.
    """
    import orjson
    import pandas as pd

    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    since_ts = pd.Timestamp(since) if since is not None else None
    wanted_kinds = None if kinds is None else {str(k) for k in kinds}
    objects = log_objects(location, model_name=model_name, model_version=model_version, since=since)
    rows: list[dict[str, Any]] = []
    feature_order: dict[str, None] = {}
    class_order: dict[str, None] = {}
    for raw in read_lines(objects):
        if not raw.strip():
            continue
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(line, dict):
            continue
        if line.get("served") is False:  # a release experiment's off-path answer: the
            continue  # request's rows are in the line of the answer the client got
        version = str(line.get("model_version"))
        if model_version is not None and version != str(model_version):
            continue
        if model_name is not None and line.get("model_name", model_name) != model_name:
            continue
        kind = str(line.get("traffic") or LIVE_TRAFFIC)
        if wanted_kinds is not None and kind not in wanted_kinds:
            continue
        stamp = line.get("timestamp")
        if since_ts is not None:
            try:
                if pd.Timestamp(stamp) < since_ts:
                    continue
            except (TypeError, ValueError):
                continue
        features = features_of(line)
        labels = line.get("predictions") or []
        classes = line.get("classes") or []
        proba = line.get("probabilities")  # rows (lines written before columns)
        columns = line.get("probability_columns")
        if columns is not None:
            proba = list(zip(*columns, strict=True))
        for name in features:
            feature_order.setdefault(name, None)
        for name in classes:
            class_order.setdefault(name, None)
        latency = line.get("latency_ms")
        for i, label in enumerate(labels):
            row: dict[str, Any] = {name: values[i] for name, values in features.items()}
            row["prediction"] = label
            if proba is not None:
                for name, value in zip(classes, proba[i], strict=False):
                    row[f"proba_{name}"] = value
            row["model_version"] = version
            row["traffic_kind"] = kind
            row["latency_ms"] = latency
            row["timestamp"] = stamp
            rows.append(row)
    proba_columns = [f"proba_{c}" for c in class_order]
    columns = [*feature_order, "prediction", *proba_columns, *BASE_COLUMNS[1:]]
    frame = pd.DataFrame(rows, columns=columns)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    frame["latency_ms"] = frame["latency_ms"].astype("float64")
    frame["model_version"] = frame["model_version"].astype(object)
    if len(frame):
        frame = frame.sort_values("timestamp", kind="stable").reset_index(drop=True)
    if limit is not None:
        frame = frame.tail(max(0, int(limit))).reset_index(drop=True)
    return frame
