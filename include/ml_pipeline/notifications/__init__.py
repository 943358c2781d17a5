"""Pipeline notifications: the message (`Notification`) and its delivery (`send_notification`).

Importing this package does not import Airflow; the channels import it when they send.
"""

from include.ml_pipeline.notifications.channels import (
    airflow_run_url,
    build_failure_callback,
    describe_outcomes,
    notification_from_context,
    notify_failure_from_context,
    read_log,
    send_notification,
)
from include.ml_pipeline.notifications.message import (
    EVENT_DEPLOYED,
    EVENT_DRIFT,
    EVENT_FAILED,
    EVENT_REJECTED,
    EVENT_RETRAINING,
    EVENT_ROLLED_BACK,
    Notification,
)

__all__ = [
    "EVENT_DEPLOYED",
    "EVENT_DRIFT",
    "EVENT_FAILED",
    "EVENT_REJECTED",
    "EVENT_RETRAINING",
    "EVENT_ROLLED_BACK",
    "Notification",
    "airflow_run_url",
    "build_failure_callback",
    "describe_outcomes",
    "notification_from_context",
    "notify_failure_from_context",
    "read_log",
    "send_notification",
]
