"""A model the compiler does not know (the custom-estimator example) is served by its
scikit-learn pipeline in an isolated worker process: its answers equal the pipeline's, the
API process never imports scikit-learn or the model's code, a worker killed mid-traffic
costs one clear 503 and is restarted, a hanging prediction is a 504 while the other
models keep answering, and no worker outlives the API (stopped, or killed)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from devtools.ports import free_port
from include.ml_pipeline.deployment import api_process
from tests.serving.conftest import ADMIN_TOKEN
from tests.support.misbehaving import HANG_MARKER

COMPILED = "worker_test_compiled"  # a LogisticRegression: compiled, in-process
CUSTOM = "worker_test_custom"  # the custom-estimator example: isolated worker
SLEEPY = "worker_test_sleepy"  # the example behind a step that hangs on a marker
TIMEOUT_S = 4


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A registry with the three models; the custom pipeline and some feature rows."""
    from tests.support.misbehaving import custom_pipeline
    from tests.support.models import register_model_version, training_frame

    root = tmp_path_factory.mktemp("worker-mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    where = {"rows": 1200, "seed": 4, "artifact_location": (root / "artifacts").as_uri()}
    frame, spec = training_frame(1200, 4)
    pipeline = custom_pipeline(frame, spec)
    register_model_version(uri, COMPILED, kind="lr", serving_artifact=True, **where)
    register_model_version(uri, CUSTOM, pipeline=pipeline, spec=spec, **where)
    sleepy = custom_pipeline(frame, spec, hang=True)
    register_model_version(uri, SLEEPY, pipeline=sleepy, spec=spec, **where)
    rows = frame.drop(columns=[spec.target]).sample(200, random_state=0)
    return uri, pipeline, spec, rows


def _start(store, home: Path, default: str, models=()) -> api_process.ApiProcess:
    return api_process.start_api(
        url=f"http://127.0.0.1:{free_port()}",
        model_name=default,
        models=models,
        tracking_uri=store[0],
        admin_token=ADMIN_TOKEN,
        home=home,
        timeout=300,
        extra_env={
            "ML_PIPELINE_INFERENCE_LOG": str(home / "inference_log"),
            "MODEL_API_WORKER_TIMEOUT_SECONDS": str(TIMEOUT_S),
        },
    )


@pytest.fixture(scope="module")
def api(store, tmp_path_factory):
    home = tmp_path_factory.mktemp("worker-api")
    started = _start(store, home, COMPILED, (CUSTOM, SLEEPY))
    for name in (CUSTOM, SLEEPY):
        _wait_ready(started.url, name)
    yield started
    api_process.stop_api(home=home)


def _wait_ready(url: str, name: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while httpx.get(f"{url}/models/{name}/ready").status_code != 200:
        assert time.monotonic() < deadline, f"{name} not ready within {timeout:.0f}s"
        time.sleep(0.5)


def _records(rows, n=None):
    frame = rows if n is None else rows.head(n)
    return [
        {c: (None if isinstance(v, float) and v != v else v) for c, v in row.items()}
        for row in frame.to_dict("records")
    ]


def _worker(url: str, name: str) -> dict:
    info = httpx.get(f"{url}/models/{name}").json()
    assert info["predict_path"] == "sklearn-isolated", info
    return info["worker"]


def _gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_custom_model_answers_as_its_pipeline_from_a_worker_process(api, store):
    from include.ml_pipeline.features import coerce_features

    _, pipeline, spec, rows = store
    info = httpx.get(f"{api.url}/models/{CUSTOM}").json()
    assert info["predict_path"] == "sklearn-isolated"
    assert "isolated worker" in info["fallback_reason"]
    assert "unsupported pipeline" in info["fallback_reason"]  # why it is not compiled
    worker = info["worker"]
    assert worker["alive"]
    assert worker["timeout_seconds"] == TIMEOUT_S
    parent = Path(f"/proc/{worker['pid']}/stat").read_text().rsplit(")", 1)[1].split()[1]
    assert int(parent) == api.pid  # a child of the API
    assert httpx.get(f"{api.url}/models/{COMPILED}").json()["predict_path"].startswith("compiled:")

    answer = httpx.post(f"{api.url}/models/{CUSTOM}/predict", json={"records": _records(rows)})
    assert answer.status_code == 200, answer.text
    features = coerce_features(rows, spec)
    expected_labels = pipeline.predict(features).tolist()
    expected_proba = pipeline.predict_proba(features)
    got = answer.json()["predictions"]
    assert [p["label"] for p in got] == expected_labels
    classes = list(pipeline.classes_)
    proba = np.array([[p["probabilities"][c] for c in classes] for p in got])
    assert np.array_equal(proba, expected_proba)  # exact: the same pipeline, the same floats
    one = httpx.post(
        f"{api.url}/models/{CUSTOM}/invocations", json={"dataframe_records": _records(rows, 1)}
    )
    assert one.json()["predictions"] == expected_labels[:1]
    # the model's code and scikit-learn stayed out of the API process
    maps = Path(f"/proc/{api.pid}/maps").read_text()
    assert "/sklearn/" not in maps
    assert "/scipy/" not in maps


def test_killed_worker_costs_one_clear_503_then_recovers(api, store):
    rows = _records(store[3], 1)
    pid = _worker(api.url, CUSTOM)["pid"]
    statuses: list[tuple[int, str]] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(timeout=120) as client:
            while not stop.is_set():
                r = client.post(
                    f"{api.url}/models/{CUSTOM}/invocations", json={"dataframe_records": rows}
                )
                statuses.append((r.status_code, r.text))

    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        while len(statuses) < 20:
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        killed_at = len(statuses)
        deadline = time.monotonic() + 120
        while sum(s == 200 for s, _ in statuses[killed_at:]) < 20:
            assert time.monotonic() < deadline, statuses[killed_at:][:5]
            time.sleep(0.05)
    finally:
        stop.set()
        sender.join()
    failed = [(s, text) for s, text in statuses if s != 200]
    assert len(failed) == 1, failed
    status, text = failed[0]
    assert status == 503
    assert CUSTOM in text
    assert f"pid {pid}) was killed by SIGKILL" in text
    worker = _worker(api.url, CUSTOM)
    assert worker["restarts"] == 1
    assert worker["pid"] != pid
    assert worker["alive"]
    assert "SIGKILL" in worker["last_failure"]
    assert _gone(pid, 1.0)


def test_hanging_prediction_times_out_while_other_models_answer(api, store):
    rows = store[3]
    hanging = _records(rows, 1)
    hanging[0]["monthly_charges"] = HANG_MARKER
    pid = _worker(api.url, SLEEPY)["pid"]
    outcome: dict = {}

    def hang() -> None:
        began = time.monotonic()
        r = httpx.post(
            f"{api.url}/models/{SLEEPY}/invocations",
            json={"dataframe_records": hanging},
            timeout=120,
        )
        outcome.update(status=r.status_code, body=r.json(), seconds=time.monotonic() - began)

    waiter = threading.Thread(target=hang)
    waiter.start()
    time.sleep(0.5)
    body = {"dataframe_records": _records(rows, 5)}
    for name in (COMPILED, CUSTOM):  # served meanwhile: the API's loop does not wait
        began = time.monotonic()
        r = httpx.post(f"{api.url}/models/{name}/invocations", json=body, timeout=30)
        assert r.status_code == 200, r.text
        assert time.monotonic() - began < TIMEOUT_S / 2
    assert waiter.is_alive()  # the hanging request is still waiting
    waiter.join(60)
    assert outcome["status"] == 504, outcome
    assert outcome["body"]["kind"] == "worker_timeout"
    assert SLEEPY in outcome["body"]["message"]
    assert f"over {TIMEOUT_S}s" in outcome["body"]["message"]
    assert TIMEOUT_S <= outcome["seconds"] < TIMEOUT_S + 10
    assert _gone(pid, 5.0)  # the hung worker was killed ...
    after = httpx.post(f"{api.url}/models/{SLEEPY}/invocations", json=body, timeout=120)
    assert after.status_code == 200, after.text  # ... and a new one answers
    assert _worker(api.url, SLEEPY)["restarts"] == 1


def test_unloading_a_model_stops_its_worker(api):
    from include.ml_pipeline.deployment import api_client

    pid = _worker(api.url, SLEEPY)["pid"]
    api_client.unload_model(api.url, ADMIN_TOKEN, model_name=SLEEPY)
    assert _gone(pid, 10.0), f"worker {pid} still runs after {SLEEPY} was unloaded"
    assert httpx.get(f"{api.url}/models/{CUSTOM}/ready").status_code == 200  # untouched


def test_the_release_manifest_names_the_path_the_api_serves():
    from include.ml_pipeline.serving.loading.worker import api_path

    path, reason = api_path("sklearn", "unsupported pipeline: model is not a two-step Pipeline")
    assert path == "sklearn-isolated"
    assert reason.startswith("unsupported pipeline: model is not a two-step Pipeline; served by")
    assert api_path("compiled:onnx-hgb", None) == ("compiled:onnx-hgb", None)


def test_a_stopped_api_leaves_no_worker(store, tmp_path):
    started = _start(store, tmp_path / "home", CUSTOM)
    pid = httpx.get(f"{started.url}/model").json()["worker"]["pid"]
    api_process.stop_api(home=tmp_path / "home")  # SIGTERM: it stops its workers on the way out
    assert _gone(pid, 5.0), f"worker {pid} still runs after the API stopped"


def test_a_killed_api_leaves_no_worker(api):
    """Last: it kills the module's API (no shutdown code runs)."""
    pid = _worker(api.url, CUSTOM)["pid"]
    os.kill(api.pid, signal.SIGKILL)
    assert _gone(pid, 5.0), f"worker {pid} outlived the killed API"
