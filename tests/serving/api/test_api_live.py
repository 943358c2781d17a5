"""The API as a real uvicorn process on loopback: endpoints, every bad-request class,
extra columns, reload authentication and failure, process control and the smoke-test
helpers (reloads under load: test_load.py)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
import pytest

from include.ml_pipeline.deployment import api_client, api_process
from tests.serving.conftest import ADMIN_TOKEN, MAX_BODY, MAX_ROWS, MODEL_NAME, set_alias

JSON = {"Content-Type": "application/json"}


def _records(frame, n=3):
    return [
        {c: (None if isinstance(v, float) and v != v else v) for c, v in row.items()}
        for row in frame.head(n).to_dict("records")
    ]


def test_health_version_model_metrics_docs(live_api, registry):
    url = live_api.url
    assert httpx.get(url + "/ping").status_code == 200
    assert httpx.get(url + "/health").status_code == 200
    assert httpx.get(url + "/ready").json()["model_version"] == registry.v1
    version = httpx.get(url + "/version").json()
    assert version["model_version"] == registry.v1
    assert version["mlflow_version"]
    model = httpx.get(url + "/model").json()
    assert model["name"] == registry.name
    assert model["alias"] == "champion"
    assert model["run_id"]
    assert "validation_accuracy" in model["metrics"]
    assert model["predict_path"] == "compiled:onnx-hgb"
    schema = httpx.get(url + "/openapi.json").json()
    record = schema["components"]["schemas"]["FeatureRecord"]
    assert "tenure_months" in record["properties"]
    assert httpx.get(url + "/docs").status_code == 200
    metrics = httpx.get(url + "/metrics").text
    assert "model_api_model_version " in metrics or "model_api_model_version{" in metrics


def test_predict_endpoint(live_api, registry, churn_frame):
    body = {"records": _records(churn_frame, 4)}
    answer = httpx.post(live_api.url + "/predict", json=body).json()
    assert answer["model_version"] == registry.v1
    assert len(answer["predictions"]) == 4
    for prediction in answer["predictions"]:
        assert prediction["label"] in ("yes", "no")
        assert abs(sum(prediction["probabilities"].values()) - 1) < 1e-9


def _bad_cases(frame):
    good = _records(frame, 2)
    columns = list(frame.columns)
    wrong_number = [dict(good[0], age="old")]
    wrong_text = [dict(good[0], region=7)]
    boolean = [dict(good[0], age=True)]
    missing = [{k: v for k, v in good[0].items() if k != "region"}]
    big_row = dict(good[0], region="x" * 1000)
    return [
        ("malformed_json", 400, b'{"dataframe_records": [', JSON),
        ("bad_format", 400, b"[1, 2]", JSON),
        ("bad_format", 400, b'{"data": []}', JSON),
        ("bad_format", 400, orjson.dumps({"dataframe_records": good, "instances": good}), JSON),
        ("missing_columns", 422, orjson.dumps({"dataframe_records": missing}), JSON),
        ("wrong_type", 422, orjson.dumps({"dataframe_records": wrong_number}), JSON),
        ("wrong_type", 422, orjson.dumps({"dataframe_records": wrong_text}), JSON),
        ("wrong_type", 422, orjson.dumps({"dataframe_records": boolean}), JSON),
        ("empty_batch", 400, orjson.dumps({"dataframe_records": []}), JSON),
        (
            "empty_batch",
            400,
            orjson.dumps({"dataframe_split": {"columns": columns, "data": []}}),
            JSON,
        ),
        (
            "bad_format",
            400,
            orjson.dumps({"dataframe_split": {"columns": columns, "data": [[1, 2]]}}),
            JSON,
        ),
        (
            "too_many_rows",
            413,
            orjson.dumps({"dataframe_records": good[:1] * (MAX_ROWS + 1)}),
            JSON,
        ),
        (
            "body_too_large",
            413,
            orjson.dumps({"dataframe_records": [big_row] * (MAX_BODY // 1000)}),
            JSON,
        ),
        ("unsupported_media_type", 415, b"x", {"Content-Type": "application/xml"}),
        ("malformed_json", 400, b"", JSON),
        (
            "wrong_type",
            422,
            frame.head(1).assign(age="old").to_csv(index=False).encode(),
            {"Content-Type": "text/csv"},
        ),
        ("missing_columns", 422, b"age\n1\n", {"Content-Type": "text/csv"}),
    ]


def test_every_bad_request_gets_a_4xx_naming_the_problem(live_api, churn_frame):
    with httpx.Client(timeout=30) as client:
        for kind, status, body, headers in _bad_cases(churn_frame):
            response = client.post(live_api.url + "/invocations", content=body, headers=headers)
            assert response.status_code == status, (kind, response.text[:300])
            error = response.json()
            assert error["kind"] == kind, error
            assert error["message"]
        # column names appear in the messages
        missing = client.post(
            live_api.url + "/invocations", json={"dataframe_records": [{"age": 1}]}
        ).json()["message"]
        assert "tenure_months" in missing
        wrong = client.post(
            live_api.url + "/predict",
            json={"records": [dict(_records(churn_frame, 1)[0], age="old")]},
        ).json()
        assert "'age'" in wrong["message"]
        # chunked upload without Content-Length is limited too
        chunks = (b"x" * 65536 for _ in range(MAX_BODY // 65536 + 2))
        response = client.post(live_api.url + "/invocations", content=chunks, headers=JSON)
        assert response.status_code == 413
        # still healthy afterwards
        assert client.get(live_api.url + "/ping").status_code == 200
    metrics = httpx.get(live_api.url + "/metrics").text
    assert f'model_api_errors_total{{kind="missing_columns",model="{MODEL_NAME}"}}' in metrics


def test_extra_columns_are_ignored_and_reported(live_api, churn_frame):
    records = [dict(r, surprise=1, **{"note, free text": "x"}) for r in _records(churn_frame, 3)]
    plain = httpx.post(
        live_api.url + "/invocations", json={"dataframe_records": _records(churn_frame, 3)}
    )
    assert plain.status_code == 200
    assert "x-ignored-columns" not in plain.headers
    for path, body in (
        ("/invocations", {"dataframe_records": records}),
        ("/predict", {"records": records}),
    ):
        answer = httpx.post(live_api.url + path, json=body)
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-ignored-columns"] == "note%2C%20free%20text,surprise"
    assert (
        httpx.post(live_api.url + "/invocations", json={"dataframe_records": records}).json()[
            "predictions"
        ]
        == plain.json()["predictions"]
    )  # the extra columns change nothing
    metrics = httpx.get(live_api.url + "/metrics").text
    for endpoint in ("invocations", "predict"):
        series = f'{{endpoint="{endpoint}",model="{MODEL_NAME}"}}'
        assert f"model_api_ignored_columns_requests_total{series}" in metrics
    ping = httpx.get(live_api.url + "/ping")
    assert ping.headers["content-type"].startswith("text/plain")


def test_reload_needs_the_token(live_api):
    url = live_api.url + "/admin/reload"
    assert httpx.post(url).status_code == 401
    assert httpx.post(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    with pytest.raises(api_client.ModelApiError):
        api_client.reload_model(live_api.url, token="wrong")


def test_failed_reload_keeps_serving(live_api, registry):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=registry.tracking_uri, registry_uri=registry.tracking_uri)
    client.delete_registered_model_alias(registry.name, "champion")
    try:
        with pytest.raises(api_client.ModelApiError, match="still serving"):
            api_client.reload_model(live_api.url, token=ADMIN_TOKEN)
        assert httpx.get(live_api.url + "/ping").status_code == 200
        assert api_client.served_version(live_api.url) == registry.v1
    finally:
        set_alias(registry, "champion", registry.v1)


def test_unload_stops_serving_until_the_next_reload(live_api, registry):
    url, auth = live_api.url, {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert httpx.post(url + "/admin/unload").status_code == 401
    assert httpx.post(url + "/admin/unload", headers=auth, content=b"[1]").status_code == 400
    other = httpx.post(url + "/admin/unload", headers=auth, json={"if_version": "999"})
    assert other.status_code == 409
    assert f"version {registry.v1} is served, not 999" in other.json()["message"]
    assert api_client.served_version(url) == registry.v1  # the guard kept it
    try:
        done = api_client.unload_model(url, token=ADMIN_TOKEN, if_version=registry.v1)
        assert done == {"previous_version": registry.v1, "model_version": None}
        assert httpx.get(url + "/ping").status_code == 503
        assert httpx.post(url + "/predict", json={"records": [{}]}).status_code == 503
        assert api_client.served_version(url) is None
    finally:
        assert api_client.reload_model(url, token=ADMIN_TOKEN)["model_version"] == registry.v1
    assert httpx.get(url + "/ping").status_code == 200


def test_process_status_and_idempotent_start(live_api):
    running = api_process.api_status(home=live_api.home)
    assert running is not None
    assert running.pid == live_api.pid
    again = api_process.start_api(url=running.url, home=live_api.home, timeout=30)
    assert again.pid == live_api.pid  # no second process


def test_smoke_test_helper(live_api, registry, churn_frame):
    report = api_client.smoke_test(
        live_api.url,
        registry.tracking_uri,
        registry.name,
        registry.v1,
        frame=churn_frame.head(40),
        p95_budget_ms=200,
        latency_requests=50,
    )
    assert report.bad_payload_status == 422
    assert report.latency["p95_ms"] < 200
    with pytest.raises(api_client.ModelApiError, match="serves version"):
        api_client.smoke_test(
            live_api.url,
            registry.tracking_uri,
            registry.name,
            registry.v2,
            frame=churn_frame.head(5),
        )


def test_inference_log_records_requests(live_api, registry, churn_frame):
    from include.ml_pipeline.monitoring.inference_log import read_inference_log

    records = _records(churn_frame, 5)
    httpx.post(live_api.url + "/predict", json={"records": records})
    deadline = time.monotonic() + 10
    frame = None
    while time.monotonic() < deadline:
        frame = read_inference_log(live_api.log_dir, model_version=registry.v1)
        if len(frame) >= 5:
            break
        time.sleep(0.2)
    assert frame is not None
    assert len(frame) >= 5
    assert {
        "prediction",
        "proba_yes",
        "proba_no",
        "model_version",
        "latency_ms",
        "timestamp",
        "tenure_months",
        "region",
    } <= set(frame.columns)
    assert str(frame["timestamp"].dt.tz) == "UTC"


def test_server_process_keeps_sklearn_and_mlflow_in_children(live_api):
    """The served model came from the compile worker: the server never loaded
    scikit-learn's or scipy's extension modules (MLflow runs only in `fetch`)."""
    maps = Path(f"/proc/{live_api.pid}/maps").read_text()
    assert "/sklearn/" not in maps
    assert "/scipy/" not in maps
    assert "onnxruntime" in maps
