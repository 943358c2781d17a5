"""True labels coming back to the model API: `POST /feedback` and the label files under
the storage root (`<storage root>/labels/<model>/`), checked and joined by request id with
`release/feedback.py`.

A label names a request id the API answered: the API remembers the ids of its last
`RECENT` requests per model (with their row counts); an id it does not remember (an
older request, another API process) is looked up in the inference log of the last
`LOOKBACK_DAYS` days. A label for an id found in neither is a 404 naming it.

Each model's labels are kept in a `LabelBook`, read from its label files on first use
(every file, in name order: batch labels dropped there count too) and added to by each
accepted `POST /feedback`, which is also written there as one CSV file
(`feedback-<stamp>-<host>-<pid>-<seq>.csv`), so the DAG and a restarted API read the same
labels. A second, different label for the same request row is a **correction**: kept with
both values and times, answered as such, never a silent overwrite.
"""

from __future__ import annotations

import asyncio
import collections
import csv
import io
import os
import socket
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from include.ml_pipeline import storage
from include.ml_pipeline.inference_records import safe_name
from include.ml_pipeline.release.feedback import (
    Feedback,
    LabelBook,
    LabelTarget,
    join_labels,
    labels_uri,
    pair_answers,
    parse_feedback_body,
    read_label_files,
    read_logged_answers,
)
from include.ml_pipeline.release.records import CHAMPION, PairedRecord

RECENT = 100_000  # request ids remembered per model
LOOKBACK_DAYS = 7  # how far back the log is read for an id not remembered
LOG_CACHE_SECONDS = 10.0  # the log read for unknown ids is reused this long


def label_target(served) -> LabelTarget:
    """What a true label of `served` must be: its contract's target, else its classes
    (none: a regressor)."""
    if served.contract and served.contract.get("target"):
        return LabelTarget.of(served.contract)
    classes = list(served.classes or ())
    if not classes:
        return LabelTarget(True, "number")
    first = classes[0]
    kind = (
        "boolean" if isinstance(first, bool) else "integer" if isinstance(first, int) else "string"
    )
    return LabelTarget(False, kind, tuple(classes))


class LabelDesk:
    """The request ids answered lately and the label books, per model."""

    def __init__(self, storage_uri: str, log_uri: str, logger):
        self.storage_uri = storage_uri
        self.log_uri = log_uri
        self.logger = logger  # the InferenceLogger (flushed before the log is read)
        self.recent: dict[str, collections.OrderedDict[str, int]] = {}
        self.books: dict[str, LabelBook] = {}
        self.lock = asyncio.Lock()
        self._seq = 0
        self._logged: dict[str, tuple[float, list[PairedRecord]]] = {}
        self._host = safe_name(socket.gethostname())

    def remember(self, model: str, request_id: str, rows: int) -> None:
        """Note a request answered (the event loop's thread only)."""
        recent = self.recent.get(model)
        if recent is None:
            recent = self.recent[model] = collections.OrderedDict()
        recent[request_id] = rows
        if len(recent) > RECENT:
            recent.popitem(last=False)

    def known_records(self, model: str, items: list[Feedback]) -> list[PairedRecord]:
        """Records for the request rows the API remembers (for `join_labels`)."""
        recent: dict[str, int] = self.recent.get(model) or {}
        out = []
        for item in items:
            rows = recent.get(item.request_id)
            if rows is not None and item.row < max(rows, 1):
                out.append(PairedRecord(item.request_id, item.row, CHAMPION))
        return out

    def logged_records(self, model: str) -> list[PairedRecord]:
        """Every request row in the model's inference log of the last days (blocking);
        kept `LOG_CACHE_SECONDS`, so a flood of unknown ids reads the log once."""
        cached = self._logged.get(model)
        if cached is not None and time.monotonic() - cached[0] < LOG_CACHE_SECONDS:
            return cached[1]
        self.logger.flush(5.0)
        since = datetime.now(UTC) - timedelta(days=LOOKBACK_DAYS)
        read = read_logged_answers(self.log_uri, model, since=since)
        records = pair_answers(read.answers).records
        self._logged[model] = (time.monotonic(), records)
        return records

    def book(self, model: str, target: LabelTarget) -> LabelBook:
        """The model's labels so far: its label files on first use (blocking)."""
        found = self.books.get(model)
        if found is None:
            found = LabelBook().add(read_label_files(labels_uri(self.storage_uri, model), target))
            self.books[model] = found
        return found

    async def take(self, model: str, body: Any, target: LabelTarget) -> dict[str, Any]:
        """Check, join and record the labels of one `POST /feedback` body; raises
        `FeedbackError` (its status, problem and count) for what cannot be taken."""
        stamp = datetime.now(UTC).isoformat()
        items = [
            item if item.timestamp else replace(item, timestamp=stamp)
            for item in parse_feedback_body(body, target)
        ]
        if not items:
            return {"model_name": model, "accepted": 0, "corrections": [], "repeats": 0}
        records = self.known_records(model, items)
        if len(records) < len(items):  # not all remembered: look in the log
            records += await asyncio.to_thread(self.logged_records, model)
        join_labels(records, LabelBook().add(items), strict=True)  # 404 for unknown ids
        async with self.lock:
            book = await asyncio.to_thread(self.book, model, target)
            before, repeats = len(book.corrections), book.repeats
            book.add(items)
            corrections = book.corrections[before:]
            written = await asyncio.to_thread(self.write, model, items)
        return {
            "model_name": model,
            "accepted": len(items),
            "corrections": [
                {
                    "request_id": c.request_id,
                    "row": c.row,
                    "previous": c.previous,
                    "previous_time": c.previous_time,
                    "label": c.label,
                    "time": c.time,
                }
                for c in corrections
            ],
            "repeats": book.repeats - repeats,
            "labels_known": len(book.current),
            "file": written,
        }

    async def summary(self, model: str, target: LabelTarget) -> dict[str, Any]:
        """The model's labels read again from its label files (batch files dropped
        there since count too), joined to the inference log by request id."""
        async with self.lock:
            self.books.pop(model, None)
            book = await asyncio.to_thread(self.book, model, target)
        records = await asyncio.to_thread(self.logged_records, model)
        joined = join_labels(records, book)
        return {
            "model_name": model,
            "labels": len(book.current),
            "corrections": len(book.corrections),
            "repeats": book.repeats,
            "joined": joined.labelled,
            "unknown": joined.unknown,
            "unknown_ids": list(joined.unknown_ids),
            "folder": labels_uri(self.storage_uri, model),
        }

    def write(self, model: str, items: list[Feedback]) -> str:
        """The labels as one CSV file in the model's labels folder (blocking)."""
        now = datetime.now(UTC)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["request_id", "row", "label", "timestamp"])
        for item in items:
            writer.writerow([item.request_id, item.row, item.label, item.timestamp])
        self._seq += 1
        stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
        name = f"feedback-{stamp}-{self._host}-{os.getpid()}-{self._seq:06d}.csv"
        uri = storage.join(labels_uri(self.storage_uri, model), name)
        storage.write_bytes(uri, buffer.getvalue().encode())
        return uri
