"""A prediction worker: one model's scikit-learn pipeline in its own process.

    python -m include.ml_pipeline.serving.loading.worker_child SOCKET_FD PARENT_PID

Started by `worker.IsolatedPredictor`. It receives `("load", info)` (what `fetch.fetch`
returned: the model file, its format, the feature spec), loads the pipeline as the compile
child does (`compile_worker.load_pipeline`), answers `("ready", classes, pid)`, then one
`("ok", labels, proba)` or `("error", message)` per `("predict", ...)` until `("stop",)`
or the end of the stream. It exits when the API process goes away (end of stream, or a
watchdog that sees its parent change), so a killed API never leaves it behind.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import socket
import sys
import threading
import time

from include.ml_pipeline.serving.loading.wire import WorkerGone, receive, send

PARENT_POLL_SECONDS = 0.5


def _watch_parent(parent_pid: int) -> None:
    """Exit at once when the API process is gone, even while a prediction hangs."""
    while True:
        if os.getppid() != parent_pid:
            os._exit(3)
        time.sleep(PARENT_POLL_SECONDS)


def _load(info: dict):
    from include.ml_pipeline.features import FeatureSpec
    from include.ml_pipeline.serving.compiled.predictor import SklearnPredictor
    from include.ml_pipeline.serving.loading.compile_worker import load_pipeline

    spec = FeatureSpec.from_dict(info["spec"])
    return SklearnPredictor(load_pipeline(info)), tuple(spec.numeric), tuple(spec.categorical)


def serve(sock: socket.socket) -> int:
    from include.ml_pipeline.serving.batch import Batch

    message = receive(sock)
    if message[0] != "load":
        send(sock, ("failed", f"expected a load message first, got {message[0]!r}"))
        return 2
    try:
        predictor, numeric_columns, categorical_columns = _load(message[1])
    except Exception as exc:
        send(sock, ("failed", f"cannot load the pipeline: {exc!r}"))
        return 1
    send(sock, ("ready", predictor.classes, os.getpid()))
    while True:
        message = receive(sock)
        if message[0] == "stop":
            return 0
        _, numeric, categorical = message
        batch = Batch(numeric_columns, categorical_columns, numeric, categorical)
        try:
            result = predictor.predict(batch)
        except Exception as exc:  # the model refused this input: say so, keep serving
            send(sock, ("error", str(exc) or repr(exc)))
            continue
        send(sock, ("ok", result.labels, result.proba))


def main(argv: list[str] | None = None) -> int:
    fd, parent_pid = (int(word) for word in (argv if argv is not None else sys.argv[1:])[:2])
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    sock = socket.socket(fileno=fd)
    try:
        return serve(sock)
    except (WorkerGone, ConnectionError):
        return 0  # the API closed the connection: nothing left to answer
    finally:
        sock.close()


if __name__ == "__main__":
    raise SystemExit(main())
