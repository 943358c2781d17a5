"""The storage root on an object store, with credentials from the `ml_pipeline_storage`
connection: a task receives them at its start, and the DAG's first task fails at once,
without retries, when the bucket does not exist or the credentials are refused."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time

import pytest

from devtools.ports import free_port
from devtools.s3_server import DUMMY_KEY_ID, DUMMY_SECRET, REGION, moto_server_command
from include.ml_pipeline import storage
from include.ml_pipeline.names import FAILURE_XCOM_KEY, STORAGE_CONN_ID
from include.ml_pipeline.orchestration.preflight import check_storage_root
from tests.services.conftest import BUCKET, run_test_dag, task_instances, unique_id

CONN_ENV = f"AIRFLOW_CONN_{STORAGE_CONN_ID.upper()}"


def _storage_connection(endpoint: str, key: str = DUMMY_KEY_ID, secret: str = DUMMY_SECRET):
    return json.dumps(
        {
            "conn_type": "aws",
            "login": key,
            "password": secret,
            "extra": {"endpoint_url": endpoint, "region_name": REGION},
        }
    )


def _storage_dag(dag_id: str):
    """A first task that writes under the storage root, and one after it."""
    from include.ml_pipeline.config import get_settings
    from include.ml_pipeline.orchestration.compat import dag, task
    from include.ml_pipeline.orchestration.defaults import dag_settings

    @dag(dag_id=dag_id, schedule=None, **dag_settings())
    def storage_root():
        @task
        def first(run_id=None) -> str:
            return storage.write_text(
                storage.join(get_settings().storage_uri, "runs", run_id, "first.txt"), "first"
            )

        @task
        def second(uri: str) -> str:
            return storage.read_text(uri)

        second(first())

    return storage_root()


def test_the_connection_gives_the_task_its_credentials(
    s3, clean_task_env, airflow_db, client_without_bucket_credentials
):
    clean_task_env.setenv("ML_PIPELINE_STORAGE", f"s3://{BUCKET}/pipeline")
    clean_task_env.setenv(CONN_ENV, _storage_connection(s3.endpoint_url))
    storage.configure("s3", None)

    run = run_test_dag(_storage_dag(unique_id("services_storage_ok")))

    states = {t: str(ti.state) for t, ti in task_instances(run).items()}
    assert states == {"first": "success", "second": "success"}
    assert f"pipeline/runs/{run.run_id}/first.txt" in s3.keys("pipeline/")


def test_a_bucket_that_does_not_exist_fails_the_first_task_at_once(s3, clean_task_env, airflow_db):
    root = "s3://no-such-bucket-here/pipeline"
    clean_task_env.setenv("ML_PIPELINE_STORAGE", root)
    clean_task_env.setenv(CONN_ENV, _storage_connection(s3.endpoint_url))
    started = time.monotonic()

    run = run_test_dag(_storage_dag(unique_id("services_storage_missing")))

    tis = task_instances(run)
    assert str(tis["first"].state) == "failed"
    assert tis["first"].try_number == 1  # no retry: a configuration error
    assert str(tis["second"].state) == "upstream_failed"
    failure = tis["first"].xcom_pull(task_ids="first", key=FAILURE_XCOM_KEY)
    assert root in failure["error"]
    assert "bucket 'no-such-bucket-here' does not exist" in failure["error"]
    assert f"connection {STORAGE_CONN_ID}" in failure["error"]
    assert time.monotonic() - started < 60  # no retry delays were waited


@contextlib.contextmanager
def _moto_with_authentication():
    """moto's S3 server that checks credentials (after the first request, which makes the
    bucket): only its own IAM users' keys are accepted."""
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "1"}
    server = subprocess.Popen(
        [str(moto_server_command()), "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=DUMMY_KEY_ID,
            aws_secret_access_key=DUMMY_SECRET,
            region_name=REGION,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                client.create_bucket(Bucket="guarded")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield endpoint
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=10)


def test_refused_credentials_and_an_unreachable_store_name_the_uri_and_the_fix(s3, clean_task_env):
    assert check_storage_root("file:///tmp/anything") is None
    storage.configure(
        "s3",
        {
            "key": DUMMY_KEY_ID,
            "secret": DUMMY_SECRET,
            "client_kwargs": {"endpoint_url": s3.endpoint_url},
        },
    )
    assert check_storage_root(f"s3://{BUCKET}/pipeline") >= 0

    with _moto_with_authentication() as endpoint:
        storage.configure(
            "s3", {"key": "wrong", "secret": "wrong", "client_kwargs": {"endpoint_url": endpoint}}
        )
        with pytest.raises(storage.StorageError) as denied:
            check_storage_root("s3://guarded/pipeline", credentials="connection x")
    assert "s3://guarded/pipeline: access denied" in str(denied.value)
    assert "credentials from connection x" in str(denied.value)

    storage.configure(
        "s3",
        {
            "key": DUMMY_KEY_ID,
            "secret": DUMMY_SECRET,
            "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{free_port()}"},
            "config_kwargs": {"retries": {"max_attempts": 1}},
        },
    )
    with pytest.raises(storage.StorageError, match="cannot reach the object store"):
        check_storage_root(f"s3://{BUCKET}/pipeline")
