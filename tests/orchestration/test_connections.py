"""Services read from Airflow connections (defined here as AIRFLOW_CONN_* variables, as
Astro's environment or a secrets backend would): storage options, the MLflow tracking
server and its credentials, the model API's mode; and the task-start hook that applies
them and fails at once on a configuration error."""

from __future__ import annotations

import json
import types

import pytest

from include.ml_pipeline import storage
from include.ml_pipeline.names import (
    MLFLOW_CONN_ID,
    MODEL_API_CONN_ID,
    STORAGE_CONN_ID,
)
from include.ml_pipeline.orchestration import connections, preflight
from include.ml_pipeline.orchestration.compat import AirflowFailException


def _define(monkeypatch, conn_id: str, **fields) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


@pytest.fixture
def env(monkeypatch):
    for name in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "ML_PIPELINE_STORAGE",
    ):
        monkeypatch.delenv(name, raising=False)
    for conn_id in (STORAGE_CONN_ID, MLFLOW_CONN_ID, MODEL_API_CONN_ID, "raw_data"):
        monkeypatch.delenv(f"AIRFLOW_CONN_{conn_id.upper()}", raising=False)
    saved, passed = dict(storage._CONFIGURED), set(preflight._PASSED)
    yield monkeypatch
    storage._CONFIGURED.clear()
    storage._CONFIGURED.update(saved)
    preflight._PASSED.clear()
    preflight._PASSED.update(passed)


def test_storage_options_from_an_aws_connection_and_from_other_types(env):
    _define(
        env,
        "raw_data",
        conn_type="aws",
        login="AKIDEXAMPLE",
        password="example-secret",
        extra={
            "endpoint_url": "http://s3.local:9000",
            "region_name": "eu-west-1",
            "aws_session_token": "session",
        },
    )
    assert connections.storage_options_for("raw_data") == {
        "key": "AKIDEXAMPLE",
        "secret": "example-secret",
        "token": "session",
        "client_kwargs": {"endpoint_url": "http://s3.local:9000", "region_name": "eu-west-1"},
    }
    _define(env, "raw_data", conn_type="aws")  # a role / workload identity: no keys
    assert connections.storage_options_for("raw_data") == {}
    _define(
        env,
        "raw_data",
        conn_type="google_cloud_platform",
        extra={"project": "p", "token": "/secrets/key.json"},
    )
    assert connections.storage_options_for("raw_data") == {
        "project": "p",
        "token": "/secrets/key.json",
    }
    assert connections.storage_options_for("not_defined", required=False) is None
    with pytest.raises(storage.StorageError, match="'not_defined' is not defined"):
        connections.storage_options_for("not_defined")


def test_the_mlflow_connection_wins_over_the_variable_and_brings_its_credentials(env):
    env.setenv("MLFLOW_TRACKING_URI", "http://from-variable:5000")
    assert connections.mlflow_tracking().source == "MLFLOW_TRACKING_URI"
    _define(
        env,
        MLFLOW_CONN_ID,
        conn_type="http",
        host="mlflow.internal",
        port=5000,
        schema="https",
        login="svc",
        password="pw-example",
    )
    tracking = connections.configure_mlflow_tracking()
    assert (tracking.uri, tracking.source) == ("https://mlflow.internal:5000", MLFLOW_CONN_ID)
    assert "pw-example" not in repr(tracking)
    import os

    assert os.environ["MLFLOW_TRACKING_URI"] == "https://mlflow.internal:5000"
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "svc"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "pw-example"
    from include.ml_pipeline.config import get_settings

    assert get_settings().mlflow_tracking_uri == "https://mlflow.internal:5000"


def test_without_connection_or_variable_mlflow_is_the_embedded_store(env):
    tracking = connections.mlflow_tracking()
    assert tracking.source == "embedded"
    assert tracking.uri.startswith("sqlite:///")


def test_the_model_api_mode_follows_the_connection(env):
    env.setenv("MODEL_API_ADMIN_TOKEN", "token-from-env")
    embedded = connections.model_api()
    assert (embedded.mode, embedded.source, embedded.token) == (
        "embedded",
        "MODEL_API_URL",
        "token-from-env",
    )
    _define(env, MODEL_API_CONN_ID, conn_type="http", host="model-api", port=8080, schema="http")
    service = connections.model_api()
    assert (service.url, service.mode, service.token) == (
        "http://model-api:8080",
        "service",
        "token-from-env",
    )
    _define(env, MODEL_API_CONN_ID, conn_type="http", host="model-api", password="conn-token")
    assert connections.model_api().token == "conn-token"
    assert connections.model_api().url == "http://model-api:8000"
    assert "conn-token" not in repr(connections.model_api())


def _context(upstream: set[str]):
    return {"task": types.SimpleNamespace(upstream_task_ids=upstream)}


def test_the_task_start_hook_configures_the_storage_root_from_its_connection(env):
    env.setenv("ML_PIPELINE_STORAGE", "s3://bucket-x/prefix")
    _define(
        env,
        STORAGE_CONN_ID,
        conn_type="aws",
        login="AKIDEXAMPLE",
        password="s",
        extra={"endpoint_url": "http://127.0.0.1:1"},
    )
    storage.configure("s3", None)
    preflight.prepare_task(_context({"upstream"}))  # not a first task: no checks
    assert storage.storage_options("s3://bucket-x/prefix/a") == {
        "key": "AKIDEXAMPLE",
        "secret": "s",
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:1"},
    }


def test_a_bad_connection_or_an_unreachable_service_fails_the_first_task_without_retry(env):
    _define(env, MLFLOW_CONN_ID, conn_type="http", host="no-such-mlflow.invalid", port=5000)
    preflight.prepare_task(_context({"upstream"}))  # a later task: outages are retried there
    with pytest.raises(AirflowFailException) as failed:
        preflight.prepare_task(_context(set()))
    assert "http://no-such-mlflow.invalid:5000 (from mlflow_tracking)" in str(failed.value)
    assert isinstance(failed.value.__cause__, Exception)
    _define(env, MLFLOW_CONN_ID, conn_type="http")
    with pytest.raises(AirflowFailException, match="'mlflow_tracking' has no host"):
        preflight.prepare_task(_context({"upstream"}))
