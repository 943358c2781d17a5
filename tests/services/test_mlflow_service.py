"""MLflow as a service: a real `mlflow server` on loopback whose artifacts go to moto's S3
bucket, proxied, so the client (a worker) holds no bucket credentials; the preflight that
tells a misconfigured server from a working one; and a registration whose connection drops
after the server created the version, retried by Airflow to exactly one version."""

from __future__ import annotations

import http.server
import time

import pytest
from mlflow import MlflowClient

from devtools.ports import free_port
from include.ml_pipeline.names import AIRFLOW_RUN_TAG, CHALLENGER, CHAMPION
from include.ml_pipeline.registry import registry
from include.ml_pipeline.registry.mlflow_setup import (
    MlflowServerError,
    check_tracking_server,
    ensure_experiment,
)
from tests.registry.conftest import log_small_model
from tests.services.conftest import (
    Rule,
    run_test_dag,
    serve_http,
    task_instances,
    unique_id,
)


def test_a_model_logged_and_registered_through_the_server_is_served_from_the_bucket(
    mlflow_on_s3, s3, tmp_path, client_without_bucket_credentials
):
    from include.ml_pipeline.serving.loading.load import load_served_model

    uri, name = mlflow_on_s3.url, unique_id("served_from_s3")
    # A local artifact location is not sent to a server: the server owns artifact storage.
    experiment_id = ensure_experiment(uri, "s3-artifacts", (tmp_path / "not-used").as_uri())
    assert (
        MlflowClient(uri)
        .get_experiment(experiment_id)
        .artifact_location.startswith("mlflow-artifacts:")
    )
    logged = log_small_model(tmp_path / "data", uri, experiment="s3-artifacts")
    version = registry.register_challenger(
        logged.model_uri, name, airflow_run_id=unique_id("run"), tracking_uri=uri
    )
    registry.promote_to_champion(name, version, tracking_uri=uri)

    served = load_served_model(uri, name, CHAMPION)  # what the model API's loader runs
    assert str(served.version) == version
    assert served.run_id == logged.run_id
    keys = s3.keys("mlflow/")
    assert any(k.endswith("/MLmodel") for k in keys), keys[:20]
    assert not (tmp_path / "not-used").exists()
    assert not any((tmp_path / "data").rglob("MLmodel")), (
        "artifacts must go through the server to the bucket"
    )


def test_the_preflight_names_what_is_wrong_with_the_tracking_server(mlflow_on_s3):
    assert check_tracking_server(mlflow_on_s3.url, wait_seconds=5) >= 0
    assert check_tracking_server("sqlite:///tmp/x.db") is None  # local store: nothing to check

    started = time.monotonic()
    with pytest.raises(MlflowServerError) as unknown:
        check_tracking_server("http://no-such-mlflow.invalid:5000", source="mlflow_tracking")
    assert time.monotonic() - started < 5  # no waiting for a name that does not resolve
    assert "http://no-such-mlflow.invalid:5000 (from mlflow_tracking)" in str(unknown.value)
    assert "does not resolve" in str(unknown.value)

    closed = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(MlflowServerError) as refused:
        check_tracking_server(closed, wait_seconds=2)
    assert 1.0 <= time.monotonic() - started < 10
    assert closed in str(refused.value)
    assert "did not answer in 2 s" in str(refused.value)
    assert "MLFLOW_TRACKING_URI" in str(refused.value)


@pytest.mark.parametrize(
    ("status", "expected"),
    [(404, "not an MLflow tracking server"), (401, "refused the credentials")],
)
def test_a_server_that_is_not_mlflow_or_refuses_the_credentials_fails_at_once(status, expected):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    with serve_http(Handler) as port:
        started = time.monotonic()
        with pytest.raises(MlflowServerError, match=expected):
            check_tracking_server(f"http://127.0.0.1:{port}")
        assert time.monotonic() - started < 5


@pytest.fixture(scope="module")
def logged_model(mlflow_on_s3, tmp_path_factory):
    """One candidate logged by the training code through the server (registered below
    under other names and Airflow runs)."""
    return log_small_model(
        tmp_path_factory.mktemp("cut-off"), mlflow_on_s3.url, experiment="cut-off"
    )


def test_a_create_request_the_client_resent_leaves_one_version(
    mlflow_on_s3, flaky_mlflow, logged_model, clean_task_env
):
    """MLflow's client resends a POST whose answer was lost (its own retries): the server
    then holds two versions of one Airflow run; the oldest is kept, the other deleted."""
    name = unique_id("resent")
    clean_task_env.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    clean_task_env.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    flaky_mlflow.rules.append(
        Rule(lambda method, path: method == "POST" and "model-versions/create" in path, "drop")
    )
    version = registry.register_challenger(
        logged_model.model_uri, name, airflow_run_id="resent-run", tracking_uri=flaky_mlflow.url
    )
    creates = flaky_mlflow.paths("model-versions/create")
    assert [outcome for *_, outcome in creates] == ["dropped", "200"]  # two on the server
    client = MlflowClient(mlflow_on_s3.url)
    assert [v.version for v in client.search_model_versions(f"name = '{name}'")] == [version]
    assert version == "1"  # the oldest kept
    assert registry.get_alias_version(name, CHALLENGER, tracking_uri=mlflow_on_s3.url) == version


def _registration_dag(dag_id: str, model_uri: str, name: str, tracking_uri: str):
    from include.ml_pipeline.orchestration.compat import dag, task
    from include.ml_pipeline.orchestration.defaults import dag_settings

    @dag(dag_id=dag_id, schedule=None, **dag_settings())
    def registration():
        @task
        def registrar_mlflow(run_id=None) -> str:
            return registry.register_challenger(
                model_uri, name, airflow_run_id=run_id, tracking_uri=tracking_uri
            )

        registrar_mlflow()

    return registration()


def test_a_registration_cut_off_after_the_server_created_the_version_is_retried_to_one_version(
    mlflow_on_s3, flaky_mlflow, logged_model, clean_task_env, airflow_db
):
    """The connection drops after the server created the version (the client never hears
    back): the task fails, Airflow retries it (exponential backoff), and the retry finds
    that version instead of creating a second one; `challenger` moves only then."""
    uri, name = flaky_mlflow.url, unique_id("cut_off")
    clean_task_env.setenv("MLFLOW_TRACKING_URI", uri)  # the preflight checks it too
    clean_task_env.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the task sees the cut
    flaky_mlflow.rules.append(
        Rule(lambda method, path: method == "POST" and "model-versions/create" in path, "drop")
    )
    dag = _registration_dag(unique_id("services_registration"), logged_model.model_uri, name, uri)

    run = run_test_dag(dag)

    ti = task_instances(run)["registrar_mlflow"]
    assert str(ti.state) == "success"
    assert ti.try_number == 2  # the first try failed on the cut, the retry succeeded
    client = MlflowClient(mlflow_on_s3.url)
    versions = client.search_model_versions(f"name = '{name}'")
    assert [v.tags[AIRFLOW_RUN_TAG] for v in versions] == [run.run_id]  # exactly one
    (version,) = versions
    assert registry.get_alias_version(name, CHALLENGER, tracking_uri=mlflow_on_s3.url) == str(
        version.version
    )
    creates = flaky_mlflow.paths("model-versions/create")
    assert [outcome for *_, outcome in creates] == ["dropped"]  # the retry created nothing
    aliases = flaky_mlflow.paths("registered-models/alias")
    assert len(aliases) == 1
    assert flaky_mlflow.seen.index(aliases[0]) > flaky_mlflow.seen.index(creates[0])
