"""What the API and a prediction worker send each other: length-prefixed frames over a
connected socket, each one pickle (protocol 5) of a small tuple.

Requests: `("load", info_json)`, `("predict", numeric, categorical)` (a `Batch`'s float
matrix and its lists of `str | None`), `("stop",)`. Replies: `("ready", classes, pid)`,
`("ok", labels, proba)`, `("error", message)` (the model refused the input; the worker
keeps serving).

Why pickle 5 and not Arrow IPC (`benchmarks/bench_worker.py`: encode + decode of one
request of the churn shape and its reply, median of 300): 28 us against 286 us at 1 row,
543 us against 669 us at 1,000 rows (2026-12-04, busy 2-core machine); and the API
process then needs no pyarrow. Both
ends are our own processes, started from the same code, so pickle's trust boundary is the
one the model file already has (`MLFLOW_ALLOW_PICKLE_DESERIALIZATION`).
"""

from __future__ import annotations

import pickle
import socket
import struct
from typing import Any

HEADER = struct.Struct("!Q")


class WorkerGone(Exception):
    """The other end closed the socket (the process exited)."""


def send(sock: socket.socket, message: tuple[Any, ...]) -> None:
    payload = pickle.dumps(message, protocol=5)
    sock.sendall(HEADER.pack(len(payload)) + payload)


def _read_exactly(sock: socket.socket, size: int) -> bytearray:
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            raise WorkerGone("the other end closed the connection")
        got += n
    return buffer


def receive(sock: socket.socket) -> tuple[Any, ...]:
    """The next message; `WorkerGone` at end of stream, `TimeoutError` past the socket's
    timeout."""
    (size,) = HEADER.unpack(_read_exactly(sock, HEADER.size))
    return pickle.loads(_read_exactly(sock, size))  # written by our own process
