"""Two whole `make run`s on one ML_PIPELINE_HOME at the same time, as real processes.

A first run holds the home; a second one started meanwhile is refused at once, saying
which process holds it; a third started with `--wait` queues behind the first and then
runs on what the first left (its champion). Nothing is corrupted: each run that ran
succeeded with its own task log and one model version, and the API serves the last
champion.
"""

from __future__ import annotations

import json
import subprocess
import time

from mlflow import MlflowClient

from devtools import run_pipeline as rp
from devtools.ports import free_port
from include.ml_pipeline.data_preparation.sample_data import write_dataset
from include.ml_pipeline.deployment import api_process
from tests.orchestration.test_run_pipeline_lock import ROOT, make_run_command, make_run_env

MODEL = "concurrent_runs_classifier"
FAST = json.dumps(
    [
        {"name": "logreg_c1", "estimator": "logistic_regression", "params": {"C": 1.0}},
    ]
)


def _holder_pid(home) -> int | None:
    return rp._holder(home / rp.LOCK_FILE).get("pid")


def test_two_make_runs_at_once_on_one_home(tmp_path):
    home = tmp_path / "home"
    data = write_dataset(tmp_path / "churn.csv", rows=1_500, seed=5)
    url = f"http://127.0.0.1:{free_port()}"
    env = make_run_env(home, MODEL_API_URL=url)
    args = [
        "--data",
        str(data),
        "--target",
        "churn",
        "--conf",
        f"candidates={FAST}",
        "--conf",
        f'model_name="{MODEL}"',
        "--conf-string",
        "latency_p95_budget_ms=500 tolerance=0.5",
    ]

    procs: list[subprocess.Popen] = []

    def start(*extra: str) -> subprocess.Popen:
        procs.append(
            subprocess.Popen(
                make_run_command(*args, *extra),
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        return procs[-1]

    try:
        first = start()
        deadline = time.monotonic() + 60
        while _holder_pid(home) != first.pid:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first run never held the home"
            time.sleep(0.1)
        refused = start()
        queued = start("--wait", "900")
        refused_out, refused_err = refused.communicate(timeout=120)
        assert first.poll() is None  # refused while the first one still ran
        first_out, first_err = first.communicate(timeout=900)
        queued_out, queued_err = queued.communicate(timeout=900)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        api_stopped = api_process.stop_api(home=home)

    assert refused.returncode == rp.BUSY_EXIT, (refused_out, refused_err)
    assert f"ML_PIPELINE_HOME={home} is in use by process {first.pid}" in refused_err
    assert "Running ml_model_deployment_advanced" not in refused_out

    assert first.returncode == 0, (first_out[-3000:], first_err[-3000:])
    assert "Waiting up to 900 s for process" in queued_out
    assert queued.returncode == 0, (queued_out[-3000:], queued_err[-3000:])

    # Nothing corrupted: two runs, two logs, two versions; the queued run saw the first
    # one's champion and replaced it; the API (left running by the runs) served it.
    assert len(list((home / "logs").glob("run-*.log"))) == 2
    summary = json.loads((home / "run_summary.json").read_text())
    assert summary["state"] == "success"
    assert str(summary["model"]["champion_before"]) == "1"
    assert str(summary["model"]["version"]) == str(summary["model"]["champion_after"]) == "2"
    assert summary["api"]["serves"] == "2"
    uri = summary["model"]["mlflow_tracking_uri"]
    versions = MlflowClient(tracking_uri=uri, registry_uri=uri).search_model_versions(
        f"name='{MODEL}'"
    )
    assert sorted(str(v.version) for v in versions) == ["1", "2"]
    assert api_stopped  # the runs' API was this home's
    assert (home / rp.LOCK_FILE).read_text() == ""  # released by the last run
