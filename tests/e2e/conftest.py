"""Run the real DAG with `dag.test()` on small generated data."""

from __future__ import annotations

import itertools
import os
import socket
from pathlib import Path

import pytest

from devtools import run_pipeline
from include.ml_pipeline.data_preparation.sample_data import write_dataset

_counter = itertools.count()

#: Two quick candidates (a few seconds each on small data).
FAST_CANDIDATES = [
    {"name": "logreg_c1", "estimator": "logistic_regression", "params": {"C": 1.0}},
    {
        "name": "hgb_small",
        "estimator": "hist_gradient_boosting",
        "params": {"max_iter": 60, "max_depth": 3},
    },
]


class DagResult:
    def __init__(self, dag_run, tasks: dict, log: str):
        self.dag_run = dag_run
        self.tasks = tasks
        self.log = log

    @property
    def state(self) -> str:
        return str(self.dag_run.state)

    def task_state(self, task_id: str) -> str:
        return self.tasks[task_id]["state"]

    def result(self, task_id: str):
        return self.tasks[task_id]["result"]


@pytest.fixture
def run_dag(airflow_db, pipeline_home: Path):
    """Call with a conf dict; returns a `DagResult` (task logs are in `.log`)."""

    def _run(conf: dict) -> DagResult:
        log_path = pipeline_home / "logs" / f"test-run-{next(_counter)}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        dag_run = run_pipeline.run_dag(conf, log_path)
        return DagResult(dag_run, run_pipeline.collect(dag_run), log_path.read_text())

    return _run


@pytest.fixture(scope="session")
def small_csv(pipeline_home: Path) -> Path:
    return write_dataset(pipeline_home / "incoming" / "small.csv", rows=1_500, seed=11)


@pytest.fixture(scope="module")
def api_url():
    """The embedded model API's URL for this module's runs (`MODEL_API_URL`, a free
    loopback port); the API the runs started is stopped after the module."""
    from include.ml_pipeline.deployment import api_process

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    old = os.environ.get("MODEL_API_URL")
    os.environ["MODEL_API_URL"] = url
    yield url
    api_process.stop_api()
    if old is None:
        os.environ.pop("MODEL_API_URL", None)
    else:
        os.environ["MODEL_API_URL"] = old
