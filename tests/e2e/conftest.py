"""Run the real DAG with `dag.test()` on small generated data."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from devtools import run_pipeline
from include.ml_pipeline.data_preparation.sample_data import write_dataset

_counter = itertools.count()


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
