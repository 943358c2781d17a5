"""What both DAGs share: default task arguments, notification connection ids, and the
"fail at once" wrapper for errors that a retry cannot fix. Light: DAG files import it
at parse time (no pandas, mlflow or scikit-learn)."""

from __future__ import annotations

import functools
import os
from datetime import timedelta

SLACK_CONN_ID = "slack_notifications"
SMTP_CONN_ID = "smtp_notifications"


def default_args() -> dict:
    """retries >= 2 with a retry delay (`ML_PIPELINE_RETRY_DELAY_SECONDS`, default 120 s)."""
    return {
        "owner": "ml-platform",
        "retries": 2,
        "retry_delay": timedelta(
            seconds=int(os.environ.get("ML_PIPELINE_RETRY_DELAY_SECONDS", "120"))
        ),
    }


def fail_without_retry(*errors: type[BaseException]):
    """Decorate a task function so that `errors` (bad input or configuration: not
    transient) fail the task at once with their message, skipping the retries."""

    def decorate(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            from airflow.exceptions import AirflowFailException

            try:
                return func(*args, **kwargs)
            except errors as exc:
                raise AirflowFailException(str(exc)) from exc

        return wrapper

    return decorate
