"""Run the real DAG with `dag.test()` on small generated data.

One successful deployment run (`deployed_run`: `small_csv`, `FAST_CANDIDATES`) serves every
test that only reads a good run's results, so the suite pays for that pipeline once.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools import run_pipeline
from devtools.ports import free_port
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


def run_logged(pipeline_home: Path, conf: dict, dag_id: str = run_pipeline.DAG_ID) -> DagResult:
    """Run `dag_id` once with `conf`; its task logs go to a file of their own."""
    log_path = pipeline_home / "logs" / f"test-run-{next(_counter)}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    dag_run = run_pipeline.run_dag(conf, log_path, dag_id=dag_id)
    return DagResult(dag_run, run_pipeline.collect(dag_run), log_path.read_text())


@pytest.fixture
def run_dag(airflow_db, pipeline_home: Path):
    """Call with a conf dict; returns a `DagResult` (task logs are in `.log`)."""
    return lambda conf: run_logged(pipeline_home, conf)


@pytest.fixture
def run_monitoring(airflow_db, pipeline_home: Path):
    """`run_dag` for `ml_model_monitoring`: call with a conf dict, get a `DagResult`."""
    from include.ml_pipeline.names import MONITORING_DAG_ID

    return lambda conf: run_logged(pipeline_home, conf, MONITORING_DAG_ID)


@pytest.fixture(scope="session")
def small_csv(pipeline_home: Path) -> Path:
    return write_dataset(pipeline_home / "incoming" / "small.csv", rows=1_500, seed=11)


@contextlib.contextmanager
def model_api_url(url: str) -> Iterator[str]:
    """`MODEL_API_URL` (where the runs start and call the embedded API) set to `url`."""
    old = os.environ.get("MODEL_API_URL")
    os.environ["MODEL_API_URL"] = url
    try:
        yield url
    finally:
        if old is None:
            os.environ.pop("MODEL_API_URL", None)
        else:
            os.environ["MODEL_API_URL"] = old


@pytest.fixture(scope="module")
def api_url():
    """The embedded model API's URL for this module's runs (`MODEL_API_URL`, a free
    loopback port); the API the runs started is stopped after the module."""
    from include.ml_pipeline.deployment import api_process

    with model_api_url(f"http://127.0.0.1:{free_port()}") as url:
        yield url
        api_process.stop_api()


@dataclass(frozen=True)
class DeployedRun:
    """The session's good run: its result and the URL of the API it deployed to."""

    result: DagResult
    api_url: str


def deployment_conf(data: Path, **extra) -> dict:
    """A deployment run's conf on `data` with the two fast candidates."""
    return {
        "data_uri": str(data),
        "candidates": FAST_CANDIDATES,
        "latency_p95_budget_ms": 500.0,
        **extra,
    }


@pytest.fixture(scope="session")
def deployed_run(airflow_db, pipeline_home: Path, small_csv: Path) -> DeployedRun:
    """The first model of the session (`tabular_classifier`), trained on `small_csv` with
    the fast candidates, registered, deployed and served: one whole pipeline run for all
    the tests that only read its results. Its API serves at `api_url` until the module
    that uses it as its own (test_dag_full_pipeline.py) stops it."""
    with model_api_url(f"http://127.0.0.1:{free_port()}") as url:
        return DeployedRun(run_logged(pipeline_home, deployment_conf(small_csv)), url)
