"""A release experiment in the model API: the `challenger` version of a model served next
to its `champion`, in **shadow** or **canary** (`release/records.py` names the modes and
arms; `docs/safe-release.md` how the evidence is judged).

- **shadow**: the champion answers; the challenger predicts the same rows after the
  response, on `ShadowRunner`'s bounded queue (full: the job is dropped and counted) in one
  worker thread, each job bounded by a timeout (past it: logged as an error).
- **canary**: `share` of the traffic goes to the challenger, chosen by a stable hash of a
  key (header `X-Experiment-Key`, else the configured input column of the first row), so
  one key always sees one arm; without a key, per request at random (the log line says
  `"split": "random"`). The champion's answer for a request the challenger served is
  computed off the response path as in shadow, so the answers pair.
- a **breaker** (`Breaker`) stops sending traffic to a challenger whose error rate over
  its last `window` requests passes `max_error_rate` (after `min_requests`); it stays
  open until the experiment is set again.

The experiments are kept in a JSON file next to the models file (`experiments_file`), so
they survive an API restart; a reload of either version keeps its experiment.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from include.ml_pipeline.release.records import (
    CANARY,
    CHALLENGER,
    CHAMPION,
    EXPERIMENT_MODES,
)

log = logging.getLogger("ml_pipeline.serving")

KEY_HEADER = "X-Experiment-Key"
REQUEST_ID_HEADER = "X-Request-Id"
VERSION_HEADER = "X-Model-Version"
ARM_HEADER = "X-Experiment-Arm"
MAX_REQUEST_ID = 128
_HASH_SCALE = float(2**64)


class ExperimentError(ValueError):
    """An experiment body that cannot be used (the message names the field and rule)."""


@dataclass(frozen=True)
class ExperimentConfig:
    """What `PUT /admin/models/{name}/experiment` sets (all but `mode` optional)."""

    mode: str
    share: float = 0.0  # canary: the challenger's share of traffic (0..1)
    key_column: str | None = None  # canary: the input column keying the split
    max_error_rate: float = 0.05  # the breaker's limit
    min_requests: int = 20  # challenger requests before the breaker may trip
    window: int = 200  # the breaker judges the last `window` challenger requests
    timeout_ms: float = 1000.0  # an off-path prediction past this is an error
    started_at: str = ""

    @classmethod
    def parse(cls, body: Any) -> ExperimentConfig:
        """From a JSON body; `ExperimentError` names any field that breaks its rule."""
        if not isinstance(body, Mapping):
            raise ExperimentError(
                'the body must be a JSON object, e.g. {"mode": "canary", "share": 0.1}'
            )
        known = set(cls.__dataclass_fields__) - {"started_at"}
        unknown = sorted(set(body) - known)
        if unknown:
            raise ExperimentError(
                f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        mode = body.get("mode")
        if mode not in EXPERIMENT_MODES:
            raise ExperimentError(
                f"mode must be one of {', '.join(EXPERIMENT_MODES)}; got {mode!r}"
            )
        values: dict[str, Any] = {"mode": mode}
        for name, low, high in (
            ("share", 0.0, 1.0),
            ("max_error_rate", 0.0, 1.0),
            ("min_requests", 1, 1_000_000),
            ("window", 1, 1_000_000),
            ("timeout_ms", 1.0, 600_000.0),
        ):
            if name not in body:
                continue
            value = body[name]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ExperimentError(f"{name} must be a number; got {value!r}")
            if not low <= value <= high:
                raise ExperimentError(f"{name} must be within {low}..{high}; got {value!r}")
            values[name] = int(value) if name in ("min_requests", "window") else float(value)
        if mode == CANARY and "share" not in body:
            raise ExperimentError("a canary needs share: the challenger's part of traffic, 0..1")
        column = body.get("key_column")
        if column is not None and (not isinstance(column, str) or not column):
            raise ExperimentError(f"key_column must be a column name; got {column!r}")
        values["key_column"] = column
        values["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return cls(**values)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExperimentConfig:
        """From the experiments file (written by `to_dict`)."""
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**fields)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def key_share(key: str) -> float:
    """Where `key` falls in [0, 1): a stable hash (BLAKE2b, the same in every process
    and on every machine, unlike Python's `hash`)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _HASH_SCALE


def choose_arm(share: float, key: str | None, draw: Callable[[], float] = random.random) -> str:
    """The arm of one canary request: by the key's hash, else at random."""
    point = key_share(key) if key is not None else draw()
    return CHALLENGER if point < share else CHAMPION


@dataclass
class Breaker:
    """Trips (opens) when the challenger's error rate over its last `window` requests
    passes `max_error_rate`, once `min_requests` were seen; stays open."""

    max_error_rate: float
    min_requests: int
    window: int
    outcomes: collections.deque = field(default_factory=collections.deque)
    errors_in_window: int = 0
    open: bool = False
    reason: str | None = None

    def record(self, error: bool) -> None:
        if self.open:
            return
        self.outcomes.append(error)
        self.errors_in_window += error
        if len(self.outcomes) > self.window:
            self.errors_in_window -= self.outcomes.popleft()
        seen = len(self.outcomes)
        if seen >= self.min_requests and self.errors_in_window / seen > self.max_error_rate:
            self.open = True
            self.reason = (
                f"challenger error rate {self.errors_in_window}/{seen} "
                f"= {self.errors_in_window / seen:.3f} passed max_error_rate "
                f"{self.max_error_rate}: no more traffic to the challenger"
            )
            log.warning("experiment breaker open: %s", self.reason)


@dataclass
class Counts:
    """What one experiment saw (`GET /models/{name}/experiment`)."""

    requests: int = 0  # requests to the model during the experiment
    served: dict[str, int] = field(default_factory=lambda: {CHAMPION: 0, CHALLENGER: 0})
    off_path: int = 0  # off-path predictions done (shadow, canary's champion)
    off_path_errors: int = 0
    challenger_errors: int = 0
    dropped: int = 0  # off-path jobs not run: the queue was full, or `skipped`
    skipped: int = 0  # of `dropped`: waited past the timeout for an idle moment (load)
    timeouts: int = 0
    random_split: int = 0  # canary requests without a key


class Experiment:
    """One running experiment: its config, the challenger's slot, breaker and counts."""

    def __init__(self, config: ExperimentConfig, challenger: Any):
        self.config = config
        self.challenger = challenger  # a ModelSlot (alias challenger)
        self.breaker = Breaker(config.max_error_rate, config.min_requests, config.window)
        self.counts = Counts()

    @property
    def active(self) -> bool:
        """Traffic may reach the challenger: loaded and breaker closed."""
        return not self.breaker.open and self.challenger.model is not None

    def status(self) -> dict[str, Any]:
        served = self.challenger.model
        return {
            "config": self.config.to_dict(),
            "challenger_version": served.version if served else None,
            "challenger_ready": served is not None,
            "breaker": {
                "open": self.breaker.open,
                "reason": self.breaker.reason,
                "window_requests": len(self.breaker.outcomes),
                "window_errors": self.breaker.errors_in_window,
            },
            "counts": asdict(self.counts),
        }


@dataclass
class _Job:
    """One queued off-path prediction."""

    job: Callable[[], Any]
    timeout: float
    done: Callable[..., None]
    skipped: Callable[[], None] | None
    key: Any
    queued: float


class ShadowRunner:
    """Off-path predictions, on a bounded queue; nothing here ever delays or fails the
    request that queued a job. A full queue drops the new job (counted).

    A cheap job (its model's jobs of that size take at most `inline_budget` seconds; a
    first one is measured in the thread by its CPU time, and three slow ones in a row, or
    one ten times over, send them back to the thread)
    runs on the event loop when the API is idle: after the response that queued it is
    written and no other request is in the app (`busy`, kept by the app: `enter`/`leave`),
    so the challenger's time falls between requests instead of inside one, with no thread
    hand-off, wake-up or GIL contention. Under load (requests always in the app) such a
    job waits at most `force_after` seconds for an idle moment, then runs anyway: at most
    one per `force_after` then, so the shadow becomes a sample of the traffic.

    Any other job (a first one, a slow model, a big batch, a model predicting in another
    process) runs in one worker thread, one at a time, bounded by its timeout, as before.
    A job past its timeout is an error either way. A job that waited in the queue past its
    timeout is not run but skipped (`skipped()`, counted): it is not in the comparison,
    and says so.

    `max_share` bounds the jobs' CPU time (the prediction and its log line) to that share
    of the clock (a token bucket holding at most `burst` seconds): past it a new job is
    skipped (counted) at once. Traffic the
    challenger can keep up with within it is shadowed whole; faster traffic (a client
    that sends the next request the moment it gets an answer) is shadowed in part, the
    requests skipped spread over time rather than in runs."""

    force_after = 0.05  # seconds a job waits for an idle moment under load
    burst = 0.05  # seconds of jobs that may run back to back after a quiet spell

    def __init__(self, size: int, inline_budget: float = 0.0003, max_share: float = 1.0):
        self.size = max(1, size)
        self.inline_budget = max(0.0, inline_budget)
        self.max_share = min(1.0, max(0.0, max_share))
        self._tokens = self.burst  # seconds of jobs the shadow may run now
        self._refilled = time.perf_counter()
        self.pending: collections.deque[_Job] = collections.deque()
        self.busy = 0  # requests in the app now (ModelAPI: enter/leave)
        self.dropped = 0  # queue full
        self.skipped = 0  # waited past their timeout (busy)
        self.done = 0
        self.inline = 0  # of `done`: run on the event loop
        self._inline_keys: dict[Any, int] = {}  # key -> slow inline jobs in a row
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._threaded: asyncio.Task | None = None  # the job in the worker thread
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._ran_at = 0.0  # when the last job ended

    def start(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="shadow")

    async def stop(self) -> None:
        if self._loop is None:
            return
        self._loop = None  # no more jobs queued or run
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._threaded is not None:
            self._threaded.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._threaded
            self._threaded = None
        self.pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    @property
    def drained(self) -> bool:
        """No job queued or running."""
        return not self.pending and self._threaded is None

    def enter(self) -> None:
        """A request came into the app."""
        self.busy += 1

    def leave(self) -> None:
        """A request's response was written: the queue may run if nothing else is in."""
        self.busy -= 1
        if not self.busy and self.pending:
            self._wake()

    def submit(
        self,
        job: Callable[[], Any],
        timeout: float,
        done: Callable[..., None],
        *,
        key: Any = None,
        skipped: Callable[[], None] | None = None,
    ) -> bool:
        """Queue `job` (see the class); `done(result, error)` then runs on the event loop,
        `skipped()` instead if it waited past `timeout` or the jobs are past `max_share`
        of the time (then at once; still True). `key` names the job's model and
        size (its cost decides where it runs); None: always the worker thread. False
        (and counted) when the queue is full or not started."""
        if self._loop is None or len(self.pending) >= self.size:
            self.dropped += self._loop is not None
            return False
        now = time.perf_counter()
        if self.max_share < 1.0:  # the jobs' time so far is past max_share of the clock
            self._tokens = min(self.burst, self._tokens + (now - self._refilled) * self.max_share)
            self._refilled = now
            if self._tokens <= 0.0:
                self.skipped += 1
                self._call(skipped)
                return True
        self.pending.append(_Job(job, timeout, done, skipped, key, now))
        self._wake()
        return True

    def _wake(self) -> None:
        if not self._scheduled and self._threaded is None and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._drain)

    def _force(self) -> None:
        self._timer = None
        self._drain(force=True)

    def _drain(self, force: bool = False) -> None:
        """Run the next job (one per turn of the loop, so requests come first)."""
        self._scheduled = False
        loop = self._loop
        if loop is None or self._threaded is not None:
            return
        now = time.perf_counter()
        pending = self.pending
        while pending and now - pending[0].queued > pending[0].timeout:
            self.skipped += 1
            self._call(pending.popleft().skipped)
        if not pending:
            return
        head = pending[0]
        if head.key not in self._inline_keys:  # the thread: busy or not, as ever
            self._threaded = loop.create_task(self._run_threaded(pending.popleft()))
            return  # the task wakes the queue when it is over
        if self.busy and not force:
            if self._timer is None:  # under load: one job per force_after at most
                since = now - max(head.queued, self._ran_at)
                self._timer = loop.call_later(max(0.0, self.force_after - since), self._force)
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._run_inline(pending.popleft())
        if pending:
            self._wake()

    def _run_inline(self, entry: _Job) -> None:
        begun, cpu = time.perf_counter(), time.thread_time()
        try:
            result, error = entry.job(), None
        except Exception as exc:
            result, error = None, str(exc) or repr(exc)
        took = time.perf_counter() - begun  # the time the loop was held: where it runs
        if took <= self.inline_budget:
            self._inline_keys[entry.key] = 0
        elif took > 10 * self.inline_budget or self._inline_keys[entry.key] >= 2:
            del self._inline_keys[entry.key]  # slow (not one preempted job): the thread
        else:
            self._inline_keys[entry.key] += 1
        if error is None and took > entry.timeout:
            result, error = None, _timed_out(entry.timeout)
        self.inline += 1
        self._finish(entry, result, error)
        self._tokens -= time.thread_time() - cpu  # its CPU, log line included: the share

    async def _run_threaded(self, entry: _Job) -> None:
        loop = asyncio.get_running_loop()
        inline, key, job = self._inline_keys, entry.key, entry.job
        budget = self.inline_budget
        cpu = [0.0]

        def timed():
            begun, used = time.perf_counter(), time.thread_time()
            try:
                return job()
            finally:
                cpu[0] = time.thread_time() - used
                # its CPU within the budget and no long wait (a sleep, I/O; not a GIL
                # wait of a busy loop): cheap, the next ones on the loop
                waited = time.perf_counter() - begun
                if key is not None and cpu[0] <= budget and waited <= max(10 * budget, 0.005):
                    inline.setdefault(key, 0)

        try:
            try:
                running = loop.run_in_executor(self._pool, timed)
                result = await asyncio.wait_for(running, entry.timeout)
                error = None
            except TimeoutError:
                result, error = None, _timed_out(entry.timeout)
            except Exception as exc:
                result, error = None, str(exc) or repr(exc)
            used = time.thread_time()
            self._finish(entry, result, error)
            cpu[0] += time.thread_time() - used  # and its log line
        finally:
            self._threaded = None
            self._tokens -= cpu[0]
            if self.pending:
                self._wake()

    def _finish(self, entry: _Job, result: Any, error: str | None) -> None:
        self.done += 1
        self._ran_at = time.perf_counter()
        self._call(entry.done, result, error)

    @staticmethod
    def _call(callback: Callable[..., None] | None, *args: Any) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:  # never let the queue die
            log.exception("shadow job callback failed")


def _timed_out(timeout: float) -> str:
    return f"timeout: no answer within {timeout * 1000:.0f} ms"


# --------------------------------------------------------------------------- the file


def experiments_file_for(models_file: str | None) -> str | None:
    """The experiments file next to the models file (None without one)."""
    if not models_file:
        return None
    return str(Path(models_file).with_name("experiments.json"))


def read_experiments(path: str | None) -> dict[str, ExperimentConfig]:
    """The experiments recorded in `path` ({} without the file; a broken entry is
    logged and left out)."""
    if not path or not Path(path).exists():
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        log.warning("experiments file %s not read: %s", path, exc)
        return {}
    found = {}
    for name, entry in (data.get("experiments") or {}).items():
        try:
            found[name] = ExperimentConfig.from_dict(entry)
        except (TypeError, ValueError) as exc:
            log.warning("experiments file %s: entry %r left out: %s", path, name, exc)
    return found


def write_experiment(path: str, name: str, config: ExperimentConfig | None) -> None:
    """Set (or with None remove) `name`'s experiment in the file, written whole."""
    current = {k: v.to_dict() for k, v in read_experiments(path).items()}
    if config is None:
        current.pop(name, None)
    else:
        current[name] = config.to_dict()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".tmp")
    partial.write_text(json.dumps({"experiments": current}, indent=1))
    os.replace(partial, target)
