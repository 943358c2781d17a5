"""Failure handling without an edge from every task: each task's failure callback records
what broke (task and error message) as an XCom, and the one `notificar_fallo` task reads
those records and tells people once."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from include.ml_pipeline.names import FAILURE_XCOM_KEY
from include.ml_pipeline.payloads import TaskFailure

log = logging.getLogger(__name__)
#: Longest error message kept in the record (the task log has the whole traceback).
MAX_ERROR_CHARS = 2000


def record_failure(context: dict[str, Any]) -> None:
    """`on_failure_callback` of every task: push a `TaskFailure` under key `failure`.
    Runs after the last try only (retries call `on_retry_callback`). Never raises."""
    try:
        ti = context["ti"]
        exception = context.get("exception")
        # fail_without_retry wraps the real error (a DataValidationError, ...): name that
        while exception is not None and type(exception).__name__ == "AirflowFailException":
            if exception.__cause__ is None:
                break
            exception = exception.__cause__
        error = f"{type(exception).__name__}: {exception}" if exception else "failed"
        failure = TaskFailure(
            task_id=ti.task_id,
            error=error[:MAX_ERROR_CHARS],
            map_index=getattr(ti, "map_index", -1),
        )
        ti.xcom_push(key=FAILURE_XCOM_KEY, value=failure.to_dict())
    except Exception:  # a callback that raises only adds noise to the logs
        log.exception("could not record the failure")


def recorded_failures(ti: Any, task_ids: Iterable[str]) -> list[TaskFailure]:
    """The failures that tasks of this run recorded, in the DAG's task order."""
    values = ti.xcom_pull(task_ids=list(task_ids), key=FAILURE_XCOM_KEY) or []
    return [TaskFailure.from_dict(v) for v in values if v]
