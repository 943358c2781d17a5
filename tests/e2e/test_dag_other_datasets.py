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
import pytest

from devtools import run_pipeline
from include.ml_pipeline.config import get_settings

pytestmark = pytest.mark.e2e

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
    answer = httpx.post(f"{url}/invocations", json={"dataframe_records": [record]})
    assert answer.status_code == 200
    assert answer.json()["predictions"][0] in {"low", "mid", "high"}
