"""The API's fast start on a `sqlite:///` registry (`registry_rest._resolve_sqlite`): the
alias, the version, its serving artifact, the run's metrics and the input contract read
with `sqlite3` alone, equal to what the fetch child reads through MLflow, so the API
serves (and `GET /model` shows the contract) before MLflow is imported; where it does not
apply, the fetch child's path serves as before."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
from mlflow import MlflowClient

from include.ml_pipeline.names import INPUT_CONTRACT_TAG
from include.ml_pipeline.registry.contract import build_contract, load_contract, log_contract
from include.ml_pipeline.serving.loading.artifact import SPEC_FILE, TAG
from include.ml_pipeline.serving.loading.fetch import fetch
from include.ml_pipeline.serving.loading.load import load_served_model_isolated
from include.ml_pipeline.serving.loading.registry_rest import quick_fetch
from tests.serving.loading.test_artifact_loading import _batch, _wait_for_check
from tests.support.models import register_model_version, training_frame

NAME = "fast_start_sqlite"
SAME = ("version", "run_id", "source", "spec", "metrics", "contract")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """v1 (alias `old`) registered without an input contract, v2 (`champion`) with the
    contract the release records; both with their serving artifact."""
    root = tmp_path_factory.mktemp("fast-start-sqlite")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    artifacts = (root / "artifacts").as_uri()
    old = register_model_version(
        uri, NAME, kind="hgb", rows=1500, seed=5, aliases=("old",),
        artifact_location=artifacts, serving_artifact=True,
    )  # fmt: skip
    new = register_model_version(
        uri, NAME, kind="hgb", rows=1500, seed=6, aliases=("champion",),
        artifact_location=artifacts, serving_artifact=True,
    )  # fmt: skip
    frame, spec = training_frame(1500, 6)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run_id = client.get_model_version(NAME, new).run_id
    contract = build_contract(frame, spec)
    client.set_model_version_tag(NAME, new, INPUT_CONTRACT_TAG, log_contract(uri, run_id, contract))
    return types.SimpleNamespace(uri=uri, old=old, new=new, client=client)


@pytest.mark.parametrize("alias", ["champion", "old"])
def test_the_sqlite_store_is_read_as_the_fetch_child_reads_it(store, alias, tmp_path):
    quick = quick_fetch(store.uri, NAME, alias, tmp_path / "quick")
    assert quick is not None
    assert quick["resolved_by"] == "mlflow SQLite store"
    full = fetch(store.uri, NAME, alias)
    assert {k: quick[k] for k in SAME} == {k: full[k] for k in SAME}
    assert quick["metrics"]  # the run's metrics are there, not an empty dict
    assert quick["contract"]["version"] == (store.new if alias == "champion" else store.old)
    assert ("derived" in quick["contract"]) == (alias == "old")
    assert sorted(p.name for p in (tmp_path / "quick").iterdir()) == sorted(
        json.loads(store.client.get_model_version_by_alias(NAME, alias).tags[TAG])["sha256"]
    )


def test_the_api_serves_from_the_sqlite_store_with_the_contract_at_once(store):
    served = load_served_model_isolated(store.uri, NAME, "champion")
    assert served.verification["resolved_by"] == "mlflow SQLite store"
    assert served.verification["source"] == "serving_artifact"
    # the contract is there when the model is: GET /model has it as soon as /ping is 200
    assert served.contract == load_contract(store.uri, NAME, store.new)
    assert _wait_for_check(served) == "passed"
    assert served.contract == load_contract(store.uri, NAME, store.new)
    batch = _batch(served.spec)
    fast, pipeline = served.predictor.predict(batch), served.reference.predict(batch)
    assert fast.labels == pipeline.labels
    assert np.abs(fast.proba - pipeline.proba).max() < 1e-9


def test_where_the_fast_start_does_not_apply_the_fetch_child_serves(store, tmp_path, monkeypatch):
    assert quick_fetch(f"sqlite:///{tmp_path / 'missing.db'}", NAME, "champion", tmp_path) is None
    assert not (tmp_path / "missing.db").exists()  # opened read-only: not created
    assert quick_fetch(store.uri, NAME, "no-such-alias", tmp_path / "a") is None
    good = store.client.get_model_version(NAME, store.new).tags[TAG]
    tag = json.loads(good)
    try:
        altered = {**tag, "sha256": {**tag["sha256"], SPEC_FILE: "0" * 64}}
        store.client.set_model_version_tag(NAME, store.new, TAG, json.dumps(altered))
        assert quick_fetch(store.uri, NAME, "champion", tmp_path / "b") is None
        served = load_served_model_isolated(store.uri, NAME, "champion")
        assert served.verification["resolved_by"] == "mlflow"  # the fetch child's path
        assert served.version == store.new
    finally:
        store.client.set_model_version_tag(NAME, store.new, TAG, good)
    monkeypatch.setenv("MODEL_API_FAST_START", "false")
    assert quick_fetch(store.uri, NAME, "champion", tmp_path / "c") is None
