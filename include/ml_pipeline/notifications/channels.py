"""Deliver a `Notification`: always to the local log, and to Slack / e-mail when configured.

* Local log: one JSON line per notification appended to `notifications_log` (from the
  settings unless given), including what happened on every other channel. This is the
  record `make run` prints; a failure to write it raises.
* Slack: `SlackWebhookHook` on an *incoming-webhook* connection (conn_type
  `slackwebhook`; webhook token, or the full webhook URL, in the password; optional host
  such as `https://hooks.slack.com/services`).
* E-mail: `SmtpHook` on an SMTP connection (host, port, login/password, extras
  `from_email`, `disable_tls`, `disable_ssl`, `timeout`, `retry_limit`).

A channel whose connection id is not given, or whose connection is not defined, is
`skipped`; one that raises is `failed` with the reason. Neither ever raises, so a Slack
outage cannot fail a deployment. Airflow is imported lazily, inside the functions.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from include.ml_pipeline.notifications.message import EVENT_FAILED, Notification

log = logging.getLogger(__name__)

SENT = "sent"
SKIPPED = "skipped"
FAILED = "failed"
DEFAULT_FROM_EMAIL = "ml-pipeline@localhost"
DEFAULT_TIMEOUT_SECONDS = 10


def outcome(status: str, detail: str = "") -> dict[str, str]:
    return {"status": status, "detail": detail}


def send_notification(
    notification: Notification,
    *,
    slack_conn_id: str | None = None,
    smtp_conn_id: str | None = None,
    email_to: str | Iterable[str] | None = None,
    log_path: str | Path | None = None,
    from_email: str | None = None,
    timeout: int = DEFAULT_TIMEOUT_SECONDS,
) -> dict[str, dict[str, str]]:
    """Send `notification` on every configured channel; return each channel's outcome.

    The result maps `slack`, `email` and `log` to `{"status": "sent" | "skipped" |
    "failed", "detail": ...}` (the detail of `log` is the log file's path). Slack and
    e-mail never raise; the local log write may.
    """
    outcomes = {
        "slack": _send_slack(notification, slack_conn_id, timeout),
        "email": _send_email(notification, smtp_conn_id, email_to, from_email),
    }
    path = Path(log_path) if log_path else _default_log_path()
    append_log_line(path, {**notification.to_dict(), "channels": outcomes})
    outcomes["log"] = outcome(SENT, str(path))
    for channel, result in outcomes.items():
        log.info("notification %s via %s: %s %s", notification.event, channel, *result.values())
    return outcomes


def describe_outcomes(outcomes: dict[str, dict[str, str]]) -> str:
    """One line for humans: `log: sent (/path); slack: skipped (not configured); ...`."""
    parts = []
    for channel, result in outcomes.items():
        detail = f" ({result['detail']})" if result.get("detail") else ""
        parts.append(f"{channel}: {result['status']}{detail}")
    return "; ".join(parts)


def append_log_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line; concurrent writers are serialised with an advisory lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, default=str, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        with contextlib.suppress(ImportError):
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
    finally:
        os.close(fd)  # closing releases the lock


def read_log(path: str | Path | None = None) -> list[dict[str, Any]]:
    """All notifications in the local log, oldest first (empty when there is no log)."""
    path = Path(path) if path else _default_log_path()
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


# --------------------------------------------------------------------------- channels


def _send_slack(notification: Notification, conn_id: str | None, timeout: int) -> dict:
    if not conn_id:
        return outcome(SKIPPED, "not configured")
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
    conn_id: str | None,
    email_to: str | Iterable[str] | None,
    from_email: str | None,
) -> dict:
    if not conn_id:
        return outcome(SKIPPED, "not configured")
    recipients = _recipients(email_to)
    if not recipients:
        return outcome(SKIPPED, "no recipients")
    connection, problem = _get_connection(conn_id)
    if connection is None:
        return outcome(SKIPPED, problem)
    try:
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        with SmtpHook(smtp_conn_id=conn_id) as hook:
            hook.send_email_smtp(
                to=recipients,
                subject=notification.subject,
                html_content=notification.to_html(),
                from_email=from_email or hook.from_email or DEFAULT_FROM_EMAIL,
                custom_headers={"X-ML-Pipeline-Event": notification.event},
            )
    except Exception as exc:  # any failure is an outcome, never an exception
        return outcome(FAILED, _reason(exc, connection))
    return outcome(SENT, f"connection {conn_id} to {', '.join(recipients)}")


def _get_connection(conn_id: str) -> tuple[Any | None, str]:
    """(connection, "") or (None, why it is unavailable)."""
    try:
        from airflow.exceptions import AirflowNotFoundException
        from airflow.hooks.base import BaseHook
    except Exception as exc:
        return None, f"Airflow is not importable: {exc}"
    try:
        return BaseHook.get_connection(conn_id), ""
    except AirflowNotFoundException:
        return None, f"connection {conn_id!r} is not defined"
    except Exception as exc:
        return None, f"connection {conn_id!r} could not be read: {type(exc).__name__}"


def _recipients(email_to: str | Iterable[str] | None) -> list[str]:
    if not email_to:
        return []
    items = email_to.replace(";", ",").split(",") if isinstance(email_to, str) else email_to
    return [address.strip() for address in items if address and address.strip()]


def _reason(exc: BaseException, connection: Any) -> str:
    """`Type: message` of what went wrong first, with the connection's secret (e.g. the
    webhook token) masked. A network error that a hook's own clean-up then hid (the SMTP
    provider 3.x closes a client it never opened) is the one reported."""
    first = exc
    while not isinstance(first, OSError) and first.__context__ is not None:
        first = first.__context__
    if not isinstance(first, OSError):
        first = exc
    text = f"{type(first).__name__}: {first}".strip()
    if first is not exc:
        text += f" (then {type(exc).__name__} while closing: {exc})"
    secret = getattr(connection, "password", None)
    if secret:
        text = text.replace(secret, "***")
    return text[:500]


def _default_log_path() -> Path:
    from include.ml_pipeline.config import get_settings

    return get_settings().notifications_log


# --------------------------------------------------------------------------- Airflow glue


def airflow_run_url(dag_id: str, run_id: str, base_url: str | None = None) -> str | None:
    """The Airflow UI page of a DAG run (grid view), from `[webserver] base_url`."""
    if base_url is None:
        try:
            from airflow.configuration import conf

            base_url = conf.get("webserver", "base_url", fallback=None)
        except Exception:
            base_url = None
    if not base_url:
        return None
    return (
        f"{base_url.rstrip('/')}/dags/{quote(dag_id, safe='')}/grid"
        f"?dag_run_id={quote(run_id, safe='')}"
    )


def notification_from_context(
    context: dict[str, Any],
    *,
    event: str = EVENT_FAILED,
    title: str | None = None,
    model_name: str | None = None,
    version: str | int | None = None,
    metrics: dict[str, float] | None = None,
    mlflow_run_url: str | None = None,
    api_url: str | None = None,
) -> Notification:
    """Build a notification from an Airflow task/DAG callback context."""
    ti = context.get("task_instance") or context.get("ti")
    dag_run = context.get("dag_run")
    dag = context.get("dag")
    dag_id = (
        getattr(ti, "dag_id", None)
        or getattr(dag, "dag_id", None)
        or getattr(dag_run, "dag_id", None)
    )
    run_id = (
        context.get("run_id") or getattr(dag_run, "run_id", None) or getattr(ti, "run_id", None)
    )
    task_id = getattr(ti, "task_id", None)
    exception = context.get("exception")
    reason = context.get("reason")  # DAG-level callbacks: e.g. "task_failure"
    error = f"{type(exception).__name__}: {exception}" if exception else None
    log_url = None
    with contextlib.suppress(Exception):
        log_url = getattr(ti, "log_url", None)
    reasons = [f"DAG run failed: {reason}"] if reason else []
    if task_id and not exception and not reason:
        reasons.append(f"task {task_id} failed")
    return Notification(
        event=event,
        title=title or f"{dag_id or 'DAG'} run failed" + (f" at {task_id}" if task_id else ""),
        model_name=model_name,
        version=version,
        metrics=dict(metrics or {}),
        reasons=reasons,
        mlflow_run_url=mlflow_run_url,
        airflow_run_url=airflow_run_url(dag_id, run_id) if dag_id and run_id else None,
        api_url=api_url,
        dag_id=dag_id,
        run_id=run_id,
        task_id=task_id,
        error=error,
        log_url=log_url,
    )


def notify_failure_from_context(
    context: dict[str, Any],
    *,
    slack_conn_id: str | None = None,
    smtp_conn_id: str | None = None,
    email_to: str | Iterable[str] | None = None,
    log_path: str | Path | None = None,
    model_name: str | None = None,
    api_url: str | None = None,
    timeout: int = DEFAULT_TIMEOUT_SECONDS,
) -> dict[str, dict[str, str]]:
    """Failure callback body: notify about the failed task/DAG run in `context`.

    It never raises (a callback that raises only adds noise to the scheduler log): if
    even the local log cannot be written, the outcome says so.
    """
    try:
        notification = notification_from_context(context, model_name=model_name, api_url=api_url)
        return send_notification(
            notification,
            slack_conn_id=slack_conn_id,
            smtp_conn_id=smtp_conn_id,
            email_to=email_to,
            log_path=log_path,
            timeout=timeout,
        )
    except Exception as exc:
        log.exception("failure notification could not be sent")
        return {"log": outcome(FAILED, f"{type(exc).__name__}: {exc}")}


def build_failure_callback(**kwargs: Any) -> Callable[[dict[str, Any]], None]:
    """`on_failure_callback=build_failure_callback(slack_conn_id="slack_alerts", ...)`.

    Keyword arguments are those of `notify_failure_from_context`.
    """

    def notify_failure(context: dict[str, Any]) -> None:
        notify_failure_from_context(context, **kwargs)

    return notify_failure
