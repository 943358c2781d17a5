"""The running cluster: the backends, the Airflow metadata database, a scheduler and two
Celery workers that share no writable path, and the questions the proof asks of them
(runs and task instances from PostgreSQL, XComs, objects in the bucket, files left in each
worker's folders).

On Airflow 3 the cluster has two processes more, as a Runtime 3 deployment does: the API
server (the REST API v2 runs are triggered through, and the Task Execution API the
workers' tasks call at `[core] execution_api_server_url` instead of the database) and the
DAG processor (the scheduler parses no DAG file). Every process gets the same
`[api_auth] jwt_secret` (made for this cluster) and the simple auth manager's admin (the
settings `make ui AIRFLOW=3` uses: `devtools.ui.airflow3_env`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from devtools.airflow_env import _airflow_major
from devtools.cluster import backends
from devtools.cluster.processes import (
    ClusterError,
    Service,
    kill_like_a_lost_machine,
    start,
    wait_for,
)
from devtools.cluster.rest import RestApi
from devtools.ports import free_port
from include.ml_pipeline.config import DEFAULT_MODEL_NAME, PROJECT_ROOT
from include.ml_pipeline.service_probe import tail

AIRFLOW_3 = _airflow_major() >= 3
WORKER_NAMES = ("worker-a", "worker-b")
ADMIN = "admin"  # the simple auth manager's user on Airflow 3 (its password: generated)
#: Seconds: how fast a lost worker is noticed (task heartbeat, zombie threshold) and
#: how long a failed try waits before its retry (`ML_PIPELINE_RETRY_DELAY_SECONDS`).
HEARTBEAT_SECONDS = 1
ZOMBIE_THRESHOLD_SECONDS = 10
RETRY_DELAY_SECONDS = 2
#: Airflow 3: how long a task's supervisor waits for an answer of the Task Execution API.
EXECUTION_API_TIMEOUT_SECONDS = 30


@dataclass
class Worker:
    name: str
    root: Path
    service: Service | None = None

    @property
    def home(self) -> Path:  # HOME
        return self.root / "home"

    @property
    def tmp(self) -> Path:  # TMPDIR
        return self.root / "tmp"

    @property
    def work(self) -> Path:  # the working directory
        return self.root / "work"

    @property
    def pipeline_home(self) -> Path:  # ML_PIPELINE_HOME
        return self.root / "pipeline"

    @property
    def airflow_home(self) -> Path:  # AIRFLOW_HOME: its config, pid file and task logs
        return self.root / "airflow"

    def folders(self) -> dict[str, Path]:
        return {
            "HOME": self.home,
            "TMPDIR": self.tmp,
            "cwd": self.work,
            "ML_PIPELINE_HOME": self.pipeline_home,
            "AIRFLOW_HOME": self.airflow_home,
        }


@dataclass
class Cluster:
    root: Path
    bucket: str = "ml-pipeline"
    postgres: backends.Postgres | None = None
    redis: backends.Redis | None = None
    s3: backends.S3 | None = None
    mlflow: backends.Mlflow | None = None
    api: backends.ModelApi | None = None
    scheduler: Service | None = None
    workers: dict[str, Worker] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    # Airflow 3 only: the API server, the DAG processor, their shared settings, the client
    api_server: Service | None = None
    dag_processor: Service | None = None
    airflow3_settings: dict[str, str] = field(default_factory=dict, repr=False)
    rest: RestApi | None = None

    # -- life cycle ---------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path | None = None) -> Cluster:
        root = Path(root or tempfile.mkdtemp(prefix="ml-pipeline-cluster-"))
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)  # PostgreSQL (another user) must reach its folder inside
        if os.geteuid() == 0:  # ...and so every folder above it (mkdtemp makes 0700 ones)
            closed = [p for p in root.resolve().parents if not p.stat().st_mode & 0o001]
            if closed:
                raise ClusterError(
                    f"PostgreSQL runs as the user 'postgres' and cannot reach {root}: "
                    f"{closed[0]} is not searchable by other users (mode "
                    f"{closed[0].stat().st_mode & 0o777:o}); chmod o+x it or put the "
                    "cluster's folder elsewhere"
                )
        return cls(root=root)

    @property
    def storage_uri(self) -> str:
        return f"s3://{self.bucket}/pipeline"

    @property
    def model_name(self) -> str:
        return DEFAULT_MODEL_NAME

    def _timed(self, what: str, func, *args):
        started = time.monotonic()
        result = func(*args)
        self.timings[what] = round(time.monotonic() - started, 1)
        return result

    def start(self) -> Cluster:
        """Start everything, in dependency order; raise `ClusterError` naming the log of
        the first service that fails."""
        missing = backends.missing_binaries()
        if missing:
            raise ClusterError(
                f"missing {', '.join(missing)}: apt-get install -y postgresql redis-server"
            )
        from concurrent.futures import ThreadPoolExecutor

        # What does not depend on each other starts side by side: the database, broker and
        # bucket; then the MLflow server (slow to import) while the metadata DB migrates.
        with ThreadPoolExecutor(4) as pool:
            postgres = pool.submit(self._timed, "postgres", backends.start_postgres, self.root)
            redis = pool.submit(self._timed, "redis", backends.start_redis, self.root)
            self.s3 = self._timed("s3", backends.start_s3, self.root, self.bucket)
            mlflow = pool.submit(self._timed, "mlflow", backends.start_mlflow, self.root, self.s3)
            try:
                self.postgres, self.redis = postgres.result(), redis.result()
                self._timed("airflow db migrate", self.airflow, "db", "migrate")
                self.mlflow = mlflow.result()
            finally:  # a failure must not orphan what did start: stop() stops what is set
                for name, future in (("postgres", postgres), ("redis", redis), ("mlflow", mlflow)):
                    if getattr(self, name) is None and future.exception() is None:
                        setattr(self, name, future.result())
        self.api = self._timed(
            "model api", backends.start_model_api, self.root, self.s3, self.mlflow, self.storage_uri
        )
        if AIRFLOW_3:
            self.api_server = self._timed("api-server", self._start_airflow3, "api-server")
            self.dag_processor = self._timed("dag-processor", self._start_airflow3, "dag-processor")
        self.scheduler = self._timed("scheduler", self._start_scheduler)
        for name in WORKER_NAMES:
            self.workers[name] = self._timed(name, self._start_worker, name)
        self._timed("workers ready", self._wait_workers)
        if AIRFLOW_3:
            self._timed("api-server healthy", self._wait_api_server)
        return self

    def stop(self) -> None:
        """Stop every process the cluster started: Airflow's first, then the services
        they used, the database last; side by side within each stage (one by one, the
        stops that wait out their timeout added up to a minute per cluster)."""
        from concurrent.futures import ThreadPoolExecutor

        stages = [
            [
                *(w.service for w in self.workers.values()),
                self.scheduler,
                self.dag_processor,
                self.api_server,
            ],
            [
                self.api and self.api.service,
                self.mlflow and self.mlflow.service,
                self.s3 and self.s3.service,
                self.redis and self.redis.service,
            ],
            [self.postgres and self.postgres.service],
        ]
        for stage in stages:
            running = [service for service in stage if service is not None and service.alive()]
            if running:
                with ThreadPoolExecutor(len(running)) as pool:
                    list(pool.map(lambda service: service.stop(), running))

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Cluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- Airflow --------------------------------------------------------------------------
    def airflow_env(self, name: str, root: Path) -> dict[str, str]:
        """The environment of one Airflow process (`name` is its hostname): the same
        settings for all, only its own folders under `root`."""
        pg, redis, s3, mlflow, api = self.postgres, self.redis, self.s3, self.mlflow, self.api
        s3_extra = {
            "endpoint_url": s3.endpoint,
            "region_name": backends.S3_KEYS["AWS_DEFAULT_REGION"],
        }
        storage_conn = json.dumps(
            {
                "conn_type": "aws",
                "login": backends.S3_KEYS["AWS_ACCESS_KEY_ID"],
                "password": backends.S3_KEYS["AWS_SECRET_ACCESS_KEY"],
                "extra": s3_extra,
            }
        )
        env = {
            **backends.clean_env(),
            **s3.env,
            "HOME": str(root / "home"),
            "TMPDIR": str(root / "tmp"),
            "ML_PIPELINE_HOME": str(root / "pipeline"),
            "ML_PIPELINE_WORKER_NAME": name,
            "AIRFLOW_HOME": str(root / "airflow"),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "devtools.cluster.hostname.worker_name",
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES": "airflow.* astro.*",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg.sqlalchemy_url,
            "AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS": "False",
            "AIRFLOW__CELERY__BROKER_URL": redis.url,
            "AIRFLOW__CELERY__RESULT_BACKEND": pg.celery_result_backend,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
            "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
            "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(root / "airflow" / "logs"),
            # Only the runs we trigger: no scheduled or asset-triggered ones.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": str(HEARTBEAT_SECONDS),
            "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "120",
            **(self._airflow3_env() if AIRFLOW_3 else self._airflow2_env(root)),
            "ML_PIPELINE_RETRY_DELAY_SECONDS": str(RETRY_DELAY_SECONDS),
            # The services: the storage root and its connection, MLflow, the model API.
            "ML_PIPELINE_STORAGE": self.storage_uri,
            "AIRFLOW_CONN_ML_PIPELINE_STORAGE": storage_conn,
            "AIRFLOW_CONN_AWS_DEFAULT": storage_conn,
            "MPLBACKEND": "Agg",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "1",
        }
        if mlflow is not None:
            env["MLFLOW_TRACKING_URI"] = mlflow.url
            env["AIRFLOW_CONN_MLFLOW_TRACKING"] = json.dumps(
                {"conn_type": "http", "host": "127.0.0.1", "port": mlflow.port, "schema": "http"}
            )
        if api is not None:
            env["MODEL_API_URL"] = api.url
            env["AIRFLOW_CONN_MODEL_API"] = json.dumps(
                {
                    "conn_type": "http",
                    "host": "127.0.0.1",
                    "port": api.port,
                    "schema": "http",
                    "password": api.token,
                }
            )
        for folder in ("home", "tmp", "work", "pipeline", "airflow"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        return env

    @staticmethod
    def _airflow2_env(root: Path) -> dict[str, str]:
        """Airflow 2.11's names: the scheduler parses the DAG files itself."""
        return {
            "AIRFLOW__LOGGING__DAG_PROCESSOR_MANAGER_LOG_LOCATION": str(
                root / "airflow" / "logs" / "dag_processor_manager.log"
            ),
            "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": str(HEARTBEAT_SECONDS),
            "AIRFLOW__SCHEDULER__SCHEDULER_ZOMBIE_TASK_THRESHOLD": str(ZOMBIE_THRESHOLD_SECONDS),
            # Not shorter: a zombie seen twice before the DAG processor handled the first
            # report fails the retry that has started meanwhile (seen at 2 s here).
            "AIRFLOW__SCHEDULER__ZOMBIE_DETECTION_INTERVAL": "10",
            "AIRFLOW__SCHEDULER__PARSING_PROCESSES": "1",
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "60",
            "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "60",
            "AIRFLOW__WEBSERVER__SECRET_KEY": "cluster-test-placeholder",
        }

    def _airflow3_env(self) -> dict[str, str]:
        """Airflow 3's names for the same settings (the zombie is a task instance whose
        heartbeat timed out; the DAG processor has its own section), plus what every
        component shares: the API server's URLs, the auth manager, the JWT secret."""
        if not self.airflow3_settings:
            from devtools.ui import airflow3_env, write_simple_auth_passwords

            folder = self.root / "api-server"
            folder.mkdir(parents=True, exist_ok=True)
            password = secrets.token_urlsafe(18)
            url = f"http://127.0.0.1:{free_port()}"
            passwords = write_simple_auth_passwords(ADMIN, password, folder=folder)
            self.airflow3_settings = airflow3_env(url, ADMIN, passwords)
            self.rest = RestApi(url, ADMIN, password)
        return {
            **self.airflow3_settings,
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(ZOMBIE_THRESHOLD_SECONDS),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "10",
            # how often a task's supervisor tells the API server it is alive
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": str(HEARTBEAT_SECONDS),
            # 5 s by default: on a loaded 2-core machine (load average 25) the API server's
            # first answers took longer, and the task's try failed before it started
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": str(EXECUTION_API_TIMEOUT_SECONDS),
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "60",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "60",
            "AIRFLOW__API__SECRET_KEY": "cluster-test-placeholder",
            "AIRFLOW__API__WORKERS": "1",
        }

    def airflow(self, *args: str, timeout: float = 300) -> str:
        """Run an `airflow` CLI command against the cluster's database; its output."""
        root = self.root / "cli"
        env = self.airflow_env("cli", root)
        done = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=env,
            cwd=root / "work",
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode:
            raise ClusterError(
                f"airflow {' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done.stdout

    def _start_scheduler(self) -> Service:
        root = self.root / "scheduler"
        env = self.airflow_env("scheduler", root)
        service = start(
            "airflow scheduler",
            [sys.executable, "-m", "airflow", "scheduler"],
            log_path=self.root / "logs" / "scheduler.log",
            env=env,
            cwd=root / "work",
        )
        return service

    def _start_airflow3(self, name: str) -> Service:
        """Airflow 3's `api-server` (loopback, one worker process) or `dag-processor`, with
        the commands `make ui AIRFLOW=3` starts them with."""
        from urllib.parse import urlsplit

        from devtools.ui import ui_commands

        root = self.root / name
        env = self.airflow_env(name, root)
        address = urlsplit(self.rest.url)
        commands = ui_commands(
            address.hostname, address.port, workers=1, scheduler=True, airflow_3=True
        )
        return start(
            f"airflow {name}",
            commands[name],
            log_path=self.root / "logs" / f"{name}.log",
            env=env,
            cwd=root / "work",
        )

    def _wait_api_server(self) -> None:
        """The API server answers and sees the database, the scheduler and the DAG
        processor healthy (its health endpoint), and its Task Execution API answers (its
        first answer builds the API's versions: seconds, not a task's first call)."""

        def healthy() -> bool:
            health = self.rest.health()
            return self.rest.execution_health() and all(
                (health.get(part) or {}).get("status") == "healthy"
                for part in ("metadatabase", "scheduler", "dag_processor")
            )

        wait_for(healthy, timeout=180, what="the API server healthy", service=self.api_server)

    def _start_worker(self, name: str) -> Worker:
        worker = Worker(name, self.root / name)
        env = self.airflow_env(name, worker.root)
        worker.service = start(
            f"celery {name}",
            [
                sys.executable,
                "-m",
                "airflow",
                "celery",
                "worker",
                "--concurrency",
                "1",
                "-q",
                "default",
                "--celery-hostname",
                f"{name}@cluster",
                "--skip-serve-logs",
                "--without-mingle",
                "--without-gossip",
            ],
            log_path=self.root / "logs" / f"{name}.log",
            env=env,
            cwd=worker.work,
        )
        return worker

    def _wait_workers(self) -> None:
        for worker in self.workers.values():
            wait_for(
                lambda w=worker: "ready." in Path(w.service.log_path).read_text(errors="replace"),
                timeout=120,
                what=f"{worker.name} ready",
                service=worker.service,
            )

    def kill_worker(self, name: str) -> list[int]:
        """SIGKILL worker `name` and every process below it, as a lost pod."""
        return kill_like_a_lost_machine(self.workers[name].service)

    # -- runs ------------------------------------------------------------------------------
    def wait_dag_parsed(self, dag_id: str, timeout: float = 180) -> None:
        """Wait until the scheduler has serialized `dag_id`; fail at once with the
        traceback when a DAG file does not import."""

        def parsed() -> bool:
            if self.postgres.query("SELECT 1 FROM serialized_dag WHERE dag_id = %s", (dag_id,)):
                return True
            errors = self.postgres.query("SELECT filename, stacktrace FROM import_error")
            if errors:
                raise ClusterError(
                    "the scheduler could not import the DAG files:\n"
                    + "\n".join(f"--- {name}\n{trace[-2500:]}" for name, trace in errors)
                )
            return False

        started = time.monotonic()
        while not parsed():
            if time.monotonic() - started > timeout:
                raise ClusterError(
                    self.scheduler.describe_failure(f"{dag_id} not parsed after {timeout:.0f} s")
                )
            self.check_alive()
            time.sleep(0.5)

    def trigger(self, dag_id: str, run_id: str, conf: dict) -> str:
        self.wait_dag_parsed(dag_id)
        if AIRFLOW_3:  # through the REST API v2, as a user or another system would
            wait_for(
                lambda: self.rest.unpause(dag_id)["is_paused"] is False,
                timeout=60,
                what=f"{dag_id} unpaused (PATCH /api/v2/dags/{dag_id})",
                service=self.api_server,
            )
            self.rest.trigger(dag_id, run_id, conf)
            return run_id
        # The DAG processor writes the serialized DAG before the `dag` row: unpause once
        # the row is there (what `airflow dags unpause` does, without its 5 s start-up).
        wait_for(
            lambda: bool(
                self.postgres.query(
                    "UPDATE dag SET is_paused = false WHERE dag_id = %s RETURNING 1", (dag_id,)
                )
            ),
            timeout=60,
            what=f"{dag_id} unpaused",
            service=self.scheduler,
        )
        self.airflow("dags", "trigger", dag_id, "--run-id", run_id, "--conf", json.dumps(conf))
        return run_id

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        rows = self.postgres.query(
            "SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (dag_id, run_id)
        )
        return rows[0][0] if rows else None

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        """Wait until the run is finished; its state (`success` or `failed`)."""
        state = {}

        def finished() -> bool:
            state["now"] = self.run_state(dag_id, run_id)
            return state["now"] in ("success", "failed")

        self.check_alive()
        wait_for(
            finished,
            timeout=timeout,
            what=f"{dag_id} run {run_id} finished",
            service=self.scheduler,
            interval=1,
        )
        return state["now"]

    def check_alive(self) -> None:
        others = [self.api_server, self.dag_processor]
        for service in [self.scheduler, *others, *(w.service for w in self.workers.values())]:
            if service is not None and not service.alive() and not service.killed:
                raise ClusterError(service.describe_failure("is not running"))

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        rows = self.postgres.query(
            "SELECT task_id, map_index, state, hostname, try_number, "
            "round(extract(epoch FROM end_date - start_date)::numeric, 1)::float "
            "FROM task_instance WHERE dag_id = %s AND run_id = %s "
            "ORDER BY start_date NULLS LAST, task_id",
            (dag_id, run_id),
        )
        return [
            dict(
                zip(
                    ("task_id", "map_index", "state", "hostname", "try_number", "seconds"),
                    row,
                    strict=True,
                )
            )
            for row in rows
        ]

    def task_history(self, dag_id: str, run_id: str) -> list[dict]:
        """Earlier tries of the run's task instances (Airflow 2.10+ keeps them)."""
        rows = self.postgres.query(
            "SELECT task_id, map_index, state, hostname, try_number FROM "
            "task_instance_history WHERE dag_id = %s AND run_id = %s ORDER BY try_number",
            (dag_id, run_id),
        )
        return [
            dict(zip(("task_id", "map_index", "state", "hostname", "try_number"), row, strict=True))
            for row in rows
        ]

    def xcoms(self, dag_id: str, run_id: str) -> dict[str, object]:
        """The run's XCom values, decoded (JSON), by `task_id[map_index]:key`."""
        rows = self.postgres.query(
            "SELECT task_id, map_index, key, value FROM xcom WHERE dag_id = %s AND run_id = %s",
            (dag_id, run_id),
        )
        out = {}
        for task_id, map_index, key, value in rows:
            label = f"{task_id}[{map_index}]:{key}" if map_index >= 0 else f"{task_id}:{key}"
            out[label] = _decoded(value)
        return out

    def task_log(self, dag_id: str, run_id: str, task_id: str) -> str:
        """The last lines of a task's log, from whichever worker wrote it."""
        texts = []
        for worker in self.workers.values():
            folder = worker.airflow_home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
            for path in sorted(folder.glob(f"task_id={task_id}*/**/*.log")):
                texts.append(f"--- {path}\n{tail(path, 60)}")
        return "\n".join(texts) or "(no log found)"

    def worker_files(self, name: str) -> dict[str, list[str]]:
        """Files left in worker `name`'s own folders (AIRFLOW_HOME aside: its logs)."""
        worker = self.workers[name]
        out = {}
        for label, folder in worker.folders().items():
            if label == "AIRFLOW_HOME":
                continue
            out[label] = sorted(
                str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()
            )
        return out

    def where_to_look(self) -> str:
        lines = [f"cluster folder: {self.root}", f"logs: {self.root / 'logs'}"]
        if self.rest:
            lines.append(
                f"Airflow API server (UI, REST API v2, Task Execution API): {self.rest.url} "
                f"(user {ADMIN}, password in {self.root / 'api-server'})"
            )
        for worker in self.workers.values():
            lines.append(
                f"{worker.name}: task logs {worker.airflow_home / 'logs'}; "
                f"folders {worker.root}/{{home,tmp,work,pipeline}}"
            )
        if self.s3:
            lines.append(f"bucket: s3://{self.bucket} at {self.s3.endpoint} (moto)")
        if self.mlflow:
            lines.append(f"MLflow: {self.mlflow.url}")
        if self.api:
            lines.append(f"model API: {self.api.url}")
        if self.postgres:
            lines.append(f"metadata DB: {self.postgres.sqlalchemy_url}")
        return "\n".join(lines)


def _decoded(value: object) -> object:
    """An XCom value as the database holds it, decoded: JSON bytes on 2.11 (`bytea`);
    on 3.x a `jsonb` column, which psycopg2 hands over parsed already."""
    if isinstance(value, bytes | memoryview):
        raw = bytes(value)
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")
    return value
