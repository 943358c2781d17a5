"""The monitoring stage's own error: a check that cannot run as configured."""

from __future__ import annotations


class MonitoringError(Exception):
    """A check that cannot run as configured (retrying does not help)."""
