"""The OpenAPI document against the live API: schemathesis `--checks all` (every status,
content type, header and schema the API answers is documented; schema-valid requests are
accepted, schema-violating ones refused with a 4xx; never a 5xx), and the strict mode
that refuses columns the model does not take."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_openapi_documents_every_status_and_content_type(live_api):
    import httpx

    schema = httpx.get(live_api.url + "/openapi.json").json()
    paths = schema["paths"]
    statuses = {path: set(op["responses"]) for path, ops in paths.items() for op in ops.values()}
    assert statuses["/invocations"] == {"200", "400", "413", "415", "422", "503"}
    assert statuses["/predict"] == {"200", "400", "413", "422", "503"}
    assert statuses["/admin/reload"] == {"200", "401", "403", "502"}
    assert statuses["/admin/unload"] == {"200", "400", "401", "403", "409"}
    for path in ("/ping", "/health", "/metrics"):
        assert set(paths[path]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    assert set(paths["/invocations"]["post"]["requestBody"]["content"]) == {
        "application/json",
        "text/csv",
    }
    assert "X-Ignored-Columns" in paths["/invocations"]["post"]["responses"]["200"]["headers"]
    assert paths["/admin/reload"]["post"]["security"] == [{"bearer": []}]
    assert paths["/admin/unload"]["post"]["security"] == [{"bearer": []}]
    record = schema["components"]["schemas"]["FeatureRecord"]
    assert record["additionalProperties"] is True  # extra columns are ignored by default
    assert "tenure_months" in record["required"]


def test_schemathesis_checks_all_pass_against_the_live_api(live_api, tmp_path):
    """Property-based requests from the OpenAPI document (bounded: ~30 examples per
    operation, one worker), every check schemathesis has."""
    binary = Path(sys.executable).parent / "schemathesis"
    if not binary.exists():  # a dev requirement: not in the Astro image
        pytest.skip("schemathesis (a dev requirement) is not installed")
    command = [
        str(binary),
        "--config-file",
        str(CONFIG),
        "--no-color",
        "run",
        live_api.url + "/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        "30",
        "--workers",
        "1",
        "--seed",
        "20261201",
        "--request-timeout",
        "20",
    ]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    output = done.stdout + done.stderr
    generated = re.search(r"(\d+) generated", output)
    print(
        f"schemathesis: {generated.group(0) if generated else '?'} in "
        f"{time.monotonic() - started:.0f} s"
    )
    assert done.returncode == 0, output[-6000:]
    assert generated is not None
    assert int(generated.group(1)) >= 200
    assert "Server error" not in output


@pytest.fixture(scope="module")
def strict_client(registry):
    from include.ml_pipeline.serving.api.app import create_app
    from include.ml_pipeline.serving.api.settings import get_serving_settings
    from include.ml_pipeline.serving.loading.load import load_served_model

    served = load_served_model(registry.tracking_uri, registry.name, "champion")
    settings = replace(get_serving_settings(), strict_columns=True, model_name=registry.name)
    with TestClient(create_app(settings, loader=lambda: served)) as client:
        deadline = time.monotonic() + 60
        while client.get("/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield client


def test_strict_mode_refuses_extra_columns_naming_them(strict_client, churn_frame):
    records = [
        {c: (None if isinstance(v, float) and v != v else v) for c, v in r.items()}
        for r in churn_frame.head(2).to_dict("records")
    ]
    assert (
        strict_client.post("/invocations", json={"dataframe_records": records}).status_code == 200
    )
    extra = [dict(r, surprise=1, other="x") for r in records]
    for path, body in (
        ("/invocations", {"dataframe_records": extra}),
        ("/predict", {"records": extra}),
    ):
        answer = strict_client.post(path, json=body)
        assert answer.status_code == 422
        error = answer.json()
        assert error["kind"] == "unknown_columns"
        assert "unknown columns: other, surprise" in error["message"]
        assert "MODEL_API_STRICT_COLUMNS" in error["message"]
    schema = strict_client.get("/openapi.json").json()
    assert schema["components"]["schemas"]["FeatureRecord"]["additionalProperties"] is False


def test_strict_setting_is_read_and_checked(monkeypatch):
    from include.ml_pipeline.serving.api.settings import get_serving_settings

    monkeypatch.setenv("MODEL_API_STRICT_COLUMNS", "true")
    assert get_serving_settings().strict_columns is True
    monkeypatch.setenv("MODEL_API_STRICT_COLUMNS", "0")
    assert get_serving_settings().strict_columns is False
    monkeypatch.setenv("MODEL_API_STRICT_COLUMNS", "sometimes")
    with pytest.raises(ValueError, match="MODEL_API_STRICT_COLUMNS must be true or false"):
        get_serving_settings()


def test_invocations_hot_path_skips_fastapi_routing_and_keeps_its_errors(strict_client):
    """`POST /invocations` goes straight to `app.invocations` (`ModelAPI`, no FastAPI
    routing): an error there gets the app's 500 answer; any other method on the path is
    still FastAPI's (405 naming POST)."""
    app = strict_client.app
    handler = app.invocations

    async def broken(request):
        raise RuntimeError("boom")

    app.invocations = broken
    try:
        answer = strict_client.post("/invocations", json={"dataframe_records": []})
    finally:
        app.invocations = handler
    assert answer.status_code == 500
    assert answer.json()["kind"] == "internal"
    assert "boom" in answer.json()["message"]
    refused = strict_client.get("/invocations")
    assert refused.status_code == 405
    assert refused.headers["allow"] == "POST"
