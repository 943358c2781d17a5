"""True labels coming back, checked against the model's contract and joined to the
inference log by request id.

Two ways in, one validation: the body of `POST /feedback` (`parse_feedback_body`) and
label files under the storage root (`read_label_files`), Parquet or CSV with the columns
`request_id`, `label`, and optionally `row` (the row of a multi-row request, default 0)
and `timestamp` (when the label was known), one folder per registered model::

    <storage root>/labels/<model_name>/*.parquet | *.csv      (read in name order)

A label is checked against the contract's target (`LabelTarget.of(contract)`): for
classification it must have the label type (a JSON string, integer or boolean; from a
CSV, text that reads as one) and be in the label set; for regression a finite number.
The problems are collected over the whole body or file and raised together as one
`FeedbackError` whose `status` is the HTTP status an API returns (413 too many labels,
422 invalid labels, 404 unknown request ids), whose `problem` names the rule, and whose
`count` says how many items broke it; the message names the first few.

Labels are kept in a `LabelBook`: a second label for the same request row is a
**correction**, kept with both values and both times (never a silent overwrite); the
newest label is the one the decision uses. The same label sent again is counted as a
repeat. `read_logged_answers` reads an experiment's lines from the inference log,
`pair_answers` pairs the champion's and the challenger's line of each request
(`LoggedAnswer`, records.py) into `PairedRecord`s, and `join_labels` adds the labels to
them and counts the labels whose request id the log does not have.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from include.ml_pipeline import storage
from include.ml_pipeline.inference_records import safe_name
from include.ml_pipeline.release.records import (
    CHALLENGER,
    CHAMPION,
    LoggedAnswer,
    PairedRecord,
)

LABELS_FOLDER = "labels"
LABEL_FILE_SUFFIXES = (".parquet", ".pq", ".csv")
REQUIRED_COLUMNS = ("request_id", "label")
#: labels one `POST /feedback` body may carry (more: 413, send them as a file)
MAX_FEEDBACK_ITEMS = 10_000
#: problems named in an error message (the rest are counted)
SHOWN = 5


class FeedbackError(ValueError):
    """Labels that cannot be taken as they are: `status` is the HTTP status the API
    answers with, `problem` the rule broken, `count` how many items broke it."""

    def __init__(self, status: int, problem: str, count: int, message: str):
        super().__init__(message)
        self.status = status
        self.problem = problem
        self.count = count


@dataclass(frozen=True)
class LabelTarget:
    """What a true label must be: the contract's problem type, label type and set."""

    regression: bool
    label_type: str  # string / integer / boolean / number
    labels: tuple[Any, ...] = ()

    @classmethod
    def of(cls, contract: Mapping[str, Any]) -> LabelTarget:
        """From an input contract (registry/contract.py: its `target`)."""
        target = contract.get("target") or {}
        if target.get("problem_type") == "regression" or target.get("type") == "number":
            return cls(True, "number")
        return cls(False, str(target.get("type") or "string"), tuple(target.get("labels") or ()))


@dataclass(frozen=True)
class Feedback:
    """One true label for one row of one request."""

    request_id: str
    label: Any
    row: int = 0
    timestamp: str | None = None
    source: str = "api"

    @property
    def key(self) -> tuple[str, int]:
        return (self.request_id, self.row)


@dataclass(frozen=True)
class Correction:
    """A second label for the same request row: both values and both times."""

    request_id: str
    row: int
    previous: Any
    previous_time: str | None
    previous_source: str
    label: Any
    time: str | None
    source: str


@dataclass
class LabelBook:
    """The labels known so far: the newest per request row, every correction, and how
    many labels were the same one sent again."""

    current: dict[tuple[str, int], Feedback] = field(default_factory=dict)
    corrections: list[Correction] = field(default_factory=list)
    repeats: int = 0

    def add(self, items: Iterable[Feedback]) -> LabelBook:
        """Add `items` in order (a label without a time after one with a time of the
        same row is taken as newer); returns the book."""
        for item in items:
            known = self.current.get(item.key)
            if known is None:
                self.current[item.key] = item
            elif known.label == item.label:
                self.repeats += 1
            else:
                older, newer = known, item
                if known.timestamp and item.timestamp and item.timestamp < known.timestamp:
                    older, newer = item, known  # a late file with an earlier label
                self.corrections.append(
                    Correction(
                        request_id=item.request_id,
                        row=item.row,
                        previous=older.label,
                        previous_time=older.timestamp,
                        previous_source=older.source,
                        label=newer.label,
                        time=newer.timestamp,
                        source=newer.source,
                    )
                )
                self.current[item.key] = newer
        return self


# --------------------------------------------------------------------------- validation


def _label_value(value: Any, target: LabelTarget, from_text: bool) -> tuple[Any, str | None]:
    """The label as the contract types it, or None and the rule it breaks."""
    if _missing(value):
        return None, "label_missing"
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()  # numpy scalars from a Parquet or CSV column
    if target.regression:
        if isinstance(value, bool):
            return None, "label_type"
        if from_text and isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                return None, "label_type"
        if not isinstance(value, numbers.Real):
            return None, "label_type"
        number = float(value)
        return (number, None) if math.isfinite(number) else (None, "label_not_finite")
    typed = _classification_label(value, target.label_type, from_text)
    if typed is None:
        return None, "label_type"
    if target.labels and typed not in target.labels:
        return None, "label_not_in_set"
    return typed, None


def _missing(value: Any) -> bool:
    """None, NaN, or pandas' NaT/NA (a gap in a file's column)."""
    if value is None:
        return True
    try:
        return bool(value != value)
    except TypeError:  # pandas.NA refuses to be a bool
        return True


def _classification_label(value: Any, label_type: str, from_text: bool) -> Any:
    if label_type == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower() if from_text else None
        return {"true": True, "false": False}.get(text) if text is not None else None
    if label_type == "integer":
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, float):  # JSON has one number type; a Parquet column with gaps
            return int(value) if value.is_integer() else None
        if from_text:
            try:
                number = float(value)
            except (TypeError, ValueError):
                return None
            return int(number) if number.is_integer() else None
        return None
    if isinstance(value, str):
        return value
    return str(value) if from_text and not isinstance(value, bool) else None


_PROBLEM_TEXT = {
    "request_id_missing": "no request_id",
    "row_invalid": "row is not a whole number >= 0",
    "label_missing": "no label",
    "label_type": "label of the wrong type",
    "label_not_in_set": "label outside the contract's label set",
    "label_not_finite": "label is not a finite number",
}


def validate_feedback(
    items: Iterable[Mapping[str, Any]],
    target: LabelTarget,
    source: str,
    from_text: bool = False,
) -> list[Feedback]:
    """Check every item (`request_id`, `label`, optional `row` and `timestamp`) and
    return them typed; any broken item -> `FeedbackError(422)` naming the rules broken,
    how many items broke each, and the first few (`source`: where they came from;
    `from_text`: values were read as text, e.g. a CSV, and may be converted)."""
    out: list[Feedback] = []
    problems: dict[str, list[str]] = {}
    for index, item in enumerate(items):
        where = f"item {index}" if source == "api" else f"{source} line {index + 2}"
        request_id = item.get("request_id")
        if _missing(request_id) or request_id == "":
            problems.setdefault("request_id_missing", []).append(where)
            continue
        request_id = str(request_id)
        row = item.get("row", 0)
        if _missing(row):
            row = 0
        try:
            row_number = int(row)
            ok_row = (
                not isinstance(row, bool)
                and row_number >= 0
                and (isinstance(row, int) or float(row) == row_number)  # 10**18 + 1 too
            )
        except (TypeError, ValueError):
            ok_row = False
        if not ok_row:
            problems.setdefault("row_invalid", []).append(
                f"{where} (request {request_id}): {row!r}"
            )
            continue
        label, problem = _label_value(item.get("label"), target, from_text)
        if problem is not None:
            problems.setdefault(problem, []).append(
                f"{where} (request {request_id}): {item.get('label')!r}"
            )
            continue
        stamp = item.get("timestamp")
        stamp = None if _missing(stamp) else str(stamp)
        out.append(Feedback(request_id, label, row_number, stamp, source))
    if problems:
        count = sum(len(v) for v in problems.values())
        expected = (
            "finite numbers"
            if target.regression
            else f"{target.label_type} labels in {list(target.labels)}"
        )
        parts = [
            f"{_PROBLEM_TEXT[rule]} ({len(seen)}): {'; '.join(seen[:SHOWN])}"
            + (f"; ... {len(seen) - SHOWN} more" if len(seen) > SHOWN else "")
            for rule, seen in problems.items()
        ]
        raise FeedbackError(
            422,
            next(iter(problems)),
            count,
            f"{source}: {count} label(s) refused, the contract expects {expected}: "
            + " | ".join(parts),
        )
    return out


def parse_feedback_body(
    body: Any, target: LabelTarget, max_items: int = MAX_FEEDBACK_ITEMS
) -> list[Feedback]:
    """The labels of a `POST /feedback` body: `{"labels": [{"request_id": ..., "label":
    ..., "row": 0, "timestamp": ...}, ...]}` (or the list alone)."""
    items = body.get("labels") if isinstance(body, Mapping) else body
    if not isinstance(items, Sequence) or isinstance(items, str | bytes):
        raise FeedbackError(
            422,
            "body_shape",
            1,
            'feedback body: expected {"labels": [{"request_id": ..., "label": ...}, ...]}',
        )
    if len(items) > max_items:
        raise FeedbackError(
            413,
            "too_many_labels",
            len(items),
            f"feedback body: {len(items)} labels, more than the {max_items} one request may "
            f"carry; split them or write them as a file under the labels folder",
        )
    not_objects = [i for i, item in enumerate(items) if not isinstance(item, Mapping)]
    if not_objects:
        raise FeedbackError(
            422,
            "body_shape",
            len(not_objects),
            f"feedback body: item(s) {not_objects[:SHOWN]} are not objects with "
            f"request_id and label",
        )
    return validate_feedback(items, target, "api")


# --------------------------------------------------------------------------- label files


def labels_uri(storage_uri: str, model_name: str) -> str:
    """The folder of `model_name`'s label files under the storage root."""
    return storage.join(storage_uri, LABELS_FOLDER, safe_name(model_name))


def read_label_files(prefix: str, target: LabelTarget) -> list[Feedback]:
    """Every label file under `prefix` (a folder or one file), in name order, each
    validated as a whole (`FeedbackError` names the file); none: an empty list. A CSV is
    read as text (request ids such as `00123` keep their zeros; labels are converted to
    the contract's type), a Parquet file with its own types."""
    import pandas as pd

    files = [u for u in storage.list_files(prefix) if u.lower().endswith(LABEL_FILE_SUFFIXES)]
    out: list[Feedback] = []
    for uri in files:
        is_csv = uri.lower().endswith(".csv")
        with storage.local_copy(uri) as local:
            frame = pd.read_csv(local, dtype=str) if is_csv else pd.read_parquet(local)
        missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
        if missing:
            raise FeedbackError(
                422,
                "missing_column",
                len(missing),
                f"{uri}: missing column(s) {', '.join(missing)}; a label file has "
                f"request_id, label and optionally row and timestamp",
            )
        records = frame.to_dict("records")
        out.extend(validate_feedback(records, target, uri, from_text=is_csv))
    return out


# --------------------------------------------------------------------------- joining


@dataclass(frozen=True)
class LogRead:
    """An experiment's answers from the inference log, and the live lines left out
    because they carry no request id (written outside an experiment or before one)."""

    answers: list[LoggedAnswer]
    without_request_id: int


def read_logged_answers(
    location: str,
    model_name: str,
    versions: tuple[str, ...] | None = None,
    since: datetime | None = None,
) -> LogRead:
    """The live answers of `model_name` (of `versions` only, e.g. the champion's and
    the challenger's; any when None) logged at or after `since` (naive: UTC), oldest
    first. Smoke and benchmark traffic is left out; corrupt lines are skipped."""
    import orjson

    from include.ml_pipeline.inference_records import log_objects, read_lines
    from include.ml_pipeline.names import LIVE_TRAFFIC

    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    wanted = None if versions is None else {str(v) for v in versions}
    objects = [
        item
        for item in log_objects(location, model_name=model_name, since=since)
        if wanted is None or item.version is None or item.version in wanted
    ]
    answers: list[LoggedAnswer] = []
    without = 0
    for raw in read_lines(objects):
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(line, dict) or line.get("model_name", model_name) != model_name:
            continue
        if str(line.get("traffic") or LIVE_TRAFFIC) != LIVE_TRAFFIC:
            continue
        if wanted is not None and str(line.get("model_version")) not in wanted:
            continue
        if since is not None and _logged_before(line.get("timestamp"), since):
            continue
        if not line.get("request_id"):
            without += 1
            continue
        answers.append(LoggedAnswer.from_line(line))
    return LogRead(answers, without)


def _logged_before(stamp: Any, since: datetime) -> bool:
    try:
        when = datetime.fromisoformat(str(stamp))
    except ValueError:
        return True  # no usable time: not provably inside the window
    return (when if when.tzinfo else when.replace(tzinfo=UTC)) < since


@dataclass(frozen=True)
class Pairing:
    """The paired records and what could not be paired."""

    records: list[PairedRecord]
    requests: int
    champion_only: int  # requests only the champion logged (e.g. shadow dropped)
    challenger_only: int


def pair_answers(answers: Iterable[LoggedAnswer]) -> Pairing:
    """The champion's and the challenger's lines of each request side by side, one
    record per row (a request one arm failed gives a record with that arm's error)."""
    by_request: dict[str, dict[str, LoggedAnswer]] = {}
    for answer in answers:
        by_request.setdefault(answer.request_id, {})[answer.arm] = answer
    records: list[PairedRecord] = []
    only = {CHAMPION: 0, CHALLENGER: 0}
    for request_id, arms in by_request.items():
        a, b = arms.get(CHAMPION), arms.get(CHALLENGER)
        if a is None or b is None:
            only[CHAMPION if b is None else CHALLENGER] += 1
        served = b if b is not None and b.served else a
        first = a if a is not None else b
        rows = max(len(a.predictions) if a else 0, len(b.predictions) if b else 0, 1)
        for row in range(rows):
            records.append(
                PairedRecord(
                    request_id=request_id,
                    row=row,
                    served_by=served.arm if served is not None else CHAMPION,
                    champion_answer=_nth(a, row),
                    challenger_answer=_nth(b, row),
                    champion_latency_ms=a.latency_ms if a else None,
                    challenger_latency_ms=b.latency_ms if b else None,
                    champion_error=a.error if a else None,
                    challenger_error=b.error if b else None,
                    champion_version=a.model_version if a else None,
                    challenger_version=b.model_version if b else None,
                    timestamp=first.timestamp if first is not None else None,
                )
            )
    return Pairing(records, len(by_request), only[CHAMPION], only[CHALLENGER])


def _nth(answer: LoggedAnswer | None, row: int) -> Any:
    if answer is None or answer.error is not None or row >= len(answer.predictions):
        return None
    return answer.predictions[row]


@dataclass(frozen=True)
class Joined:
    """The records with their labels, and the labels that found no record."""

    records: list[PairedRecord]
    labelled: int
    unknown: int
    unknown_ids: tuple[str, ...]  # the first few, for a message


def join_labels(records: Iterable[PairedRecord], book: LabelBook, strict: bool = False) -> Joined:
    """Each record with its row's newest label. Labels whose request row the records do
    not have are counted (a label file may cover requests outside the log window); with
    `strict` (an API checking a body against the log) they raise `FeedbackError(404)`."""
    rows = list(records)
    keys = {r.key for r in rows}
    unknown = sorted({k for k in book.current if k not in keys})
    if strict and unknown:
        shown = ", ".join(f"{rid} row {row}" for rid, row in unknown[:SHOWN])
        raise FeedbackError(
            404,
            "unknown_request_id",
            len(unknown),
            f"{len(unknown)} label(s) for request rows the inference log does not have "
            f"(first: {shown}); send the request_id the API returned with the answer",
        )
    out = []
    labelled = 0
    for r in rows:
        item = book.current.get(r.key)
        if item is None:
            out.append(r)
        else:
            labelled += 1
            out.append(replace(r, label=item.label, label_time=item.timestamp))
    return Joined(out, labelled, len(unknown), tuple(rid for rid, _ in unknown[:SHOWN]))
