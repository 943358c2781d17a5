"""`make run`, then `make ui` and the MLflow UI, in a temporary home, for the browser test.

One real DAG run (small generated data, two fast candidates) through the project's own
runner (`python -m devtools.run_pipeline`, what `make run` runs), then the UI of
`make ui` (`python -m devtools.ui start`) on a free loopback port, and the MLflow UI
(`devtools.mlflow_server.start_server`) on the same store. Each runs as its own process
with an environment of its own (no AIRFLOW_* of the test session), as a user would run
them; everything is stopped at the end (`python -m devtools.services stop`).

The browser is Debian's /usr/bin/chromium driven by Playwright for Python
(`executable_path`; no `playwright install`). Skips, with the reason, where Playwright
(a dev requirement) or Chromium is not installed, e.g. under `astro dev pytest`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools.ports import free_port, port_open
from tests.support.browser import chromium, need_chromium

ROOT = Path(__file__).resolve().parents[2]
FAST_CANDIDATES = [
    {"name": "logreg_c1", "estimator": "logistic_regression", "params": {"C": 1.0}},
    {
        "name": "hgb_small",
        "estimator": "hist_gradient_boosting",
        "params": {"max_iter": 60, "max_depth": 3},
    },
]


def _airflow_major() -> int:
    from importlib.metadata import version

    return int(version("apache-airflow").split(".", 1)[0])


def _clean_env(home: Path, api_url: str) -> dict[str, str]:
    """This environment without the test session's Airflow/pipeline settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW_", "AIRFLOW__", "ML_PIPELINE_", "MLFLOW_", "MODEL_API_"))
    }
    env.update(
        ML_PIPELINE_HOME=str(home),
        MODEL_API_URL=api_url,
        ML_PIPELINE_RETRY_DELAY_SECONDS="1",
        PYTHONPATH=str(ROOT),
    )
    return env


def _run(command: list[str], env: dict[str, str], log: Path, timeout: float) -> str:
    with log.open("w") as out:
        done = subprocess.run(
            command,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )
    text = log.read_text(errors="replace")
    assert done.returncode == 0, f"{command[2]} exited {done.returncode}:\n{text[-4000:]}"
    return text


@dataclass
class Stack:
    home: Path
    env: dict[str, str]
    summary: dict
    ui_url: str
    ui_port: int
    username: str
    password: str
    mlflow_url: str
    api_port: int
    started: dict[str, float]
    airflow_3: bool


@pytest.fixture(scope="session")
def chromium_path() -> str:
    return need_chromium("the Airflow UI browser test")


@pytest.fixture(scope="module")
def stack(chromium_path, tmp_path_factory):
    """`make run` + `make ui` + the MLflow UI in a temporary home; stopped at the end."""
    from devtools.mlflow_server import start_server, stop_server, wait_until_healthy

    home = tmp_path_factory.mktemp("ui-home")
    api_port, ui_port, mlflow_port = free_port(), free_port(), free_port()
    env = _clean_env(home, f"http://127.0.0.1:{api_port}")
    started: dict[str, float] = {}
    mlflow = None
    try:
        t0 = time.monotonic()
        _run(
            [
                sys.executable,
                "-m",
                "devtools.run_pipeline",
                "--rows",
                "1500",
                "--conf",
                f"candidates={json.dumps(FAST_CANDIDATES)}",
                "--conf",
                "latency_p95_budget_ms=500.0",
            ],
            env,
            home / "make-run.log",
            timeout=900,
        )
        started["make run"] = time.monotonic() - t0
        summary = json.loads((home / "run_summary.json").read_text())

        t0 = time.monotonic()
        mlflow = start_server(
            f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
            (home / "mlflow" / "artifacts").as_uri(),
            port=mlflow_port,
            log_path=home / "mlflow-server.log",
        )
        output = _run(
            [
                sys.executable,
                "-m",
                "devtools.ui",
                "start",
                "--port",
                str(ui_port),
                "--workers",
                "1",
            ],
            env,
            home / "make-ui.log",
            timeout=400,
        )
        started["make ui"] = time.monotonic() - t0
        mlflow_url = f"http://127.0.0.1:{mlflow_port}"
        wait_until_healthy(mlflow_url, process=mlflow, timeout=180)
        started["mlflow ui"] = time.monotonic() - t0

        password_file = home / "airflow" / "ui" / "admin_password"
        assert f"saved in {password_file}" in output, output
        password = password_file.read_text().strip()
        assert password in output  # printed once, when generated
        assert oct(password_file.stat().st_mode & 0o777) == "0o600"
        airflow_3 = _airflow_major() >= 3
        if airflow_3:  # the simple auth manager reads the same password, from its own file
            passwords = home / "airflow" / "ui" / "simple_auth_manager_passwords.json"
            assert json.loads(passwords.read_text()) == {"admin": password}
            assert oct(passwords.stat().st_mode & 0o777) == "0o600"
        yield Stack(
            home=home,
            env=env,
            summary=summary,
            ui_url=f"http://127.0.0.1:{ui_port}",
            ui_port=ui_port,
            username="admin",
            password=password,
            mlflow_url=mlflow_url,
            api_port=api_port,
            started=started,
            airflow_3=airflow_3,
        )
    finally:
        subprocess.run(
            [sys.executable, "-m", "devtools.services", "stop"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=120,
        )
        if mlflow is not None:
            stop_server(mlflow)


@pytest.fixture(scope="module")
def browser(chromium_path):
    with chromium(chromium_path) as browser:
        yield browser


@pytest.fixture(scope="module")
def page(browser, stack):
    """A page logged in to the Airflow UI."""
    context = browser.new_context(viewport={"width": 2600, "height": 1200}, device_scale_factor=2)
    # A loaded 2-core machine: the React UI of 3.x took over 60 s to draw a run's page once.
    context.set_default_timeout(120_000)
    page = context.new_page()
    if stack.airflow_3:  # the simple auth manager's login form (a React page)
        page.goto(f"{stack.ui_url}/")
        page.get_by_label("Username").fill(stack.username)
        assert "/auth/login" in page.url, "the UI must ask for a login"
        page.get_by_label("Password").fill(stack.password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/auth/" not in url)
    else:
        page.goto(f"{stack.ui_url}/home")
        assert "/login" in page.url, "the UI must ask for a login"
        page.fill("#username", stack.username)
        page.fill("#password", stack.password)
        page.click("input[type=submit], button[type=submit]")
        page.wait_for_url(f"{stack.ui_url}/home*")
    yield page
    context.close()


@pytest.fixture(scope="session")
def screenshot():
    """`screenshot(page, name, clip, home)`: a PNG under `home`/screenshots, copied to
    $UI_SCREENSHOT_DIR if that is set; both paths printed."""
    return save_screenshot


@pytest.fixture(scope="session")
def is_listening():
    """`is_listening(port)`: whether something accepts connections on 127.0.0.1:port."""
    return port_open


def save_screenshot(page, name: str, clip: dict | None, home: Path) -> Path:
    path = home / "screenshots" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), clip=clip)
    print(f"screenshot: {path}")
    target_dir = os.environ.get("UI_SCREENSHOT_DIR")
    if target_dir:
        Path(target_dir).mkdir(parents=True, exist_ok=True)
        copied = shutil.copy(path, Path(target_dir) / name)
        print(f"screenshot copied to: {copied}")
    return path
