"""Fixtures for the model API tests: a temporary MLflow registry with two versions of
one model, and the API running as a real uvicorn process on a free loopback port."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

MODEL_NAME = "churn_serving_test"
ADMIN_TOKEN = "test-admin-token"
MAX_ROWS = 2000
MAX_BODY = 1_000_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Registry:
    tracking_uri: str
    name: str
    v1: str  # HistGradientBoosting, labels "yes"/"no", alias champion
    v2: str  # LogisticRegression, labels "yes"/"no", alias challenger
    root: Path


@dataclass
class LiveApi:
    url: str
    home: Path
    log_dir: Path
    pid: int


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> Registry:
    from include.ml_pipeline.serving.testing import register_model_version

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    artifacts = (root / "artifacts").as_uri()
    v1 = register_model_version(uri, MODEL_NAME, kind="hgb", rows=3000, seed=1,
                                aliases=("champion",), artifact_location=artifacts)
    v2 = register_model_version(uri, MODEL_NAME, kind="lr", rows=3000, seed=2,
                                aliases=("challenger",), artifact_location=artifacts)
    return Registry(uri, MODEL_NAME, v1, v2, root)


@pytest.fixture(scope="session")
def live_api(registry, tmp_path_factory):
    """Our service as a detached uvicorn process (started with process.start_api)."""
    from include.ml_pipeline.serving import process

    home = tmp_path_factory.mktemp("api-home")
    log_dir = home / "inference_log"
    port = free_port()
    started = process.start_api(
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
    process.stop_api(home=home)


@pytest.fixture(scope="session")
def churn_frame():
    """Feature rows (no target) with missing values, as clients would send them."""
    from include.ml_pipeline.data.generate import TARGET, generate_churn_frame

    return generate_churn_frame(400, seed=99).drop(columns=[TARGET])


def set_alias(registry: Registry, alias: str, version: str) -> None:
    from mlflow import MlflowClient

    os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    client = MlflowClient(tracking_uri=registry.tracking_uri,
                          registry_uri=registry.tracking_uri)
    client.set_registered_model_alias(registry.name, alias, version)
