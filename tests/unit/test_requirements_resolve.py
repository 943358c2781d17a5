"""The image's packages must resolve together with the image's Airflow.

No Docker engine runs on this machine, so `requirements.txt` (what the Astro Runtime
image installs on top of Airflow) is resolved here with `uv pip compile` against
`apache-airflow==2.11.0`, for the image's Python (3.12) and ours (3.11). A pin that
conflicts with Airflow 2.11.0 fails this test instead of `astro dev start`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _uv() -> str:
    for candidate in (ROOT / ".local" / "bootstrap" / "bin" / "uv", shutil.which("uv")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    pytest.skip("uv is not installed (make installs it in .local/bootstrap)")


def _pins(text: str) -> dict[str, str]:
    pins = {}
    for line in text.splitlines():
        line = line.split(";")[0].strip()
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return pins


@pytest.mark.parametrize("python", ["3.11", "3.12"])
def test_requirements_resolve_with_airflow_2_11_0(python):
    done = subprocess.run(
        [
            _uv(),
            "pip",
            "compile",
            "--quiet",
            "--no-header",
            "--python-version",
            python,
            "requirements-airflow.in",
            "requirements.txt",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    pins = _pins(done.stdout)
    assert pins["apache-airflow"] == "2.11.0"
    assert pins["astro-sdk-python"] == "1.9.0"
    assert pins["numpy"].startswith("1.")
    assert pins["mlflow"].startswith("3.17.")


def test_lock_pins_airflow_and_every_requirement():
    lock = _pins((ROOT / "requirements.lock").read_text())
    assert lock["apache-airflow"] == "2.11.0"
    for path in ("requirements.txt", "requirements-dev.txt", "requirements-serving.txt"):
        for line in (ROOT / path).read_text().splitlines():
            name = line.split("#")[0].strip()
            if not name:
                continue
            for sep in ("[", "=", "<", ">", "~", "!"):
                name = name.split(sep)[0]
            assert name.lower() in lock, f"{path}: {name} is not pinned in requirements.lock"


def test_installed_versions_equal_the_lock():
    from importlib.metadata import version

    lock = _pins((ROOT / "requirements.lock").read_text())
    for name in ("apache-airflow", "astro-sdk-python", "mlflow", "scikit-learn", "pandas"):
        assert version(name) == lock[name], f"{name} in {sys.prefix} differs from the lock"
