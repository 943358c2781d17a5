"""Live performance: how each model version does on the requests whose true labels came
back, per version and over time.

The answers are the model's live lines of the inference log (`read_logged_answers`: the
ones with a request id, smoke and benchmark traffic left out), paired per request
(`pair_answers`: in an experiment the champion's and the challenger's answer to the same
request, served or shadow) and joined by request id and row to the labels
(`join_labels`; `read_label_files` reads `<storage root>/labels/<model>/`, where
`POST /feedback` writes too; a corrected label counts with its newest value). Each
version is scored on its own answers:

* classification: `accuracy` (training's `metrics.accuracy`; labels compared as text, so
  a label file's `1` and a logged `1` agree);
* regression: `rmse` and `mae` (training's `regression_metrics`).

Per version, `answers` are the rows it answered in the window, `labelled` those with a
true label, `label_share` their ratio: a metric on 3 labelled rows of 10,000 says little,
and the report says how little. The same per time bucket (`windows.time_bucket` of the
window's span: minute, 5 minutes, hour or day).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from include.ml_pipeline import storage
from include.ml_pipeline.payloads import LiveCheck
from include.ml_pipeline.release.records import CHALLENGER, CHAMPION, PairedRecord

if TYPE_CHECKING:  # pragma: no cover
    from include.ml_pipeline.release.feedback import LabelTarget

ACCURACY, RMSE, MAE = "accuracy", "rmse", "mae"


@dataclass(frozen=True)
class Slice:
    """One version's answers in the window (`start` None) or in one time bucket."""

    version: str
    answers: int
    labelled: int
    metrics: dict[str, float] = field(default_factory=dict)
    start: str | None = None  # the bucket's start (ISO, UTC)

    @property
    def label_share(self) -> float:
        return self.labelled / self.answers if self.answers else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "label_share": self.label_share}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Slice:
        return cls(**{k: v for k, v in data.items() if k != "label_share"})


@dataclass(frozen=True)
class LivePerformance:
    """Every version's live metric over the window and per time bucket, and the labels
    behind it (`unknown_labels`: labels whose request the window's log does not have)."""

    model_name: str
    regression: bool
    since: str | None
    versions: list[Slice]
    buckets: list[Slice]
    bucket: str | None  # the bucket's name ("hour", ...), None without labelled answers
    labels: int
    unknown_labels: int
    corrections: int

    @property
    def metric(self) -> str:
        """The headline metric: `rmse` for a regressor, `accuracy` otherwise."""
        return RMSE if self.regression else ACCURACY

    def of(self, version: str) -> Slice | None:
        """The window's slice of `version` (None: it answered nothing in the window)."""
        return next((s for s in self.versions if s.version == str(version)), None)

    def history(self, version: str) -> list[Slice]:
        return [s for s in self.buckets if s.version == str(version)]

    def check(self, version: str, report_uri: str | None = None) -> LiveCheck:
        """`version`'s window slice as the payload the retrain decision reads."""
        own = self.of(version) or Slice(str(version), 0, 0)
        return LiveCheck(
            version=str(version),
            regression=self.regression,
            answers=own.answers,
            labelled=own.labelled,
            metrics=dict(own.metrics),
            report_uri=report_uri,
        )

    def mlflow_metrics(self, version: str) -> dict[str, float]:
        """`live_<metric>` (when labelled answers exist), `live_answers`, `live_labelled`
        and `live_label_share` of `version`."""
        found = self.of(version) or Slice(str(version), 0, 0)
        out = {f"live_{k}": float(v) for k, v in found.metrics.items() if math.isfinite(v)}
        out.update(
            live_answers=float(found.answers),
            live_labelled=float(found.labelled),
            live_label_share=float(found.label_share),
        )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "regression": self.regression,
            "metric": self.metric,
            "since": self.since,
            "bucket": self.bucket,
            "labels": self.labels,
            "unknown_labels": self.unknown_labels,
            "corrections": self.corrections,
            "versions": [s.to_dict() for s in self.versions],
            "buckets": [s.to_dict() for s in self.buckets],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LivePerformance:
        return cls(
            model_name=data["model_name"],
            regression=bool(data["regression"]),
            since=data.get("since"),
            versions=[Slice.from_dict(s) for s in data.get("versions", [])],
            buckets=[Slice.from_dict(s) for s in data.get("buckets", [])],
            bucket=data.get("bucket"),
            labels=int(data.get("labels", 0)),
            unknown_labels=int(data.get("unknown_labels", 0)),
            corrections=int(data.get("corrections", 0)),
        )


def score(predictions: list[Any], labels: list[Any], regression: bool) -> dict[str, float]:
    """The live metrics of predicted labels (values) against the true ones: `rmse` and
    `mae` for a regressor, `accuracy` otherwise ({} without rows)."""
    from include.ml_pipeline.training.metrics import accuracy, regression_metrics

    if not labels:
        return {}
    if regression:
        measured = regression_metrics([float(v) for v in labels], [float(v) for v in predictions])
        return {RMSE: measured[RMSE], MAE: measured[MAE]}
    return {ACCURACY: accuracy([str(v) for v in labels], [str(v) for v in predictions])}


def _answered_rows(records: Iterable[PairedRecord], regression: bool) -> list[dict[str, Any]]:
    """One row per (request row, version that answered it), with its label if any."""
    rows = []
    for record in records:
        for arm in (CHAMPION, CHALLENGER):
            version = record.champion_version if arm == CHAMPION else record.challenger_version
            answer = record.champion_answer if arm == CHAMPION else record.challenger_answer
            if version is None or answer is None:
                continue  # this arm did not answer the row (an error, a dropped shadow)
            if regression and not _finite(answer):
                continue
            rows.append(
                {
                    "version": str(version),
                    "timestamp": record.timestamp,
                    "prediction": answer,
                    "label": record.label,
                }
            )
    return rows


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _version_key(version: str) -> tuple[int, float, str]:
    try:
        return (0, float(version), version)
    except ValueError:
        return (1, 0.0, version)


def measure(
    records: Iterable[PairedRecord],
    *,
    model_name: str,
    regression: bool,
    since: datetime | None = None,
    labels: int = 0,
    unknown_labels: int = 0,
    corrections: int = 0,
) -> LivePerformance:
    """The live performance of every version in `records` (labels already joined)."""
    import pandas as pd

    from include.ml_pipeline.monitoring.windows import time_bucket

    frame = pd.DataFrame(
        _answered_rows(records, regression), columns=["version", "timestamp", "prediction", "label"]
    )
    frame["time"] = pd.to_datetime(frame["timestamp"], utc=True, errors="coerce", format="ISO8601")
    frame["labelled"] = frame["label"].notna()

    def slice_of(version: str, part: pd.DataFrame, start: str | None = None) -> Slice:
        labelled = part[part["labelled"]]
        return Slice(
            version=version,
            answers=len(part),
            labelled=len(labelled),
            metrics=score(list(labelled["prediction"]), list(labelled["label"]), regression),
            start=start,
        )

    versions = sorted(frame["version"].unique().tolist(), key=_version_key)
    whole = [slice_of(v, frame[frame["version"] == v]) for v in versions]
    buckets: list[Slice] = []
    bucket_name = None
    timed = frame.dropna(subset=["time"])
    if timed["labelled"].any():
        freq, bucket_name = time_bucket(timed["time"].max() - timed["time"].min())
        timed = timed.assign(start=timed["time"].dt.floor(freq))
        for (version, start), part in timed.groupby(["version", "start"], sort=True):
            buckets.append(slice_of(str(version), part, start.isoformat()))
        buckets.sort(key=lambda s: (_version_key(s.version), s.start or ""))
    return LivePerformance(
        model_name=model_name,
        regression=regression,
        since=since.isoformat() if since is not None else None,
        versions=whole,
        buckets=buckets,
        bucket=bucket_name,
        labels=labels,
        unknown_labels=unknown_labels,
        corrections=corrections,
    )


def read_live_performance(
    log_uri: str,
    storage_uri: str,
    model_name: str,
    target: LabelTarget,
    *,
    since: datetime | None = None,
) -> LivePerformance:
    """`model_name`'s live answers logged since `since` under `log_uri`, joined to its
    label files under `storage_uri`, measured per version (`FeedbackError` names a label
    file that breaks the contract)."""
    from include.ml_pipeline.release.feedback import (
        LabelBook,
        join_labels,
        labels_uri,
        pair_answers,
        read_label_files,
        read_logged_answers,
    )

    book = LabelBook().add(read_label_files(labels_uri(storage_uri, model_name), target))
    answers = read_logged_answers(log_uri, model_name, since=since).answers
    joined = join_labels(pair_answers(answers).records, book)
    return measure(
        joined.records,
        model_name=model_name,
        regression=target.regression,
        since=since,
        labels=len(book.current),
        unknown_labels=joined.unknown,
        corrections=len(book.corrections),
    )


def write_live_report(live: LivePerformance, uri: str, facts: dict[str, Any]) -> str:
    """`{**facts, **live.to_dict()}` as one JSON object at `uri`; returns its URI."""
    import json

    text = json.dumps({**facts, **live.to_dict()}, indent=2, default=str)
    return storage.write_text(uri, text)


def read_live_report(uri: str) -> LivePerformance:
    """A report written by `write_live_report`."""
    return LivePerformance.from_dict(storage.read_json(uri))
