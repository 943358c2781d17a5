"""A real `mlflow server` on loopback for tests (`devtools/mlflow_server.py`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from devtools.mlflow_server import start_server, stop_server, wait_until_healthy
from devtools.ports import free_port


@contextmanager
def local_mlflow_server(
    root: Path,
    artifacts: str | None = None,
    *,
    database: str = "server.db",
    extra_env: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> Iterator[str]:
    """An `mlflow server` with a SQLite backend in `root` and proxied artifacts in
    `artifacts` (default `root/server-artifacts`); yields its URL and stops it on exit.
    A server that does not come up fails the test with its log's tail."""
    log = root / "server.log"
    port = free_port()
    process = start_server(
        f"sqlite:///{root / database}",
        artifacts or str(root / "server-artifacts"),
        port=port,
        log_path=log,
        extra_env=extra_env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_healthy(url, timeout=timeout, process=process)
        except (RuntimeError, TimeoutError) as exc:
            pytest.fail(f"{exc}: {log.read_text()[-3000:]}")
        yield url
    finally:
        stop_server(process)
    assert process.poll() is not None
