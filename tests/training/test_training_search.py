"""The `search` block run for real: Optuna trials as nested MLflow runs under the
candidate's run, the best values and the history logged, the model refitted with the best
values, the same seed giving the same best values, hopeless trials pruned; LightGBM and
XGBoost models logged so that MLflow loads them back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from include.ml_pipeline.features import coerce_features
from include.ml_pipeline.registry.mlflow_setup import load_sklearn_model
from include.ml_pipeline.training.train import fit_candidate, start_parent_run

SEARCH = {
    "n_trials": 3,
    "seed": 5,
    "params": {
        "learning_rate": {"type": "float", "low": 0.02, "high": 0.3, "log": True},
        "num_leaves": {"type": "int", "low": 4, "high": 32},
        "min_child_samples": {"type": "categorical", "choices": [5, 20, 80]},
    },
}
SEARCHED = {"name": "lgbm_tuned", "estimator": "lightgbm", "params": {"n_estimators": 30}}


@pytest.fixture(scope="module")
def fit(mlflow_store, churn_splits, churn_spec):
    def run(candidate, airflow_run_id):
        parent = start_parent_run(airflow_run_id=airflow_run_id, **mlflow_store)
        return fit_candidate(
            candidate,
            churn_splits["train"],
            churn_splits["validation"],
            churn_spec,
            parent_run_id=parent,
            **mlflow_store,
        )

    return run


@pytest.fixture(scope="module")
def searched(fit):
    return [fit({**SEARCHED, "search": SEARCH}, f"search-{i}") for i in (1, 2)]


def test_every_trial_is_a_nested_run_under_the_candidate_run(searched, mlflow_store):
    client = MlflowClient(mlflow_store["tracking_uri"])
    result = searched[0]
    run = client.get_run(result.run_id)
    trials = client.search_runs(
        [run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{result.run_id}'"
    )
    assert len(trials) == SEARCH["n_trials"]
    for trial in trials:
        assert trial.data.tags["ml_pipeline.role"] == "trial"
        assert set(trial.data.params) == set(SEARCH["params"])
        assert "validation_roc_auc" in trial.data.metrics
    # the trials are not candidates: the DAG's parent run still has one candidate child
    siblings = client.search_runs(
        [run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'"
    )
    assert [r.info.run_id for r in siblings] == [result.run_id]

    best = json.loads(
        Path(client.download_artifacts(result.run_id, "search/best_params.json")).read_text()
    )
    history = json.loads(
        Path(client.download_artifacts(result.run_id, "search/history.json")).read_text()
    )
    csv = Path(client.download_artifacts(result.run_id, "search/history.csv")).read_text()
    assert len(history["trials"]) == SEARCH["n_trials"]
    assert csv.splitlines()[0].startswith("number,state,validation_roc_auc")
    completed = [t for t in history["trials"] if t["state"] == "complete"]
    assert max(t["value"] for t in completed) == pytest.approx(history["best_value"])
    # every completed trial was scored on a quarter of the rows first (the pruning step)
    assert all(set(t["steps"]) == {"0", "1"} for t in completed)
    # the model was refitted with the best values, which the run and the result carry
    assert result.params == {"n_estimators": 30, **best}
    for name, value in best.items():
        assert run.data.params[name] == str(value)
    assert run.data.params["search_seed"] == "5"
    assert run.data.metrics["search_trials_complete"] == len(completed)


def test_the_same_seed_gives_the_same_best_params(searched):
    first, second = searched
    assert first.run_id != second.run_id
    assert first.params == second.params
    assert first.metrics == second.metrics


def test_a_hopeless_trial_is_pruned_after_its_quarter_data_step(fit, mlflow_store):
    # Seed 1 samples 20, 5, 600, 600, 20. A leaf of 600 rows cannot split a quarter of the
    # 1,400 training rows: ROC AUC 0.5 at the first step, below the median of the first two.
    search = {
        "n_trials": 5,
        "seed": 1,
        "params": {"min_child_samples": {"type": "categorical", "choices": [5, 20, 600]}},
    }
    result = fit({**SEARCHED, "name": "pruned", "search": search}, "search-prune")
    client = MlflowClient(mlflow_store["tracking_uri"])
    history = json.loads(
        Path(client.download_artifacts(result.run_id, "search/history.json")).read_text()
    )
    pruned = [t for t in history["trials"] if t["state"] == "pruned"]
    assert [t["number"] for t in pruned] == [2, 3], history
    # a pruned trial stopped at the quarter-data step: it was never fitted on all rows
    assert all(set(t["steps"]) == {"0"} for t in pruned)
    assert all(t["params"]["min_child_samples"] == 600 for t in pruned)
    assert client.get_run(result.run_id).data.metrics["search_trials_pruned"] == len(pruned)


@pytest.mark.parametrize("kind", ["lightgbm", "xgboost"])
def test_lightgbm_and_xgboost_models_load_back_from_mlflow(
    kind, fit, churn_splits, churn_spec, mlflow_store
):
    import pandas as pd

    result = fit({"name": kind, "estimator": kind, "params": {"n_estimators": 30}}, f"load-{kind}")
    assert result.metrics["roc_auc"] > 0.7
    model = load_sklearn_model(result.model_uri)
    X = coerce_features(pd.read_parquet(churn_splits["test"]).head(20), churn_spec)
    assert set(model.predict(X)) <= {"no", "yes"}
    assert model.predict_proba(X).shape == (20, 2)
    requirements = MlflowClient(mlflow_store["tracking_uri"]).download_artifacts(
        result.run_id, "model/requirements.txt"
    )
    package = "lightgbm" if kind == "lightgbm" else "xgboost-cpu"
    assert f"{package}==" in Path(requirements).read_text()
