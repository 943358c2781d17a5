"""What both DAGs share: the DAG settings, default task arguments and the "fail at once"
wrapper for errors that a retry cannot fix. Light: DAG files import it at parse time."""

from __future__ import annotations

import functools
import os
from datetime import timedelta


def dag_settings() -> dict:
    """`@dag(...)` arguments both DAGs use: start date, no catch-up, one run at a time,
    the default task arguments."""
    import pendulum

    return {
        "start_date": pendulum.datetime(2026, 1, 1, tz="UTC"),
        "catchup": False,
        "max_active_runs": 1,
        "default_args": default_args(),
    }


def default_args() -> dict:
    """retries >= 2, the delay doubling from `ML_PIPELINE_RETRY_DELAY_SECONDS` (default
    120 s, at most 20 min): a service outage is ridden out, a configuration error is not
    retried (`fail_without_retry`, the preflight). Every task starts with
    `preflight.prepare_task` (the service connections; at a DAG's first task, the checks);
    a task that fails for good records why (`callbacks.record_failure`)."""
    from include.ml_pipeline.orchestration.callbacks import record_failure
    from include.ml_pipeline.orchestration.preflight import prepare_task

    return {
        "owner": "ml-platform",
        "on_failure_callback": record_failure,
        "pre_execute": prepare_task,
        "retries": 2,
        "retry_delay": timedelta(
            seconds=int(os.environ.get("ML_PIPELINE_RETRY_DELAY_SECONDS", "120"))
        ),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=20),
    }


def fail_without_retry(*errors: type[BaseException]):
    """Decorate a function so that `errors` (bad input or configuration: not transient)
    fail the task at once with their message, skipping the retries."""

    def decorate(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            from include.ml_pipeline.orchestration.compat import AirflowFailException

            try:
                return func(*args, **kwargs)
            except errors as exc:
                raise AirflowFailException(str(exc)) from exc

        return wrapper

    return decorate
