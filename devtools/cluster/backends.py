"""The services behind the Airflow cluster, each on loopback, a free port, and a folder of
its own: PostgreSQL, Redis, moto's S3 server (+ bucket), the MLflow server, the model API."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from devtools.cluster.processes import ClusterError, Service, start, wait_for
from devtools.ports import free_port, port_open
from include.ml_pipeline.config import PROJECT_ROOT


def _pg_bin() -> Path:
    """Debian's PostgreSQL binaries (`ML_PIPELINE_PG_BIN` overrides): 15 on Debian 12, or
    the newest version installed."""
    if os.environ.get("ML_PIPELINE_PG_BIN"):
        return Path(os.environ["ML_PIPELINE_PG_BIN"])
    installed = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    return installed[-1].parent if installed else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
REDIS_SERVER = os.environ.get("ML_PIPELINE_REDIS_SERVER", "/usr/bin/redis-server")
PG_USER = "airflow"  # the database superuser initdb creates (trust auth on loopback)
PG_DATABASE = "airflow"
#: moto accepts any keys; these are placeholders, not secrets.
S3_KEYS = {
    "AWS_ACCESS_KEY_ID": "cluster-test",
    "AWS_SECRET_ACCESS_KEY": "cluster-test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def missing_binaries() -> list[str]:
    """The Debian binaries the cluster needs that this machine lacks (install:
    `apt-get install -y postgresql redis-server`)."""
    wanted = [PG_BIN / "initdb", PG_BIN / "pg_ctl", Path(REDIS_SERVER)]
    return [str(path) for path in wanted if not os.access(path, os.X_OK)]


def _as_db_user() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its commands as `postgres`
    (Debian's package creates that user) through runuser."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ClusterError(
            "running as root and there is no 'postgres' user to run "
            "PostgreSQL as (apt-get install postgresql creates it)"
        ) from None
    return ["runuser", "-u", "postgres", "--"]


@dataclass
class Postgres:
    service: Service
    port: int

    @property
    def sqlalchemy_url(self) -> str:
        return f"postgresql+psycopg2://{PG_USER}@127.0.0.1:{self.port}/{PG_DATABASE}"

    @property
    def celery_result_backend(self) -> str:
        # The driver named: SQLAlchemy 2.1 (the Airflow 3 line) defaults to psycopg 3
        return f"db+postgresql+psycopg2://{PG_USER}@127.0.0.1:{self.port}/{PG_DATABASE}"

    def connect(self):
        import psycopg2

        con = psycopg2.connect(
            host="127.0.0.1", port=self.port, user=PG_USER, dbname=PG_DATABASE, connect_timeout=5
        )
        con.autocommit = True
        return con

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self.connect() as con, con.cursor() as cur:
            cur.execute(sql, args)
            rows = cur.fetchall() if cur.description else []
        con.close()
        return rows


def start_postgres(root: Path) -> Postgres:
    """initdb in `root/postgres/data` (owned by the user PostgreSQL runs as), then the
    server on 127.0.0.1:<free port>, its unix socket in `root/postgres`; database
    `airflow`. No fsync: a throw-away database."""
    import subprocess

    folder = root / "postgres"
    data = folder / "data"
    folder.mkdir(parents=True)
    runner = _as_db_user()
    if runner:
        shutil.chown(folder, "postgres", "postgres")
    folder.chmod(0o700)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    done = subprocess.run(
        [
            *runner,
            str(PG_BIN / "initdb"),
            "-D",
            str(data),
            "-U",
            PG_USER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise ClusterError(f"initdb failed in {data}:\n{done.stdout}\n{done.stderr}")
    port = free_port()
    options = [
        "-p",
        str(port),
        "-k",
        str(folder),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "fsync=off",
        "-c",
        "synchronous_commit=off",
        "-c",
        "full_page_writes=off",
        "-c",
        "max_connections=200",
    ]
    # The server in the foreground (so we hold its pid); `pg_ctl stop` ends it cleanly.
    service = start(
        "postgres",
        [*runner, str(PG_BIN / "postgres"), "-D", str(data), *options],
        log_path=root / "logs" / "postgres.log",
        env=env,
        cwd=folder,
        stop_command=[*runner, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
    )
    pg = Postgres(service, port)

    def ready() -> bool:
        import psycopg2

        con = psycopg2.connect(
            host="127.0.0.1", port=port, user=PG_USER, dbname="postgres", connect_timeout=2
        )
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,))
            if not cur.fetchone():
                cur.execute(f"CREATE DATABASE {PG_DATABASE}")
        con.close()
        return True

    wait_for(ready, timeout=60, what=f"PostgreSQL on 127.0.0.1:{port}", service=service)
    return pg


@dataclass
class Redis:
    service: Service
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def start_redis(root: Path) -> Redis:
    folder = root / "redis"
    folder.mkdir(parents=True)
    port = free_port()
    service = start(
        "redis",
        [
            REDIS_SERVER,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
            "--protected-mode",
            "yes",
        ],
        log_path=root / "logs" / "redis.log",
        env={"PATH": os.environ.get("PATH", "")},
        cwd=folder,
    )
    wait_for(
        lambda: port_open(port), timeout=30, what=f"Redis on 127.0.0.1:{port}", service=service
    )
    return Redis(service, port)


@dataclass
class S3:
    service: Service
    port: int
    bucket: str

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What a client (boto3, s3fs, MLflow) needs to reach the bucket."""
        return {
            **S3_KEYS,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
            region_name=S3_KEYS["AWS_DEFAULT_REGION"],
        )

    def keys(self, prefix: str = "") -> list[str]:
        client, found = self.client(), []
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            found.extend(item["Key"] for item in page.get("Contents", []))
        return found

    def put(self, key: str, body: bytes) -> str:
        self.client().put_object(Bucket=self.bucket, Key=key, Body=body)
        return f"s3://{self.bucket}/{key}"

    def get(self, key: str) -> bytes:
        return self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()


def start_s3(root: Path, bucket: str = "ml-pipeline") -> S3:
    """moto's S3 server (`moto_server` of this venv) with `bucket`. A reusable
    `devtools/s3_server.py` would be the place for this if more than the cluster needs it."""
    port = free_port()
    moto = Path(sys.executable).parent / "moto_server"
    command = [str(moto)] if moto.exists() else [sys.executable, "-m", "moto.server"]
    service = start(
        "s3 (moto)",
        [*command, "-H", "127.0.0.1", "-p", str(port)],
        log_path=root / "logs" / "s3.log",
        env=dict(os.environ),
        cwd=root,
    )
    s3 = S3(service, port, bucket)
    wait_for(lambda: port_open(port), timeout=60, what=f"moto S3 on {s3.endpoint}", service=service)
    s3.client().create_bucket(Bucket=bucket)
    return s3


@dataclass
class LoopbackService:
    """A started service answering JSON over HTTP on 127.0.0.1:`port`."""

    service: Service
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as response:
            return json.load(response)


@dataclass
class Mlflow(LoopbackService):
    def model_versions(self, name: str) -> list[dict]:
        from urllib.parse import quote

        query = quote(f"name='{name}'")
        found = self.get(f"/api/2.0/mlflow/model-versions/search?max_results=1000&filter={query}")
        return found.get("model_versions", [])

    def alias_version(self, name: str, alias: str) -> str | None:
        from urllib.error import HTTPError
        from urllib.parse import quote

        try:
            found = self.get(
                f"/api/2.0/mlflow/registered-models/alias?name={quote(name)}&alias={quote(alias)}"
            )
        except HTTPError as exc:
            if exc.code in (400, 404):  # MLflow: an unknown alias is INVALID_PARAMETER_VALUE
                return None
            raise
        return found["model_version"]["version"]


def start_mlflow(root: Path, s3: S3) -> Mlflow:
    """`mlflow server` with its own SQLite store under `root/mlflow` and the artifacts
    proxied to `s3://<bucket>/mlflow` (clients need no bucket credentials)."""
    from devtools.mlflow_server import server_command, server_env

    folder = root / "mlflow"
    folder.mkdir(parents=True)
    port = free_port()
    env = server_env({**clean_env(), **s3.env, "HOME": str(folder), "TMPDIR": str(folder)})
    service = start(
        "mlflow server",
        server_command(f"sqlite:///{folder / 'mlflow.db'}", f"s3://{s3.bucket}/mlflow", port=port),
        log_path=root / "logs" / "mlflow.log",
        env=env,
        cwd=folder,
    )
    mlflow = Mlflow(service, port)
    wait_for(
        lambda: urllib.request.urlopen(f"{mlflow.url}/health", timeout=2).status == 200,
        timeout=180,
        what=f"MLflow server on {mlflow.url}",
        service=service,
    )
    return mlflow


@dataclass
class ModelApi(LoopbackService):
    token: str
    home: Path

    def post(self, path: str, body: dict, headers: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)


def start_model_api(root: Path, s3: S3, mlflow: Mlflow, storage_uri: str) -> ModelApi:
    """The model API as its own service (`python -m include.ml_pipeline.serving.api`): it
    loads `models:/<name>@champion` from the MLflow server once a run promotes one
    (`POST /admin/reload`), and logs its traffic under the storage root."""
    import secrets

    folder = root / "model-api"
    home = folder / "home"
    home.mkdir(parents=True)
    port = free_port()
    token = secrets.token_urlsafe(24)
    env = {
        **clean_env(),
        **s3.env,
        "HOME": str(folder),
        "TMPDIR": str(folder),
        "ML_PIPELINE_HOME": str(home),
        "ML_PIPELINE_STORAGE": storage_uri,
        "MLFLOW_TRACKING_URI": mlflow.url,
        "MODEL_API_ADMIN_TOKEN": token,
        "MODEL_API_HOST": "127.0.0.1",
        "MODEL_API_PORT": str(port),
        # the inference log's objects at most this old (30 s by default on an object store)
        "MODEL_API_LOG_FLUSH_SECONDS": "3",
    }
    service = start(
        "model API",
        [
            sys.executable,
            "-m",
            "include.ml_pipeline.serving.api",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        log_path=root / "logs" / "model-api.log",
        env=env,
        cwd=folder,
    )
    api = ModelApi(service, port, token, home)
    wait_for(lambda: port_open(port), timeout=120, what=f"model API on {api.url}", service=service)
    return api


#: Variables of the calling process that must not leak into the cluster's processes (the
#: test session's own embedded Airflow and pipeline home, for one).
_PRIVATE_PREFIXES = (
    "AIRFLOW",
    "ML_PIPELINE_",
    "MLFLOW_",
    "MODEL_API_",
    "AWS_",
    "PYTEST",
    "KEEP_TEST_HOME",
)


def clean_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(_PRIVATE_PREFIXES)}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # nothing written into the shared project tree
    env["PYTHONUNBUFFERED"] = "1"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"  # no telemetry file in each HOME, no calls out
    env["DO_NOT_TRACK"] = "1"
    return env
