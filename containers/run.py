"""`make test-containers`: the Astro path of this project, run for real on podman.

  python -m containers.run [--keep] [--pytest all|quick|none] [--airflow3 start|parse|none]
                           [--skip-start] [--skip-airflow2-start] [--skip-unavailable]

1. podman set up (containers.engine), the stand-in images built or taken from the cache
   (containers.images): quay.io/astronomer/astro-runtime:<tag>, python:<v>-slim,
   ghcr.io/mlflow/mlflow:<v>, docker.io/postgres:12.6.
2. The project image built from `Dockerfile` as `astro dev start` builds it, and checked:
   installed versions against requirements.lock, the astro user, the pipeline folder.
3. `astro dev parse`: .astro/test_dag_integrity_default.py in the image, as the CLI runs it.
4. `astro dev start`: the CLI's compose file (rendered, containers.compose) + the override,
   on podman; airflow_settings.yaml imported through the REST API as the CLI does; every
   health check waited for; ml_model_deployment_advanced triggered and waited for; the
   model API called from the host and checked against MLflow's champion; ml_model_monitoring
   run; the model-api container restarted and checked to serve the champion again; no
   permission error between uid 50000 and the API's user; ports on 127.0.0.1 only.
5. `astro dev pytest`: tests/dags (or tests/) in the image with the project's .env (CLI:
   podman create, cp dags/tests/plugins/include/.astro, start -a).
6. The Airflow 3 line: Dockerfile.airflow3 built on a stand-in for its Runtime 3.x `-base`
   image (in the background from step 2 on, at the lowest CPU priority), checked against
   requirements-airflow3.lock, `astro dev parse` in it, then `astro dev start` on it as in
   step 4 with the CLI's Airflow 3 compose template (api-server, scheduler, dag-processor,
   triggerer, db-migration, postgres): the REST API v2 with a token from /auth/token.
Every Airflow image and the model API's import lightgbm and xgboost and fit two trees each
(LightGBM's wheel needs the system's libgomp.so.1).
Everything is torn down at the end (containers, volumes, network), images stay cached.
Where the machine cannot run containers at all (not root; podman not working or runc not
allowed to start a container, e.g. an unprivileged CI container) it stops saying so:
exit 2, or with --skip-unavailable (CONTAINERS_SKIP_UNAVAILABLE=1, CI) exit 0 and SKIPPED.
A missing package that cannot be installed or a missing CPython build for a stand-in
fails (exit 1), in CI too.
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import os
import re
import secrets
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from containers import compose, engine, images
from containers.engine import EngineError, log
from devtools.ports import free_port

ROOT = images.ROOT
WORK = images.WORK
RUN_DIR = WORK / "run"
DEPLOY_DAG = "ml_model_deployment_advanced"
MONITOR_DAG = "ml_model_monitoring"
# `astro dev pytest` by default: the DAGs' tests (imports, structure, Params, callbacks) on
# the image's packages; `astro dev parse` runs the integrity test before it. The host runs
# the whole suite twice (make test, make test AIRFLOW=3); `--pytest all` runs tests/ here
# too (the earlier six-folder default alone took 12.4 min on 2 cores).
QUICK_TESTS = ["tests/dags"]
# The deployment run in the containers proves the wiring (services, volumes, users, the
# REST API, the rollout to the model API), not the training: small generated data and two
# candidates, one per way the model API serves a model (compiled logistic, ONNX trees).
SAMPLE_ROWS = 1000
RUN_CANDIDATES = ("logreg_c1", "hgb_shallow")
# How often the driver looks at a state it waits for (webserver health, a DAG run).
POLL_SECONDS = 2
PERMISSION_PATTERNS = re.compile(
    r"Permission denied|PermissionError|EACCES|Operation not permitted"
)


class Phases:
    """How long each step took: printed at the end and kept in RUN_DIR/timings.json."""

    def __init__(self) -> None:
        self.started = self.last = time.monotonic()
        self.rows: list[tuple[str, float]] = []

    def mark(self, name: str) -> None:
        now = time.monotonic()
        self.rows.append((name, now - self.last))
        self.last = now

    def report(self) -> str:
        total = time.monotonic() - self.started
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        (RUN_DIR / "timings.json").write_text(
            json.dumps({"phases": dict(self.rows), "total": total}, indent=1)
        )
        width = max((len(name) for name, _ in self.rows), default=0)
        lines = [f"  {name:<{width}}  {seconds:6.0f} s" for name, seconds in self.rows]
        return "\n".join([*lines, f"  {'total':<{width}}  {total:6.0f} s"])


class Check:
    """The run's assertions: each recorded, the run fails at the end if any failed."""

    def __init__(self) -> None:
        self.results: list[tuple[str, bool, str]] = []

    def __call__(self, name: str, ok: bool, detail: str = "") -> bool:
        self.results.append((name, ok, detail))
        log(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")
        return ok

    @property
    def failed(self) -> list[tuple[str, bool, str]]:
        return [r for r in self.results if not r[1]]


def deployment_conf() -> dict:
    """The triggered deployment run's conf: the two candidates of RUN_CANDIDATES."""
    from include.ml_pipeline.training.candidates import DEFAULT_CANDIDATES

    chosen = [c for c in DEFAULT_CANDIDATES if c["name"] in RUN_CANDIDATES]
    if len(chosen) != len(RUN_CANDIDATES):
        raise EngineError(f"{RUN_CANDIDATES} are not all among the DAG's default candidates")
    return {"candidates": chosen}


def http(
    method: str,
    url: str,
    body=None,
    *,
    auth: tuple[str, str] | None = None,
    headers: dict | None = None,
    timeout: float = 30,
):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, (
                json.loads(raw) if raw.strip()[:1] in (b"{", b"[") else raw.decode()
            )
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode(errors="replace")


@dataclass(frozen=True)
class Line:
    """One Airflow line as `astro dev start` runs it (airflow/docker.go): its compose
    template, the service that answers the REST API, the API's prefix, the health URL the
    CLI polls and how it authenticates (Airflow 2: basic auth, admin/admin; Airflow 3: a
    JWT from /auth/token of the simple auth manager, which the template sets with every
    user an admin)."""

    airflow_major: int
    label: str
    api_service: str
    api_prefix: str
    health_path: str

    @property
    def template(self) -> compose.Template:
        return compose.TEMPLATES[self.airflow_major]

    def trigger_body(self, conf: dict) -> dict:
        # Airflow 3's POST dagRuns body requires logical_date (None: a run without one).
        return {"conf": conf} if self.airflow_major == 2 else {"conf": conf, "logical_date": None}


AIRFLOW2 = Line(2, "Airflow 2 (Runtime 13)", "webserver", "/api/v1", "/health")
AIRFLOW3 = Line(3, "Airflow 3 (Runtime 3)", "api-server", "/api/v2", "/api/v2/monitor/health")
# The Airflow 3 line's own parts of the run, after the Airflow 2 ones (--airflow3).
AIRFLOW3_STEPS = ("start", "parse", "none")


class AirflowApi:
    """The local Airflow's REST API as the CLI calls it (airflowAPIURL, airflowAuthHeader)."""

    def __init__(self, base: str, line: Line) -> None:
        self.base, self.line = base, line
        self._token: str | None = None

    def _auth(self, renew: bool = False) -> dict:
        if self.line.airflow_major == 2:
            raw = base64.b64encode(b"admin:admin").decode()
            return {"Authorization": f"Basic {raw}"}
        if self._token is None or renew:
            status, body = http(
                "POST", f"{self.base}/auth/token", {"username": "admin", "password": "admin"}
            )
            if status not in (200, 201) or not isinstance(body, dict):
                raise EngineError(f"{self.base}/auth/token: HTTP {status} {str(body)[:300]}")
            self._token = body["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def __call__(self, method: str, path: str, body=None, headers: dict | None = None):
        url = f"{self.base}{self.line.api_prefix}{path}"
        status, answer = http(method, url, body, headers={**self._auth(), **(headers or {})})
        if status == 401 and self.line.airflow_major == 3:  # an expired token
            status, answer = http(
                method, url, body, headers={**self._auth(renew=True), **(headers or {})}
            )
        return status, answer


# ---------------------------------------------------------------- image checks


def freeze(image: str, user: str | None = None) -> dict[str, str]:
    args = ["run", "--rm", "--entrypoint", "python"]
    if user:
        args += ["--user", user]
    out = engine.output(
        *args, image, "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"
    )
    return {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(out)}


def lock_versions(lock: Path = ROOT / "requirements.lock") -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;]+)", line)
        if match:
            pins[match.group(1).lower().replace("_", "-").replace(".", "-")] = match.group(2)
    return pins


# What the images carry that the lock does not pin, and why that is expected: the
# installers themselves, and the Runtime stand-in's own packages (their versions are the
# lock's where the lock has them).
NOT_IN_LOCK_EXPECTED = {
    "pip": "the installer (the image's own)",
    "setuptools": "the installer's (the image's own)",
    "wheel": "the installer's (the image's own)",
}


def compare_versions(
    check: Check,
    label: str,
    installed: dict[str, str],
    lock_file: Path = ROOT / "requirements.lock",
) -> list[str]:
    lock = lock_versions(lock_file)
    normal = {k.replace(".", "-"): v for k, v in installed.items()}
    differ = [
        f"{name} {version} (lock {lock[name]})"
        for name, version in sorted(normal.items())
        if name in lock and lock[name] != version
    ]
    extra = [
        f"{name} {version}"
        for name, version in sorted(normal.items())
        if name not in lock and name not in NOT_IN_LOCK_EXPECTED
    ]
    check(
        f"{label}: every installed package {lock_file.name} pins is at its version",
        not differ,
        "; ".join(differ) or f"{sum(n in lock for n in normal)} packages equal",
    )
    if extra:
        log(f"{label}: installed but not in {lock_file.name}: {', '.join(extra)}")
    return extra


def check_airflow_image(check: Check, image: str, label: str, lock_file: Path) -> None:
    """What an Airflow image of the project must be: the lock's versions (as the astro user,
    user site included), uid 50000, the pipeline folder astro's."""
    compare_versions(check, f"{label} (astro user)", freeze(image), lock_file)
    user = engine.output("run", "--rm", "--entrypoint", "id", image)
    check(f"{label} runs as astro, uid 50000", user.startswith("uid=50000(astro)"), user)
    stat = engine.output(
        "run",
        "--rm",
        "--entrypoint",
        "stat",
        image,
        "-c",
        "%u:%g %a",
        "/usr/local/airflow/pipeline",
    )
    check(
        f"{label}: the pipeline folder is astro's (uid 50000, group 0, setgid, group-writable)",
        stat == "50000:0 2775",
        stat,
    )


# The packages whose wheels need a system library the slim images lack: LightGBM's
# lib_lightgbm.so links libgomp.so.1 (OpenMP); packages.txt and Dockerfile.model-api
# install libgomp1. A two-tree fit of each proves the library loads and runs.
IMPORT_PROBE = (
    "import numpy as np, lightgbm, xgboost\n"
    "x = np.random.default_rng(0).normal(size=(60, 3)); y = (x[:, 0] > 0).astype(int)\n"
    "lightgbm.LGBMClassifier(n_estimators=2, verbose=-1).fit(x, y)\n"
    "xgboost.XGBClassifier(n_estimators=2, n_jobs=1).fit(x, y)\n"
    "print('lightgbm', lightgbm.__version__, 'xgboost', xgboost.__version__)"
)


def check_imports(check: Check, image: str, label: str) -> None:
    done = engine.podman(
        "run", "--rm", "--entrypoint", "python", image, "-c", IMPORT_PROBE,
        check=False, capture=True,
    )  # fmt: skip
    out = done.stdout.decode(errors="replace").strip().splitlines()
    # stderr without podman's own warnings (no systemd here for its health check timers)
    err = [
        line
        for line in done.stderr.decode(errors="replace").strip().splitlines()
        if "level=" not in line
    ]
    if done.returncode == 0:
        detail = out[-1] if out else ""
    else:
        detail = " | ".join(err[-3:]) or f"exit {done.returncode}"
    check(
        f"{label}: lightgbm and xgboost import and fit (libgomp.so.1 present)",
        done.returncode == 0,
        detail,
    )


def airflow3_image(names: images.Names) -> str:
    """Dockerfile.airflow3 (Runtime 3.x) built on its Runtime stand-in, in the background
    (nice 19: it takes the CPU the project's own run leaves idle). Tagged <project>/airflow3
    so both lines' images stay cached; the CLI tags whichever Dockerfile it builds
    <project>/airflow."""
    images.build_runtime3(names, background=True)
    image = f"{compose.project_name_unique(ROOT)}/airflow3:latest"
    engine.build(
        ROOT,
        image,
        ROOT / "Dockerfile.airflow3",
        log_file=RUN_DIR / "build-airflow3.log",
        background=True,
    )
    return image


def airflow3_parse(image: str, check: Check) -> None:
    """`astro dev parse --dockerfile Dockerfile.airflow3`: the image checked against
    requirements-airflow3.lock, the integrity test run in it."""
    check_airflow_image(check, image, "Airflow 3 image", ROOT / "requirements-airflow3.lock")
    check_imports(check, image, "Airflow 3 image")
    code = astro_pytest(image, [".astro/test_dag_integrity_default.py"], "astro-parse-airflow3")
    check("astro dev parse (Dockerfile.airflow3): every DAG imports", code == 0, f"exit {code}")


# ---------------------------------------------------------------- astro dev parse / pytest


def astro_pytest(image: str, pytest_args: list[str], name: str = "astro-pytest") -> int:
    """DockerImage.Pytest (airflow/docker_image.go): create with the project's .env, copy
    the folders in, start attached, read the exit code, remove."""
    engine.podman("rm", "-f", name, check=False, quiet=True)
    args = ["create", "-i", "--name", name]
    if (ROOT / ".env").exists():
        args += ["--env-file", str(ROOT / ".env")]
    engine.podman(*args, image, "pytest", *pytest_args, capture=True)
    for folder in ("dags", "tests", "plugins", "include", ".astro"):
        if (ROOT / folder).exists():
            engine.podman("cp", str(ROOT / folder), f"{name}:/usr/local/airflow/", capture=True)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    log_path = RUN_DIR / f"{name}.log"
    with log_path.open("wb") as handle:
        import subprocess

        subprocess.run(
            ["podman", "--runtime", "runc", "start", "-a", name],
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    code = int(engine.output("inspect", name, "--format", "{{.State.ExitCode}}"))
    engine.podman("rm", "-f", name, check=False, quiet=True)
    tail = log_path.read_text(errors="replace").strip().splitlines()[-25:]
    print("\n".join("    " + line for line in tail), flush=True)
    return code


# ---------------------------------------------------------------- astro dev start


def import_settings(api: AirflowApi, check: Check, tag: str = "") -> None:
    """settings.AddConnections / AddPools / AddVariables: POST each, PATCH on 409."""
    import yaml

    settings = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())["airflow"]
    for conn in settings.get("connections") or []:
        body = {"connection_id": conn["conn_id"]}
        for key, field in (
            ("conn_type", "conn_type"),
            ("conn_host", "host"),
            ("conn_login", "login"),
            ("conn_password", "password"),
            ("conn_schema", "schema"),
        ):
            if conn.get(key):
                body[field] = conn[key]
        if conn.get("conn_port"):
            body["port"] = int(conn["conn_port"])
        if conn.get("conn_extra"):
            extra = conn["conn_extra"]
            body["extra"] = extra if isinstance(extra, str) else json.dumps(extra)
        status, answer = api("POST", "/connections", body)
        if status == 409:
            status, answer = api("PATCH", f"/connections/{conn['conn_id']}", body)
        check(
            f"{tag}airflow_settings.yaml: connection {conn['conn_id']} imported",
            status < 300,
            "" if status < 300 else f"HTTP {status}: {answer}",
        )
    for pool in settings.get("pools") or []:
        api(
            "POST",
            "/pools",
            {
                "name": pool["pool_name"],
                "slots": pool["pool_slot"],
                "description": pool.get("pool_description", ""),
            },
        )
    for var in settings.get("variables") or []:
        api("POST", "/variables", {"key": var["variable_name"], "value": var["variable_value"]})


def airflow_services(project: compose.Project, image: str) -> list[str]:
    return [n for n, spec in project.config["services"].items() if spec.get("image") == image]


RESTARTS_ALLOWED = 5


class RestartWatch:
    """Which Airflow container stopped for good, from `podman inspect`'s status, exit
    code and restart count, polled while `astro dev start` comes up. A one-shot service
    (no restart policy: Airflow 3's db-migration) failed when it exited with a code other
    than 0; a service with a restart policy failed once it restarted RESTARTS_ALLOWED
    times after db-migration ended. Restarts while the migration runs are by design (the
    scheduler, DAG processor and API server exit after [database] migration_wait_timeout
    and come back), so each service's count is taken again at every poll during it: a
    scheduler that restarted 5 times during a slow migration on a loaded machine (CI,
    2026-12-04) is not a failure once the migration ends."""

    def __init__(self, allowed: int = RESTARTS_ALLOWED) -> None:
        self.allowed = allowed
        self.baseline: dict[str, int] = {}

    def failed(self, service: str, state: str, one_shot: bool, migrating: bool) -> bool:
        """`state`: "<status> <exit code> <restart count>" (podman inspect)."""
        status, code, restarts = [*state.split(), "", "", ""][:3]
        count = int(restarts) if restarts.isdigit() else 0
        if migrating or service not in self.baseline:
            self.baseline[service] = count
        if one_shot:
            return status in ("exited", "stopped") and code != "0"
        return not migrating and count - self.baseline[service] >= self.allowed


def wait_airflow(
    line: Line, base: str, project: compose.Project, image: str, timeout: float = 900
) -> None:
    """The CLI's checkWebserverHealth: GET the line's health URL (Airflow 2's webserver
    /health, Airflow 3's api-server /api/v2/monitor/health) until the metadatabase and the
    scheduler are healthy. A container that stopped for good fails it: Airflow 3's one-shot
    db-migration with an exit code other than 0, a service with a restart policy once it was
    restarted RESTARTS_ALLOWED times once db-migration has ended (on Airflow 3 the scheduler,
    DAG processor and API server wait for db-migration's migrations and exit when that takes
    longer than [database] migration_wait_timeout; restart: unless-stopped starts them
    again, so restarts during the migration are expected)."""
    started = time.monotonic()
    watched = ["postgres", *airflow_services(project, image)]
    restarts = RestartWatch()
    while time.monotonic() - started < timeout:
        # while Airflow 3's one-shot db-migration runs, the services waiting for it restart
        # by design (every ~8 s): their restarts count only once it has ended (RestartWatch)
        migrating = "db-migration" in project.config["services"] and engine.output(
            "inspect",
            "--format",
            "{{.State.Status}}",
            project.container("db-migration"),
            check=False,
        ).strip() not in ("exited", "stopped", "")
        for service in watched:
            state = engine.output(
                "inspect",
                "--format",
                "{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}",
                project.container(service),
                check=False,
            )
            one_shot = not project.config["services"][service].get("restart")
            if restarts.failed(service, state, one_shot, migrating):
                raise EngineError(f"{service} stopped ({state}):\n{project.logs(service, 60)}")
        try:
            status, body = http("GET", f"{base}{line.health_path}", timeout=5)
            if (
                status == 200
                and isinstance(body, dict)
                and all(
                    (body.get(k) or {}).get("status") == "healthy"
                    for k in ("metadatabase", "scheduler")
                )
            ):
                log(
                    f"{line.api_service}: healthy after {time.monotonic() - started:.0f} s ({base})"
                )
                return
        except (OSError, ValueError):
            pass
        time.sleep(POLL_SECONDS)
    raise EngineError(
        f"the Airflow {line.api_service} was not healthy in {timeout:.0f} s:\n"
        f"{project.logs(line.api_service, 60)}\n{project.logs('scheduler', 60)}"
    )


def run_dag(
    api: AirflowApi, dag_id: str, conf: dict, timeout: float
) -> tuple[str, float, dict, str]:
    """Unpause (once the DAG processor has parsed it), trigger with `conf`, wait; returns
    (state, seconds, task states, run id)."""
    deadline = time.monotonic() + 180
    while True:  # the scheduler / DAG processor parses the DAG files first
        status, body = api("PATCH", f"/dags/{dag_id}", {"is_paused": False})
        if status == 200:
            break
        if time.monotonic() > deadline:
            raise EngineError(f"{dag_id} not known to Airflow after 180 s: HTTP {status} {body}")
        time.sleep(POLL_SECONDS)
    status, run = api("POST", f"/dags/{dag_id}/dagRuns", api.line.trigger_body(conf))
    if status >= 300:
        raise EngineError(f"triggering {dag_id}: HTTP {status} {run}")
    run_id = run["dag_run_id"]
    log(f"triggered {dag_id} ({run_id})")
    started = time.monotonic()
    state = run["state"]
    while time.monotonic() - started < timeout:
        try:
            status, run = api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        except OSError as exc:  # a starved API server (load 50 here): ask again
            log(f"{dag_id}: polling the run: {exc!r}; again")
            time.sleep(POLL_SECONDS)
            continue
        state = run.get("state") if isinstance(run, dict) else state
        if state in ("success", "failed"):
            break
        time.sleep(POLL_SECONDS)
    _, tis = api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=200")
    tasks = (
        {
            t["task_id"] + (f"[{t['map_index']}]" if t.get("map_index", -1) >= 0 else ""): t[
                "state"
            ]
            for t in (tis.get("task_instances") or [])
        }
        if isinstance(tis, dict)
        else {}
    )
    return state, time.monotonic() - started, tasks, run_id


def failed_task_logs(api: AirflowApi, dag_id: str, run_id: str) -> str:
    out = []
    _, tis = api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=200")
    for ti in (tis or {}).get("task_instances", []) if isinstance(tis, dict) else []:
        if ti["state"] in ("failed", "upstream_failed"):
            _, text = api(
                "GET",
                f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/logs/"
                f"{max(ti['try_number'], 1)}?full_content=true",
                headers={"Accept": "text/plain" if api.line.airflow_major == 2 else "*/*"},
            )
            out.append(f"--- {ti['task_id']} ({ti['state']})\n{str(text)[-3000:]}")
    return "\n".join(out)


def sample_records(
    project: compose.Project, features: list[str], numeric: list[str], rows: int = 3
) -> list[dict]:
    path = "/usr/local/airflow/pipeline/data/incoming/customer_churn.csv"
    text = project.exec("scheduler", "head", "-n", str(rows + 1), path).stdout.decode()
    reader = csv.DictReader(io.StringIO(text))
    records = []
    for row in reader:
        record = {}
        for name in features:
            value = row.get(name, "")
            if value == "":
                record[name] = None
            elif name in numeric:
                record[name] = float(value)
            else:
                record[name] = value
        records.append(record)
    return records


def champion_version(mlflow_url: str, model: str) -> str | None:
    status, body = http(
        "GET", f"{mlflow_url}/api/2.0/mlflow/registered-models/alias?name={model}&alias=champion"
    )
    return body["model_version"]["version"] if status == 200 else None


def check_ports(project: compose.Project, check: Check, tag: str = "") -> None:
    bad = []
    for service in project.config["services"]:
        mapping = engine.output("port", project.container(service), check=False)
        for line in filter(None, mapping.splitlines()):
            host = line.split("->", 1)[1].strip()
            if not host.startswith("127.0.0.1:"):
                bad.append(f"{service}: {line}")
    check(f"{tag}every published port is bound to 127.0.0.1", not bad, "; ".join(bad))


def check_permissions(project: compose.Project, check: Check, tag: str = "") -> None:
    hits = []
    for service in project.config["services"]:
        for line in project.logs(service, 5000).splitlines():
            if PERMISSION_PATTERNS.search(line):
                hits.append(f"{service}: {line.strip()[:200]}")
    check(f"{tag}no permission error in any container's log", not hits, "; ".join(hits[:8]))
    owners = (
        project.exec(
            "model-api",
            "find",
            "/usr/local/airflow/pipeline",
            "!",
            "-uid",
            "50000",
            "-printf",
            "%u:%g %p\n",
            check=False,
        )
        .stdout.decode()
        .strip()
    )
    check(
        f"{tag}every file of the pipeline volume is uid 50000's (Airflow's astro, the API's "
        "model-api)",
        not owners,
        owners[:500],
    )
    probe = "/usr/local/airflow/pipeline/.write-probe"
    wrote_api = (
        project.exec("model-api", "sh", "-c", f"echo api > {probe}.api", check=False).returncode
        == 0
    )
    wrote_af = (
        project.exec(
            "scheduler",
            "sh",
            "-c",
            f"echo af > {probe}.af && cat {probe}.api && rm {probe}.api",
            check=False,
        ).returncode
        == 0
    )
    wrote_back = project.exec("model-api", "rm", f"{probe}.af", check=False).returncode == 0
    check(
        f"{tag}the API (its user) and Airflow (astro) read, write and remove each other's files",
        wrote_api and wrote_af and wrote_back,
    )


def prepare_project(line: Line, image: str) -> tuple[compose.Project, dict]:
    """The compose project `astro dev start` would run for `line`'s Runtime, on `image`
    (the CLI tags the image it builds <project>/airflow:latest; this run keeps the Airflow 3
    one as <project>/airflow3:latest, passed as the CLI's buildImage), with free host
    ports. Both lines have the same project name, so they run one after the other."""
    web_port, pg_port = str(free_port()), str(free_port())
    env = compose.environment_for_interpolation()
    env.setdefault("MODEL_API_ADMIN_TOKEN", secrets.token_urlsafe(24))
    env["MLFLOW_HOST_PORT"] = str(free_port())
    env["MODEL_API_HOST_PORT"] = str(free_port())
    rendered, _image, name = compose.render(
        compose.template_text(line.template),
        ROOT,
        webserver_port=web_port,
        postgres_port=pg_port,
        image=image,
    )
    config = compose.load(rendered, ROOT / "docker-compose.override.yml", env)
    run_dir = RUN_DIR if line.airflow_major == 2 else RUN_DIR / "airflow3"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "compose.rendered.yaml").write_text(rendered)
    import yaml

    (run_dir / "compose.merged.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    project = compose.Project(name, config, ROOT, run_dir / "logs")
    # The Airflow containers and the model API read the token from .env (env_file); the
    # committed .env holds an empty placeholder, so this run's token reaches them the same
    # way: a run-only env file after .env in their env_file lists. The Airflow containers
    # also get use_job_schedule=False: unpausing a DAG otherwise starts a catch-up run of
    # its last interval (with the default Params) before the run this driver triggers, and
    # the monitoring DAG's dataset schedule adds another; the runs that are checked are the
    # triggered ones, and the scheduler still runs them.
    run_env = RUN_DIR / "run.env"
    run_env.write_text(f"MODEL_API_ADMIN_TOKEN={env['MODEL_API_ADMIN_TOKEN']}\n")
    airflow_env = RUN_DIR / "run-airflow.env"
    # And longer timeouts for a shared 2-core machine (load average up to 50): the deployment
    # DAG's import outlasted the 30 s default (Airflow 3's DAG processor recorded an import
    # error, "DagBag import timeout ... after 30.0s"; about 3 s at rest), and a task's call to
    # Airflow 3's Execution API on the starved API server outlasted its 5 s (httpx
    # ReadTimeout: the task failed before it ran; Airflow's docs: raise it under high load).
    airflow_env.write_text(
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE=False\n"
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT=180\n"
        "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT=240\n"
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT=60\n"
    )
    for service, spec in config["services"].items():
        files = spec.get("env_file") or []
        if not files:
            continue  # Airflow 3's db-migration, MLflow, PostgreSQL
        files = [files] if isinstance(files, str) else list(files)
        extra = [run_env] if service == "model-api" else [run_env, airflow_env]
        spec["env_file"] = [*files, *map(str, extra)]
    env.update(WEB_PORT=web_port)
    return project, env


def build_compose_images(project: compose.Project) -> None:
    for service, spec in project.config["services"].items():
        if spec.get("build"):
            project.build(service)


def astro_dev_start(
    line: Line,
    project: compose.Project,
    env: dict,
    check: Check,
    keep: bool,
    phases: Phases,
    image: str,
) -> None:
    """`astro dev start` on `line`'s Runtime, both DAGs run, the model API called from the
    host and restarted, then `astro dev kill` (unless `keep`)."""
    project.down()  # a previous run's leftovers
    web = f"http://127.0.0.1:{env['WEB_PORT']}"
    api = AirflowApi(web, line)
    mlflow_url = f"http://127.0.0.1:{env['MLFLOW_HOST_PORT']}"
    model_api = f"http://127.0.0.1:{env['MODEL_API_HOST_PORT']}"
    tag = "" if line.airflow_major == 2 else f"{line.label}: "
    try:
        started = time.monotonic()
        project.up()
        wait_airflow(line, web, project, image)
        project.wait_healthy("mlflow")
        log(f"{tag}astro dev start: up in {time.monotonic() - started:.0f} s")
        phases.mark(f"{tag}astro dev start: every service healthy")
        import_settings(api, check, tag)
        check_ports(project, check, tag)
        # The sample data, written by the astro user into the pipeline volume.
        project.exec(
            "scheduler",
            "python",
            "-c",
            "from include.ml_pipeline.config import get_settings;"
            "from devtools.run_pipeline import sample_data;"
            f"print(sample_data(get_settings(), rows={SAMPLE_ROWS}, seed=7))",
        )
        state, seconds, tasks, run_id = run_dag(api, DEPLOY_DAG, deployment_conf(), timeout=1500)
        if not check(
            f"{tag}{DEPLOY_DAG} succeeds",
            state == "success",
            f"{state} in {seconds:.0f} s; tasks: {tasks}",
        ):
            print(failed_task_logs(api, DEPLOY_DAG, run_id))
            raise EngineError(f"{tag}{DEPLOY_DAG} did not succeed")
        phases.mark(f"{tag}settings, sample data, {DEPLOY_DAG}")
        project.wait_healthy("model-api", timeout=180)
        model = env.get("ML_PIPELINE_MODEL_NAME") or compose.read_env_file(ROOT / ".env").get(
            "ML_PIPELINE_MODEL_NAME", "tabular_classifier"
        )
        champion = champion_version(mlflow_url, model)
        _, version = http("GET", f"{model_api}/version")
        check(
            f"{tag}the model API (from the host) serves MLflow's champion",
            champion is not None and str(version.get("model_version")) == str(champion),
            f"champion v{champion}, API {version}",
        )
        _, info = http("GET", f"{model_api}/model")
        spec = (info.get("feature_spec") or {}) if isinstance(info, dict) else {}
        features = [*(spec.get("numeric") or []), *(spec.get("categorical") or [])]
        records = sample_records(project, features, spec.get("numeric") or []) if features else []
        status, answer = http("POST", f"{model_api}/predict", {"records": records})
        check(
            f"{tag}POST /predict from the host answers with the champion's labels",
            status == 200
            and len(answer.get("predictions", [])) == len(records) > 0
            and str(answer.get("model_version")) == str(champion),
            f"HTTP {status}: {str(answer)[:300]}",
        )
        phases.mark(f"{tag}model API from the host")
        state, seconds, tasks, run_id = run_dag(api, MONITOR_DAG, {}, timeout=900)
        if not check(
            f"{tag}{MONITOR_DAG} succeeds",
            state == "success",
            f"{state} in {seconds:.0f} s; tasks: {tasks}",
        ):
            print(failed_task_logs(api, MONITOR_DAG, run_id))
        phases.mark(f"{tag}{MONITOR_DAG}")
        engine.podman("restart", project.container("model-api"), quiet=True)
        project.wait_healthy("model-api", timeout=240)
        champion = champion_version(mlflow_url, model)
        _, version = http("GET", f"{model_api}/version")
        check(
            f"{tag}after a restart of model-api it serves the champion again",
            str(version.get("model_version")) == str(champion),
            f"champion v{champion}, API {version}",
        )
        check_permissions(project, check, tag)
        phases.mark(f"{tag}model-api restart, permissions")
    finally:
        project.save_logs()
        if keep:
            log(
                f"--keep: the project stays up; Airflow {web} (admin/admin), MLflow {mlflow_url}, "
                f"model API {model_api}; stop it with python -m containers.run --down"
            )
        else:
            project.down()
            phases.mark(f"{tag}astro dev kill")


# ---------------------------------------------------------------- main


def build_project_image(image: str) -> None:
    """DockerImage.Build: `podman build --format docker -t <project>/airflow:latest -f
    Dockerfile .` in the project folder."""
    engine.build(ROOT, image, ROOT / "Dockerfile", log_file=RUN_DIR / "build-airflow.log")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pytest",
        choices=["all", "quick", "none"],
        default=os.environ.get("CONTAINERS_PYTEST", "quick"),
    )
    parser.add_argument(
        "--airflow3",
        choices=AIRFLOW3_STEPS,
        default=os.environ.get("CONTAINERS_AIRFLOW3", "start"),
        help="Dockerfile.airflow3 built on its Runtime stand-in, checked and parsed (parse), "
        "then `astro dev start` on it as on Runtime 13 (start)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the last started project running (Airflow 3's when it starts)",
    )
    parser.add_argument("--skip-start", action="store_true", help="no astro dev start")
    parser.add_argument(
        "--skip-airflow2-start",
        action="store_true",
        help="no astro dev start on Runtime 13 (the Airflow 3 start alone, to iterate on it)",
    )
    parser.add_argument("--down", action="store_true", help="only tear a kept project down")
    parser.add_argument(
        "--skip-unavailable",
        action="store_true",
        default=os.environ.get("CONTAINERS_SKIP_UNAVAILABLE", "") not in ("", "0"),
        help="exit 0, saying why, where this machine cannot run containers (CI)",
    )
    args = parser.parse_args(argv)
    check = Check()
    phases = Phases()
    names = images.project_names()
    try:
        engine.ensure_engine()
        images.preflight(names)
    except engine.EngineUnavailable as exc:
        if args.skip_unavailable:
            print(
                f"make test-containers SKIPPED: this machine cannot run containers: {exc}",
                flush=True,
            )
            return 0
        print(f"make test-containers cannot run on this machine: {exc}", file=sys.stderr)
        return 2
    except EngineError as exc:  # something to install or fix first; never skipped
        print(f"make test-containers FAILED before it started: {exc}", file=sys.stderr)
        return 1
    phases.mark("podman ready")
    image = f"{compose.project_name_unique(ROOT)}/airflow:latest"
    if args.down:  # both lines' services (one project name)
        for line in (AIRFLOW3, AIRFLOW2):
            rendered, _, name = compose.render(
                compose.template_text(line.template),
                ROOT,
                webserver_port="8080",
                postgres_port="5432",
            )
            env = dict(os.environ, MODEL_API_ADMIN_TOKEN="x")
            compose.Project(
                name,
                compose.load(rendered, ROOT / "docker-compose.override.yml", env),
                ROOT,
                RUN_DIR / "logs",
            ).down()
        return 0
    background = ThreadPoolExecutor(1)
    airflow3 = None
    try:
        project = env = None
        start2 = not (args.skip_start or args.skip_airflow2_start)
        start3 = not args.skip_start and args.airflow3 == "start"
        if start2 or start3:  # the model API image (the same for both lines) is built here
            project, env = prepare_project(AIRFLOW2, image)
        # The project image right after the Runtime stand-in, the model API image right after
        # the Python one, alongside the MLflow and PostgreSQL stand-ins.
        images.build_standins(
            names,
            after_runtime=lambda: build_project_image(image),
            after_python=(lambda: build_compose_images(project)) if project else None,
        )
        phases.mark("images: stand-ins, project, model API")
        if args.airflow3 != "none":
            airflow3 = background.submit(airflow3_image, names)
        check_airflow_image(check, image, "project image", ROOT / "requirements.lock")
        check_imports(check, image, "project image")
        if project:
            api_image = project.image_of("model-api")
            compare_versions(check, "model API image", freeze(api_image))
            check_imports(check, api_image, "model API image")
        phases.mark("image checks")
        code = astro_pytest(image, [".astro/test_dag_integrity_default.py"], "astro-parse")
        check("astro dev parse: every DAG imports in the image", code == 0, f"exit {code}")
        phases.mark("astro dev parse")
        if start2:
            assert project.config["services"]["scheduler"]["image"] == image
            keep2 = args.keep and not start3
            astro_dev_start(AIRFLOW2, project, env, check, keep2, phases, image)
        if args.pytest != "none":
            selection = (
                ["tests/"]
                if args.pytest == "all"
                else [t for t in QUICK_TESTS if (ROOT / t).exists()]
            )
            code = astro_pytest(image, selection)
            check(
                f"astro dev pytest ({' '.join(selection)})",
                code == 0,
                f"exit {code}; log {RUN_DIR / 'astro-pytest.log'}",
            )
            phases.mark(f"astro dev pytest {' '.join(selection)}")
        if airflow3:
            image3 = airflow3.result()
            phases.mark("Airflow 3 image: the rest of its background build")
            airflow3_parse(image3, check)
            phases.mark("Airflow 3 image: checks, astro dev parse")
            if start3:
                project3, env3 = prepare_project(AIRFLOW3, image3)
                assert project3.config["services"]["scheduler"]["image"] == image3
                astro_dev_start(AIRFLOW3, project3, env3, check, args.keep, phases, image3)
    except EngineError as exc:
        check("the container run completes", False, str(exc)[-4000:])
    finally:
        background.shutdown(wait=True)  # a build is not cut off halfway
    print(
        f"\ncontainer run: {len(check.results) - len(check.failed)} passed, "
        f"{len(check.failed)} failed, {(time.monotonic() - phases.started) / 60:.1f} min\n"
        f"{phases.report()}",
        flush=True,
    )
    for name, _, detail in check.failed:
        print(f"  FAILED {name}: {detail[:2000]}")
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
