"""Which alert URLs hear about a notification: routing by tag, decided here once.

One Apprise connection holds every URL a team uses (Teams Workflows, Discord, PagerDuty,
e-mail, ...), each with tags. A notification goes to the URLs tagged with its **event**
(`deployed`, `rejected`, `failed`, `rolled_back`, `drift`, `retraining`, `release`) or its
**severity** (`info`, `warning`, `error`; a release's severity is its verdict's), and to
those tagged `always` (Apprise's own catch-all tag). So `error=pagerduty://...` pages on
failures and failed releases only, while `info,warning,error=workflows://...` posts every
event to a Teams channel.

A Jira ticket is opened for the notifications whose severity is `error`.
"""

from __future__ import annotations

from include.ml_pipeline.notifications.message import Notification

SEVERITIES = ("info", "warning", "error")
#: Severity that opens a Jira ticket (when a Jira connection is set).
TICKET_SEVERITY = "error"


def alert_tags(notification: Notification) -> list[str]:
    """The tags whose URLs receive `notification` (any one of them suffices)."""
    return [notification.event, notification.severity]


def wants_ticket(notification: Notification) -> bool:
    """Whether `notification` should open a ticket: a failure, not a verdict to read."""
    return notification.severity == TICKET_SEVERITY
