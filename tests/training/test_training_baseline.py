"""The class-prior baseline the gate compares with, and data scikit-learn refuses failing
as a `TrainingDataError` (not retried)."""

from __future__ import annotations

import numpy as np
import pytest

from include.ml_pipeline.data_preparation.sample_data import generate_churn_frame
from include.ml_pipeline.errors import TrainingDataError
from include.ml_pipeline.training.evaluate import class_prior_baseline
from include.ml_pipeline.training.train import fit_candidate, start_parent_run


def test_the_prior_scores_auc_one_half_and_the_majority_share():
    train = ["no"] * 70 + ["yes"] * 30
    test = ["no"] * 60 + ["yes"] * 40
    metrics = class_prior_baseline(train, test)
    assert metrics["roc_auc"] == pytest.approx(0.5)
    assert metrics["accuracy"] == pytest.approx(0.6)
    expected = -(0.6 * np.log(0.7) + 0.4 * np.log(0.3))
    assert metrics["log_loss"] == pytest.approx(expected)


def test_multiclass_booleans_and_integers():
    assert class_prior_baseline([0, 1, 2, 2], [2, 1, 0, 2])["accuracy"] == pytest.approx(0.5)
    assert class_prior_baseline([True, False, True], [True, False])["roc_auc"] == 0.5


def test_a_test_label_unknown_to_training_gives_none():
    assert class_prior_baseline(["a", "b"], ["a", "c"]) is None


def test_infinite_training_values_fail_as_training_data_errors(
    mlflow_store, tmp_path, churn_spec, split_writer
):
    frame = generate_churn_frame(400, seed=2)
    frame.loc[:10, "age"] = np.inf
    paths = split_writer(frame, tmp_path)
    parent = start_parent_run(
        tracking_uri=mlflow_store["tracking_uri"],
        experiment=mlflow_store["experiment"],
        artifact_location=mlflow_store["artifact_location"],
        airflow_run_id="inf-run",
    )
    with pytest.raises(
        TrainingDataError,
        match=r"candidate 'logreg' cannot be fitted on .*"
        r"train\.parquet: .*infinity",
    ):
        fit_candidate(
            {"name": "logreg", "estimator": "logistic_regression"},
            paths["train"],
            paths["validation"],
            churn_spec,
            tracking_uri=mlflow_store["tracking_uri"],
            experiment=mlflow_store["experiment"],
            parent_run_id=parent,
        )
