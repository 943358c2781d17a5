"""The Astro CLI's compose templates (Airflow 2 and Airflow 3) vendored in
containers/third_party/astro-cli/ are the files of astronomer/astro-cli it names: equal to
the files in a snapshot of the repository (ASTRO_CLI_GIT_DIR, or the default path) when one
is on this machine."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.support.system import need_system_package

pytestmark = pytest.mark.quick  # no podman: the files and the rendering only

compose = pytest.importorskip("containers.compose", reason="containers/ not in this image")

README = compose.VENDORED_DIR / "README.md"
TEMPLATES = pytest.mark.parametrize(
    "template", list(compose.TEMPLATES.values()), ids=lambda t: f"airflow{t.airflow_major}"
)


def _recorded_commit() -> str:
    match = re.search(r"^- commit: `([0-9a-f]{40})`", README.read_text(), re.M)
    assert match, f"{README} names no commit (a line '- commit: `<sha>`')"
    return match.group(1)


@TEMPLATES
def test_the_vendored_copy_and_its_notice_are_here(template):
    assert template.vendored.is_file()
    license_text = (compose.VENDORED_DIR / "LICENSE").read_text()
    assert "Commons Clause" in license_text
    assert "Apache License, Version 2.0" in license_text
    text = README.read_text()
    assert compose.ASTRO_CLI_REPO in text
    assert template.upstream_path in text
    _recorded_commit()


@TEMPLATES
def test_the_vendored_copy_equals_the_snapshots_file(template):
    git_dir = Path(os.environ.get("ASTRO_CLI_GIT_DIR", compose.DEFAULT_ASTRO_CLI_GIT_DIR))
    if not git_dir.exists():
        pytest.skip(
            f"no snapshot of {compose.ASTRO_CLI_REPO} at {git_dir} (set ASTRO_CLI_GIT_DIR to a "
            "clone to compare the vendored template with it)"
        )
    if shutil.which("git") is None:
        need_system_package("git", "comparing the vendored template with the snapshot")
    vendored = template.vendored.read_text()
    head = compose.fetch_template(git_dir, template)
    if vendored == head:
        return
    commit = _recorded_commit()
    try:
        at_commit = compose.fetch_template(git_dir, template, commit)
    except compose.EngineError:
        at_commit = None
    if at_commit == vendored:
        pytest.fail(
            f"{template.upstream_path} changed upstream since {commit[:12]} (the snapshot at "
            f"{git_dir} has a newer one): refresh the vendored copy as "
            f"{README.relative_to(README.parents[3])} says"
        )
    pytest.fail(
        f"{template.vendored} differs from {template.upstream_path} in {git_dir} "
        f"(HEAD and the recorded commit {commit[:12]}): it was edited; copy it again"
    )
