"""Test session set-up: an isolated embedded Airflow + pipeline home for the whole run,
and the marks of the slow kinds.

The environment is set at import time, before any test module imports Airflow. Under
`astro dev pytest` the container's own AIRFLOW_HOME and database are kept.

Every test under tests/<kind>/ for a slow kind (SLOW_KINDS) carries the mark <kind>, and
every test that uses a server or browser fixture (KIND_FIXTURES) that kind's mark; `make
test-fast` runs the others (`-m "quick or not (e2e or services or ...)"`), `make test` all.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
#: The cross-cutting kinds, each a folder of tests/ and a mark (pyproject.toml): DAG runs
#: end to end, real servers (MLflow, the model API as a service, S3), the Celery cluster,
#: the browser tests of the UIs, the Astro path's container files.
SLOW_KINDS = ("e2e", "services", "distributed", "ui", "containers")
#: Fixtures that make a test of a slow kind wherever it lives (used directly or through
#: another fixture): a server process (moto's S3 server; the model API, uvicorn; two
#: registered versions and their `mlflow models serve`), or headless Chromium.
KIND_FIXTURES = {
    "s3_server": "services",
    "live_api": "services",
    "registry": "services",
    "chromium_loader": "ui",
}
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_HOME = Path(tempfile.mkdtemp(prefix="ml-pipeline-tests-"))
os.environ["ML_PIPELINE_HOME"] = str(_HOME)
os.environ.setdefault("ML_PIPELINE_RETRY_DELAY_SECONDS", "1")
for _var in ("MLFLOW_TRACKING_URI", "MODEL_API_URL"):
    os.environ.pop(_var, None)


from devtools import airflow_env  # noqa: E402
from devtools.ports import free_port  # noqa: E402

# Never the user's port 8000: DAG runs in tests start their API on a free port.
os.environ["MODEL_API_URL"] = f"http://127.0.0.1:{free_port()}"
if not os.environ.get("KEEP_TEST_HOME"):
    atexit.register(shutil.rmtree, _HOME, ignore_errors=True)

airflow_env.configure()


def pytest_collection_modifyitems(config, items):
    """Mark each test under tests/<kind>/ with its slow kind, and each test that starts a
    server or a browser through a fixture with that kind."""
    for item in items:
        try:
            kind = item.path.resolve().relative_to(TESTS).parts[0]
        except ValueError:  # a test file outside tests/ (e.g. .astro/)
            continue
        if kind in SLOW_KINDS:
            item.add_marker(kind)
        for name in getattr(item, "fixturenames", ()):
            if name in KIND_FIXTURES:
                item.add_marker(KIND_FIXTURES[name])


@pytest.fixture(scope="session", autouse=True)
def _stop_local_api():
    """Stop any model API a DAG run of the tests started."""
    yield
    from include.ml_pipeline.deployment.api_process import stop_api

    stop_api()


@pytest.fixture(scope="session")
def pipeline_home() -> Path:
    return _HOME


@pytest.fixture(scope="session")
def airflow_db():
    """The embedded metadata database, created once per session."""
    airflow_env.ensure_metadata_db()


def need_moto() -> None:
    """Skip, saying why, where moto's S3 server is not installed (inside the Astro image,
    whose `astro dev pytest` has no dev requirements); `make test` always has it."""
    pytest.importorskip(
        "moto",
        reason="moto[server] (a dev requirement) is not installed: no S3 server "
        "for the storage-root tests here; make test installs it",
    )


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on a free loopback port with the bucket `ml-pipeline`
    (`devtools.s3_server.S3Server`), for the whole session."""
    need_moto()
    from devtools.s3_server import S3Server

    with S3Server(bucket="ml-pipeline") as server:
        yield server
