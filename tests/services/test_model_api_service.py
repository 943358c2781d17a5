"""The model API as its own service: with the `model_api` connection defined, the rollout
and the rollback only ask the running service to reload (token from the connection) and
wait for `/version`; no process is started on the 'worker'. Configuration errors (a wrong
token, nothing listening) are `ModelApiConfigError`, naming the connection and the fix."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest

from devtools.ports import free_port
from include.ml_pipeline.config import get_settings
from include.ml_pipeline.deployment import api_process, rollout
from include.ml_pipeline.names import CHAMPION, MODEL_API_CONN_ID
from include.ml_pipeline.orchestration import connections
from include.ml_pipeline.payloads import Rollback
from include.ml_pipeline.registry import registry
from tests.services.conftest import unique_id
from tests.support.models import register_model_version

TOKEN = "service-test-token"  # a test value, not a secret


def _children() -> set[int]:
    """Pids of this process's live children (read from /proc)."""
    me, found = os.getpid(), set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == me and fields[0] != "Z":
            found.add(int(entry.name))
    return found


@pytest.fixture(scope="module")
def api_service(mlflow_on_s3, tmp_path_factory):
    """The model API started by the project's own starter in a home of its own (the
    service's container), serving v1 of a fresh model from the MLflow server."""
    name = unique_id("service_model")
    uri = mlflow_on_s3.url
    v1 = register_model_version(
        uri, name, kind="lr", rows=1500, aliases=(CHAMPION,), serving_artifact=True
    )
    home = tmp_path_factory.mktemp("model-api-service")
    url = f"http://127.0.0.1:{free_port()}"
    running = api_process.start_api(
        url=url, model_name=name, tracking_uri=uri, admin_token=TOKEN, home=home, timeout=240
    )
    try:
        yield {"url": url, "name": name, "uri": uri, "v1": v1, "home": home, "pid": running.pid}
    finally:
        api_process.stop_api(home=home)


@pytest.fixture
def model_api_connection(monkeypatch, api_service):
    def define(token: str = TOKEN, port: int | None = None):
        port = port or int(api_service["url"].rsplit(":", 1)[1])
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{MODEL_API_CONN_ID.upper()}",
            json.dumps(
                {
                    "conn_type": "http",
                    "host": "127.0.0.1",
                    "port": port,
                    "schema": "http",
                    "password": token,
                }
            ),
        )
        monkeypatch.setenv("MLFLOW_TRACKING_URI", api_service["uri"])
        return connections.model_api()

    return define


def test_with_the_connection_the_rollout_and_rollback_only_reload_the_service(
    api_service, model_api_connection, monkeypatch, tmp_path
):
    # this 'worker' has a home of its own: the session's may hold an embedded API's files
    monkeypatch.setenv("ML_PIPELINE_HOME", str(tmp_path / "worker_home"))
    endpoint = model_api_connection()
    assert endpoint.is_service
    assert endpoint.source == MODEL_API_CONN_ID
    assert endpoint.url == api_service["url"]
    name, uri = api_service["name"], api_service["uri"]
    v2 = register_model_version(
        uri, name, kind="lr", rows=1500, seed=1, aliases=(), serving_artifact=True
    )
    registry.promote_to_champion(name, v2, tracking_uri=uri)
    settings = get_settings()
    local_pid_file = settings.home / "api" / api_process.PID_FILE
    children = _children()

    done = rollout.serve_version(settings, endpoint, name, v2, timeout=120)

    assert done.mode == "service"
    assert done.started is None
    assert done.version_info["model_version"] == v2
    assert httpx.get(api_service["url"] + "/version").json()["model_version"] == v2
    assert not local_pid_file.exists()  # nothing was started on this 'worker'
    assert _children() <= children
    assert api_process.api_status(api_service["home"]).pid == api_service["pid"]  # same process

    back = rollout.restore_champion(
        settings, name, v2, endpoint, reason="smoke test failed", timeout=120
    )

    assert back == Rollback(
        rolled_back=True,
        champion=api_service["v1"],
        detail=f"API serves v{api_service['v1']}",
    )
    assert httpx.get(api_service["url"] + "/version").json()["model_version"] == api_service["v1"]
    assert not local_pid_file.exists()
    assert _children() <= children
    assert api_process.api_status(api_service["home"]).pid == api_service["pid"]


def test_a_wrong_token_is_a_configuration_error_naming_the_connection(
    api_service, model_api_connection
):
    endpoint = model_api_connection(token="not-the-token")
    started = time.monotonic()
    with pytest.raises(rollout.ModelApiConfigError) as refused:
        rollout.serve_version(
            get_settings(), endpoint, api_service["name"], api_service["v1"], timeout=30
        )
    assert time.monotonic() - started < 20
    assert "refused the reload" in str(refused.value)
    assert f"connection {MODEL_API_CONN_ID!r}" in str(refused.value)


def test_a_service_that_never_answers_is_a_configuration_error(api_service, model_api_connection):
    endpoint = model_api_connection(port=free_port())
    with pytest.raises(rollout.ModelApiConfigError) as unreachable:
        rollout.check_service(endpoint, api_service["name"], wait_seconds=2)
    assert endpoint.url in str(unreachable.value)
    assert "did not answer in 2 s" in str(unreachable.value)
    no_token = rollout.ModelApiEndpoint(api_service["url"], None, rollout.SERVICE, "model_api")
    with pytest.raises(rollout.ModelApiConfigError, match="no admin token"):
        rollout.check_service(no_token, api_service["name"])
    # a service that serves other models is fine: the rollout loads this one next to them
    assert (
        rollout.check_service(model_api_connection(), "another_model")["model_name"]
        == (api_service["name"])
    )


def test_a_second_model_is_loaded_next_to_the_first_and_rolled_back_alone(
    api_service, model_api_connection, monkeypatch, tmp_path
):
    """Service mode, issue 23: the DAG of another `model_name` asks the service to load
    *its* model; the first keeps serving, and a failed first deployment of the second
    unloads only the second."""
    monkeypatch.setenv("ML_PIPELINE_HOME", str(tmp_path / "worker_home"))
    endpoint = model_api_connection()
    first, uri, url = api_service["name"], api_service["uri"], api_service["url"]
    serving_first = httpx.get(url + "/version").json()["model_version"]
    second = unique_id("second_model")
    v1 = register_model_version(
        uri, second, kind="lr", labels="multi", rows=1500, aliases=(), serving_artifact=True
    )
    registry.promote_to_champion(second, v1, tracking_uri=uri)
    settings = get_settings()

    done = rollout.serve_version(settings, endpoint, second, v1, timeout=120)

    assert done.version_info == {**done.version_info, "model_name": second, "model_version": v1}
    models = {m["name"]: m["model_version"] for m in httpx.get(url + "/models").json()["models"]}
    assert models == {first: serving_first, second: v1}
    assert httpx.get(url + "/version").json()["model_name"] == first  # still the default

    back = rollout.restore_champion(settings, second, v1, endpoint, reason="smoke", timeout=60)

    assert back.unloaded == v1
    assert httpx.get(f"{url}/models/{second}/ready").status_code == 503
    assert httpx.get(url + "/version").json()["model_version"] == serving_first
    assert httpx.get(url + "/ready").status_code == 200


def test_without_the_connection_the_mode_is_embedded_on_loopback(monkeypatch):
    monkeypatch.delenv(f"AIRFLOW_CONN_{MODEL_API_CONN_ID.upper()}", raising=False)
    endpoint = connections.model_api()
    assert endpoint.mode == "embedded"
    assert endpoint.url == get_settings().api_url
    monkeypatch.setenv("MODEL_API_URL", "http://model-api.example:8000")
    remote = connections.model_api()
    with pytest.raises(rollout.ModelApiConfigError, match="define the Airflow connection"):
        rollout.serve_version(get_settings(), remote, "m", "1", timeout=5)


def test_a_failed_first_deployment_unloads_the_service_until_a_champion_is_deployed(
    mlflow_on_s3, tmp_path_factory, monkeypatch
):
    """No previous champion to go back to: the alias goes and the service stops serving
    the version that failed (503, nothing in /version or the metrics) instead of keeping
    it; the next champion is served again after a plain reload."""
    monkeypatch.setenv("ML_PIPELINE_HOME", str(tmp_path_factory.mktemp("worker_home")))
    name, uri = unique_id("first_deploy"), mlflow_on_s3.url
    v1 = register_model_version(
        uri, name, kind="lr", rows=1500, aliases=(CHAMPION,), serving_artifact=True
    )
    home = tmp_path_factory.mktemp("first-deploy-service")
    url = f"http://127.0.0.1:{free_port()}"
    api_process.start_api(
        url=url, model_name=name, tracking_uri=uri, admin_token=TOKEN, home=home, timeout=240
    )
    try:
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{MODEL_API_CONN_ID.upper()}",
            json.dumps(
                {
                    "conn_type": "http",
                    "host": "127.0.0.1",
                    "port": int(url.rsplit(":", 1)[1]),
                    "schema": "http",
                    "password": TOKEN,
                }
            ),
        )
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        endpoint = connections.model_api()
        settings = get_settings()
        assert httpx.get(url + "/version").json()["model_version"] == v1

        back = rollout.restore_champion(
            settings, name, v1, endpoint, reason="smoke test failed", timeout=60
        )

        assert back.rolled_back is True
        assert back.champion is None
        assert back.unloaded == v1
        assert "answers 503" in back.detail
        assert registry.get_alias_version(name, CHAMPION, tracking_uri=uri) is None
        assert httpx.get(url + "/version").json()["model_version"] is None
        for path in ("/ready", "/ping", "/model"):
            assert httpx.get(url + path).status_code == 503, path
        refused = httpx.post(url + "/predict", json={"records": [{"tenure_months": 1}]})
        assert refused.status_code == 503
        assert "unloaded by POST /admin/unload" in httpx.get(url + "/ready").json()["message"]
        metrics = httpx.get(url + "/metrics").text
        assert "model_api_model_info{" not in metrics
        assert f'model_api_reloads_total{{model="{name}",result="unloaded"}} 1.0' in metrics
        assert api_process.api_status(home) is not None  # the service process stays up

        v2 = register_model_version(
            uri, name, kind="lr", rows=1500, seed=3, aliases=(), serving_artifact=True
        )
        registry.promote_to_champion(name, v2, tracking_uri=uri)
        done = rollout.serve_version(settings, endpoint, name, v2, timeout=120)
        assert done.version_info["model_version"] == v2
        assert httpx.get(url + "/ready").status_code == 200
    finally:
        api_process.stop_api(home=home)
