"""The shape of `ml_batch_scoring`: its tasks in order, the mapped part, the manifest that
runs whatever the parts did, the Dataset (Asset) it waits for and the one it updates, the
branch targets and the docs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAG_ID = "ml_batch_scoring"
TASKS = [
    "wait_for_input",
    "pin_champion",
    "check_input",
    "plan_parts",
    "score_part",
    "finalize_output",
    "compute_drift",
    "log_to_mlflow",
    "drift_detected",
    "notify_drift",
    "no_drift",
]


@pytest.fixture(scope="module")
def dag(airflow_db):
    from include.ml_pipeline.orchestration.compat import dag_bag

    bag = dag_bag(str(DAGS / f"{DAG_ID}.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[DAG_ID]


def test_the_tasks_run_in_order(dag):
    assert set(dag.task_ids) == set(TASKS)
    for before, after in [
        ("wait_for_input", "pin_champion"),
        ("pin_champion", "check_input"),
        ("check_input", "plan_parts"),
        ("plan_parts", "score_part"),
        ("score_part", "finalize_output"),
        ("finalize_output", "compute_drift"),
        ("compute_drift", "log_to_mlflow"),
        ("log_to_mlflow", "drift_detected"),
    ]:
        assert before in dag.get_task(after).upstream_task_ids, f"{before} -> {after}"
    assert dag.get_task("drift_detected").downstream_task_ids == {"notify_drift", "no_drift"}
    source = (DAGS / f"{DAG_ID}.py").read_text()
    for target in ("notify_drift", "no_drift"):
        assert f'"{target}"' in source  # the ids the branch returns


def test_parts_are_mapped_and_the_manifest_runs_whatever_they_did(dag):
    part = dag.get_task("score_part")
    assert type(part).__name__ in {"MappedOperator", "DecoratedMappedOperator"}
    finalize = dag.get_task("finalize_output")
    assert getattr(finalize.trigger_rule, "value", finalize.trigger_rule) == "all_done"
    sensor = dag.get_task("wait_for_input")
    assert sensor.mode == "reschedule"
    assert sensor.upstream_task_ids == set()  # the first task: it runs the service checks


def test_it_waits_for_the_batch_input_asset_and_updates_the_predictions_one(dag):
    from include.ml_pipeline.orchestration.assets import (
        BATCH_INPUT_URI,
        BATCH_PREDICTIONS_URI,
    )
    from include.ml_pipeline.orchestration.compat import serialize_dag

    serialized = json.dumps(serialize_dag(dag))
    assert BATCH_INPUT_URI in serialized
    outlets = [getattr(o, "uri", None) for o in dag.get_task("finalize_output").outlets]
    assert outlets == [BATCH_PREDICTIONS_URI]


def test_docs_cover_every_task_and_the_params(dag):
    for task_id in TASKS:
        assert f"`{task_id}`" in dag.doc_md
    for param in dag.params:
        if not param.startswith("drift_") and param not in ("slack_conn_id", "smtp_conn_id"):
            assert f"`{param}`" in dag.doc_md, param
    for task in dag.tasks:
        if task.task_id != "no_drift":
            doc = task.doc_md or task.doc or getattr(task, "python_callable", None).__doc__
            if doc is None:  # a mapped task keeps its docstring in its partial kwargs
                doc = task.partial_kwargs["python_callable"].__doc__
            assert doc, f"{task.task_id} has no docstring"
