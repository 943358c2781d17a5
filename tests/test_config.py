"""The default registered model name fits every problem type, and a home that already
registered the former default keeps it."""

from __future__ import annotations

import sqlite3

from include.ml_pipeline.config import (
    DEFAULT_MODEL_NAME,
    LEGACY_MODEL_NAME,
    default_model_name,
    get_settings,
)


def _store(path, names):
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE registered_models (name TEXT PRIMARY KEY)")
        con.executemany("INSERT INTO registered_models VALUES (?)", [(n,) for n in names])


def test_a_new_home_gets_the_name_that_fits_every_problem(tmp_path, monkeypatch):
    assert DEFAULT_MODEL_NAME == "tabular_model"
    assert default_model_name(f"sqlite:///{tmp_path / 'absent.db'}") == DEFAULT_MODEL_NAME
    _store(tmp_path / "other.db", ["churn_model"])
    assert default_model_name(f"sqlite:///{tmp_path / 'other.db'}") == DEFAULT_MODEL_NAME
    (tmp_path / "empty.db").write_bytes(b"")
    assert default_model_name(f"sqlite:///{tmp_path / 'empty.db'}") == DEFAULT_MODEL_NAME
    assert default_model_name("http://mlflow:5000") == DEFAULT_MODEL_NAME


def test_an_existing_registry_keeps_tabular_classifier(tmp_path, monkeypatch):
    db = tmp_path / "mlflow.db"
    _store(db, [LEGACY_MODEL_NAME])
    monkeypatch.delenv("ML_PIPELINE_MODEL_NAME", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    assert get_settings().model_name == LEGACY_MODEL_NAME
    monkeypatch.setenv("ML_PIPELINE_MODEL_NAME", "explicit")
    assert get_settings().model_name == "explicit"


def test_tracking_auth_headers_send_what_mlflows_client_sends(monkeypatch):
    import base64

    from include.ml_pipeline.config import tracking_auth_headers

    for name in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    assert tracking_auth_headers() == {}
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "svc")
    assert tracking_auth_headers() == {}  # a user without a password: no basic auth
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "placeholder-password")
    pair = base64.b64encode(b"svc:placeholder-password").decode()
    assert tracking_auth_headers() == {"Authorization": f"Basic {pair}"}
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "placeholder-token")
    assert tracking_auth_headers() == {"Authorization": "Bearer placeholder-token"}
