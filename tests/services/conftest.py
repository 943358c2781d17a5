"""Real services on loopback for the service-mode tests: moto's S3 server with a bucket, an
`mlflow server` whose artifacts go to that bucket (proxied: clients hold no bucket
credentials), a proxy in front of MLflow that can drop or refuse requests, and helpers to
run a DAG with `dag.test()` and read its task instances."""

from __future__ import annotations

import contextlib
import http.server
import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devtools.s3_server import DUMMY_KEY_ID, DUMMY_SECRET, REGION, S3Server
from tests.support.mlflow_server import local_mlflow_server

BUCKET = "services-bucket"
AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_PROFILE",
    "MLFLOW_S3_ENDPOINT_URL",
)
_runs = itertools.count()


@pytest.fixture(scope="session")
def s3():
    pytest.importorskip("moto", reason="moto[server] (a dev requirement) is not installed")
    with S3Server(bucket=BUCKET) as server:
        yield server


@dataclass
class MlflowService:
    url: str
    root: Path
    log: Path


@pytest.fixture(scope="session")
def mlflow_on_s3(s3, tmp_path_factory):
    """`mlflow server` with a SQLite backend and artifacts in `s3://<bucket>/mlflow`; only
    the server has the bucket's credentials and endpoint."""
    root = tmp_path_factory.mktemp("mlflow-service")
    with local_mlflow_server(
        root,
        f"s3://{BUCKET}/mlflow",
        database="mlflow.db",
        extra_env={
            "AWS_ACCESS_KEY_ID": DUMMY_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET,
            "AWS_DEFAULT_REGION": REGION,
            "MLFLOW_S3_ENDPOINT_URL": s3.endpoint_url,
            "AWS_ENDPOINT_URL": s3.endpoint_url,
        },
        timeout=180,
    ) as url:
        yield MlflowService(url, root, root / "server.log")


@pytest.fixture
def client_without_bucket_credentials(monkeypatch):
    """This process (the 'worker') has no AWS credentials or endpoint at all."""
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")


@pytest.fixture
def clean_task_env(monkeypatch):
    """What a task's pre_execute may set (MLflow URI and credentials, storage options) is
    put back after the test."""
    from include.ml_pipeline import storage

    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    saved = dict(storage._CONFIGURED)
    from include.ml_pipeline.orchestration import preflight

    passed = set(preflight._PASSED)
    yield monkeypatch
    storage._CONFIGURED.clear()
    storage._CONFIGURED.update(saved)
    preflight._PASSED.clear()
    preflight._PASSED.update(passed)


# -------------------------------------------------------------------- a flaky MLflow proxy


@dataclass
class Rule:
    """Requests for which `matches(method, path)` is true get `action`: `drop` (forwarded,
    so the server acts on it, then the connection is closed without an answer) or `503`
    (not forwarded). `times` requests at most."""

    matches: Callable[[str, str], bool]
    action: str
    times: int = 1
    used: int = 0


@dataclass
class FlakyProxy:
    upstream: str
    port: int = 0
    rules: list[Rule] = field(default_factory=list)
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # method, path, outcome

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def paths(self, fragment: str, method: str = "POST") -> list[tuple[str, str, str]]:
        return [s for s in self.seen if s[0] == method and fragment in s[1]]


def _proxy_handler(proxy: FlakyProxy):
    import httpx

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _forward(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            method, path = self.command, self.path
            rule = next(
                (r for r in proxy.rules if r.used < r.times and r.matches(method, path)), None
            )
            if rule is not None and rule.action == "503":
                rule.used += 1
                proxy.seen.append((method, path, "503"))
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            headers = {
                k: v
                for k, v in self.headers.items()
                if k.lower() not in ("host", "content-length", "connection")
            }
            answer = httpx.request(
                method, proxy.upstream + path, content=body, headers=headers, timeout=60
            )
            if rule is not None and rule.action == "drop":
                rule.used += 1
                proxy.seen.append((method, path, "dropped"))
                self.close_connection = True
                self.connection.shutdown(2)
                return
            proxy.seen.append((method, path, str(answer.status_code)))
            self.send_response(answer.status_code)
            for key, value in answer.headers.items():
                if key.lower() not in (
                    "content-length",
                    "transfer-encoding",
                    "connection",
                    "content-encoding",
                ):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _forward

    return Handler


@contextlib.contextmanager
def serve_http(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[int]:
    """An HTTP server with `handler` on a free loopback port, in a thread; yields the port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def flaky_mlflow(mlflow_on_s3):
    proxy = FlakyProxy(mlflow_on_s3.url)
    with serve_http(_proxy_handler(proxy)) as port:
        proxy.port = port
        yield proxy


# ------------------------------------------------------------------------- running a DAG


def run_test_dag(dag, conf: dict | None = None):
    """`dag.test()` of a DAG built in a test (Airflow 2.11 and 3.x); returns the run.

    Airflow 3's `dag.test()` runs only DAGs that a bundle's parse wrote to the database;
    this DAG lives in no file of the bundle, so it is written first, as its parse would."""
    import types

    from include.ml_pipeline.orchestration.compat import (
        AIRFLOW_3,
        run_dag_in_process,
        sync_dags_to_db,
    )

    if AIRFLOW_3:
        sync_dags_to_db(
            types.SimpleNamespace(
                dags={dag.dag_id: dag},
                import_errors={},
                bundle_path=None,
                dag_warnings=set(),
                file_last_changed={},
            )
        )
    return run_dag_in_process(dag, run_conf=conf or {})


def task_instances(dag_run) -> dict:
    return {ti.task_id: ti for ti in dag_run.get_task_instances()}


def unique_id(prefix: str) -> str:
    return f"{prefix}_{next(_runs)}"
