"""The model API's inference log writer: every prediction it makes, for monitoring, as
batched gzip JSON Lines objects on the storage root (`include/ml_pipeline/storage.py`:
`file://` or `s3://...`). Where the objects go, their names and what one line holds are
`include/ml_pipeline/inference_records.py`; monitoring reads them back
(`monitoring/inference_log.py`).

Writing (`InferenceLogger`, used by the API): `submit(...)` is called once per request
with the validated batch and its predictions. A request is kept with probability
`sample_rate` (0..1, env `MODEL_API_LOG_SAMPLE_RATE`, default 1.0), turned into its JSON
line on the event loop (orjson: a few µs for one row, ~0.1 ms for 1,000) and appended to an
in-memory queue bounded in entries (`queue_size`) and bytes (`max_queue_bytes`): when it
is full the *oldest* entry is dropped and counted (`dropped`, the metric
`model_api_inference_log_dropped_total`). Nothing in a request waits for the store. The
API's answers submit with `later=True`: the line is made once the loop has run what it
holds, so the answers of one turn (a micro-batch) go out before any of their lines is
encoded. Measured (issue 22, 8 concurrent 1-row requests a turn in process, the loop
thread's CPU as the clock, 8 alternated rounds, load ~4): the mean time from the turn's
start to an answer 476 -> 425 us (logistic), 610 -> 558 us (XGBoost); the CPU per request
unchanged (ratio 1.008).

One daemon thread wakes every `batch_interval` seconds (0.05), moves the queued lines to
one buffer per (model, version), compressing each into that buffer's gzip stream as it
goes, and writes a buffer as one gzip object once it holds
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
writer only compresses lines (zlib releases the GIL): joining an object's 8 MB of lines
before compressing them held the GIL for that copy, and compressing them at once took the
other core for ~50 ms in one go. Nor one line at a time: each `compress` lets the GIL go
and takes it back, two hand-offs with the event loop per request; the lines of one drain
are joined and compressed as one piece of at most `COMPRESS_PIECE_BYTES` (~256 KB, a copy
of ~20 us). Measured (issue 22, 1-row requests at 8 connections, main / this / this /
main over HTTP, load 0.6-1.2): CPU per request 132-143 -> 118-124 us (logistic), 151-152
-> 125-129 us (XGBoost); requests/s 1.09x and 1.14x.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import random
import socket
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from include.ml_pipeline import storage
from include.ml_pipeline.inference_records import (
    encode_line,
    is_log_object,
    object_uri,
    safe_name,
    sort_key,
)
from include.ml_pipeline.names import LIVE_TRAFFIC

log = logging.getLogger("ml_pipeline.inference_log")

LOCAL_FLUSH_SECONDS, REMOTE_FLUSH_SECONDS = 2.0, 30.0
COMPRESS_PIECE_BYTES = 256 * 1024  # a drain's lines are compressed in pieces of about this


def default_flush_interval(location: str | os.PathLike) -> float:
    return REMOTE_FLUSH_SECONDS if storage.is_remote(location) else LOCAL_FLUSH_SECONDS


def _gzip_stream() -> Any:
    """A gzip stream at level 1 (zlib writes the gzip header and trailer): each line is
    compressed as the writer takes it, with the GIL released (zlib), instead of joining
    an object's megabytes of lines then compressing them at once."""
    return zlib.compressobj(1, zlib.DEFLATED, 31)


@dataclass
class _Buffer:
    """The lines of one (model, version) not yet written, compressed a drain at a time."""

    opened: float  # time.monotonic() of the first line
    stream: Any = field(default_factory=_gzip_stream)
    chunks: list[bytes] = field(default_factory=list)  # the stream's output so far
    lines: list[bytes] = field(default_factory=list)  # taken, not compressed yet
    lines_bytes: int = 0
    size: int = 0  # bytes of lines (uncompressed)
    entries: int = 0
    records: int = 0
    newest: float = 0.0  # the newest record's time.time()

    def compress_lines(self) -> None:
        """Compress the lines held uncompressed, as one piece."""
        if self.lines:
            piece = b"".join(self.lines)  # one line: the line itself, no copy
            self.lines, self.lines_bytes = [], 0
            chunk = self.stream.compress(piece)
            if chunk:
                self.chunks.append(chunk)


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
        # entries whose line the event loop writes after its current turn (`submit(later=)`)
        self._later: list[tuple] = []
        self._later_thread = 0  # the thread of the loop that encodes them
        self._encoding = False  # the loop is moving them to the queue

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
        extra: dict[str, Any] | None = None,
        labels_json: bytes | None = None,
        later: bool = False,
    ) -> bool:
        """Queue one request's predictions; never blocks, never raises.

        `batch` is a `Batch`, `proba` a rows x classes array or None, `traffic` the
        request's kind, `extra` keys added to the line (request id, arm, ...),
        `labels_json` the labels already encoded as a JSON array (the answer's). Returns
        False when the entry was sampled out or not serialisable.

        `later` (on a running event loop): the line is written once the loop has run what
        it holds now (`loop.call_soon`), i.e. after the answers of this turn went out: the
        answers of a micro-batch no longer wait for each other's lines. The same line (its
        time stamp taken now), in the same order; `flush` and `close` wait for them. Such
        an entry counts as kept (True) until its line is written.
        """
        rate = self.sample_rate
        if rate < 1.0 and (rate == 0.0 or self._random() >= rate):
            return False
        stamp = timestamp if timestamp is not None else time.time()
        entry = (batch, labels, proba, classes, model_version, latency_ms, stamp)
        options = (model_name, traffic, extra, labels_json)
        if later:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                if not self._later:
                    self._later_thread = threading.get_ident()
                    loop.call_soon(self._encode_later)
                self._later.append((entry, options))
                return True
        if self._later:  # lines keep the order of their submits
            self._encode_later()
        return self._enqueue(entry, options)

    def _encode_later(self) -> None:
        """Queue the lines of the entries submitted `later` (the event loop's thread)."""
        self._encoding = True
        try:
            later, self._later = self._later, []
            for entry, options in later:
                self._enqueue(entry, options)
        finally:
            self._encoding = False

    def _settle(self, deadline: float) -> None:
        """Wait (until `deadline`) for the lines the event loop writes after its turn;
        on the loop's own thread, write them now."""
        if threading.get_ident() == self._later_thread:
            if self._later:
                self._encode_later()
            return
        while (self._later or self._encoding) and time.monotonic() < deadline:
            time.sleep(0.001)

    def _enqueue(self, entry: tuple, options: tuple) -> bool:
        """Encode one entry's line and append it to the queue (dropping the oldest when
        full): `submit`'s work once the entry is kept."""
        batch, labels, proba, classes, model_version, latency_ms, stamp = entry
        model_name, traffic, extra, labels_json = options
        name = model_name or self.model_name
        try:
            line = encode_line(
                batch,
                labels,
                proba,
                classes,
                name,
                model_version,
                traffic,
                latency_ms,
                stamp,
                extra,
                labels_json,
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
            "queued": len(self._queue) + len(self._later),
            "pending_objects": self.pending_objects,
        }

    def flush(self, timeout: float = 10.0) -> bool:
        """Write everything submitted so far now (tests, shutdown); True when nothing is
        left unwritten. Without a running writer: True only if nothing is waiting."""
        deadline = time.monotonic() + timeout
        self._settle(deadline)
        if self._thread is None:
            return not self._later and not self._queue and not self._buffers and not self._pending
        self._flush_wanted += 1
        wanted = self._flush_wanted
        self._wake.set()
        while self._flush_done < wanted and time.monotonic() < deadline:
            time.sleep(0.005)
        return self._flush_done >= wanted and not self._pending and not self._queue

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (one attempt per object), then stop the thread (bounded by
        `timeout`)."""
        if self._thread is None:
            return
        self._settle(time.monotonic() + timeout / 2)
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
                break
            self._queued_out += len(line)
            key = (name, version)
            buffer = buffers.get(key)
            if buffer is None:
                buffer = buffers[key] = _Buffer(opened=time.monotonic())
            buffer.lines.append(line)
            buffer.lines_bytes += len(line)
            if buffer.lines_bytes >= COMPRESS_PIECE_BYTES:
                buffer.compress_lines()
            buffer.size += len(line)
            buffer.entries += 1
            buffer.records += records
            buffer.newest = max(buffer.newest, stamp)
            if buffer.size >= self.max_object_bytes:
                self._seal(key)
        for buffer in buffers.values():
            buffer.compress_lines()

    def object_uri(self, model_name: str, version: str, newest: float) -> str:
        """The name of the next object of `model_name` v`version` (`inference_records`)."""
        self._seq += 1
        return object_uri(self.uri, model_name, version, newest, self.host, self._seq)

    def _seal(self, key: tuple[str, str]) -> None:
        buffer = self._buffers.pop(key)
        buffer.compress_lines()
        buffer.chunks.append(buffer.stream.flush())
        data = b"".join(buffer.chunks)
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
                    if is_log_object(uri)
                }
            except Exception as exc:
                self.write_errors += 1
                self._listed_at = now  # try again at the next interval
                log.warning("inference log: cannot list %s: %r", self.uri, exc)
                return
            self._listed_at = now
            self._store_total = sum(self._store.values())
        store = self._store or {}
        for uri in sorted(store, key=sort_key):
            if self._store_total <= self.max_total_bytes:
                break
            try:
                storage.remove(uri)
            except Exception as exc:
                log.warning("inference log: cannot delete %s: %r", uri, exc)
                continue
            self._store_total -= store.pop(uri)
