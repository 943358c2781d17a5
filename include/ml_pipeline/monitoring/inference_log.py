"""Inference log: every prediction the model API makes, for monitoring, as batched gzip
JSON Lines objects on the storage root (include/ml_pipeline/storage.py: `file://` or
`s3://...`).

Where: under `Settings.inference_log_uri` (env `ML_PIPELINE_INFERENCE_LOG`, default
`<storage root>/inference_log`), one object per flush, model and version::

    <uri>/<model>/v<version>/<yyyymmdd>/<stamp>-<host>-<pid>-<seq>.jsonl.gz

`<stamp>` (UTC, `20261201T142719123456Z`) and `<yyyymmdd>` are those of the newest record
in the object, so names sort by time and a reader skips an object older than its window
without fetching it; host, pid and the process's sequence number keep API processes
(and replicas on other machines) from ever writing the same name. An object is written
whole (a local one through a temporary name), so a reader never sees half of one.

Writing (`InferenceLogger`, used by the API): `submit(...)` is called once per request
with the validated batch and its predictions. A request is kept with probability
`sample_rate` (0..1, env `MODEL_API_LOG_SAMPLE_RATE`, default 1.0), turned into its JSON
line right there (orjson: a few µs for one row, ~0.1 ms for 1,000) and appended to an
in-memory queue bounded in entries (`queue_size`) and bytes (`max_queue_bytes`): when it
is full the *oldest* entry is dropped and counted (`dropped`, the metric
`model_api_inference_log_dropped_total`). Nothing in a request waits for the store.

One daemon thread wakes every `batch_interval` seconds (0.05), moves the queued lines to
one buffer per (model, version), and writes a buffer as one gzip object once it holds
`max_object_bytes` of lines or is `flush_interval` seconds old (env
`MODEL_API_LOG_FLUSH_SECONDS`; default 2 s on a local root, 30 s on an object store, which
bills and lists per object). A failed write (store slow, down, or refusing) keeps the
compressed object for a retry with backoff (1 s doubling to 60 s); the objects waiting
are bounded by `max_pending_bytes` and the oldest are dropped (and counted) beyond it, so
memory stays bounded however long the store is away. Write errors are logged and
counted, never raised into a request. The writer also keeps the whole log on the store
(every model, every API process) under `max_total_bytes`: it lists the objects at its
first write and every `prune_interval` seconds (and whenever its own writes since then
may have crossed the bound) and deletes the oldest.

Why serialise in the caller: a writer thread that serialised held the GIL for the whole
`orjson.dumps` of a big batch, and the event loop then waited for it (up to the 5 ms
switch interval each time): 1,000-row requests/s fell by ~30% with logging on. The
writer only joins bytes and compresses them (zlib releases the GIL).

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

Reading: `read_inference_log(location, since=None, model_version=None, limit=None,
model_name=None, kinds=("live",))` returns one DataFrame row per record: by default only
live traffic, which is what monitoring compares with the training data.
"""

from __future__ import annotations

import collections
import gzip
import logging
import os
import random
import re
import socket
import threading
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from include.ml_pipeline import storage
from include.ml_pipeline.names import LIVE_TRAFFIC

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

log = logging.getLogger("ml_pipeline.inference_log")

OBJECT_SUFFIX = ".jsonl.gz"
LEGACY_PREFIX, LEGACY_SUFFIX = "inference-", ".jsonl"  # flat files of the earlier writer
STAMP_FORMAT = "%Y%m%dT%H%M%S%fZ"
BASE_COLUMNS = ["prediction", "model_version", "traffic_kind", "latency_ms", "timestamp"]
LOCAL_FLUSH_SECONDS, REMOTE_FLUSH_SECONDS = 2.0, 30.0
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: Any) -> str:
    """`text` as one path segment of an object name (anything else becomes `_`)."""
    return _UNSAFE.sub("_", str(text)) or "_"


def default_flush_interval(location: str | os.PathLike) -> float:
    return REMOTE_FLUSH_SECONDS if storage.is_remote(location) else LOCAL_FLUSH_SECONDS


@dataclass
class _Buffer:
    """The lines of one (model, version) not yet written."""

    opened: float  # time.monotonic() of the first line
    lines: list[bytes] = field(default_factory=list)
    size: int = 0
    entries: int = 0
    records: int = 0
    newest: float = 0.0  # the newest record's time.time()


@dataclass
class _Object:
    """A sealed (compressed) object waiting to be written, or written again."""

    uri: str
    data: bytes
    entries: int
    records: int
    attempts: int = 0
    next_try: float = 0.0


class InferenceLogger:
    """Non-blocking, bounded, sampled writer of inference-log objects (one background
    thread); see the module docstring."""

    def __init__(
        self,
        location: str | os.PathLike,
        *,
        model_name: str = "model",
        sample_rate: float = 1.0,
        max_object_bytes: int = 8 * 1024 * 1024,
        max_total_bytes: int = 512 * 1024 * 1024,
        queue_size: int = 10_000,
        max_queue_bytes: int = 64 * 1024 * 1024,
        max_pending_bytes: int = 64 * 1024 * 1024,
        batch_interval: float = 0.05,
        flush_interval: float | None = None,
        prune_interval: float = 60.0,
        host: str | None = None,
    ):
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be within 0..1; got {sample_rate}")
        self.uri = storage.as_uri(location)
        self.model_name = model_name
        self.sample_rate = float(sample_rate)
        self.batch_interval = max(0.001, float(batch_interval))
        self.flush_interval = max(
            0.0,
            float(default_flush_interval(self.uri) if flush_interval is None else flush_interval),
        )
        self.max_object_bytes = max(1024, int(max_object_bytes))
        self.max_total_bytes = max(self.max_object_bytes, int(max_total_bytes))
        self.max_queue_entries = max(1, int(queue_size))
        self.max_queue_bytes = max(1024, int(max_queue_bytes))
        self.max_pending_bytes = max(self.max_object_bytes, int(max_pending_bytes))
        self.prune_interval = max(0.0, float(prune_interval))
        self.host = safe_name(host or socket.gethostname())
        # producer side (the event loop's thread only)
        self._queue: collections.deque = collections.deque()
        self._queued_in = 0  # bytes appended
        self._queue_dropped_bytes = 0  # bytes the producer dropped from the head
        self.submitted = 0
        self._dropped_queued = 0
        # writer side (the writer thread only)
        self._queued_out = 0  # bytes the writer took
        self._buffers: dict[tuple[str, str], _Buffer] = {}
        self._pending: collections.deque[_Object] = collections.deque()
        self._pending_bytes = 0
        self._dropped_pending = 0
        self.written_records = 0
        self.written_objects = 0
        self.write_errors = 0
        self._seq = 0
        self._store: dict[str, int] | None = None  # object -> size, from the last listing
        self._store_total = 0
        self._listed_at = 0.0
        # control
        self._wake = threading.Event()
        self._stopping = False
        self._flush_wanted = 0
        self._flush_done = 0
        self._thread: threading.Thread | None = None
        self._random = random.random

    # ------------------------------------------------------------------ producer side

    def start(self) -> InferenceLogger:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="inference-log", daemon=True)
            self._thread.start()
        return self

    def submit(
        self,
        batch: Any,
        labels: list[Any],
        proba: Any,
        classes: list[Any],
        model_version: str,
        latency_ms: float,
        timestamp: float | None = None,
        *,
        model_name: str | None = None,
        traffic: str = LIVE_TRAFFIC,
    ) -> bool:
        """Queue one request's predictions; never blocks, never raises.

        `batch` is a `Batch`, `proba` a rows x classes array or None, `traffic` the
        request's kind. Returns False when the entry was sampled out or not serialisable.
        """
        rate = self.sample_rate
        if rate < 1.0 and (rate == 0.0 or self._random() >= rate):
            return False
        stamp = timestamp if timestamp is not None else time.time()
        name = model_name or self.model_name
        try:
            line = _line(
                batch, labels, proba, classes, name, model_version, traffic, latency_ms, stamp
            )
        except Exception as exc:  # e.g. a label orjson cannot encode
            self.write_errors += 1
            log.warning("inference log entry not serialisable: %r", exc)
            return False
        size = len(line)
        queue = self._queue
        while queue and (
            len(queue) >= self.max_queue_entries
            or self._queued_in - self._queued_out - self._queue_dropped_bytes + size
            > self.max_queue_bytes
        ):
            try:
                oldest = queue.popleft()
            except IndexError:  # the writer took it meanwhile
                break
            self._queue_dropped_bytes += len(oldest[0])
            self._dropped_queued += 1
        queue.append((line, len(labels), name, str(model_version), stamp))
        self._queued_in += size
        self.submitted += 1
        return True

    @property
    def dropped(self) -> int:
        """Entries dropped: from the full queue, and pending objects over their bound."""
        return self._dropped_queued + self._dropped_pending

    @property
    def pending_objects(self) -> int:
        """Sealed objects the store has not taken yet."""
        return len(self._pending)

    def stats(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "submitted": self.submitted,
            "dropped": self.dropped,
            "written_records": self.written_records,
            "written_objects": self.written_objects,
            "write_errors": self.write_errors,
            "queued": len(self._queue),
            "pending_objects": self.pending_objects,
        }

    def flush(self, timeout: float = 10.0) -> bool:
        """Write everything submitted so far now (tests, shutdown); True when nothing is
        left unwritten. Without a running writer: True only if nothing is waiting."""
        if self._thread is None:
            return not self._queue and not self._buffers and not self._pending
        self._flush_wanted += 1
        wanted = self._flush_wanted
        self._wake.set()
        deadline = time.monotonic() + timeout
        while self._flush_done < wanted and time.monotonic() < deadline:
            time.sleep(0.005)
        return self._flush_done >= wanted and not self._pending and not self._queue

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (one attempt per object), then stop the thread (bounded by
        `timeout`)."""
        if self._thread is None:
            return
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        self._thread = None

    # ------------------------------------------------------------------ writer side

    def _run(self) -> None:
        while True:
            stopping = self._stopping
            wanted = self._flush_wanted
            force = stopping or wanted > self._flush_done
            try:
                self._cycle(force)
            except Exception as exc:  # never let the thread die
                self.write_errors += 1
                log.warning("inference log writer: %r", exc)
            if force:
                self._flush_done = wanted
            if stopping:
                return
            self._wake.wait(self.batch_interval)
            self._wake.clear()

    def _cycle(self, force: bool) -> None:
        self._drain()
        now = time.monotonic()
        for key, buffer in list(self._buffers.items()):
            if force or now - buffer.opened >= self.flush_interval:
                self._seal(key)
        self._write_pending(force, now)
        self._enforce_total(now)

    def _drain(self) -> None:
        queue, buffers = self._queue, self._buffers
        while True:
            try:
                line, records, name, version, stamp = queue.popleft()
            except IndexError:
                return
            self._queued_out += len(line)
            key = (name, version)
            buffer = buffers.get(key)
            if buffer is None:
                buffer = buffers[key] = _Buffer(opened=time.monotonic())
            buffer.lines.append(line)
            buffer.size += len(line)
            buffer.entries += 1
            buffer.records += records
            buffer.newest = max(buffer.newest, stamp)
            if buffer.size >= self.max_object_bytes:
                self._seal(key)

    def object_uri(self, model_name: str, version: str, newest: float) -> str:
        """The name of the next object of `model_name` v`version` (see the module doc)."""
        self._seq += 1
        when = datetime.fromtimestamp(newest, UTC)
        name = f"{when.strftime(STAMP_FORMAT)}-{self.host}-{os.getpid()}-{self._seq:06d}"
        return storage.join(
            self.uri,
            safe_name(model_name),
            f"v{safe_name(version)}",
            when.strftime("%Y%m%d"),
            name + OBJECT_SUFFIX,
        )

    def _seal(self, key: tuple[str, str]) -> None:
        buffer = self._buffers.pop(key)
        data = gzip.compress(b"".join(buffer.lines), compresslevel=1, mtime=0)
        self._pending.append(
            _Object(
                self.object_uri(key[0], key[1], buffer.newest), data, buffer.entries, buffer.records
            )
        )
        self._pending_bytes += len(data)
        while self._pending_bytes > self.max_pending_bytes and len(self._pending) > 1:
            oldest = self._pending.popleft()
            self._pending_bytes -= len(oldest.data)
            self._dropped_pending += oldest.entries
            log.warning(
                "inference log: dropped %s (%d requests): the store has not taken "
                "the last writes and the pending bound is reached",
                oldest.uri,
                oldest.entries,
            )

    def _write_pending(self, force: bool, now: float) -> None:
        while self._pending:
            item = self._pending[0]
            if not force and item.next_try > now:
                return
            try:
                storage.write_bytes(item.uri, item.data)
            except Exception as exc:
                self.write_errors += 1
                item.attempts += 1
                item.next_try = time.monotonic() + min(60.0, 2.0 ** (item.attempts - 1))
                log.warning(
                    "inference log write to %s failed (attempt %d, %d objects waiting): %r",
                    item.uri,
                    item.attempts,
                    len(self._pending),
                    exc,
                )
                return  # the store is away: the rest waits for the next try
            self._pending.popleft()
            self._pending_bytes -= len(item.data)
            self.written_objects += 1
            self.written_records += item.records
            if self._store is not None:
                self._store[item.uri] = len(item.data)
                self._store_total += len(item.data)

    def _enforce_total(self, now: float) -> None:
        """Delete the oldest objects while the log on the store exceeds `max_total_bytes`:
        the store is listed at the first write and then every `prune_interval` s (other
        processes write there too); in between this process's own writes are added up."""
        if not self.written_objects:
            return
        due = self._store is None or now - self._listed_at >= self.prune_interval
        if not due and self._store_total <= self.max_total_bytes:
            return
        if due:
            try:
                self._store = {
                    uri: size
                    for uri, size in storage.list_sizes(self.uri).items()
                    if _is_log_object(uri)
                }
            except Exception as exc:
                self.write_errors += 1
                self._listed_at = now  # try again at the next interval
                log.warning("inference log: cannot list %s: %r", self.uri, exc)
                return
            self._listed_at = now
            self._store_total = sum(self._store.values())
        store = self._store or {}
        for uri in sorted(store, key=_sort_key):
            if self._store_total <= self.max_total_bytes:
                break
            try:
                storage.remove(uri)
            except Exception as exc:
                log.warning("inference log: cannot delete %s: %r", uri, exc)
                continue
            self._store_total -= store.pop(uri)


def _line(
    batch: Any,
    labels: list[Any],
    proba: Any,
    classes: list[Any],
    model_name: str,
    version: Any,
    traffic: str,
    latency_ms: float,
    stamp: float,
) -> bytes:
    """One request as one JSON line (see the module docstring), newline included."""
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
    if batch.raw_split is not None:  # the validated body, embedded without re-encoding
        line["request"] = orjson.Fragment(batch.raw_split)
    else:
        by_column = np.ascontiguousarray(batch.numeric.T)
        features: dict[str, Any] = {
            name: by_column[j] for j, name in enumerate(batch.numeric_columns)
        }
        features.update(zip(batch.categorical_columns, batch.categorical, strict=False))
        line["features"] = features
    line["predictions"] = labels
    line["classes"] = [str(c) for c in classes]
    # one array per class: orjson writes 1-D arrays about twice as fast as a 2-D one
    line["probability_columns"] = None if proba is None else list(np.ascontiguousarray(proba.T))
    return orjson.dumps(line, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE)


def _features(line: dict[str, Any]) -> dict[str, list[Any]]:
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


# --------------------------------------------------------------------------- the objects


@dataclass(frozen=True)
class LogObject:
    """One object of the log, from its name: `model`/`version` are None for a flat file
    of the earlier writer, `newest` the UTC time of its newest record (None: unknown)."""

    uri: str
    model: str | None
    version: str | None
    newest: datetime | None


def _sort_key(uri: str) -> str:
    """Oldest first: object names start with a UTC stamp (also the earlier flat files)."""
    return uri.rsplit("/", 1)[-1].removeprefix(LEGACY_PREFIX)


def _is_log_object(uri: str) -> bool:
    name = uri.rsplit("/", 1)[-1]
    return name.endswith(OBJECT_SUFFIX) or (
        name.startswith(LEGACY_PREFIX) and name.endswith(LEGACY_SUFFIX)
    )


def _parse(base: str, uri: str) -> LogObject | None:
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
    for uri in sorted(found, key=_sort_key):
        item = _parse(base, uri)
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


def _read_lines(objects: list[LogObject]) -> list[bytes]:
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
    for raw in _read_lines(objects):
        if not raw.strip():
            continue
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(line, dict):
            continue
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
        features = _features(line)
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
