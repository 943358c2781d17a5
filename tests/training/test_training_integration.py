"""Training, evaluation and registry against a real MLflow store (tmp SQLite + folder).

One module-scoped flow: a parent run, two candidates (logistic regression and
HistGradientBoosting), evaluation of the best on the test split, registration, the gate,
promotion; then a weak candidate from a second Airflow run that the gate rejects.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import pytest
from mlflow import MlflowClient

from include.ml_pipeline.features import coerce_features
from include.ml_pipeline.registry import registry
from include.ml_pipeline.registry.decision import decide_deployment
from include.ml_pipeline.storage import as_uri
from include.ml_pipeline.training.candidates import WEAK_CANDIDATE
from include.ml_pipeline.training.evaluate import evaluate_on_test, select_best
from include.ml_pipeline.training.train import (
    finish_parent_run,
    fit_candidate,
    start_parent_run,
)

CANDIDATES = [
    {"name": "logreg", "estimator": "logistic_regression", "params": {"C": 1.0}},
    {
        "name": "hgb",
        "estimator": "hist_gradient_boosting",
        "params": {"max_iter": 50, "max_depth": 3},
    },
]
MODEL = "churn_model"
THRESHOLDS = {"min_roc_auc": 0.75, "min_accuracy": 0.70, "max_log_loss": 0.60, "tolerance": 0.01}


def _airflow_tags(run_id: str, index: int) -> dict[str, object]:
    return {
        "dag_id": "ml_model_deployment_advanced",
        "run_id": run_id,
        "task_id": "entrenamiento_evaluacion.entrenar_modelo",
        "map_index": index,
    }


@pytest.fixture(scope="module")
def trained(mlflow_store, churn_splits, churn_spec):
    parent = start_parent_run(
        tracking_uri=mlflow_store["tracking_uri"],
        experiment=mlflow_store["experiment"],
        artifact_location=mlflow_store["artifact_location"],
        airflow_run_id="run-1",
        tags={"dag_id": "ml_model_deployment_advanced"},
    )
    results = [
        fit_candidate(
            candidate,
            churn_splits["train"],
            churn_splits["validation"],
            churn_spec,
            tracking_uri=mlflow_store["tracking_uri"],
            experiment=mlflow_store["experiment"],
            parent_run_id=parent,
            tags=_airflow_tags("run-1", index),
        )
        for index, candidate in enumerate(CANDIDATES)
    ]
    return {"parent": parent, "results": results}


@pytest.fixture(scope="module")
def evaluated(trained, mlflow_store, churn_splits, churn_spec):
    best = select_best(trained["results"], "roc_auc", True)
    evaluation = evaluate_on_test(
        best.best.model_uri,
        churn_splits["test"],
        churn_spec,
        tracking_uri=mlflow_store["tracking_uri"],
        run_id=best.best.run_id,
        model_name=MODEL,
    )
    return {"best": best, "evaluation": evaluation}


@pytest.fixture(scope="module")
def client(mlflow_store) -> MlflowClient:
    return MlflowClient(mlflow_store["tracking_uri"])


def _children(client, experiment_id, parent):
    return client.search_runs(
        [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'"
    )


def test_parent_run_is_idempotent_per_airflow_run(trained, mlflow_store, client):
    again = start_parent_run(
        tracking_uri=mlflow_store["tracking_uri"],
        experiment=mlflow_store["experiment"],
        airflow_run_id="run-1",
    )
    assert again == trained["parent"]
    parent = client.get_run(trained["parent"])
    assert parent.data.tags["airflow_run_id"] == "run-1"
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.artifact_location == mlflow_store["artifact_location"]
    assert parent.info.status == "RUNNING"
    finish_parent_run(tracking_uri=mlflow_store["tracking_uri"], run_id=trained["parent"])
    finish_parent_run(tracking_uri=mlflow_store["tracking_uri"], run_id=trained["parent"])
    assert client.get_run(trained["parent"]).info.status == "FINISHED"
    # A cleared-and-rerun task still finds the (finished) parent rather than a new one.
    assert (
        start_parent_run(
            tracking_uri=mlflow_store["tracking_uri"],
            experiment=mlflow_store["experiment"],
            airflow_run_id="run-1",
        )
        == trained["parent"]
    )


def test_one_nested_run_per_candidate_with_everything_logged(trained, client, churn_splits):
    parent = client.get_run(trained["parent"])
    children = _children(client, parent.info.experiment_id, trained["parent"])
    assert sorted(r.data.tags["ml_pipeline.candidate"] for r in children) == ["hgb", "logreg"]
    for result in trained["results"]:
        run = client.get_run(result.run_id)
        assert run.info.status == "FINISHED"
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == trained["parent"]
        assert tags["dag_id"] == "ml_model_deployment_advanced"
        assert tags["run_id"] == "run-1"
        assert tags["task_id"].endswith("entrenar_modelo")
        assert tags["map_index"] in {"0", "1"}
        assert tags["airflow_run_id"] == "run-1"
        params = run.data.params
        assert params["candidate"] == result.candidate
        assert params["estimator"] == result.estimator
        assert int(params["train_rows"]) == 1400
        metrics = run.data.metrics
        for name in ("roc_auc", "accuracy", "f1", "precision", "recall", "log_loss"):
            assert metrics[f"validation_{name}"] == pytest.approx(result.metrics[name])
        assert metrics["fit_seconds"] > 0
        inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
        assert set(inputs) == {"train", "validation"}
        assert inputs["train"].dataset.digest == result.train_fingerprint
        # the source is the split's URI, so a reader on any machine finds the rows
        assert json.loads(inputs["train"].dataset.source)["uri"] == as_uri(churn_splits["train"])
        assert '"num_rows": 1400' in inputs["train"].dataset.profile
        assert result.model_uri.startswith("models:/")
        assert result.metrics["roc_auc"] > 0.75


def test_logged_model_follows_the_serving_contract(trained, churn_splits, churn_spec):
    import mlflow.pyfunc
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import get_model_info

    frame = pd.read_parquet(churn_splits["test"]).head(20)
    X = coerce_features(frame, churn_spec)
    for result in trained["results"]:
        info = get_model_info(result.model_uri)
        assert info.metadata == {"feature_spec": churn_spec.to_dict()}
        flavor = info.flavors["sklearn"]
        assert flavor["serialization_format"] == "skops"
        if result.estimator == "hist_gradient_boosting":
            assert any("TreePredictor" in t for t in flavor["skops_trusted_types"])
        assert [c.name for c in info.signature.inputs.inputs] == churn_spec.columns
        assert info.saved_input_example_info is not None
        pipeline = mlflow.sklearn.load_model(result.model_uri)
        assert [name for name, _ in pipeline.steps] == ["preprocess", "model"]
        assert set(pipeline.predict(X)) <= {"yes", "no"}
        # The pyfunc flavour (what `mlflow models serve` uses) accepts missing values.
        X_missing = X.copy()
        X_missing.loc[X_missing.index[0], "monthly_charges"] = None
        X_missing.loc[X_missing.index[1], "region"] = None
        assert len(mlflow.pyfunc.load_model(result.model_uri).predict(X_missing)) == 20


def test_retrained_task_reuses_its_finished_run(trained, mlflow_store, churn_splits, churn_spec):
    again = fit_candidate(
        CANDIDATES[0],
        churn_splits["train"],
        churn_splits["validation"],
        churn_spec,
        tracking_uri=mlflow_store["tracking_uri"],
        experiment=mlflow_store["experiment"],
        parent_run_id=trained["parent"],
        tags=_airflow_tags("run-1", 0),
    )
    assert again.reused is True
    assert again.run_id == trained["results"][0].run_id
    assert again.model_uri == trained["results"][0].model_uri
    assert again.metrics == pytest.approx(trained["results"][0].metrics)


def test_attempt_that_crashed_is_replaced(trained, mlflow_store, churn_splits, churn_spec, client):
    parent = client.get_run(trained["parent"])
    stale = client.create_run(
        parent.info.experiment_id,
        tags={"mlflow.parentRunId": trained["parent"], "ml_pipeline.candidate": "weak_prior"},
    )  # left RUNNING, without a model, as a killed attempt would leave it
    result = fit_candidate(
        WEAK_CANDIDATE,
        churn_splits["train"],
        churn_splits["validation"],
        churn_spec,
        tracking_uri=mlflow_store["tracking_uri"],
        experiment=mlflow_store["experiment"],
        parent_run_id=trained["parent"],
    )
    assert result.reused is False
    assert client.get_run(stale.info.run_id).info.lifecycle_stage == "deleted"
    weak_runs = [
        r
        for r in _children(client, parent.info.experiment_id, trained["parent"])
        if r.data.tags["ml_pipeline.candidate"] == "weak_prior"
    ]
    assert [r.info.run_id for r in weak_runs] == [result.run_id]
    client.delete_run(result.run_id)  # keep the parent's children to the two candidates


def test_select_best_picks_the_highest_validation_auc(evaluated, trained):
    best = evaluated["best"]
    expected = max(trained["results"], key=lambda r: r.metrics["roc_auc"])
    assert best.best.run_id == expected.run_id
    assert best.ranking[0][0] == expected.candidate


def test_evaluation_logs_metrics_and_png_plots(evaluated, client):
    evaluation = evaluated["evaluation"]
    assert evaluation.champion is None  # nothing registered yet
    assert evaluation.test_rows == 300
    assert evaluation.metrics["roc_auc"] > 0.75
    run = client.get_run(evaluation.run_id)
    for name, value in evaluation.metrics.items():
        assert run.data.metrics[f"test_{name}"] == pytest.approx(value)
    listed = {a.path for a in client.list_artifacts(evaluation.run_id, "plots")}
    for plot in (
        "confusion_matrix",
        "roc_curve",
        "precision_recall",
        "feature_importance_permutation",
    ):
        assert f"plots/{plot}.png" in listed
    assert set(evaluation.artifacts) >= listed
    root = Path(urlparse(run.info.artifact_uri).path)
    for path in listed:
        data = (root / path).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(data) > 5000
    top = [name for name, _ in evaluation.feature_importance["top"]]
    assert "contract_type" in top[:4]  # the strongest driver in the generator


def test_register_gate_promote(evaluated, mlflow_store, client):
    evaluation = evaluated["evaluation"]
    uri = mlflow_store["tracking_uri"]
    kwargs = {
        "airflow_run_id": "run-1",
        "metrics": evaluation.metrics,
        "data_fingerprint": evaluation.test_fingerprint,
        "tracking_uri": uri,
    }
    version = registry.register_challenger(evaluation.model_uri, MODEL, **kwargs)
    again = registry.register_challenger(evaluation.model_uri, MODEL, **kwargs)
    assert again == version == "1"
    assert len(client.search_model_versions(f"name = '{MODEL}'")) == 1
    assert registry.get_alias_version(MODEL, "challenger", tracking_uri=uri) == "1"
    facts = registry.describe_version(MODEL, version, tracking_uri=uri)
    assert facts["run_id"] == evaluation.run_id
    assert facts["tags"]["airflow_run_id"] == "run-1"
    assert facts["tags"]["data_fingerprint"] == evaluation.test_fingerprint
    assert float(facts["tags"]["test_roc_auc"]) == pytest.approx(evaluation.metrics["roc_auc"])

    decision = decide_deployment(evaluation.metrics, None, THRESHOLDS)
    assert decision.deploy, decision.reasons
    registry.record_decision(MODEL, version, decision, tracking_uri=uri)
    assert registry.promote_to_champion(MODEL, version, tracking_uri=uri) == {
        "previous": None,
        "champion": "1",
    }
    tags = registry.describe_version(MODEL, version, tracking_uri=uri)["tags"]
    assert tags["deployment_decision"] == "deploy"
    assert "No champion yet" in tags["deployment_reasons"]


def test_weak_candidate_is_rejected_and_champion_stays(
    evaluated, mlflow_store, churn_splits, churn_spec, client
):
    uri = mlflow_store["tracking_uri"]
    if registry.get_alias_version(MODEL, "champion", tracking_uri=uri) is None:
        pytest.skip("needs test_register_gate_promote to have promoted version 1")
    parent = start_parent_run(
        tracking_uri=uri, experiment=mlflow_store["experiment"], airflow_run_id="run-2"
    )
    weak = fit_candidate(
        WEAK_CANDIDATE,
        churn_splits["train"],
        churn_splits["validation"],
        churn_spec,
        tracking_uri=uri,
        experiment=mlflow_store["experiment"],
        parent_run_id=parent,
        tags=_airflow_tags("run-2", 0),
    )
    evaluation = evaluate_on_test(
        weak.model_uri, churn_splits["test"], churn_spec, tracking_uri=uri, model_name=MODEL
    )
    assert evaluation.metrics["roc_auc"] == pytest.approx(0.5)
    champion = evaluation.champion
    assert champion["version"] == "1"
    assert champion["error"] is None
    assert champion["metrics"] == pytest.approx(evaluated["evaluation"].metrics)

    version = registry.register_challenger(
        weak.model_uri,
        MODEL,
        airflow_run_id="run-2",
        metrics=evaluation.metrics,
        data_fingerprint=evaluation.test_fingerprint,
        tracking_uri=uri,
    )
    assert version == "2"
    decision = decide_deployment(evaluation.metrics, champion["metrics"], THRESHOLDS)
    assert decision.deploy is False
    text = " ".join(decision.reasons)
    assert "roc_auc 0.5000 is below the minimum 0.7500" in text
    assert "worse than the champion's" in text
    registry.record_decision(MODEL, version, decision, tracking_uri=uri)
    assert (
        registry.describe_version(MODEL, "2", tracking_uri=uri)["tags"]["deployment_decision"]
        == "reject"
    )
    assert registry.get_alias_version(MODEL, "champion", tracking_uri=uri) == "1"
    assert registry.get_alias_version(MODEL, "challenger", tracking_uri=uri) == "2"
