"""The image's packages must resolve together with the image's Airflow, at the lock's versions.

No Docker engine runs on this machine, so `requirements.txt` (what the Astro Runtime
image installs on top of Airflow) is resolved here with `uv pip compile` against
`apache-airflow==2.11.0`, for the image's Python (3.12) and ours (3.11). A pin that
conflicts with Airflow 2.11.0 fails this test instead of `astro dev start`.
"""

from __future__ import annotations

import re
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

    from include.ml_pipeline.orchestration.compat import AIRFLOW_3

    # the lock of the Airflow line this environment runs (make test AIRFLOW=3: the 3.x one)
    lock_file = "requirements-airflow3.lock" if AIRFLOW_3 else "requirements.lock"
    lock = _pins((ROOT / lock_file).read_text())
    names = ["apache-airflow", "mlflow", "scikit-learn", "pandas"]
    if not AIRFLOW_3:
        names.append("astro-sdk-python")  # imports only on Airflow 2
    for name in names:
        assert version(name) == lock[name], f"{name} in {sys.prefix} differs from {lock_file}"


# --- the images install the locked versions ----------------------------------------------

_REQUIREMENT = re.compile(r"^([A-Za-z0-9_.-]+)(\[[^\]]+\])?==([^\s;]+)$")


def _lines(path: str) -> list[str]:
    return [
        line.split("#")[0].strip()
        for line in (ROOT / path).read_text().splitlines()
        if line.split("#")[0].strip()
    ]


def _lock_for(python: str) -> dict[str, str]:
    """The lock's pins that apply on CPython `python` on Linux (markers evaluated)."""
    from packaging.markers import Marker

    env = {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_python_implementation": "CPython",
        "implementation_name": "cpython",
        "platform_machine": "x86_64",
    }
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" not in line or line.lstrip().startswith("#"):
            continue
        requirement, _, marker = line.partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate(env):
            continue
        name, version = requirement.split("==", 1)
        pins[name.strip().lower()] = version.strip()
    return pins


def _compile(python: str, *inputs: str) -> dict[str, str]:
    done = subprocess.run(
        [
            _uv(),
            "pip",
            "compile",
            "--quiet",
            "--no-header",
            "--python-version",
            python,
            *inputs,
            "-c",
            "requirements.lock",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return _pins(done.stdout)


def test_requirements_txt_pins_each_package_to_its_locked_version():
    lock = _pins((ROOT / "requirements.lock").read_text())
    for line in _lines("requirements.txt"):
        match = _REQUIREMENT.match(line)
        assert match, f"requirements.txt: {line!r} is not pinned (name==version)"
        name, version = match.group(1).lower(), match.group(3)
        assert name != "apache-airflow", "the Runtime's Airflow is never reinstalled"
        assert lock[name] == version, f"requirements.txt: {line} but the lock has {lock[name]}"


@pytest.mark.parametrize("python", ["3.12", "3.11"])
def test_the_airflow_image_install_resolves_to_the_lock(python):
    """The Dockerfile's `pip install -r requirements.txt -c requirements.lock`, on the
    Runtime's Python (3.12) and ours: every package it needs at its locked version."""
    lock = _lock_for(python)
    resolved = _compile(python, "requirements-airflow.in", "requirements.txt")
    differ = {n: (v, lock.get(n)) for n, v in resolved.items() if lock.get(n) != v}
    assert not differ, differ
    assert resolved["apache-airflow"] == "2.11.0"
    # Each provider the install may move off the Runtime's version is named, and why.
    comments = (ROOT / "requirements.txt").read_text()
    for name in resolved:
        if name.startswith("apache-airflow-providers-"):
            short = name.removeprefix("apache-airflow-providers")
            assert name in comments or short in comments, f"{name} is not named in requirements.txt"


def test_the_model_api_image_install_resolves_to_the_lock():
    """Dockerfile.model-api's install (Python 3.12): the versions that trained the model."""
    lock = _lock_for("3.12")
    resolved = _compile("3.12", "requirements-serving.txt")
    differ = {n: (v, lock.get(n)) for n, v in resolved.items() if lock.get(n) != v}
    assert not differ, differ
    for name in ("mlflow", "scikit-learn", "skops", "onnxruntime", "numpy", "pandas"):
        assert resolved[name] == lock[name]


def test_the_dockerfiles_install_with_the_lock_as_constraints():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM quay.io/astronomer/astro-runtime:13.4.0\n" in dockerfile
    assert "pip install --no-cache-dir -r requirements.txt -c requirements.lock" in dockerfile
    api = (ROOT / "Dockerfile.model-api").read_text()
    assert "COPY requirements.lock requirements-serving.txt ./" in api
    assert "pip install --no-cache-dir -r requirements-serving.txt -c requirements.lock" in api
    assert re.search(r"^USER 50000$", api, re.M), "the model API image runs as uid 50000"
    # The ONBUILD `COPY . .` must bring the lock into the Airflow image.
    ignored = _lines(".dockerignore") if (ROOT / ".dockerignore").exists() else []
    assert not any(p in ("requirements.lock", "requirements*", "*.lock") for p in ignored)
