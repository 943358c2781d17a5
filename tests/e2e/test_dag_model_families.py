"""The DAG with LightGBM, XGBoost, your own estimator (the example module) and a searched
candidate, on binary, multiclass and regression data: every candidate trained, the winner
deployed and answering on the API; a bad import path, an object that is not an estimator and
a fit that fails refused at `iniciar_experimento`, before any worker trains, with the
candidate, the path and the reason."""

from __future__ import annotations

import httpx
import pandas as pd
import pytest
from mlflow import MlflowClient

from include.ml_pipeline.config import get_settings
from include.ml_pipeline.data_preparation.sample_data import REGRESSION_TARGET, write_dataset

pytestmark = pytest.mark.e2e

CUSTOM = "include.custom_models.ratio_features:ratio_boosting_{}"
#: problem -> (target column, the example factory's suffix)
PROBLEMS = {
    "binary": ("churn", "classifier"),
    "multiclass": ("internet_service", "classifier"),  # monthly charges follow the service
    "regression": (REGRESSION_TARGET, "regressor"),
}


def _candidates(problem: str) -> list[dict]:
    candidates = [
        {"name": "lgbm", "estimator": "lightgbm", "params": {"n_estimators": 60}},
        {"name": "xgb", "estimator": "xgboost", "params": {"n_estimators": 60, "max_depth": 4}},
        {
            "name": "ratios",
            "estimator": CUSTOM.format(PROBLEMS[problem][1]),
            "input": "raw",
            "params": {"max_iter": 60},
        },
        {
            "name": "lgbm_tuned",
            "estimator": "lightgbm",
            "params": {"n_estimators": 40},
            "search": {
                "n_trials": 3,
                "seed": 3,
                "params": {
                    "learning_rate": {"type": "float", "low": 0.03, "high": 0.3, "log": True},
                    "num_leaves": {"type": "int", "low": 4, "high": 31},
                },
            },
        },
    ]
    if problem == "binary":  # the same search again, in its own task: reproducible
        candidates.append({**candidates[-1], "name": "lgbm_tuned_again"})
    return candidates


@pytest.fixture(scope="module")
def data(pipeline_home):
    folder = pipeline_home / "incoming"
    return {
        "classification": write_dataset(folder / "families.csv", rows=1_000, seed=21),
        "regression": write_dataset(
            folder / "families_spend.csv", rows=1_000, seed=21, problem="regression"
        ),
    }


def _client() -> MlflowClient:
    uri = get_settings().mlflow_tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_lightgbm_xgboost_custom_and_searched_candidates_the_winner_served(
    problem, run_dag, data, api_url
):
    target = PROBLEMS[problem][0]
    csv = data["regression" if problem == "regression" else "classification"]
    model = f"families_{problem}"
    result = run_dag(
        {
            "data_uri": str(csv),
            "target": target,
            "model_name": model,
            "candidates": _candidates(problem),
            "latency_p95_budget_ms": 500.0,
        }
    )
    assert result.state == "success", result.log[-4000:]
    assert result.result("preparacion_datos.validar_datos")["problem_type"] == problem
    names = [candidate["name"] for candidate in _candidates(problem)]
    trained = [
        result.result(f"entrenamiento_evaluacion.entrenar_modelo[{index}]")
        for index in range(len(names))
    ]
    assert sorted(r["candidate"] for r in trained) == sorted(names)
    tuned = next(r for r in trained if r["candidate"] == "lgbm_tuned")
    assert {"learning_rate", "num_leaves"} <= set(tuned["params"])  # the best values
    again = [r for r in trained if r["candidate"] == "lgbm_tuned_again"]
    for other in again:  # same seed, same data, another worker: the same best parameters
        assert other["params"] == tuned["params"]
        assert other["run_id"] != tuned["run_id"]
    client = _client()
    trials = client.search_runs(
        [client.get_run(tuned["run_id"]).info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{tuned['run_id']}'",
    )
    assert len(trials) == 3

    registered = result.result("entrenamiento_evaluacion.registrar_mlflow")
    assert registered["candidate"] in names
    assert result.task_state("notificar_despliegue_exitoso") == "success"
    champion = client.get_model_version_by_alias(model, "champion")
    assert str(champion.version) == registered["version"]

    rows = pd.read_csv(csv).drop(columns=[target]).head(3)
    records = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
    # one API serves every problem's model: the bare routes are the first one's
    answer = httpx.post(
        f"{api_url}/models/{model}/invocations", json={"dataframe_records": records}, timeout=30
    ).json()
    assert len(answer["predictions"]) == 3, answer
    served = httpx.get(f"{api_url}/models/{model}", timeout=30).json()
    assert str(served["version"]) == registered["version"]


@pytest.mark.parametrize(
    ("bad", "reasons_say"),
    [
        pytest.param(
            {"name": "mine", "estimator": "include.custom_models.no_such_module:Model"},
            [
                "'include.custom_models.no_such_module:Model' does not import",
                "ModuleNotFoundError",
                "put the module under include/",  # the fix
            ],
            id="path-does-not-import",
        ),
        pytest.param(
            {"name": "mine", "estimator": "collections:OrderedDict"},
            ["gave a OrderedDict, which is not a scikit-learn estimator", "no fit, predict"],
            id="not-an-estimator",
        ),
        pytest.param(
            {
                "name": "mine",
                "estimator": CUSTOM.format("classifier"),
                "input": "raw",
                "params": {"ratios": [["nope", "tenure_months"]]},
            },
            [
                "failed before any worker trained",
                "RatioFeatures: column(s) nope not in the input",
            ],
            id="fit-fails",
        ),
    ],
)
def test_a_broken_candidate_is_refused_at_iniciar_experimento(run_dag, data, bad, reasons_say):
    result = run_dag(
        {
            "data_uri": str(data["classification"]),
            "model_name": "families_refused",
            "candidates": [{"name": "lgbm", "estimator": "lightgbm"}, bad],
        }
    )
    assert result.state == "failed"
    start = result.dag_run.get_task_instance("entrenamiento_evaluacion.iniciar_experimento")
    assert (start.state, start.try_number) == ("failed", 1)  # refused at once, no retry
    assert not any(
        key.startswith("entrenamiento_evaluacion.entrenar_modelo") and task["state"] == "success"
        for key, task in result.tasks.items()
    )
    from include.ml_pipeline.notifications import read_log

    reasons = " ".join(read_log()[-1]["reasons"])
    assert "candidate 'mine'" in reasons, reasons
    for words in reasons_say:
        assert words in reasons, reasons
