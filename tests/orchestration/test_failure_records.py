"""Failure handling without an edge from every task: what a failed task records, and the
one failure notification built from those records."""

from __future__ import annotations

from include.ml_pipeline.notifications import events
from include.ml_pipeline.orchestration.callbacks import (
    MAX_ERROR_CHARS,
    record_failure,
    recorded_failures,
)
from include.ml_pipeline.payloads import Rollback, TaskFailure


class _TaskInstance:
    """The two XCom calls of a task instance, over a dict (as Airflow stores them)."""

    def __init__(self, task_id: str, store: dict, map_index: int = -1):
        self.task_id, self.map_index, self.store = task_id, map_index, store

    def xcom_push(self, key, value):
        self.store[(self.task_id, key)] = value

    def xcom_pull(self, task_ids, key):
        return [self.store[(t, key)] for t in task_ids if (t, key) in self.store]


def test_a_failed_task_records_its_error_and_the_notification_names_it():
    store: dict = {}
    record_failure(
        {
            "ti": _TaskInstance("preparacion_datos.validar_datos", store),
            "exception": ValueError("column 'age': 12 values above 120 (value_ranges)"),
        }
    )
    failures = recorded_failures(
        _TaskInstance("notificar_fallo", store),
        ["esperar_datos", "preparacion_datos.validar_datos"],
    )
    assert failures == [
        TaskFailure(
            "preparacion_datos.validar_datos",
            "ValueError: column 'age': 12 values above 120 (value_ranges)",
        )
    ]
    note = events.failed(
        failures, Rollback(True, "3", "API serves v3"), airflow_run_url=None, dag_id="d", run_id="r"
    )
    assert note.title == "d: run r failed at preparacion_datos.validar_datos"
    assert note.reasons == [
        "failed task: preparacion_datos.validar_datos: ValueError: column 'age': 12 values "
        "above 120 (value_ranges)",
        "rollback: API serves v3",
    ]
    assert note.error.startswith("ValueError")


def test_a_long_error_is_cut_and_a_broken_context_never_raises():
    store: dict = {}
    record_failure({"ti": _TaskInstance("t", store), "exception": RuntimeError("x" * 10_000)})
    (failure,) = recorded_failures(_TaskInstance("n", store), ["t"])
    assert len(failure.error) == MAX_ERROR_CHARS
    record_failure({})  # no task instance: logged, not raised
