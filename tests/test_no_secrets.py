"""No secrets in the repository: Yelp's detect-secrets (its default plugins: AWS, GitHub,
Slack, private keys, JWTs, high-entropy strings, `password = ...` keywords, ...) over every
tracked file; the placeholders it flags are listed, with why, in secrets-allowlist.txt."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from include.ml_pipeline.config import PROJECT_ROOT

# A test tool (requirements-dev.txt): not in the Astro image, where `astro dev pytest` runs.
pytest.importorskip("detect_secrets", reason="detect-secrets (a dev requirement) is not installed")

ALLOWLIST = Path(__file__).with_name("secrets-allowlist.txt")


def _allowed() -> set[tuple[str, str]]:
    entries = set()
    for line in ALLOWLIST.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            path, hashed, _why = line.split(maxsplit=2)
            entries.add((path, hashed))
    return entries


def scan(files: list[str], root: Path) -> list[tuple[str, int, str, str]]:
    """(path, line, type, hashed secret) of every finding in `files` (relative to root)."""
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import default_settings

    with default_settings():
        found = SecretsCollection(root=str(root))
        for name in files:
            found.scan_file(name)
    return sorted(
        (name, secret.line_number, secret.type, secret.secret_hash) for name, secret in found
    )


def test_no_secret_in_the_tracked_files():
    files = subprocess.run(
        ["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(files) > 50
    findings = scan(files, PROJECT_ROOT)
    allowed = _allowed()
    new = [f for f in findings if (f[0], f[3]) not in allowed]
    assert not new, (
        "possible secrets in tracked files (remove them; if one is a placeholder, add its "
        f"line to {ALLOWLIST.name} saying why):\n"
        + "\n".join(
            f"  {path}:{line} {kind}\n    {path} {hashed} <why>" for path, line, kind, hashed in new
        )
    )


def test_the_scanner_finds_a_planted_secret(tmp_path):
    # built from pieces, so this file itself holds nothing the scanner would flag
    key, word = "AKIA" + "Z7QK4XVB2LPM3N6T", "pass" + "word"
    planted = tmp_path / "settings.py"
    planted.write_text(f'AWS_ACCESS_KEY_ID = "{key}"\ndb_{word} = "p9X!vR2#qLw7@Zt4^Mn8"\n')
    kinds = {kind for _, _, kind, _ in scan(["settings.py"], tmp_path)}
    assert "AWS Access Key" in kinds
    assert "Secret Keyword" in kinds
