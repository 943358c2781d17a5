"""`make ui`: the Airflow UI on the embedded metadata database, on either line.

The database is the one `make run` writes (`<ML_PIPELINE_HOME>/airflow/airflow.db`), so
every `make run` run shows in Grid and Graph. `start` does, in order:

1. creates or upgrades the database (`airflow_env.ensure_metadata_db`);
2. serializes the DAGs of `dags/` (`airflow_env.serialize_dags`): `dag.test()`, which
   `make run` uses, writes runs and task instances but no DAG rows, and the UI only shows
   serialized DAGs ("seems to be missing from DagBag" otherwise);
3. the admin password: `AIRFLOW_UI_PASSWORD` if set, else the one saved in
   `<home>/airflow/ui/admin_password` (0600), else a new random one, saved there and
   printed once. No password is written in the repository. Airflow 2.11 (FAB): the Admin
   user is created or its password reset. Airflow 3 (the simple auth manager): the user
   `admin` with role admin (`[core] simple_auth_manager_users`) and its password in
   `<home>/airflow/ui/simple_auth_manager_passwords.json` (0600,
   `[core] simple_auth_manager_passwords_file`), so Airflow generates none of its own;
4. starts, each detached in its own process group, bound to loopback and without a log
   server (which would listen on every interface; the UI reads the local log files):
   on 2.11 `airflow webserver` and `airflow scheduler`; on 3.x `airflow api-server` (the
   UI, the REST API and the Task Execution API the scheduler's tasks call), `airflow
   scheduler`, `airflow dag-processor` and `airflow triggerer`, sharing one JWT secret
   made for this start; then waits until the health endpoint reports every one healthy.

`stop` ends every process group (SIGTERM, SIGKILL after a timeout). State, logs and the
password live in `<home>/airflow/ui/`. Nothing here runs at import time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from devtools import airflow_env
from include.ml_pipeline.service_probe import Unreachable, reap, tail, wait_until_up

STATE_FILE = "ui.json"
PASSWORD_FILE = "admin_password"
#: Airflow 3's simple auth manager reads the users' passwords from this JSON file.
SIMPLE_AUTH_PASSWORDS_FILE = "simple_auth_manager_passwords.json"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class UiStartError(RuntimeError):
    """A process of the UI did not start or did not become healthy."""


@dataclass(frozen=True)
class UiProcess:
    name: str
    pid: int
    start_ticks: int  # /proc/<pid>/stat field 22: tells a reused pid from ours
    log_path: str


@dataclass(frozen=True)
class UiState:
    url: str
    username: str
    password_file: str | None
    processes: list[UiProcess]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> UiState:
        return cls(
            url=data["url"],
            username=data["username"],
            password_file=data.get("password_file"),
            processes=[UiProcess(**p) for p in data["processes"]],
        )


def ui_dir(home: Path | None = None) -> Path:
    """`<home>/airflow/ui` (home: `ML_PIPELINE_HOME`, default `<project>/.local`)."""
    from include.ml_pipeline.config import get_settings

    path = Path(home or get_settings().home) / "airflow" / "ui"
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- processes ---------------------------------------------------------------------------


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks, or None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] == "Z":
        return None
    return int(fields[19])


def _running(process: UiProcess) -> bool:
    return _start_ticks(process.pid) == process.start_ticks


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A group whose members are all zombies is gone for our purpose.
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _stop_group(process: UiProcess, timeout: float) -> None:
    """SIGTERM the process group the process leads; SIGKILL what is left after `timeout`."""
    if not _running(process) and not _group_alive(process.pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _group_alive(process.pid):
        reap(process.pid)
        time.sleep(0.2)
    if _group_alive(process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        time.sleep(0.3)
    reap(process.pid)


def status(home: Path | None = None) -> UiState | None:
    """The UI recorded in `<home>/airflow/ui/ui.json` if any of its processes still runs."""
    path = ui_dir(home) / STATE_FILE
    if not path.exists():
        return None
    try:
        state = UiState.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)
        return None
    if any(_running(p) or _group_alive(p.pid) for p in state.processes):
        return state
    path.unlink(missing_ok=True)
    return None


def stop(home: Path | None = None, timeout: float = 30.0) -> UiState | None:
    """Stop the webserver and the scheduler; returns what was running (None if nothing)."""
    state = status(home)
    if state is None:
        return None
    for process in state.processes:
        _stop_group(process, timeout)
    (ui_dir(home) / STATE_FILE).unlink(missing_ok=True)
    return state


# --- preparing the database --------------------------------------------------------------


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def admin_password(home: Path | None = None) -> tuple[str, Path | None, bool]:
    """(password, file it is saved in or None, whether it was just generated).

    `AIRFLOW_UI_PASSWORD` wins and is not saved; else the saved one; else a new one."""
    given = os.environ.get("AIRFLOW_UI_PASSWORD")
    if given:
        return given, None, False
    path = ui_dir(home) / PASSWORD_FILE
    if path.exists() and path.read_text().strip():
        return path.read_text().strip(), path, False
    password = secrets.token_urlsafe(18)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    return password, path, True


def ensure_admin(username: str, password: str) -> None:
    """Create the Admin user, or set its password if it exists (FAB auth manager)."""
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

    # Creating the app logs one line per permission it adds (~100 on a new database) and
    # warns that no user exists yet, just before this function creates it.
    for name in ("airflow.providers.fab", "flask_appbuilder"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # Flask-Limiter's note that its rate-limit store is in memory (the login form's limit).
    warnings.filterwarnings("ignore", message="Using the in-memory storage", category=UserWarning)
    with get_application_builder() as appbuilder:
        security = appbuilder.sm
        user = security.find_user(username=username)
        if user is None:
            role = security.find_role("Admin")
            created = security.add_user(
                username, "Local", "Admin", f"{username}@localhost", role, password
            )
            if not created:
                raise UiStartError(f"could not create the Airflow user {username!r}")
        else:
            security.reset_password(user.id, password)


def write_simple_auth_passwords(
    username: str, password: str, home: Path | None = None, *, folder: Path | None = None
) -> Path:
    """Airflow 3: `{username: password}` as the simple auth manager's passwords file
    (0600) in `folder` (default `ui_dir(home)`), rewritten at each start, so it generates
    no password of its own."""
    path = (folder or ui_dir(home)) / SIMPLE_AUTH_PASSWORDS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps({username: password}) + "\n")
    path.chmod(0o600)  # a file left with another mode keeps it through os.open
    return path


def airflow3_env(url: str, username: str, passwords_file: Path) -> dict[str, str]:
    """Airflow 3's settings for `make ui`: the simple auth manager with one admin, the UI
    and the Task Execution API on `url`, one JWT secret for every process of this start."""
    return {
        "AIRFLOW__API__BASE_URL": url,
        # Where the api-server binds (its CLI flags win); also what the simple auth
        # manager reads to tell a local setup from a production one.
        "AIRFLOW__API__HOST": urlsplit(url).hostname or DEFAULT_HOST,
        "AIRFLOW__API__PORT": str(urlsplit(url).port or DEFAULT_PORT),
        "AIRFLOW__API__EXPOSE_CONFIG": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{username}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
    }


def ui_commands(
    host: str, port: int, *, workers: int, scheduler: bool, airflow_3: bool
) -> dict[str, list[str]]:
    """{process name: command}: the UI server, and unless `scheduler` is False the
    processes that schedule (none serves logs: they would listen on every interface)."""
    airflow = [sys.executable, "-m", "airflow"]
    name, host_flag = ("api-server", "--host") if airflow_3 else ("webserver", "--hostname")
    commands = {
        name: [*airflow, name, host_flag, host, "--port", str(port), "--workers", str(workers)]
    }
    if scheduler:
        commands["scheduler"] = [*airflow, "scheduler", "--skip-serve-logs"]
        if airflow_3:
            commands["dag-processor"] = [*airflow, "dag-processor"]
            commands["triggerer"] = [*airflow, "triggerer", "--skip-serve-logs"]
    return commands


# --- start -------------------------------------------------------------------------------


def _spawn(name: str, command: list[str], env: dict[str, str], folder: Path) -> UiProcess:
    log_path = folder / f"{name}.log"
    with open(log_path, "ab") as log:
        child = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: `stop` ends its children too
        )
    ticks = None
    for _ in range(50):
        ticks = _start_ticks(child.pid)
        if ticks is not None:
            break
        time.sleep(0.01)
    return UiProcess(name=name, pid=child.pid, start_ticks=ticks or 0, log_path=str(log_path))


def _healthy(*parts: str):
    """Whether an answer of the health endpoint is a 200 JSON document in which each of
    `parts` is healthy."""

    def ready(response) -> bool:
        if response.status_code != 200:
            return False
        try:
            body = response.json()
        except ValueError:
            return False
        return all((body.get(part) or {}).get("status") == "healthy" for part in parts)

    return ready


def _still_running(processes: list[UiProcess]):
    def check() -> None:
        for process in processes:
            if not _running(process):
                raise UiStartError(f"the {process.name} exited while starting")

    return check


def _health_url(url: str) -> str:
    """The health endpoint: `/health` (2.11 webserver), `/api/v2/monitor/health` (3.x)."""
    return f"{url}/api/v2/monitor/health" if airflow_env._airflow_major() >= 3 else f"{url}/health"


def wait_until_healthy(
    url: str,
    processes: list[UiProcess],
    timeout: float,
    parts: tuple[str, ...] = ("metadatabase", "scheduler"),
) -> float:
    """Poll the health endpoint until every one of `parts` is healthy; seconds waited."""
    try:
        return wait_until_up(
            _health_url(url),
            timeout=timeout,
            ready=_healthy(*parts),
            check=_still_running(processes),
            interval=1.0,
            request_timeout=3.0,
        )
    except Unreachable as exc:
        raise UiStartError(
            f"{_health_url(url)} not healthy after {timeout:.0f} s: {exc.last}"
        ) from None


def start(
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    username: str = "admin",
    workers: int = 2,
    timeout: float = 240.0,
    scheduler: bool = True,
    out=print,
) -> UiState:
    """Start the UI on `host:port` unless it is running; returns its state."""
    if host not in LOOPBACK:
        raise ValueError(f"the local Airflow UI only binds loopback; got {host}")
    airflow_env.configure()
    from include.ml_pipeline.config import get_settings

    home = get_settings().home
    running = status(home)
    if running is not None:
        out(f"The Airflow UI is already running at {running.url} (make stop stops it).")
        return running
    if not _port_free(host, port):
        raise UiStartError(f"port {port} on {host} is in use; choose another: make ui UI_PORT=...")
    url = f"http://{'[::1]' if host == '::1' else host}:{port}"
    folder = ui_dir(home)

    airflow_env.ensure_metadata_db()
    logging.disable(logging.INFO)  # parsing and syncing log a line per DAG
    try:
        import_errors = airflow_env.serialize_dags()
    finally:
        logging.disable(logging.NOTSET)
    for fileloc, error in import_errors.items():
        out(f"DAG import error in {fileloc}:\n{error}")
    password, password_file, generated = admin_password(home)
    airflow_3 = airflow_env._airflow_major() >= 3
    env = dict(os.environ)
    env.update(airflow_env.ui_env(url))
    if airflow_3:
        env.update(airflow3_env(url, username, write_simple_auth_passwords(username, password)))
    else:
        ensure_admin(username, password)
    commands = ui_commands(host, port, workers=workers, scheduler=scheduler, airflow_3=airflow_3)
    processes = [_spawn(name, command, env, folder) for name, command in commands.items()]
    state = UiState(
        url=url,
        username=username,
        password_file=str(password_file) if password_file else None,
        processes=processes,
    )
    (folder / STATE_FILE).write_text(json.dumps(state.to_dict(), indent=2))
    try:
        if scheduler:
            parts = ("metadatabase", "scheduler")
            if airflow_3:
                parts += ("dag_processor", "triggerer")
            wait_until_healthy(url, processes, timeout, parts)
        else:
            _wait_for_webserver(url, processes, timeout)
    except UiStartError as exc:
        stop(home)
        logs = "\n".join(f"--- {p.log_path} (tail) ---\n{tail(p.log_path, 25)}" for p in processes)
        raise UiStartError(f"{exc}\n{logs}") from None

    out(f"Airflow UI: {url}  (user {username})")
    if generated:
        out(f"  password  {password}  (generated once, saved in {password_file}, mode 0600;")
        out("            set AIRFLOW_UI_PASSWORD to choose your own)")
    elif password_file:
        out(f"  password  in {password_file}")
    else:
        out("  password  from AIRFLOW_UI_PASSWORD")
    out(f"  logs      {', '.join(p.log_path for p in processes)}")
    out(f"  database  {os.environ['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN']} (the one make run uses)")
    out("  stop it with: make stop")
    return state


def _wait_for_webserver(url: str, processes: list[UiProcess], timeout: float) -> None:
    try:
        wait_until_up(
            _health_url(url),
            timeout=timeout,
            ready=_healthy(),
            check=_still_running(processes),
            interval=1.0,
            request_timeout=3.0,
        )
    except Unreachable:
        raise UiStartError(f"{_health_url(url)} did not answer within {timeout:.0f} s") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The Airflow UI on the embedded database.")
    parser.add_argument("command", choices=["start", "stop", "status"], nargs="?", default="start")
    parser.add_argument("--host", default=os.environ.get("AIRFLOW_UI_HOST", DEFAULT_HOST))
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("AIRFLOW_UI_PORT", DEFAULT_PORT))
    )
    parser.add_argument("--user", default=os.environ.get("AIRFLOW_UI_USER", "admin"))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("AIRFLOW_UI_WORKERS", 2)))
    parser.add_argument(
        "--no-scheduler",
        action="store_true",
        help="only the webserver (runs show, nothing is scheduled)",
    )
    args = parser.parse_args(argv)
    if args.command == "stop":
        stopped = stop()
        print(
            f"Stopped the Airflow UI at {stopped.url}."
            if stopped
            else "The Airflow UI is not running."
        )
        return 0
    if args.command == "status":
        state = status()
        print(f"Airflow UI: {state.url}" if state else "Airflow UI: not running")
        return 0
    try:
        start(
            host=args.host,
            port=args.port,
            username=args.user,
            workers=args.workers,
            scheduler=not args.no_scheduler,
        )
    except (UiStartError, ValueError) as exc:
        print(f"make ui failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
