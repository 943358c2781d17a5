"""What a release experiment logs and what its decision reads.

**`LoggedAnswer`: one line of the inference log per model version that answered a request**
(written by the model API; today's line, `inference_records.encode_line`, plus these keys)::

    {"request_id": "9f1c...", "arm": "challenger", "served": false, "experiment": "shadow",
     "model_name": "churn", "model_version": "4", "timestamp": "2026-12-03T12:00:00+00:00",
     "latency_ms": 0.41, "predictions": ["yes", "no"], "error": null, ...}

- `request_id`: one per HTTP request, the same on the champion's and the challenger's
  lines (the API returns it, so a client can send the label back for it);
- `arm`: which model version made this answer, `champion` or `challenger`;
- `served`: whether this answer went back to the client (shadow: the champion's only;
  canary: the arm the request was routed to);
- `experiment`: `shadow` or `canary` (absent: no experiment, a plain champion line);
- `error`: why the version gave no answer (an exception's message, a shadow queue that
  was full, a timeout), null when it answered; `predictions` is then empty.

**`PairedRecord`: one row of one request, the champion's and the challenger's answers side
by side** (`pair_answers` in feedback.py builds them from the two lines; `join_labels`
adds the true label when one came back). A request of several rows gives one record per
row, all with the request's latency and error. In canary, the paired tests need the
champion's answer for the rows the challenger served too (the API computes it off the
response path, as in shadow): a record with one answer missing counts for the guardrails
of the arm that answered, not for agreement or accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CHAMPION = "champion"
CHALLENGER = "challenger"
ARMS = (CHAMPION, CHALLENGER)
SHADOW = "shadow"
CANARY = "canary"
EXPERIMENT_MODES = (SHADOW, CANARY)


@dataclass(frozen=True)
class LoggedAnswer:
    """One model version's answer to one request (one log line; see the module docstring)."""

    request_id: str
    arm: str
    model_version: str
    predictions: tuple[Any, ...]
    latency_ms: float | None = None
    error: str | None = None
    served: bool = True
    experiment: str | None = None
    model_name: str | None = None
    timestamp: str | None = None

    def __post_init__(self) -> None:
        if self.arm not in ARMS:
            raise ValueError(
                f"log line of request {self.request_id!r}: arm must be one of "
                f"{', '.join(ARMS)}, got {self.arm!r}"
            )
        if self.experiment is not None and self.experiment not in EXPERIMENT_MODES:
            raise ValueError(
                f"log line of request {self.request_id!r}: experiment must be one of "
                f"{', '.join(EXPERIMENT_MODES)} or null, got {self.experiment!r}"
            )

    @classmethod
    def from_line(cls, line: dict[str, Any]) -> LoggedAnswer:
        """A decoded log line (a dict); a line without `request_id` is refused by name."""
        request_id = line.get("request_id")
        if not request_id:
            raise ValueError(
                "log line has no request_id: it was written before release experiments "
                "(the model API must log request_id, arm and served for each answer)"
            )
        latency = line.get("latency_ms")
        return cls(
            request_id=str(request_id),
            arm=str(line.get("arm") or CHAMPION),
            model_version=str(line.get("model_version")),
            predictions=tuple(line.get("predictions") or ()),
            latency_ms=None if latency is None else float(latency),
            error=line.get("error"),
            served=bool(line.get("served", True)),
            experiment=line.get("experiment"),
            model_name=line.get("model_name"),
            timestamp=line.get("timestamp"),
        )


@dataclass(frozen=True)
class PairedRecord:
    """One row of one request with both arms' answers (None: that arm did not answer);
    `served_by` is the arm whose answer the client got; `label` the true label or value
    once it came back (None before)."""

    request_id: str
    row: int
    served_by: str
    champion_answer: Any = None
    challenger_answer: Any = None
    champion_latency_ms: float | None = None
    challenger_latency_ms: float | None = None
    champion_error: str | None = None
    challenger_error: str | None = None
    champion_version: str | None = None
    challenger_version: str | None = None
    timestamp: str | None = None
    label: Any = None
    label_time: str | None = None

    @property
    def key(self) -> tuple[str, int]:
        return (self.request_id, self.row)

    @property
    def is_paired(self) -> bool:
        """Both arms answered this row."""
        return (
            self.champion_error is None
            and self.challenger_error is None
            and self.champion_answer is not None
            and self.challenger_answer is not None
        )
