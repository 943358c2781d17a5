"""The scikit-learn path of a model the compiler does not know (your own estimator), run in
a worker process of its own, so the model's code never runs in the API process.

`IsolatedPredictor` is what the API holds for such a model (`predict_path`
`sklearn-isolated`). It starts the worker (`worker_child`) when the model loads, sends it
each batch over a socket (`wire`) and returns its `Prediction`, one request at a time.
What the model's code can do to its worker, the API turns into one clear answer:

- the model refuses the input (it raises): 422, as on the in-process path;
- the worker dies (a crash, an out-of-memory kill, `SIGKILL`): that request gets 503
  naming the model, the worker and how it ended, and a new worker starts at once;
- a prediction takes over `MODEL_API_WORKER_TIMEOUT_SECONDS` (default 30): 504; the
  worker is killed (its state is unknown) and restarted.

Other models, and compiled models, keep answering meanwhile (the API waits for the worker
off its event loop). The worker stops when the model is unloaded or replaced, and when the
API exits; a killed API leaves none behind (the worker watches its parent).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import weakref
from pathlib import Path
from typing import Any

from include.ml_pipeline.serving.compiled.predictor import Prediction
from include.ml_pipeline.serving.loading.wire import WorkerGone, receive, send
from include.ml_pipeline.serving.parsing import RequestError

ROOT = Path(__file__).resolve().parents[4]
ISOLATED_PATH = "sklearn-isolated"
TIMEOUT_ENV = "MODEL_API_WORKER_TIMEOUT_SECONDS"
DEFAULT_TIMEOUT_S = 30.0
START_TIMEOUT_S = 300.0  # imports scikit-learn and the model's own modules, unpickles it
STOP_GRACE_S = 5.0
log = logging.getLogger("ml_pipeline.serving")
_LIVE: weakref.WeakSet[IsolatedPredictor] = weakref.WeakSet()


def child_env() -> dict[str, str]:
    """The environment of a child of the API: this checkout importable, one OpenMP thread,
    the registry's pickles trusted (as in the API)."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + path if path else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    return env


def timeout_from_env() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise ValueError(f"{TIMEOUT_ENV}={raw!r} must be above 0 seconds")
    return value


def isolated_reason(fallback_reason: str | None) -> str:
    """`GET /model`'s `fallback_reason` of a model served by an isolated worker."""
    why = fallback_reason or "not compiled"
    return f"{why}; served by its scikit-learn pipeline in an isolated worker process"


def api_path(predict_path: str, fallback_reason: str | None) -> tuple[str, str | None]:
    """The path and reason the model API serves a model with, from how it loaded in a
    process of its own (the release step): there the scikit-learn path is isolated."""
    if predict_path == "sklearn":
        return ISOLATED_PATH, isolated_reason(fallback_reason)
    return predict_path, fallback_reason


class WorkerFailure(RequestError):
    """The worker could not answer (it died, timed out or cannot start): a 5xx."""


class WorkerStartError(Exception):
    """A worker that did not come up (the model does not load, or the process died)."""


def _ended(proc: subprocess.Popen) -> str:
    """How a worker process ended, in words ("was killed by SIGKILL", "exited with 1")."""
    code = proc.poll()
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with status {code}"


class _Worker:
    """One running worker process and our end of its socket."""

    def __init__(self, info: dict[str, Any], start_timeout: float):
        ours, theirs = socket.socketpair()
        self.sock = ours
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "include.ml_pipeline.serving.loading.worker_child",
                str(theirs.fileno()),
                str(os.getpid()),
            ],
            pass_fds=(theirs.fileno(),),
            env=child_env(),
            cwd=str(ROOT),
        )
        theirs.close()
        self.pid = self.proc.pid
        ours.settimeout(start_timeout)
        try:
            send(ours, ("load", info))
            reply = receive(ours)
        except TimeoutError:
            self.kill()
            raise WorkerStartError(f"did not load the model within {start_timeout:.0f}s") from None
        except (WorkerGone, OSError):
            self.kill()
            raise WorkerStartError(f"{_ended(self.proc)} while loading the model") from None
        if reply[0] != "ready":
            self.kill()
            raise WorkerStartError(str(reply[1]))
        self.classes = list(reply[1])

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc.wait()
        self.sock.close()

    def stop(self) -> None:
        """Ask it to exit; kill it when it does not within STOP_GRACE_S."""
        with contextlib.suppress(OSError):
            self.sock.settimeout(STOP_GRACE_S)
            send(self.sock, ("stop",))
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(STOP_GRACE_S)
        self.kill()


class IsolatedPredictor:
    """A model's scikit-learn pipeline, predicting in its own worker process."""

    path = ISOLATED_PATH
    #: the API calls `predict` off its event loop: it waits on another process
    blocking = True

    def __init__(
        self,
        info: dict[str, Any],
        *,
        timeout: float | None = None,
        start_timeout: float = START_TIMEOUT_S,
    ):
        self.info = info
        self.model = f"model {info['name']!r} version {info['version']}"
        self.timeout = timeout_from_env() if timeout is None else timeout
        self.start_timeout = start_timeout
        self.restarts = 0
        self.last_failure: str | None = None
        self._lock = threading.Lock()  # one request at a time on the socket
        self._closed = False
        self._restarting: threading.Thread | None = None
        self._start_error: str | None = None
        try:
            self._worker: _Worker | None = _Worker(info, start_timeout)
        except WorkerStartError as exc:
            raise WorkerStartError(f"the worker of {self.model} {exc}") from None
        self.classes = self._worker.classes
        _LIVE.add(self)

    # ------------------------------------------------------------------ requests

    def predict(self, batch) -> Prediction:
        restarting = self._restarting  # a restart under way: wait for it, not in the queue
        if restarting is not None:
            restarting.join(self.start_timeout)
        if not self._lock.acquire(timeout=self.timeout):
            raise WorkerFailure(
                503,
                "worker_busy",
                f"{self.model}: its worker was busy for over {self.timeout:g}s "
                f"({TIMEOUT_ENV}); retry later",
            )
        try:
            worker = self._running()
            try:
                worker.sock.settimeout(self.timeout)
                send(worker.sock, ("predict", batch.numeric, batch.categorical))
                reply = receive(worker.sock)
            except TimeoutError:
                raise self._failed(
                    worker,
                    504,
                    "worker_timeout",
                    f"the prediction took over {self.timeout:g}s ({TIMEOUT_ENV}); its worker "
                    f"(pid {worker.pid}) was stopped",
                ) from None
            except (WorkerGone, OSError):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.proc.wait(1.0)
                raise self._failed(
                    worker,
                    503,
                    "worker_crashed",
                    f"its worker (pid {worker.pid}) {_ended(worker.proc)} while predicting",
                ) from None
        finally:
            self._lock.release()
        if reply[0] == "error":
            raise ValueError(reply[1])  # the model refused the input (422, as in-process)
        return Prediction(labels=reply[1], proba=reply[2])

    def _failed(self, worker: _Worker, status: int, kind: str, what: str) -> WorkerFailure:
        """Kill the failed worker, start a new one in the background, and the error."""
        worker.kill()
        self._worker = None
        self.last_failure = what
        log.error("%s: %s; restarting it", self.model, what)
        self._restart_in_background()
        return WorkerFailure(
            status, kind, f"{self.model}: {what}; a new worker is starting, retry the request"
        )

    def _running(self) -> _Worker:
        """The live worker: waits for a restart under way, or starts one (a 503 when it
        cannot start)."""
        restarting = self._restarting
        if restarting is not None:
            restarting.join(self.start_timeout)
        worker = self._worker
        if worker is not None:
            return worker
        if self._closed:
            raise WorkerFailure(503, "worker_stopped", f"{self.model} is no longer served")
        self._start()
        if self._worker is None:
            raise WorkerFailure(
                503,
                "worker_unavailable",
                f"{self.model}: its worker cannot start: {self._start_error}",
            )
        return self._worker

    def _start(self) -> None:
        try:
            worker = _Worker(self.info, self.start_timeout)
        except WorkerStartError as exc:
            self._start_error = str(exc)
            log.error("%s: a new worker did not start: %s", self.model, exc)
            return
        if self._closed:
            worker.stop()
            return
        self.restarts += 1
        self._start_error = None
        self._worker = worker
        log.warning("%s: worker restarted (pid %s)", self.model, worker.pid)

    def _restart_in_background(self) -> None:
        if self._closed:
            return
        thread = threading.Thread(target=self._start, name="worker-restart", daemon=True)
        self._restarting = thread
        thread.start()

    # ------------------------------------------------------------------ life cycle

    @property
    def pid(self) -> int | None:
        worker = self._worker
        return worker.pid if worker is not None else None

    def describe(self) -> dict[str, Any]:
        """The worker's part of `GET /model`."""
        return {
            "pid": self.pid,
            "alive": self._worker is not None and self._worker.proc.poll() is None,
            "restarts": self.restarts,
            "timeout_seconds": self.timeout,
            "last_failure": self.last_failure,
        }

    def close(self) -> None:
        """Stop the worker (after the request in flight, if any); idempotent."""
        if self._closed:
            return
        self._closed = True
        _LIVE.discard(self)
        restarting = self._restarting
        if restarting is not None:
            restarting.join(self.start_timeout)
        acquired = self._lock.acquire(timeout=self.timeout)
        try:
            worker, self._worker = self._worker, None
            if worker is not None and acquired:
                worker.stop()
            elif worker is not None:
                worker.kill()  # a request still holds it: it gets a 503
        finally:
            if acquired:
                self._lock.release()


def close_predictor(served: Any, wait: bool = False) -> None:
    """Stop what `served` (a `ServedModel`, or None) runs outside the API process: its
    isolated worker. In a background thread unless `wait` (the caller may be the event
    loop, and the worker first finishes the request in flight)."""
    predictor = getattr(served, "predictor", None)
    close = getattr(predictor, "close", None)
    if close is None:
        return
    if wait:
        close()
    else:
        threading.Thread(target=close, name="worker-stop", daemon=True).start()


@atexit.register
def _stop_all() -> None:
    for predictor in list(_LIVE):
        with contextlib.suppress(Exception):
            predictor.close()
