"""Generality: the same functions on a differently shaped dataset — scikit-learn's wine
data (shipped with the package): 13 numeric features, no categoricals, 3 integer classes."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from include.ml_pipeline.features import FeatureSpec
from include.ml_pipeline.training.evaluate import evaluate_on_test, select_best
from include.ml_pipeline.training.train import fit_candidate, start_parent_run

CANDIDATES = [
    {"name": "logreg", "estimator": "logistic_regression", "params": {"C": 1.0}},
    {"name": "hgb", "estimator": "hist_gradient_boosting", "params": {"max_iter": 50}},
]


@pytest.fixture(scope="module")
def wine(tmp_path_factory, split_writer):
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame  # features + int "target" column
    frame.columns = [c.replace("/", "_") for c in frame.columns]
    spec = FeatureSpec("target", [c for c in frame.columns if c != "target"], [])
    return spec, split_writer(frame, tmp_path_factory.mktemp("wine"), seed=1)


def test_multiclass_int_labels_train_and_evaluate(wine, mlflow_store):
    spec, paths = wine
    uri = mlflow_store["tracking_uri"]
    parent = start_parent_run(
        tracking_uri=uri,
        experiment="wine",
        artifact_location=mlflow_store["artifact_location"] + "/wine",
        airflow_run_id="wine-1",
    )
    results = [
        fit_candidate(
            candidate,
            paths["train"],
            paths["validation"],
            spec,
            tracking_uri=uri,
            experiment="wine",
            parent_run_id=parent,
        )
        for candidate in CANDIDATES
    ]
    for result in results:
        assert result.metrics["roc_auc"] > 0.9, result
    best = select_best(results, "log_loss")  # lower is better, inferred
    assert best.greater_is_better is False
    evaluation = evaluate_on_test(
        best.best.model_uri, paths["test"], spec, tracking_uri=uri, model_name="wine_model"
    )
    assert evaluation.classes == [0, 1, 2]
    assert evaluation.metrics["roc_auc"] > 0.9
    assert evaluation.metrics["accuracy"] > 0.8
    assert evaluation.champion is None
    listed = {a.path for a in MlflowClient(uri).list_artifacts(best.best.run_id, "plots")}
    assert "plots/confusion_matrix.png" in listed
    assert "plots/roc_curve.png" in listed

    # Promote it and evaluate again: the champion is scored on the same (multiclass) split.
    from include.ml_pipeline.registry import registry

    version = registry.register_challenger(
        best.best.model_uri, "wine_model", airflow_run_id="wine-1", tracking_uri=uri
    )
    registry.promote_to_champion("wine_model", version, tracking_uri=uri)
    again = evaluate_on_test(
        best.best.model_uri, paths["test"], spec, tracking_uri=uri, model_name="wine_model"
    )
    assert again.champion["version"] == version
    assert again.champion["metrics"] == pytest.approx(evaluation.metrics)
