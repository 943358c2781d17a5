"""Logged answers and returned labels as the model API and its clients leave them: lines
of the inference log (`inference_records.encode_line`, with a request id and an arm) in
objects named as the API names them, and label files under `<storage root>/labels/`."""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from include.ml_pipeline import storage
from include.ml_pipeline.inference_records import encode_line, object_uri
from include.ml_pipeline.release.feedback import labels_uri


@dataclass(frozen=True)
class Answer:
    """One version's answer to one request."""

    request_id: str
    version: str
    predictions: list
    at: datetime
    arm: str = "champion"
    served: bool = True
    experiment: str | None = None


def write_answers(log_uri: str, model: str, answers: Iterable[Answer]) -> list[str]:
    """The answers as inference-log objects (one per version), as the API writes them."""
    by_version: dict[str, list[Answer]] = {}
    for answer in answers:
        by_version.setdefault(answer.version, []).append(answer)
    written = []
    for seq, (version, items) in enumerate(sorted(by_version.items()), start=1):
        lines = b"".join(
            encode_line(
                None,
                list(a.predictions),
                None,
                [],
                model,
                version,
                "live",
                1.0,
                a.at.timestamp(),
                {
                    "request_id": a.request_id,
                    "arm": a.arm,
                    "served": a.served,
                    **({"experiment": a.experiment} if a.experiment else {}),
                },
            )
            for a in items
        )
        newest = max(a.at for a in items).timestamp()
        uri = object_uri(storage.as_uri(log_uri), model, version, newest, "testhost", seq)
        storage.write_bytes(uri, gzip.compress(lines))
        written.append(uri)
    return written


def write_labels(storage_uri: str, model: str, name: str, rows: Iterable[tuple]) -> str:
    """A label file `name` (CSV: request_id, row, label) in `model`'s labels folder."""
    text = "request_id,row,label\n" + "".join(f"{r},{row},{label}\n" for r, row, label in rows)
    return storage.write_text(storage.join(labels_uri(storage_uri, model), name), text)
