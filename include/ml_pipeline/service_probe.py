"""Reaching a service over HTTP before relying on it (the preflights of the MLflow server
and the model API): does its host resolve, and what does it answer once it answers.

A host that does not resolve is a configuration error at once. A service that refuses
connections, times out, answers 5xx or 429 is polled with backoff for a bounded time (a
restart is ridden out); after that it is unreachable. Any other answer is returned for the
caller to judge (200: fine; 401/403: credentials; 404: not that service).
"""

from __future__ import annotations

import socket
import time
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


def answer(url: str, *, wait_seconds: float, **request: Any) -> httpx.Response:
    """`GET url` until it answers something other than 5xx / 429 (at most `wait_seconds`,
    backoff 0.5 s doubling to 5 s); returns that response. Raises `Unresolvable` or
    `Unreachable`. `request` goes to `httpx.get` (headers, auth)."""
    import httpx

    host = urlparse(url).hostname or ""
    try:
        socket.getaddrinfo(host, None)
    except OSError as exc:
        raise Unresolvable(f"host {host!r} does not resolve ({exc})") from exc
    started, delay = time.monotonic(), 0.5
    while True:
        try:
            response = httpx.get(url, timeout=5.0, **request)
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code < 500 and response.status_code != 429:
                return response
            last = f"{response.status_code} {response.text[:200]}"
        if time.monotonic() - started + delay > wait_seconds:
            raise Unreachable(last)
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
