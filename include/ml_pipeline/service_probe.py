"""Reaching a service over HTTP before relying on it, and watching the local processes that
serve it: the one poll-until-up loop of the project (the preflights of the MLflow server
and the model API, the model API's embedded start, the dev tools' MLflow server and
Airflow UI, the benchmarks), and the small process helpers around it.

`answer`: a host that does not resolve is a configuration error at once. A service that
refuses connections, times out, answers 5xx or 429 is polled with backoff for a bounded
time (a restart is ridden out); after that it is unreachable. Any other answer is returned
for the caller to judge (200: fine; 401/403: credentials; 404: not that service).

`wait_until_up`: poll a URL until its answer is the one wanted (by default a 200), while
the process that should answer is still running; the seconds waited.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:  # pragma: no cover
    import httpx


class Unresolvable(OSError):
    """The service's host name does not resolve."""


class Unreachable(ConnectionError):
    """Nothing usable answered within the wait; `last` is what was seen last."""

    def __init__(self, last: str) -> None:
        super().__init__(last)
        self.last = last


def _is_200(response: httpx.Response) -> bool:
    return response.status_code == 200


def poll(
    url: str,
    *,
    timeout: float,
    ready: Callable[[httpx.Response], bool] = _is_200,
    check: Callable[[], None] | None = None,
    interval: float = 0.25,
    backoff: float = 1.0,
    max_interval: float = 5.0,
    request_timeout: float = 2.0,
    **request: Any,
) -> httpx.Response:
    """`GET url` until `ready(response)`; returns that response. Tries every `interval`
    seconds, the pause multiplied by `backoff` after each try (at most `max_interval`).
    `check()` runs before each try and raises to stop waiting (e.g. the process that
    should answer has exited). Raises `Unreachable` with the last answer (or error) seen
    when the next try would start after `timeout`. `request` goes to `httpx` (headers,
    auth)."""
    import httpx

    started, delay = time.monotonic(), interval
    last = "no answer"
    with httpx.Client(timeout=request_timeout) as client:
        while True:
            if check is not None:
                check()
            try:
                response = client.get(url, **request)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if ready(response):
                    return response
                last = f"{response.status_code} {response.text[:300]}"
            if time.monotonic() - started + delay > timeout:
                raise Unreachable(last)
            time.sleep(delay)
            delay = min(delay * backoff, max_interval)


def wait_until_up(url: str, *, timeout: float, **how: Any) -> float:
    """`poll(url, timeout=timeout, **how)`; the seconds it took."""
    started = time.monotonic()
    poll(url, timeout=timeout, **how)
    return time.monotonic() - started


def answer(url: str, *, wait_seconds: float, **request: Any) -> httpx.Response:
    """`GET url` until it answers something other than 5xx / 429 (at most `wait_seconds`,
    backoff 0.5 s doubling to 5 s); returns that response. Raises `Unresolvable` or
    `Unreachable`. `request` goes to `httpx` (headers, auth)."""
    host = urlparse(url).hostname or ""
    try:
        socket.getaddrinfo(host, None)
    except OSError as exc:
        raise Unresolvable(f"host {host!r} does not resolve ({exc})") from exc
    return poll(
        url,
        timeout=wait_seconds,
        ready=lambda response: response.status_code < 500 and response.status_code != 429,
        interval=0.5,
        backoff=2.0,
        request_timeout=5.0,
        **request,
    )


# --------------------------------------------------------------------------- processes


def tail(path: str | os.PathLike, lines: int = 30) -> str:
    """The last `lines` lines of a log file ("" when it cannot be read)."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def reap(pid: int) -> None:
    """Collect `pid` if it is an exited child of this process (so it is no zombie)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
