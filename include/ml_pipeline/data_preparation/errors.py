"""Errors raised on bad input data. Each names the file or table, the column and the rule."""

from __future__ import annotations

from dataclasses import dataclass


class DataError(ValueError):
    """Base class: the input data cannot be used. Never retried into success."""


class DataSourceError(DataError):
    """The source file is missing, empty or unreadable."""


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
