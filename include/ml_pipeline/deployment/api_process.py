"""Run the model API as a detached local process on loopback (the embedded deployment):
start it (idempotent, waits until healthy), find it, stop it. No Airflow imports, so tasks
can call it.

State lives in `<settings.home>/api/`: `model-api.pid` (JSON: pid, url, started_at),
`model-api.log` (the service's stdout + stderr), `admin_token` (mode 0600, the reload
token the process was started with, read back by `api_client.reload_model`) and
`served_models.json` (every registered model the API loaded and did not unload since, kept
by the API itself: `make api` serves them all again).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

from include.ml_pipeline.config import PROJECT_ROOT, get_settings
from include.ml_pipeline.service_probe import Unreachable, reap, tail, wait_until_up

PID_FILE = "model-api.pid"
LOG_FILE = "model-api.log"
TOKEN_FILE = "admin_token"
MODELS_FILE = "served_models.json"


class ApiStartError(RuntimeError):
    """The service did not start or did not become healthy in time."""


@dataclass(frozen=True)
class ApiProcess:
    pid: int
    url: str
    log_path: str
    pid_path: str
    started_at: float

    def to_dict(self) -> dict:
        return asdict(self)


def api_dir(home: Path | None = None) -> Path:
    """`<home>/api` (home defaults to `get_settings().home`), created if absent."""
    path = Path(home or get_settings().home) / "api"
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_file(home: Path | None = None) -> Path:
    """`<home>/api/served_models.json`: the models the local API serves (see the module)."""
    return api_dir(home) / MODELS_FILE


def read_admin_token(home: Path | None = None) -> str | None:
    """The token the local service was started with (env MODEL_API_ADMIN_TOKEN first)."""
    token = os.environ.get("MODEL_API_ADMIN_TOKEN")
    if token:
        return token
    path = api_dir(home) / TOKEN_FILE
    return path.read_text().strip() if path.exists() else None


def _ensure_token(home: Path | None, token: str | None) -> str:
    from include.ml_pipeline.serving.api.settings import check_admin_token

    token = token or read_admin_token(home) or secrets.token_urlsafe(32)
    check_admin_token(token)  # a placeholder fails here, before a process starts
    path = api_dir(home) / TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    return token


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is not alive
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except OSError:
        return True


def _is_ours(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"include.ml_pipeline.serving.api" in handle.read()
    except OSError:
        return True  # no /proc: trust the pid file


def api_status(home: Path | None = None) -> ApiProcess | None:
    """The model API process recorded in the pid file if it is still running, else None
    (a stale pid file is removed)."""
    pid_path = api_dir(home) / PID_FILE
    if not pid_path.exists():
        return None
    try:
        data = json.loads(pid_path.read_text())
        process = ApiProcess(**data)
    except (ValueError, TypeError):
        pid_path.unlink(missing_ok=True)
        return None
    if _alive(process.pid) and _is_ours(process.pid):
        return process
    pid_path.unlink(missing_ok=True)
    return None


def wait_until_healthy(
    url: str,
    timeout: float = 120.0,
    *,
    require_model: bool = True,
    pid: int | None = None,
    interval: float = 0.25,
) -> float:
    """Poll `/ready` (or `/version` when `require_model` is False) until it answers 200.
    Returns the seconds waited; raises `ApiStartError` on timeout or if `pid` exits."""
    path = "/ready" if require_model else "/version"

    def running() -> None:
        if pid is not None and not _alive(pid):
            raise ApiStartError(f"the model API process {pid} exited while starting")

    try:
        return wait_until_up(url + path, timeout=timeout, check=running, interval=interval)
    except Unreachable as exc:
        raise ApiStartError(f"{url}{path} not healthy after {timeout:.0f}s: {exc.last}") from None


def start_api(
    *,
    url: str | None = None,
    model_name: str | None = None,
    alias: str = "champion",
    tracking_uri: str | None = None,
    admin_token: str | None = None,
    extra_env: dict[str, str] | None = None,
    models: tuple[str, ...] | list[str] = (),
    timeout: float = 180.0,
    require_model: bool = True,
    home: Path | None = None,
) -> ApiProcess:
    """Start the model API on loopback as a detached process unless one is running. It
    serves `model_name` (the default model: the bare `/invocations`) and `models` next to
    it (`make api`: every model recorded in `<home>/api/served_models.json`).

    `url` (default `get_settings().api_url`) gives host and port; it must be a loopback
    address. The admin token is `admin_token`, else `MODEL_API_ADMIN_TOKEN`, else the
    saved one, else a new random token; it is saved to `<home>/api/admin_token` (0600). A
    placeholder token raises `settings.InsecureSettingError` before anything starts.
    Waits until `/ready` answers 200 (or only `/version` if `require_model` is False).
    Returns the running `ApiProcess` (the existing one if already running).
    Raises `ApiStartError` (with the service log tail) on failure or timeout; the failed
    process is stopped.
    """
    settings = get_settings()
    home = Path(home or settings.home)
    url = (url or settings.api_url).rstrip("/")
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 8000
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"the local model API only binds loopback; got {url}")
    running = api_status(home)
    if running is not None:
        wait_until_healthy(running.url, timeout, require_model=require_model, pid=running.pid)
        return running
    token = _ensure_token(home, admin_token)
    folder = api_dir(home)
    log_path = folder / LOG_FILE
    env = dict(os.environ)
    env.update(
        {
            "MODEL_API_HOST": host,
            "MODEL_API_PORT": str(port),
            "MODEL_API_ALIAS": alias,
            "MODEL_API_ADMIN_TOKEN": token,
            "ML_PIPELINE_HOME": str(home),
            "MODEL_API_MODELS_FILE": str(models_file(home)),
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
            ),
        }
    )
    if model_name:
        env["ML_PIPELINE_MODEL_NAME"] = model_name
    if models:
        env["MODEL_API_MODELS"] = ",".join(models)
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    env.update(extra_env or {})
    with open(log_path, "ab") as log_handle:
        child = subprocess.Popen(
            [sys.executable, "-m", "include.ml_pipeline.serving.api"],
            cwd=str(PROJECT_ROOT),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the Airflow task that started it
        )
    process = ApiProcess(
        pid=child.pid,
        url=f"http://{host}:{port}",
        log_path=str(log_path),
        pid_path=str(folder / PID_FILE),
        started_at=time.time(),
    )
    Path(process.pid_path).write_text(json.dumps(process.to_dict()))
    try:
        wait_until_healthy(process.url, timeout, require_model=require_model, pid=child.pid)
    except ApiStartError as exc:
        stop_api(home=home)
        raise ApiStartError(f"{exc}\n--- {log_path} (tail) ---\n{tail(log_path)}") from None
    return process


def stop_api(*, home: Path | None = None, timeout: float = 15.0) -> bool:
    """Stop the local model API (SIGTERM, SIGKILL after `timeout`). True if one ran."""
    process = api_status(home)
    pid_path = api_dir(home) / PID_FILE
    if process is None:
        return False
    try:
        os.kill(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_path.unlink(missing_ok=True)
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(process.pid):
        reap(process.pid)
        time.sleep(0.1)
    if _alive(process.pid):
        os.kill(process.pid, signal.SIGKILL)
        time.sleep(0.2)
        reap(process.pid)
    pid_path.unlink(missing_ok=True)
    return True
