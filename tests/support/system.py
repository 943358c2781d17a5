"""System packages the slow suites need, and what a missing one does.

Where a Debian package a suite needs (chromium, postgresql, redis-server, git) is not
installed, the suite skips saying what to install; under CI (`CI=true`, as CI services
set it and `.ci/run` installs the packages first) the same test FAILS, so a green run
never hides a suite that did not run.
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    """Whether this run is CI's: `CI` set to true/1/yes (GitHub Actions, GitLab, .ci/run)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def need_system_package(missing: str, what: str, *, install: str | None = None) -> None:
    """Skip (fail under CI) because `missing` is not installed; `what` says what needs it,
    `install` the Debian packages to install (default: `missing`)."""
    reason = (
        f"{what} needs {missing}, which is not installed "
        f"(Debian: apt-get install -y {install or missing}; .ci/run installs it)"
    )
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)
