"""The input contract: built from the training split, logged to the version's run, found
from the registry by `load_contract`, and compared with the champion's."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow import MlflowClient

from include.ml_pipeline.data_preparation.sample_data import generate_churn_frame
from include.ml_pipeline.features import FeatureSpec
from include.ml_pipeline.names import INPUT_CONTRACT_ARTIFACT, INPUT_CONTRACT_TAG
from include.ml_pipeline.registry import registry
from include.ml_pipeline.registry.contract import (
    CONTRACT_FORMAT,
    build_contract,
    compare_contracts,
    label_type_of,
    load_contract,
    log_contract,
    summary,
)

SPEC = FeatureSpec("churn", ["tenure_months", "age"], ["region", "contract_type"])


def contract(frame=None, spec=SPEC):
    return build_contract(generate_churn_frame(400, seed=1) if frame is None else frame, spec)


def test_contract_names_columns_kinds_categories_and_labels():
    c = contract()
    assert c["format"] == CONTRACT_FORMAT
    assert [col["name"] for col in c["columns"]] == SPEC.columns
    age, region = c["columns"][1], c["columns"][2]
    assert (age["kind"], age["type"], age["nullable"]) == ("numeric", "number", True)
    assert "categories" not in age
    assert region["categories"] == ["east", "north", "south", "west"]
    assert c["target"] == {"name": "churn", "type": "string", "labels": ["no", "yes"]}
    assert c["train_rows"] == 400
    assert all("categories" not in col for col in summary(c)["columns"])


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([True, False], "boolean"),
        ([0, 1, 2], "integer"),
        (["no", "yes"], "string"),
        (pd.Series([True, False], dtype=object), "boolean"),
    ],
)
def test_label_types(values, expected):
    assert label_type_of(values) == expected


def _changes(old, new):
    return [(c.kind, c.column) for c in compare_contracts(old, new)]


def test_same_contract_has_no_changes_even_with_new_categories():
    frame = generate_churn_frame(400, seed=2)
    frame.loc[:5, "region"] = "antarctica"
    assert _changes(contract(), contract(frame)) == []


def test_removed_added_renamed_and_retyped_columns_are_named():
    base = contract()
    frame = generate_churn_frame(400, seed=1).rename(columns={"age": "age_1"})
    frame["noise"] = 0.5
    frame["tenure_months"] = frame["tenure_months"].astype(str)
    spec = FeatureSpec("churn", ["age_1", "noise"], ["region", "tenure_months"])
    changes = compare_contracts(base, build_contract(frame, spec))
    kinds = {(c.kind, c.column) for c in changes}
    assert kinds == {
        ("renamed", "age"),
        ("added", "noise"),
        ("retyped", "tenure_months"),
        ("removed", "contract_type"),
    }
    text = " | ".join(str(c) for c in changes)
    assert "column 'age' is gone and 'age_1' (numeric) is new: renamed?" in text
    assert "send 'age_1' instead of 'age'" in text
    assert "new column 'noise' (numeric) would be required" in text
    assert "'tenure_months' changes from numeric to categorical" in text
    assert "stop sending 'contract_type'" in text


def test_label_type_and_label_set_changes():
    frame = generate_churn_frame(400, seed=1)
    as_bool = frame.assign(churn=frame["churn"] == "yes")
    changes = compare_contracts(contract(), contract(as_bool))
    assert [(c.kind, c.column) for c in changes] == [("label_type", None)]
    assert 'from string to boolean ("no", "yes" -> false, true)' in changes[0].description
    listy = frame.assign(churn="[" + frame["churn"] + "]")
    changes = compare_contracts(contract(), contract(listy))
    assert changes[0].kind == "labels"
    assert 'new label(s) "[no]", "[yes]"' in changes[0].description


@pytest.fixture(scope="module")
def store(tmp_path_factory, small_model_logger):
    root = tmp_path_factory.mktemp("contract-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    logged = small_model_logger(root / "data", uri, artifact_location=(root / "art").as_uri())
    return {"uri": uri, **logged.to_dict()}


def test_logged_contract_is_found_from_the_registry(store):
    c = contract()
    uri = log_contract(store["uri"], store["run_id"], c)
    assert uri == f"runs:/{store['run_id']}/{INPUT_CONTRACT_ARTIFACT}"
    version = registry.register_challenger(
        store["model_uri"],
        "contract_model",
        airflow_run_id="with-contract",
        tags={INPUT_CONTRACT_TAG: uri},
        tracking_uri=store["uri"],
    )
    loaded = load_contract(store["uri"], "contract_model", version)
    assert loaded["columns"] == c["columns"]
    assert loaded["target"] == c["target"]
    assert (loaded["model_name"], loaded["version"], loaded["uri"]) == (
        "contract_model",
        version,
        uri,
    )
    artifacts = [
        a.path for a in MlflowClient(store["uri"]).list_artifacts(store["run_id"], "contract")
    ]
    assert artifacts == [INPUT_CONTRACT_ARTIFACT]


def test_a_version_without_a_contract_gets_one_from_its_feature_spec(store):
    version = registry.register_challenger(
        store["model_uri"],
        "contract_model",
        airflow_run_id="no-contract",
        tracking_uri=store["uri"],
    )
    derived = load_contract(store["uri"], "contract_model", version)
    assert "derived" in derived
    assert derived["uri"] is None
    names = [c["name"] for c in derived["columns"]]
    assert "tenure_months" in names
    assert "region" in names
    assert derived["target"]["name"] == "churn"
    assert derived["target"]["type"] == "string"
    assert derived["target"]["labels"] == ["no", "yes"]
