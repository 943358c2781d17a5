"""Fixtures for the model API tests: a temporary MLflow registry with two versions of
one model, and the API running as a real uvicorn process on a free loopback port."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from threadpoolctl import threadpool_limits

from devtools.ports import free_port

# One OpenMP/BLAS thread: on a busy 2-core machine HistGradientBoosting's thread barriers
# otherwise spin against the API processes and a 3 s fit takes 40 s.
threadpool_limits(limits=1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

MODEL_NAME = "churn_serving_test"
# Random per test session (a placeholder-like token would be refused); kept in the
# environment so every import of this module sees the same one.
ADMIN_TOKEN = os.environ.setdefault("ML_PIPELINE_TEST_ADMIN_TOKEN", secrets.token_urlsafe(24))
MAX_ROWS = 2000
MAX_BODY = 1_000_000


@dataclass
class Registry:
    tracking_uri: str
    name: str
    v1: str  # HistGradientBoosting, labels "yes"/"no", alias champion
    v2: str  # LogisticRegression, labels "yes"/"no", alias challenger
    root: Path
    mlflow_serve: subprocess.Popen | None = None  # `mlflow models serve` of v1
    mlflow_serve_url: str = ""
    mlflow_serve_log: Path | None = None


@dataclass
class LiveApi:
    url: str
    home: Path
    log_dir: Path
    pid: int


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> Registry:
    from tests.support.models import register_model_version

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    artifacts = (root / "artifacts").as_uri()
    v1 = register_model_version(
        uri,
        MODEL_NAME,
        kind="hgb",
        rows=3000,
        seed=1,
        aliases=("champion",),
        artifact_location=artifacts,
    )
    v2 = register_model_version(
        uri,
        MODEL_NAME,
        kind="lr",
        rows=3000,
        seed=2,
        aliases=("challenger",),
        artifact_location=artifacts,
    )
    found = Registry(uri, MODEL_NAME, v1, v2, root)
    # `mlflow models serve` takes 15-45 s to start: launch it now, in parallel with our
    # API and the other tests; test_differential waits for it.
    _launch_mlflow_serve(found)
    yield found
    if found.mlflow_serve is not None and found.mlflow_serve.poll() is None:
        os.killpg(found.mlflow_serve.pid, signal.SIGTERM)
        try:
            found.mlflow_serve.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(found.mlflow_serve.pid, signal.SIGKILL)


def _launch_mlflow_serve(registry: Registry) -> None:
    port = free_port()
    log_path = registry.root / "mlflow-serve.log"
    bin_dir = Path(sys.executable).parent  # mlflow runs `uvicorn` from PATH
    env = dict(
        os.environ,
        MLFLOW_TRACKING_URI=registry.tracking_uri,
        MLFLOW_ALLOW_PICKLE_DESERIALIZATION="true",
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    with open(log_path, "wb") as log:
        registry.mlflow_serve = subprocess.Popen(
            [
                str(bin_dir / "mlflow"),
                "models",
                "serve",
                "-m",
                f"models:/{registry.name}/{registry.v1}",
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-w",
                "1",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    registry.mlflow_serve_url = f"http://127.0.0.1:{port}"
    registry.mlflow_serve_log = log_path


@pytest.fixture(scope="session")
def live_api(registry, tmp_path_factory):
    """Our service as a detached uvicorn process (started with api_process.start_api)."""
    from include.ml_pipeline.deployment import api_process

    home = tmp_path_factory.mktemp("api-home")
    log_dir = home / "inference_log"
    port = free_port()
    started = api_process.start_api(
        url=f"http://127.0.0.1:{port}",
        model_name=registry.name,
        tracking_uri=registry.tracking_uri,
        admin_token=ADMIN_TOKEN,
        home=home,
        timeout=240,
        extra_env={
            "ML_PIPELINE_INFERENCE_LOG": str(log_dir),
            "MODEL_API_MAX_ROWS": str(MAX_ROWS),
            "MODEL_API_MAX_BODY_BYTES": str(MAX_BODY),
            "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",
        },
    )
    yield LiveApi(started.url, home, log_dir, started.pid)
    api_process.stop_api(home=home)


@pytest.fixture(scope="session")
def churn_frame():
    """Feature rows (no target) with missing values, as clients would send them."""
    from include.ml_pipeline.data_preparation.sample_data import TARGET, generate_churn_frame

    return generate_churn_frame(400, seed=99).drop(columns=[TARGET])


def set_alias(registry: Registry, alias: str, version: str) -> None:
    from mlflow import MlflowClient

    os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    client = MlflowClient(tracking_uri=registry.tracking_uri, registry_uri=registry.tracking_uri)
    client.set_registered_model_alias(registry.name, alias, version)
