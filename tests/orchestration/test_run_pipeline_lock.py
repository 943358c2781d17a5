"""One `make run` at a time per ML_PIPELINE_HOME: `run_pipeline.home_lock`, with real
processes (a holder process, then the real `python -m devtools.run_pipeline`), and the
scheduler's side of the same rule: the DAGs allow one active run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devtools import run_pipeline as rp

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"

HOLD = """
import sys, time
from pathlib import Path
from devtools.run_pipeline import home_lock
with home_lock(Path(sys.argv[1]), command="make run (the first one)"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def make_run_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a `make run` in `home`: this one without the test session's
    Airflow settings (the child sets up its own embedded Airflow in its home)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    return {**env, "ML_PIPELINE_HOME": str(home), "PYTHONPATH": str(ROOT), **extra}


def _hold(home: Path, seconds: float = 120.0) -> subprocess.Popen:
    """A process holding `home` (as a running `make run` does) until killed or `seconds`."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(home), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        env=make_run_env(home),
        cwd=ROOT,
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def make_run_command(*args: str) -> list[str]:
    """`make run` as the Makefile calls it."""
    return [sys.executable, "-m", "devtools.run_pipeline", *args]


def _make_run(home: Path, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        make_run_command(*args),
        capture_output=True,
        text=True,
        env=make_run_env(home),
        cwd=ROOT,
        timeout=timeout,
    )


def _stop(holder: subprocess.Popen) -> None:
    if holder.poll() is None:
        holder.kill()
    holder.wait(timeout=10)


def test_a_second_make_run_on_a_held_home_is_refused_at_once_saying_by_whom(tmp_path):
    home = tmp_path / "home"
    holder = _hold(home)
    try:
        started = time.monotonic()
        second = _make_run(home, "--rows", "500")
        seconds = time.monotonic() - started
    finally:
        _stop(holder)
    assert second.returncode == rp.BUSY_EXIT, (second.stdout, second.stderr)
    message = second.stderr
    assert f"ML_PIPELINE_HOME={home} is in use by process {holder.pid}" in message
    assert "`make run (the first one)`, started 20" in message
    assert f"kill {holder.pid}" in message
    assert "make run WAIT=600" in message
    assert "make run LOCAL=/other/folder API_PORT=8001" in message
    assert seconds < 30, seconds  # before Airflow's database is touched
    # It did nothing in the home: no sample data, no metadata database, no run summary.
    assert not list(home.rglob("*.csv")), list(home.rglob("*.csv"))
    assert not (home / "airflow" / "airflow.db").exists()
    assert not (home / "run_summary.json").exists()


def test_make_monitor_on_a_held_home_is_refused_too(tmp_path):
    """`make monitor` runs both DAGs on the same home: it takes the same lock."""
    home = tmp_path / "home"
    holder = _hold(home)
    try:
        monitor = subprocess.run(
            [sys.executable, "-m", "devtools.monitor", "--no-retrain"],
            capture_output=True,
            text=True,
            env=make_run_env(home),
            cwd=ROOT,
            timeout=120,
        )
    finally:
        _stop(holder)
    assert monitor.returncode == rp.BUSY_EXIT, (monitor.stdout, monitor.stderr)
    assert f"is in use by process {holder.pid}" in monitor.stderr
    assert "python -m devtools.monitor --wait 600" in monitor.stderr
    assert not (home / "airflow" / "airflow.db").exists()


def test_a_killed_holder_leaves_the_home_free(tmp_path):
    home = tmp_path / "home"
    holder = _hold(home)
    with pytest.raises(rp.HomeBusy, match=f"in use by process {holder.pid}"), rp.home_lock(home):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    with rp.home_lock(home, command="after the kill") as lock:  # no stale lock to clear
        rp.note_lock(lock, log="/some/run.log")
        holder = rp._holder(lock)
        assert (holder["pid"], holder["command"], holder["log"]) == (
            os.getpid(),
            "after the kill",
            "/some/run.log",
        )
    assert lock.read_text() == ""  # released: it names no one


def test_a_process_the_run_leaves_running_does_not_keep_the_home(tmp_path):
    """`make run` leaves the model API running: a child started while the lock was held
    must not inherit it (even one started with close_fds=False), or the next `make run`
    would be refused for as long as the API lives."""
    home = tmp_path / "home"
    with rp.home_lock(home):
        child = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"],
            start_new_session=True,
            close_fds=False,
        )
    try:
        with rp.home_lock(home):
            assert child.poll() is None  # still running, and the home is free
    finally:
        child.kill()
        child.wait(timeout=10)


def test_with_wait_the_second_run_starts_when_the_first_ends(tmp_path):
    home = tmp_path / "home"
    holder = _hold(home, seconds=4.0)
    started = time.monotonic()
    # The file does not exist: a run that got the home fails on it at once (exit 1, not 75).
    second = _make_run(home, "--wait", "60", "--data", str(tmp_path / "no_such.csv"))
    seconds = time.monotonic() - started
    holder.wait(timeout=10)
    assert "Waiting up to 60 s for process" in second.stdout
    assert second.returncode == 1, (second.stdout, second.stderr)
    assert "no such file" in second.stderr
    assert seconds >= 3.0, seconds  # it waited for the holder


def test_with_wait_too_short_it_is_refused_saying_how_long_it_waited(tmp_path):
    home = tmp_path / "home"
    holder = _hold(home)
    try:
        busy = pytest.raises(rp.HomeBusy, match=r"waited 1 s")
        with busy, rp.home_lock(home, wait=1.2, poll=0.1, note=lambda _: None):
            pass
    finally:
        _stop(holder)


@pytest.mark.parametrize("dag_id", ["ml_model_deployment_advanced", "ml_model_monitoring"])
def test_the_scheduler_runs_one_run_of_each_dag_at_a_time(airflow_db, dag_id):
    """`make run` is guarded by the lock; under a scheduler (Astro, `make ui`) the DAG's
    own `max_active_runs=1` keeps a second run queued until the first ends."""
    from include.ml_pipeline.orchestration.compat import dag_bag

    bag = dag_bag(str(DAGS / f"{dag_id}.py"))
    assert not bag.import_errors, bag.import_errors
    assert bag.dags[dag_id].max_active_runs == 1
