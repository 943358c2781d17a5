"""The stages' errors that a retry cannot fix: the step layer fails the task at once (no
retries) with the message.

Bad input data is a `DataError`, naming the file or table, the column and the rule: the
same file fails the same way on every attempt. A training split that scikit-learn refuses
is a `TrainingDataError`; a drift check that cannot run as configured a `MonitoringError`;
a table to score that breaks its model's input contract a `BatchInputError`.
"""

from __future__ import annotations

from dataclasses import dataclass

# --------------------------------------------------------------------- data preparation


class DataError(ValueError):
    """Base class: the input data cannot be used. Never retried into success."""


class DataSourceError(DataError):
    """The source file is missing, empty or unreadable (`rule` names what is wrong with
    it, e.g. `ragged_row`, `duplicate_column`, `file_format`; None for a missing file)."""

    def __init__(self, message: str, rule: str | None = None):
        super().__init__(message)
        self.rule = rule


@dataclass(frozen=True)
class Violation:
    """One broken rule: which column, which rule, what was seen, what was expected."""

    column: str | None
    rule: str
    observed: str
    expected: str

    def __str__(self) -> str:
        where = f"column {self.column!r}" if self.column else "table"
        return f"{where}: rule '{self.rule}' broken: {self.observed} (expected {self.expected})"


class DataValidationError(DataError):
    """The loaded table breaks one or more validation rules."""

    def __init__(self, source: str, violations: list[Violation]):
        self.source = source
        self.violations = list(violations)
        lines = "\n".join(f"  - {v}" for v in self.violations)
        super().__init__(
            f"data validation failed for {source} ({len(self.violations)} rule(s) broken):\n{lines}"
        )

    @property
    def rules(self) -> list[str]:
        """The broken rules' names, in the order reported."""
        return [v.rule for v in self.violations]


# --------------------------------------------------------------------- training


class TrainingDataError(ValueError):
    """A candidate cannot be fitted on the training split as it is (scikit-learn refused
    the data): the same data fails the same way on every attempt."""


# --------------------------------------------------------------------- monitoring


class MonitoringError(Exception):
    """A check that cannot run as configured (retrying does not help)."""


# --------------------------------------------------------------------- batch scoring


class BatchInputError(ValueError):
    """The input cannot be scored as it is (no data file, mixed formats, a column the
    champion's input contract requires is missing or has another type); the message names
    the file, the column, the rule broken and the fix."""


class IncompleteOutput(RuntimeError):
    """A run's output lacks parts or holds parts of another model version: its manifest
    says `incomplete` and names them."""
