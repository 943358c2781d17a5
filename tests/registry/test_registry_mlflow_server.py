"""The same code against a real `mlflow server` on loopback (SQLite backend, proxied
artifacts), started and stopped by the test."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from include.ml_pipeline.data_preparation.sample_data import (
    CATEGORICAL_COLUMNS,
    NUMERIC_COLUMNS,
    TARGET,
    generate_churn_frame,
)
from include.ml_pipeline.features import FeatureSpec
from include.ml_pipeline.registry import registry
from include.ml_pipeline.registry.decision import decide_deployment
from include.ml_pipeline.registry.mlflow_setup import ensure_experiment
from include.ml_pipeline.training.evaluate import evaluate_on_test
from tests.support.mlflow_server import local_mlflow_server

MODEL = "served_model"
pytestmark = pytest.mark.services  # a real `mlflow server` process

STARTUP_SECONDS = 120
CHEAP = {"importance_rows": 100, "importance_repeats": 1}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-server")
    with local_mlflow_server(root, timeout=STARTUP_SECONDS) as url:
        yield {"uri": url, "root": root}


def test_train_evaluate_register_promote_through_the_server(server, small_model_logger):
    import mlflow.sklearn

    uri = server["uri"]
    # A local file: artifact root is not handed to a server: it owns artifact storage.
    experiment_id = ensure_experiment(
        uri, "server-tests", artifact_location=(server["root"] / "ignored").as_uri()
    )
    client = MlflowClient(uri)
    assert client.get_experiment(experiment_id).artifact_location.startswith("mlflow-artifacts:")

    data = server["root"] / "data"
    logged = small_model_logger(data, uri, experiment="server-tests")
    assert not (server["root"] / "ignored").exists()
    assert list((server["root"] / "server-artifacts").rglob("model.skops"))

    test_path = data / "test.parquet"
    generate_churn_frame(300, seed=11).to_parquet(test_path, index=False)
    spec = FeatureSpec(TARGET, list(NUMERIC_COLUMNS), list(CATEGORICAL_COLUMNS))
    evaluation = evaluate_on_test(
        logged.model_uri, str(test_path), spec, tracking_uri=uri, model_name=MODEL, **CHEAP
    )
    assert evaluation.champion is None
    listed = {a.path for a in client.list_artifacts(logged.run_id, "plots")}
    assert "plots/roc_curve.png" in listed

    kwargs = {
        "airflow_run_id": "server-run-1",
        "metrics": evaluation.metrics,
        "data_fingerprint": evaluation.test_fingerprint,
        "tracking_uri": uri,
    }
    version = registry.register_challenger(logged.model_uri, MODEL, **kwargs)
    assert registry.register_challenger(logged.model_uri, MODEL, **kwargs) == version
    assert len(client.search_model_versions(f"name = '{MODEL}'")) == 1
    assert registry.get_alias_version(MODEL, "challenger", tracking_uri=uri) == version

    decision = decide_deployment(evaluation.metrics, None, {"min_roc_auc": 0.5})
    registry.record_decision(MODEL, version, decision, tracking_uri=uri)
    assert registry.promote_to_champion(MODEL, version, tracking_uri=uri) == {
        "previous": None,
        "champion": version,
    }
    # A second version from another Airflow run, promoted, then rolled back.
    second = registry.register_challenger(
        logged.model_uri, MODEL, airflow_run_id="server-run-2", tracking_uri=uri
    )
    assert second != version
    registry.promote_to_champion(MODEL, second, tracking_uri=uri)
    assert registry.rollback_champion(MODEL, tracking_uri=uri) == version
    assert registry.get_alias_version(MODEL, "champion", tracking_uri=uri) == version

    # The champion is scored on the same split when the next challenger is evaluated,
    # loading `models:/<name>/<version>` through the server's artifact proxy.
    again = evaluate_on_test(
        logged.model_uri, str(test_path), spec, tracking_uri=uri, model_name=MODEL, **CHEAP
    )
    assert again.champion["version"] == version
    assert again.champion["metrics"] == pytest.approx(evaluation.metrics)
    model = mlflow.sklearn.load_model(f"models:/{MODEL}@champion")
    assert [name for name, _ in model.steps] == ["preprocess", "model"]
