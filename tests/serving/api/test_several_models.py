"""Several registered models in one live API process: each with its own routes, contract,
metrics and reloads; a reload of one never fails or stalls a request to another; the
models survive a restart in the same home (`make stop` / `make api`); the Open Inference
Protocol through Triton's own HTTP client, its answers equal to `/invocations`'."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest

from devtools.ports import free_port
from include.ml_pipeline.deployment import api_client, api_process
from tests.serving.conftest import ADMIN_TOKEN

SECOND = "region_serving_test"  # another problem: 4 regions, from the churn columns


def _records(frame, n):
    return [
        {c: (None if isinstance(v, float) and v != v else v) for c, v in row.items()}
        for row in frame.head(n).to_dict("records")
    ]


@pytest.fixture(scope="module")
def second_model(registry) -> str:
    """`region_serving_test` v1 (champion) in the session registry, with its serving
    artifact (loads in about a second)."""
    from tests.support.models import register_model_version

    return register_model_version(
        registry.tracking_uri,
        SECOND,
        kind="lr",
        labels="multi",
        rows=1500,
        seed=5,
        aliases=("champion",),
        serving_artifact=True,
    )


@pytest.fixture(scope="module")
def two_models(registry, second_model, tmp_path_factory):
    """A live API started for the churn model, then asked to load the second one."""
    home = tmp_path_factory.mktemp("two-models-home")
    started = api_process.start_api(
        url=f"http://127.0.0.1:{free_port()}",
        model_name=registry.name,
        tracking_uri=registry.tracking_uri,
        admin_token=ADMIN_TOKEN,
        home=home,
        timeout=240,
        extra_env={"ML_PIPELINE_INFERENCE_LOG": str(home / "inference_log")},
    )
    loaded = api_client.reload_model(started.url, ADMIN_TOKEN, model_name=SECOND)
    assert loaded["model_version"] == second_model
    yield started.url, home
    api_process.stop_api(home=home)


def test_each_model_has_its_own_routes_contract_and_metrics(
    two_models, registry, second_model, churn_frame
):
    url, home = two_models
    listed = httpx.get(url + "/models").json()
    assert listed["default"] == registry.name
    assert {(m["name"], m["model_version"], m["ready"]) for m in listed["models"]} == {
        (registry.name, registry.v1, True),
        (SECOND, second_model, True),
    }
    body = {"dataframe_records": _records(churn_frame, 20)}
    bare = httpx.post(url + "/invocations", json=body)
    churn = httpx.post(f"{url}/models/{registry.name}/invocations", json=body)
    region = httpx.post(f"{url}/models/{SECOND}/invocations", json=body)
    assert bare.content == churn.content  # the bare route serves the default model
    assert set(churn.json()["predictions"]) <= {"yes", "no"}
    assert set(region.json()["predictions"]) <= {"north", "south", "east", "west"}
    assert region.headers["x-ignored-columns"] == "region"  # not a feature of this model
    typed = httpx.post(f"{url}/models/{SECOND}/predict", json={"records": _records(churn_frame, 2)})
    assert typed.json()["model_name"] == SECOND
    assert set(typed.json()["predictions"][0]["probabilities"]) == {
        "east",
        "north",
        "south",
        "west",
    }
    info = httpx.get(f"{url}/models/{SECOND}").json()
    assert info["version"] == second_model
    assert [c["name"] for c in info["contract"]["columns"]] == [
        c for c in info["feature_spec"]["numeric"] + info["feature_spec"]["categorical"]
    ]
    assert "region" not in info["feature_spec"]["categorical"]
    assert httpx.get(f"{url}/models/{SECOND}/version").json()["model_version"] == second_model

    missing = httpx.post(url + "/models/nope/invocations", json=body)
    assert missing.status_code == 404
    assert missing.json()["kind"] == "unknown_model"
    assert f"served models: {registry.name}, {SECOND}" in missing.json()["message"]
    for path in ("/models/nope", "/models/nope/predict", "/v2/models/nope/infer"):
        method = httpx.get if path == "/models/nope" else httpx.post
        assert (
            method(url + path, **({} if method is httpx.get else {"json": {}})).status_code == 404
        )

    metrics = httpx.get(url + "/metrics").text
    assert f'model_api_model_version{{model="{SECOND}"}} {float(second_model)}' in metrics
    assert f'model_api_model_version{{model="{registry.name}"}} {float(registry.v1)}' in metrics
    assert f'endpoint="invocations",model="{SECOND}",status="200"' in metrics
    assert f'model_api_model_info{{alias="champion",name="{SECOND}"' in metrics
    assert f'model_api_model_info{{alias="champion",name="{registry.name}"' in metrics
    # the inference log keeps each model's records apart (<log>/<model>/v<version>/...)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not list((home / "inference_log" / SECOND).rglob("*")):
        time.sleep(0.2)
    assert list((home / "inference_log" / SECOND / f"v{second_model}").rglob("*.jsonl.gz"))
    assert list((home / "inference_log" / registry.name).rglob("*.jsonl.gz"))


def test_reloading_one_model_never_fails_or_stalls_another(two_models, registry, churn_frame):
    """A client of the churn model sends throughout while the region model is reloaded,
    unloaded and loaded again: every churn request answers 200."""
    url, _ = two_models
    body = {"dataframe_records": _records(churn_frame, 5)}
    statuses: list[int] = []
    latencies: list[float] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=30) as session:
            while not stop.is_set():
                started = time.perf_counter()
                response = session.post(f"{url}/models/{registry.name}/invocations", json=body)
                latencies.append(time.perf_counter() - started)
                statuses.append(response.status_code)

    thread = threading.Thread(target=client)
    thread.start()
    try:
        api_client.reload_model(url, ADMIN_TOKEN, model_name=SECOND)
        api_client.unload_model(url, ADMIN_TOKEN, model_name=SECOND)
        assert httpx.get(f"{url}/models/{SECOND}/ready").status_code == 503
        assert httpx.get(f"{url}/models/{registry.name}/ready").status_code == 200
        api_client.reload_model(url, ADMIN_TOKEN, model_name=SECOND)
    finally:
        stop.set()
        thread.join(30)
    bad = [s for s in statuses if s != 200]
    print(
        f"churn client during 2 loads and an unload of {SECOND}: {len(statuses)} requests, "
        f"p50 {np.percentile(latencies, 50) * 1000:.1f} ms, max {max(latencies) * 1000:.0f} ms"
    )
    assert len(statuses) > 20
    assert bad == []


def test_the_models_survive_a_restart_in_the_same_home(two_models, registry, second_model):
    """`make stop` then `make api`: the API comes back serving both models (the models
    file of the home lists every model loaded and not unloaded since)."""
    from include.ml_pipeline.serving.api.state import read_models_file

    url, home = two_models
    recorded = read_models_file(api_process.models_file(home))
    assert recorded == [registry.name, SECOND]
    api_process.stop_api(home=home)
    again = api_process.start_api(
        url=url,
        home=home,
        admin_token=ADMIN_TOKEN,
        timeout=240,
        tracking_uri=registry.tracking_uri,
        model_name=registry.name,
        models=recorded[1:],
        extra_env={"ML_PIPELINE_INFERENCE_LOG": str(home / "inference_log")},
    )
    api_client.wait_for_version(again.url, second_model, timeout=120, model_name=SECOND)
    assert api_client.served_version(again.url) == registry.v1


def test_open_inference_protocol_with_tritons_client(two_models, registry, churn_frame):
    """Triton's HTTP client: health, metadata (datatypes from the contract), infer with one
    tensor per column and with one table tensor; predictions equal `/invocations`'."""
    tritonclient = pytest.importorskip("tritonclient.http", reason="tritonclient (dev) missing")
    url, _ = two_models
    rows = churn_frame.dropna().head(25)  # Triton's JSON tensors carry no null
    expected = api_client.predict_labels(url, rows, model_name=registry.name)
    client = tritonclient.InferenceServerClient(url.removeprefix("http://"))
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready(registry.name)
        assert client.is_model_ready(SECOND)
        assert not client.is_model_ready("nope")
        meta = client.get_model_metadata(registry.name)
        types = {tensor["name"]: tensor["datatype"] for tensor in meta["inputs"]}
        assert types["tenure_months"] == "FP64"
        assert types["region"] == "BYTES"
        assert [o["name"] for o in meta["outputs"]] == ["predictions", "probabilities"]
        assert meta["versions"] == [registry.v1]

        inputs = []
        for name, datatype in types.items():
            values = rows[name].to_numpy()
            array = values.astype(np.float64 if datatype == "FP64" else object)
            tensor = tritonclient.InferInput(name, [len(rows)], datatype)
            tensor.set_data_from_numpy(array, binary_data=False)
            inputs.append(tensor)
        outputs = [
            tritonclient.InferRequestedOutput(name, binary_data=False)
            for name in ("predictions", "probabilities")
        ]
        answer = client.infer(registry.name, inputs, outputs=outputs)
        labels = [v.decode() if isinstance(v, bytes) else v for v in answer.as_numpy("predictions")]
        assert labels == expected
        proba = answer.as_numpy("probabilities")
        assert proba.shape == (len(rows), 2)
        assert np.allclose(proba.sum(axis=1), 1.0)
    finally:
        client.close()

    # the single table input (plain JSON), missing values as null, equals /invocations
    rows = churn_frame[churn_frame.isna().any(axis=1)].head(25)
    expected = api_client.predict_labels(url, rows, model_name=registry.name)
    columns = list(types)
    data = [
        [None if isinstance(v, float) and v != v else v for v in row]
        for row in rows[columns].astype(object).itertuples(index=False, name=None)
    ]
    table = {
        "inputs": [
            {"name": "table", "datatype": "BYTES", "shape": [len(rows), len(columns)], "data": data}
        ],
        "outputs": [{"name": "predictions"}],
    }
    answer = httpx.post(f"{url}/v2/models/{registry.name}/infer", json=table).json()
    assert answer["outputs"][0]["data"] == expected
    assert [o["name"] for o in answer["outputs"]] == ["predictions"]
    wrong = httpx.post(
        f"{url}/v2/models/{registry.name}/infer",
        json={
            "inputs": [{"name": "table", "datatype": "FP64", "shape": [1, 3], "data": [1, 2, 3]}]
        },
    )
    assert wrong.status_code == 400
    assert "one table" in wrong.json()["error"]
