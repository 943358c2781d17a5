"""Deliver a `Notification` through Airflow's connections and hooks.

The local record first (`notifications.record`: one JSON object under `notifications_uri`,
written before any channel is tried and rewritten with their outcomes), then each channel
whose connection id is given and defined:

* Slack: `SlackWebhookHook` on an incoming-webhook connection (conn_type `slackwebhook`;
  the webhook token, or the full webhook URL, in the password).
* E-mail: `SmtpHook` on an SMTP connection (host, port, login/password, extras
  `from_email`, `disable_tls`, `disable_ssl`, `timeout`, `retry_limit`).
* Apprise: one connection (conn_type `apprise`) whose extra `config` lists Apprise URLs
  with tags (`[{"path": "workflows://...", "tag": "info,warning,error"}, ...]`), read by
  the provider's `AppriseHook`: Microsoft Teams Workflows (an Adaptive Card), Discord,
  PagerDuty, e-mail and every other service Apprise speaks. A notification goes to the
  URLs tagged with its event or severity (`notifications.routing`). The hook's own
  `notify` drops Apprise's result (a dead endpoint is only a warning in the log), so each
  matching URL is sent here and its result checked.
* Jira: a ticket for each `error` notification (`JiraHook` on a `jira` connection: host,
  login, password or API token; extra `project` = the project key, optional
  `issue_type`, default `Bug`).

A channel whose connection id is not given, or whose connection is not defined, is
`skipped`; one that fails is `failed` with the reason (secrets masked). `send_notification`
never raises for a channel; `deliver` (the notify tasks) then fails the task, without
retries that would repeat the channels that worked, naming every failed channel and the
record, so a dead endpoint is an error the run shows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from include.ml_pipeline import storage
from include.ml_pipeline.notifications.message import EVENT_DEPLOYED, Notification
from include.ml_pipeline.notifications.record import (
    FAILED,
    PENDING,
    SENT,
    SKIPPED,
    describe_outcomes,
    failed_channels,
    outcome,
    recipients,
    record_uri,
)
from include.ml_pipeline.notifications.routing import alert_tags, wants_ticket
from include.ml_pipeline.payloads import Notified

if TYPE_CHECKING:  # pragma: no cover
    import os

log = logging.getLogger(__name__)

DEFAULT_FROM_EMAIL = "ml-pipeline@localhost"
DEFAULT_TIMEOUT_SECONDS = 10
DEFAULT_JIRA_ISSUE_TYPE = "Bug"


class NotificationDeliveryError(RuntimeError):
    """A configured channel did not take the notification (the record says which)."""


def send_notification(
    notification: Notification,
    *,
    slack_conn_id: str | None = None,
    smtp_conn_id: str | None = None,
    email_to: str | Iterable[str] | None = None,
    apprise_conn_id: str | None = None,
    jira_conn_id: str | None = None,
    log_uri: str | os.PathLike | None = None,
    from_email: str | None = None,
    timeout: int = DEFAULT_TIMEOUT_SECONDS,
) -> dict[str, dict[str, str]]:
    """Record `notification`, send it on every configured channel; each channel's outcome.

    The result maps `slack`, `email`, `apprise`, `jira` and `log` to `{"status": "sent" |
    "skipped" | "failed", "detail": ...}` (the detail of `log` is the URI of the record
    under `log_uri`, default the settings' `notifications_uri`). The record is written
    before any channel is tried (a failure to write it raises, and nothing is sent), then
    rewritten with the outcomes. No channel ever raises.
    """
    configured = {
        "slack": slack_conn_id,
        "email": smtp_conn_id,
        "apprise": apprise_conn_id,
        "jira": jira_conn_id,
    }
    outcomes = {
        name: outcome(PENDING) if conn_id else outcome(SKIPPED, "not configured")
        for name, conn_id in configured.items()
    }
    record = {**notification.to_dict(), "channels": outcomes}
    uri = storage.write_json(record_uri(record, log_uri), record)

    if slack_conn_id:
        outcomes["slack"] = _send_slack(notification, slack_conn_id, timeout)
    if smtp_conn_id:
        outcomes["email"] = _send_email(notification, smtp_conn_id, email_to, from_email)
    if apprise_conn_id:
        outcomes["apprise"] = _send_apprise(notification, apprise_conn_id)
    if jira_conn_id:
        outcomes["jira"] = _open_ticket(notification, jira_conn_id)
    outcomes["log"] = outcome(SENT, uri)
    storage.write_json(uri, {**notification.to_dict(), "channels": outcomes})
    for channel, result in outcomes.items():
        level = logging.ERROR if result["status"] == FAILED else logging.INFO
        log.log(
            level, "notification %s via %s: %s %s", notification.event, channel, *result.values()
        )
    return outcomes


def deliver(notification: Notification, params: Mapping[str, Any]) -> dict:
    """A notify task's delivery: `send_notification` on the channels of the DAG's Params;
    the `Notified` payload. A channel that failed fails the task at once (no retry, which
    would repeat the channels that worked), after every channel was tried and recorded."""
    outcomes = send_notification(
        notification,
        slack_conn_id=params.get("slack_conn_id"),
        smtp_conn_id=params.get("smtp_conn_id"),
        email_to=params.get("email_to") or None,
        apprise_conn_id=params.get("apprise_conn_id"),
        jira_conn_id=params.get("jira_conn_id"),
    )
    log.info("notification: %s", describe_outcomes(outcomes))
    failed = failed_channels(outcomes)
    if failed:
        from include.ml_pipeline.orchestration.compat import AirflowFailException

        reasons = "; ".join(f"{channel}: {why}" for channel, why in failed.items())
        error = NotificationDeliveryError(
            f"notification {notification.event!r} was not delivered on {len(failed)} "
            f"channel(s): {reasons}. It is recorded in {outcomes['log']['detail']} with "
            "every channel's outcome; fix the connection (or its endpoint) and re-run this task"
        )
        raise AirflowFailException(str(error)) from error
    return Notified(event=notification.event, title=notification.title, outcomes=outcomes).to_dict()


def airflow_run_url(dag_id: str, run_id: str, base_url: str | None = None) -> str | None:
    """The Airflow UI page of a DAG run, from the configured base URL (`[api] base_url` on
    Airflow 3: `/dags/<dag>/runs/<run>`; `[webserver] base_url` on 2.11: the grid view)."""
    from include.ml_pipeline.orchestration.compat import AIRFLOW_3

    if base_url is None:
        from airflow.configuration import conf

        base_url = conf.get("api" if AIRFLOW_3 else "webserver", "base_url", fallback=None)
    if not base_url:
        return None
    base = base_url.rstrip("/")
    if AIRFLOW_3:
        return f"{base}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"
    return f"{base}/dags/{quote(dag_id, safe='')}/grid?dag_run_id={quote(run_id, safe='')}"


# --------------------------------------------------------------------------- channels


def _send_slack(notification: Notification, conn_id: str, timeout: int) -> dict[str, str]:
    connection, problem = _get_connection(conn_id)
    if connection is None:
        return outcome(SKIPPED, problem)
    try:
        from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

        hook = SlackWebhookHook(slack_webhook_conn_id=conn_id, timeout=timeout)
        hook.send_dict(notification.to_slack_payload())
    except Exception as exc:  # any failure is an outcome, never an exception
        return outcome(FAILED, _reason(exc, connection))
    return outcome(SENT, f"connection {conn_id}")


def _send_email(
    notification: Notification,
    conn_id: str,
    email_to: str | Iterable[str] | None,
    from_email: str | None,
) -> dict[str, str]:
    to = recipients(email_to)
    if not to:
        return outcome(SKIPPED, "no recipients")
    connection, problem = _get_connection(conn_id)
    if connection is None:
        return outcome(SKIPPED, problem)
    try:
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        with SmtpHook(smtp_conn_id=conn_id) as hook:
            hook.send_email_smtp(
                to=to,
                subject=notification.subject,
                html_content=notification.to_html(),
                from_email=from_email or hook.from_email or DEFAULT_FROM_EMAIL,
                custom_headers={"X-ML-Pipeline-Event": notification.event},
            )
    except Exception as exc:  # any failure is an outcome, never an exception
        return outcome(FAILED, _reason(exc, connection))
    return outcome(SENT, f"connection {conn_id} to {', '.join(to)}")


def _notify_type(notification: Notification) -> str:
    """Apprise's message type (its colour and icon): a deployment is a `success`, else
    `info` / `warning` / `failure` by severity."""
    if notification.event == EVENT_DEPLOYED:
        return "success"
    return {"info": "info", "warning": "warning", "error": "failure"}[notification.severity]


def _send_apprise(notification: Notification, conn_id: str) -> dict[str, str]:
    """Each URL of the connection tagged with the notification's event or severity (or
    `always`), sent one by one so that each one's result is known; failed when any did
    not take it, naming it (its URL with the secrets hidden) and Apprise's reason."""
    connection, problem = _get_connection(conn_id)
    if connection is None:
        return outcome(SKIPPED, problem)
    try:
        import apprise
        from airflow.providers.apprise.hooks.apprise import AppriseHook

        every = apprise.Apprise()
        AppriseHook(apprise_conn_id=conn_id).set_config_from_conn(connection, every)
    except Exception as exc:
        return outcome(
            FAILED,
            f"connection {conn_id!r}: its extra `config` must be an Apprise URL with tags, or "
            f'a list of them ([{{"path": "<url>", "tag": "<tags>"}}]): {_reason(exc, connection)}',
        )
    if not len(every):
        return outcome(FAILED, f"connection {conn_id!r}: no Apprise URL in its extra `config`")
    tags = alert_tags(notification)
    servers = list(every.find(tag=tags))
    if not servers:
        return outcome(SKIPPED, f"no URL of connection {conn_id} is tagged {', '.join(tags)}")
    sent, failed = [], []
    for server in servers:
        name = server.url(privacy=True)
        single = apprise.Apprise()
        single.add(server)
        with apprise.LogCapture(level=apprise.logging.WARNING) as captured:
            ok = single.notify(
                title=notification.subject,
                body=notification.to_markdown(alert=True),
                body_format=apprise.NotifyFormat.MARKDOWN,
                notify_type=apprise.NotifyType(_notify_type(notification)),
            )
        if ok:
            sent.append(name)
        else:
            why = " ".join(captured.getvalue().split())[-300:] or "Apprise reported a failure"
            failed.append(f"{name}: {why.replace(server.url(), name)}")
    tagged = f"tagged {', '.join(tags)}"
    if failed:
        text = f"{len(failed)} of {len(servers)} URLs {tagged} failed: " + " | ".join(failed)
        return outcome(FAILED, _mask(text[:1000], connection))
    return outcome(SENT, f"connection {conn_id}: {len(sent)} URL(s) {tagged}: {', '.join(sent)}")


def _open_ticket(notification: Notification, conn_id: str) -> dict[str, str]:
    """A Jira issue for an `error` notification (summary = the subject, description =
    the plain text, labels `ml-pipeline` and the event); other events are skipped."""
    if not wants_ticket(notification):
        return outcome(SKIPPED, f"no ticket for a {notification.severity} notification")
    connection, problem = _get_connection(conn_id)
    if connection is None:
        return outcome(SKIPPED, problem)
    extra = connection.extra_dejson or {}
    project = extra.get("project")
    if not project:
        return outcome(
            FAILED,
            f"connection {conn_id!r} has no project: set its extra "
            '{"project": "<project key>", "issue_type": "Bug"}',
        )
    fields = {
        "project": {"key": project},
        "issuetype": {"name": extra.get("issue_type") or DEFAULT_JIRA_ISSUE_TYPE},
        "summary": notification.subject[:250],
        "description": notification.to_text(),
        "labels": ["ml-pipeline", notification.event],
    }
    try:
        from airflow.providers.atlassian.jira.hooks.jira import JiraHook

        created = JiraHook(jira_conn_id=conn_id).get_conn().create_issue(fields=fields)
    except Exception as exc:  # any failure is an outcome, never an exception
        return outcome(FAILED, _reason(exc, connection))
    key = (created or {}).get("key") if isinstance(created, dict) else None
    if not key:
        return outcome(FAILED, f"Jira answered without an issue key: {json.dumps(created)[:200]}")
    return outcome(SENT, f"connection {conn_id}: issue {key}")


def _get_connection(conn_id: str) -> tuple[Any | None, str]:
    """(connection, "") or (None, why it is unavailable)."""
    from include.ml_pipeline.orchestration.compat import AirflowNotFoundException, BaseHook

    try:
        return BaseHook.get_connection(conn_id), ""
    except AirflowNotFoundException:
        return None, f"connection {conn_id!r} is not defined"
    except Exception as exc:
        return None, f"connection {conn_id!r} could not be read: {type(exc).__name__}"


def _reason(exc: BaseException, connection: Any) -> str:
    """`Type: message` of what went wrong first, with the connection's secrets masked. A
    network error that a hook's own clean-up then hid (the SMTP provider 3.x closes a
    client it never opened) is the one reported."""
    first = exc
    while not isinstance(first, OSError) and first.__context__ is not None:
        first = first.__context__
    if not isinstance(first, OSError):
        first = exc
    text = f"{type(first).__name__}: {first}".strip()
    if first is not exc:
        text += f" (then {type(exc).__name__} while closing: {exc})"
    return _mask(text, connection)[:500]


def _mask(text: str, connection: Any) -> str:
    """`text` with the connection's password replaced by `***`."""
    secret = getattr(connection, "password", None)
    return text.replace(secret, "***") if secret else text
