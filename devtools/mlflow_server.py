"""Run a local `mlflow server` (tracking + registry + proxied artifacts) from this venv.

Artifacts go to `--artifacts-destination` (a folder, or `s3://<bucket>/mlflow`) and are
proxied (`--serve-artifacts`): clients need no bucket credentials.

`python -m devtools.mlflow_server` serves the embedded store from the
settings (`sqlite:///…/mlflow.db`, artifacts in the local folder) on 127.0.0.1:5000 —
a `make mlflow-ui` target can call it. Tests use `start_server` / `stop_server`.

Why not plain `mlflow server`: Airflow 2.11 pins SQLAlchemy 1.4 and MLflow 3.17's server
imports SQLAlchemy 2.0 names at start-up; `server_env` puts a `sitecustomize` shim on the
server's `PYTHONPATH` that adds them (see `sqlalchemy_compat/sitecustomize.py`).
A server started from MLflow's own image (SQLAlchemy 2) needs none of this.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from include.ml_pipeline.service_probe import Unreachable, wait_until_up

COMPAT_DIR = Path(__file__).resolve().parent / "sqlalchemy_compat"


def server_command(
    backend_store_uri: str,
    artifacts_destination: str,
    *,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int = 1,
) -> list[str]:
    """The `mlflow server` command line for this interpreter."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend_store_uri,
        "--artifacts-destination",
        artifacts_destination,
        "--serve-artifacts",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def server_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) with the SQLAlchemy shim on
    `PYTHONPATH` and no `MLFLOW_TRACKING_URI` (the server is the store, not a client)."""
    env = dict(os.environ if base is None else base)
    env.pop("MLFLOW_TRACKING_URI", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(COMPAT_DIR), env.get("PYTHONPATH")) if p)
    return env


def start_server(
    backend_store_uri: str,
    artifacts_destination: str,
    *,
    host: str = "127.0.0.1",
    port: int = 5000,
    log_path: str | os.PathLike | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """Start the server in its own process group (so `stop_server` ends its workers too).

    `extra_env` is added to the server's environment: for `s3://` artifacts, the bucket's
    credentials and endpoint (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    `MLFLOW_S3_ENDPOINT_URL`): only the server needs them, its clients upload and download
    through it (`mlflow-artifacts:/`)."""
    if backend_store_uri.startswith("sqlite:///"):
        Path(backend_store_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    output = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            server_command(backend_store_uri, artifacts_destination, host=host, port=port),
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**server_env(), **(extra_env or {})},
            start_new_session=True,
        )
    finally:
        if log_path:
            output.close()  # the child holds its own descriptor


def wait_until_healthy(
    url: str, *, timeout: float = 120.0, process: subprocess.Popen | None = None
) -> float:
    """Poll `<url>/health` until it answers 200; return the seconds waited.

    Raises `RuntimeError` if `process` exits first, `TimeoutError` after `timeout`.
    """

    def running() -> None:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with code {process.returncode}")

    try:
        return wait_until_up(
            f"{url.rstrip('/')}/health", timeout=timeout, check=running, interval=0.5
        )
    except Unreachable:
        raise TimeoutError(f"{url} not healthy after {timeout:.0f} s") from None


def stop_server(process: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM the server's process group, SIGKILL it if it lingers."""
    if process.poll() is None or _group_alive(process.pid):
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=timeout)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def main(argv: list[str] | None = None) -> None:
    from include.ml_pipeline.config import get_settings

    settings = get_settings()
    default_backend = settings.mlflow_tracking_uri
    if not default_backend.startswith("sqlite:///"):
        default_backend = f"sqlite:///{settings.home / 'mlflow' / 'mlflow.db'}"
    parser = argparse.ArgumentParser(description="Serve the local MLflow store (UI + API).")
    parser.add_argument("--backend-store-uri", default=default_backend)
    parser.add_argument("--artifacts-destination", default=settings.mlflow_artifact_root)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    if args.backend_store_uri.startswith("sqlite:///"):
        Path(args.backend_store_uri.removeprefix("sqlite:///")).parent.mkdir(
            parents=True, exist_ok=True
        )
    command = server_command(
        args.backend_store_uri, args.artifacts_destination, host=args.host, port=args.port
    )
    os.execve(command[0], command, server_env())


if __name__ == "__main__":
    main()
