"""Errors of the training stage that a retry cannot fix (the step layer fails at once)."""

from __future__ import annotations


class TrainingDataError(ValueError):
    """A candidate cannot be fitted on the training split as it is (scikit-learn refused
    the data): the same data fails the same way on every attempt."""
