"""Background processes of the cluster: start one in its own session with its log in a
file, wait for it, stop it (its whole process tree), kill it as a lost machine would be."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from include.ml_pipeline.service_probe import tail


class ClusterError(RuntimeError):
    """A service of the cluster did not start or answer; the message names its log."""


@dataclass
class Service:
    """One background process (and everything it starts), logging to `log_path`."""

    name: str
    process: subprocess.Popen
    log_path: Path
    stop_command: Sequence[str] | None = None  # e.g. pg_ctl stop; else signals
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    killed: bool = False  # on purpose (kill_like_a_lost_machine)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def describe_failure(self, what: str) -> str:
        return f"{self.name}: {what}; log {self.log_path}:\n{tail(self.log_path, 40)}"

    def stop(self, timeout: float = 20.0) -> None:
        if self.stop_command is not None:
            subprocess.run(
                list(self.stop_command),
                env=dict(self.env) or None,
                capture_output=True,
                timeout=timeout + 10,
                check=False,
            )
        tree = descendants(self.pid)
        signal_tree([self.pid, *tree], signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout)
        signal_tree([self.pid, *descendants(self.pid), *tree], signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)


def start(
    name: str,
    command: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str],
    cwd: Path | None = None,
    stop_command: Sequence[str] | None = None,
) -> Service:
    """Start `command` in its own session, stdout and stderr to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            list(command),
            env=dict(env),
            cwd=str(cwd) if cwd else None,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Service(name, process, log_path, stop_command, env)


def wait_for(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    service: Service | None = None,
    interval: float = 0.25,
) -> float:
    """Poll `check` until it is true; return the seconds waited. Fails naming `what`
    (and the service's log tail) on timeout or when `service` exits first."""
    started = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - started
        except Exception:
            pass
        if service is not None and not service.alive():
            raise ClusterError(
                service.describe_failure(
                    f"exited with code {service.process.returncode} before {what}"
                )
            )
        if time.monotonic() - started > timeout:
            message = f"{what}: not after {timeout:.0f} s"
            raise ClusterError(service.describe_failure(message) if service else message)
        time.sleep(interval)


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children first found, then theirs), from /proc."""
    tree, found, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def signal_tree(pids: Sequence[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def kill_like_a_lost_machine(service: Service) -> list[int]:
    """SIGKILL the service's process group and every process below it (Airflow runs each
    task in its own process group, so killing the group alone would leave the task
    running); return the pids killed. Nothing gets a chance to clean up."""
    service.killed = True
    pids = [service.pid, *descendants(service.pid)]
    signal_tree(pids, signal.SIGSTOP)  # freeze the tree first: no new children
    pids = sorted({*pids, *descendants(service.pid)})
    with contextlib.suppress(ProcessLookupError):
        os.killpg(service.pid, signal.SIGKILL)
    signal_tree(pids, signal.SIGKILL)
    service.process.wait(timeout=10)
    return pids
