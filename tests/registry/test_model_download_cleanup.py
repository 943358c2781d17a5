"""Loading a model in a task leaves nothing in the worker's TMPDIR (a long-lived Celery
worker would pile up one model download per task otherwise)."""

from __future__ import annotations

import tempfile

import numpy as np


def test_load_sklearn_model_removes_its_download(tmp_path, monkeypatch):
    import mlflow
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    from include.ml_pipeline.registry.mlflow_setup import configure_mlflow, load_sklearn_model

    configure_mlflow(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.create_experiment("cleanup", artifact_location=(tmp_path / "art").as_uri())
    X = np.random.default_rng(0).normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.sklearn.log_model(
            LogisticRegression().fit(X, y), name="model", serialization_format="cloudpickle"
        )
    worker_tmp = tmp_path / "worker_tmp"
    worker_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(worker_tmp))
    model = load_sklearn_model(f"runs:/{run.info.run_id}/model")
    assert list(model.predict(X[:5])) == list(LogisticRegression().fit(X, y).predict(X[:5]))
    assert list(worker_tmp.iterdir()) == []
