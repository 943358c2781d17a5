"""`make run DATA=file TARGET=column` on datasets shaped unlike the sample data.

Each run goes through `run_pipeline.main` (what `make run` calls) and the whole DAG:
validation, preprocessing, training, registry, the deploy gate, the live API and its
smoke tests on rows of the run's own test split.
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from devtools import run_pipeline
from include.ml_pipeline.config import get_settings
from tests.support.models import titanic_passengers as _titanic

FAST = json.dumps(
    [
        {"name": "logreg_c1", "estimator": "logistic_regression", "params": {"C": 1.0}},
        {
            "name": "hgb_small",
            "estimator": "hist_gradient_boosting",
            "params": {"max_iter": 60, "max_depth": 3},
        },
    ]
)


def _run(path, target, model_name, *extra):
    argv = [
        "--data",
        str(path),
        "--target",
        target,
        "--conf",
        f"candidates={FAST}",
        "--conf",
        f'model_name="{model_name}"',
        "--conf",
        "latency_p95_budget_ms=500",
        *extra,
    ]
    code = run_pipeline.main(argv)
    summary = json.loads((get_settings().home / "run_summary.json").read_text())
    return code, summary


def test_wine_multiclass_integer_labels_numeric_only(airflow_db, pipeline_home):
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame  # 178 rows, 13 numeric columns, target 0/1/2
    path = pipeline_home / "incoming" / "wine.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)

    code, summary = _run(path, "target", "wine_classifier", "--conf", "min_rows=100")
    assert code == 0, summary["failed_tasks"]
    assert summary["state"] == "success"
    assert len(summary["data"]["feature_spec"]["numeric"]) == 13
    assert summary["data"]["feature_spec"]["categorical"] == []
    assert summary["model"]["name"] == "wine_classifier"
    assert summary["model"]["test_metrics"]["roc_auc"] > 0.95
    assert summary["decision"]["deploy"] is True
    url = summary["deployment"]["api_url"]
    assert httpx.get(f"{url}/version").json()["model_name"] == "wine_classifier"
    row = frame.drop(columns=["target"]).iloc[:3]
    answer = httpx.post(f"{url}/invocations", json={"dataframe_records": row.to_dict("records")})
    assert answer.status_code == 200
    assert answer.json()["predictions"] == [0, 0, 0]  # integers, not "0"


def test_string_labels_categoricals_missing_values_and_an_id_column(airflow_db, pipeline_home):
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=1500, n_features=5, n_informative=4, n_redundant=0, n_classes=3, random_state=3
    )
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(5)])
    frame.insert(0, "order_id", [f"ORD-{i:06d}" for i in range(len(frame))])
    frame["segment"] = pd.cut(
        frame["x0"] + rng.normal(0, 0.3, len(frame)),
        4,
        labels=["bronze", "silver", "gold", "platinum"],
    ).astype(object)
    frame.loc[rng.random(len(frame)) < 0.05, "segment"] = None
    frame.loc[rng.random(len(frame)) < 0.05, "x3"] = np.nan
    frame["grade"] = np.array(["low", "mid", "high"])[y]
    path = pipeline_home / "incoming" / "grades.csv"
    frame.to_csv(path, index=False)

    code, summary = _run(path, "grade", "grade_classifier")
    assert code == 0, summary["failed_tasks"]
    spec = summary["data"]["feature_spec"]
    assert spec["categorical"] == ["segment"]
    assert "order_id" in summary["data"]["excluded_columns"]
    assert summary["decision"]["deploy"] is True
    url = summary["deployment"]["api_url"]
    record = {"x0": 0.1, "x1": -1.0, "x2": 0.5, "x3": None, "x4": 2.0, "segment": None}
    # the API serves every deployed model; the bare /invocations is the first one's (wine)
    answer = httpx.post(
        f"{url}/models/grade_classifier/invocations", json={"dataframe_records": [record]}
    )
    assert answer.status_code == 200
    assert answer.json()["predictions"][0] in {"low", "mid", "high"}


def test_a_small_real_table_runs_to_a_decision_with_the_defaults(airflow_db, pipeline_home):
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame  # 150 rows, 4 numeric columns, target 0/1/2
    path = pipeline_home / "incoming" / "iris.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)

    code, summary = _run(path, "target", "iris_classifier")  # no min_rows override
    assert code == 0, summary["failed_tasks"]
    assert summary["data"]["rows_clean"] == 150
    assert any("only 150 rows" in w for w in summary["data"]["warnings"])
    assert summary["decision"]["deploy"] is True
    assert any("class-prior baseline" in r for r in summary["decision"]["reasons"])


def titanic_passengers() -> pd.DataFrame:
    # "age_group", not "age": the model API's inference log is shared by every model the
    # tests deploy, and a numeric "age" of the churn models sits next to this text one.
    return _titanic("age_group")


def test_an_all_categorical_table_with_repeated_rows_runs_to_a_decision(airflow_db, pipeline_home):
    path = pipeline_home / "incoming" / "titanic.csv"
    titanic_passengers().to_csv(path, index=False)

    code, summary = _run(path, "survived", "titanic_classifier")
    assert code == 0, summary["failed_tasks"]
    assert summary["data"]["rows_clean"] == 1316  # repeated rows kept, not de-duplicated
    assert summary["data"]["feature_spec"]["categorical"] == ["class", "sex", "age_group"]
    assert any("they are kept" in w for w in summary["data"]["warnings"])
    assert summary["decision"]["deploy"] is True
    assert summary["model"]["test_metrics"]["roc_auc"] > 0.7


# ------------------------------------------------------------------------ the input contract

CONTRACT_MODEL = "contract_classifier"


def _churn(path, seed, change=None):
    from include.ml_pipeline.data_preparation.sample_data import generate_churn_frame

    frame = generate_churn_frame(1500, seed=seed)
    if change:
        frame = change(frame)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def _renamed_and_dropped(frame):
    """`age` renamed, `region` dropped."""
    return frame.rename(columns={"age": "age_years"}).drop(columns=["region"])


def _changed_schema(frame):
    """`age` renamed, `region` dropped, `support_tickets` turned into text."""
    frame = _renamed_and_dropped(frame)
    frame["support_tickets"] = np.where(frame["support_tickets"] > 1, "many", "few")
    return frame


def test_a_changed_input_contract_is_rejected_naming_each_difference(airflow_db, pipeline_home):
    from include.ml_pipeline.names import CONTRACT_CHANGES_TAG, INPUT_CONTRACT_TAG
    from include.ml_pipeline.registry.contract import load_contract

    incoming = pipeline_home / "incoming"
    code, first = _run(_churn(incoming / "contract_v1.csv", 21), "churn", CONTRACT_MODEL)
    assert code == 0, first["failed_tasks"]
    champion = first["model"]["version"]
    assert first["model"]["champion_after"] == champion
    uri = get_settings().mlflow_tracking_uri
    contract = load_contract(uri, CONTRACT_MODEL, champion)
    assert [c["name"] for c in contract["columns"]][:2] == ["tenure_months", "monthly_charges"]
    assert contract["target"] == {
        "name": "churn",
        "type": "string",
        "labels": ["no", "yes"],
        "problem_type": "binary",
    }
    assert first["model"]["contract"]["uri"] == contract["uri"]

    changed = _churn(incoming / "contract_v2.csv", 22, _changed_schema)
    code, second = _run(changed, "churn", CONTRACT_MODEL)
    assert code == 0, second["failed_tasks"]  # a rejection is a successful run
    decision = second["decision"]
    assert decision["deploy"] is False
    text = " ".join(decision["reasons"])
    assert "input contract" in decision["reasons"][0]
    assert "could not be scored on this test split" in text  # and says why
    assert "column 'age' (numeric) is no longer an input" in text
    assert "column 'region' (categorical) is no longer an input" in text
    assert "new column 'age_years' (numeric) would be required" in text
    assert "'support_tickets' changes from numeric to categorical" in text
    assert second["model"]["champion_after"] == champion  # the champion did not move
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    rejected = client.get_model_version(CONTRACT_MODEL, second["model"]["version"])
    assert rejected.tags["deployment_decision"] == "reject"
    assert "age_years" in rejected.tags[CONTRACT_CHANGES_TAG]
    assert rejected.tags[INPUT_CONTRACT_TAG].endswith("contract/input_contract.json")
    served = httpx.get(f"{second['api']['url']}/version").json()
    assert str(served["model_version"]) == champion

    # Allowed explicitly, a change deploys, and the notification tells clients. (Not the
    # retyped column: the model API's inference log is shared by every model the tests
    # deploy, and text in "support_tickets" would break the drift check of later churn
    # models, which reads that log whatever the model.)
    changed = _churn(incoming / "contract_v3.csv", 23, _renamed_and_dropped)
    code, third = _run(
        changed,
        "churn",
        CONTRACT_MODEL,
        "--conf-string",
        "allow_contract_change=true test_size=0.2",
    )
    assert code == 0, third["failed_tasks"]
    assert third["decision"]["deploy"] is True
    assert third["model"]["champion_after"] == third["model"]["version"]
    deployed = next(n for n in third["notifications"] if n["event"] == "deployed")
    assert "CHANGED INPUT CONTRACT" in deployed["title"]
    from include.ml_pipeline.notifications import read_log

    note = next(n for n in reversed(read_log()) if n["event"] == "deployed")
    assert note["reasons"][0].startswith("Clients must change")
    assert any("send 'age_years'" in r for r in note["reasons"])


def test_boolean_labels_are_served_as_booleans(airflow_db, pipeline_home):
    incoming = pipeline_home / "incoming"
    path = _churn(
        incoming / "bool_labels.csv", 31, lambda f: f.assign(churn=f["churn"] == "yes")
    )  # written True/False
    code, summary = _run(path, "churn", "bool_classifier")
    assert code == 0, summary["failed_tasks"]
    assert summary["model"]["contract"]["target"] == {
        "name": "churn",
        "type": "boolean",
        "labels": [False, True],
        "problem_type": "binary",
    }
    url = summary["deployment"]["api_url"]
    row = pd.read_csv(path).drop(columns=["churn"]).iloc[:3]
    record = json.loads(row.to_json(orient="records"))
    answer = httpx.post(
        f"{url}/models/bool_classifier/invocations", json={"dataframe_records": record}
    )
    assert answer.status_code == 200, answer.text
    assert all(isinstance(p, bool) for p in answer.json()["predictions"])  # not "true"
