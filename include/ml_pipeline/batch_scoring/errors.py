"""Errors of batch scoring that a retry cannot fix: the task fails at once with them."""

from __future__ import annotations


class BatchInputError(ValueError):
    """The input cannot be scored as it is (no data file, mixed formats, a column the
    champion's input contract requires is missing or has another type); the message names
    the file, the column, the rule broken and the fix."""


class IncompleteOutput(RuntimeError):
    """A run's output lacks parts or holds parts of another model version: its manifest
    says `incomplete` and names them."""
