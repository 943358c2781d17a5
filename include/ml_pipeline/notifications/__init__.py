"""Pipeline notifications as plain Python: the message (`Notification`), its routing to
alert channels (`routing`) and the local record (`record`: written first, read back by
`read_log`). Delivery through Airflow's connections and hooks (Slack, e-mail, Apprise,
Jira) is `orchestration/alerts.py`. Nothing here imports Airflow.
"""

from include.ml_pipeline.notifications.message import (
    EVENT_DEPLOYED,
    EVENT_DRIFT,
    EVENT_FAILED,
    EVENT_REJECTED,
    EVENT_RELEASE,
    EVENT_RETRAINING,
    EVENT_ROLLED_BACK,
    Notification,
)
from include.ml_pipeline.notifications.record import describe_outcomes, read_log

__all__ = [
    "EVENT_DEPLOYED",
    "EVENT_DRIFT",
    "EVENT_FAILED",
    "EVENT_REJECTED",
    "EVENT_RELEASE",
    "EVENT_RETRAINING",
    "EVENT_ROLLED_BACK",
    "Notification",
    "describe_outcomes",
    "read_log",
]
