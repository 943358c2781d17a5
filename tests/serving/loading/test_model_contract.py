"""`GET /model` shows the served version's input contract (`registry.contract`): the
columns with their kinds and the categories seen, the label type and set -- what a client
must send and will get back -- read from the registry with the model, in the API process
(`fetch` + `load.start_load`) as in the in-process loader (`load.load_served_model`)."""

from __future__ import annotations

import types

import httpx
import pytest
from mlflow import MlflowClient

from devtools.ports import free_port
from include.ml_pipeline.names import INPUT_CONTRACT_TAG
from include.ml_pipeline.registry.contract import build_contract, load_contract, log_contract
from tests.serving.conftest import ADMIN_TOKEN
from tests.support.models import register_model_version, training_frame

NAME = "contract_shown"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """v1 registered without a contract (as before contracts were recorded); v2, the
    champion, with the contract `registrar_mlflow` logs and tags."""
    root = tmp_path_factory.mktemp("contract-mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    artifacts = (root / "artifacts").as_uri()
    old = register_model_version(
        uri, NAME, kind="lr", rows=1200, seed=3, aliases=(), artifact_location=artifacts
    )
    new = register_model_version(
        uri, NAME, kind="lr", rows=1200, seed=4, aliases=("champion",), artifact_location=artifacts
    )
    frame, spec = training_frame(1200, 4)
    contract = build_contract(frame, spec)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run_id = client.get_model_version(NAME, new).run_id
    client.set_model_version_tag(NAME, new, INPUT_CONTRACT_TAG, log_contract(uri, run_id, contract))
    return types.SimpleNamespace(
        uri=uri, old=old, new=new, contract=contract, spec=spec, client=client
    )


def _assert_is_the_recorded_contract(shown: dict, store) -> None:
    recorded = store.contract
    assert shown["version"] == store.new
    assert shown["model_name"] == NAME
    assert shown["uri"].endswith("contract/input_contract.json")
    assert shown["columns"] == recorded["columns"]
    assert (
        shown["target"]
        == recorded["target"]
        == {"name": "churn", "type": "string", "labels": ["no", "yes"]}
    )
    region = next(c for c in shown["columns"] if c["name"] == "region")
    assert region["kind"] == "categorical"
    assert region["categories"] == ["east", "north", "south", "west"]
    assert [c["name"] for c in shown["columns"]] == list(store.spec.columns)


def test_the_in_process_loader_carries_the_contract(store):
    from include.ml_pipeline.serving.loading.load import load_served_model

    served = load_served_model(store.uri, NAME, "champion")
    _assert_is_the_recorded_contract(served.info()["contract"], store)


@pytest.mark.services  # the model API as its own process
def test_get_model_shows_the_contract_of_the_version_it_serves(store, tmp_path):
    from include.ml_pipeline.deployment import api_process

    home = tmp_path / "api-home"
    api = api_process.start_api(
        url=f"http://127.0.0.1:{free_port()}",
        model_name=NAME,
        tracking_uri=store.uri,
        admin_token=ADMIN_TOKEN,
        home=home,
        timeout=240,
        extra_env={"ML_PIPELINE_INFERENCE_LOG": str(tmp_path / "log")},
    )
    try:
        shown = httpx.get(f"{api.url}/model", timeout=10).json()
        _assert_is_the_recorded_contract(shown["contract"], store)
        assert shown["contract"] == load_contract(store.uri, NAME, store.new)

        # A version registered before contracts were recorded: its contract is derived
        # from the model's feature spec, and says so.
        store.client.set_registered_model_alias(NAME, "champion", store.old)
        reloaded = httpx.post(
            f"{api.url}/admin/reload",
            timeout=240,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert reloaded.status_code == 200, reloaded.text
        shown = httpx.get(f"{api.url}/model", timeout=10).json()
        assert shown["version"] == store.old
        contract = shown["contract"]
        assert contract["version"] == store.old
        assert "derived" in contract
        assert [c["name"] for c in contract["columns"]] == list(store.spec.columns)
        assert {c["name"]: c["kind"] for c in contract["columns"]}["region"] == "categorical"
    finally:
        store.client.set_registered_model_alias(NAME, "champion", store.new)
        api_process.stop_api(home=home)
