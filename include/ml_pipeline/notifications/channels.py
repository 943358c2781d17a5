"""Deliver a `Notification`: always to the notification record, and to Slack / e-mail when
configured.

* Record (`log`): one JSON object per notification under `notifications_uri` (from the
  settings unless given: `<storage_uri>/notifications/`, a local folder or a bucket
  prefix), including what happened on every other channel. Objects cannot be appended to
  on S3, so there is no shared log file: each notification is its own object, named
  `<UTC time>-<event>-<random>.json` so that listing the prefix gives them in order
  (`read_log`). This is the record `make run` prints; a failure to write it raises.
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
import re
import secrets
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from include.ml_pipeline import storage
from include.ml_pipeline.notifications.message import EVENT_FAILED, Notification

if TYPE_CHECKING:  # pragma: no cover
    import os

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
    log_uri: str | os.PathLike | None = None,
    from_email: str | None = None,
    timeout: int = DEFAULT_TIMEOUT_SECONDS,
) -> dict[str, dict[str, str]]:
    """Send `notification` on every configured channel; return each channel's outcome.

    The result maps `slack`, `email` and `log` to `{"status": "sent" | "skipped" |
    "failed", "detail": ...}` (the detail of `log` is the URI of the notification's
    object under `log_uri`, default the settings' `notifications_uri`). Slack and e-mail
    never raise; writing the record may.
    """
    outcomes = {
        "slack": _send_slack(notification, slack_conn_id, timeout),
        "email": _send_email(notification, smtp_conn_id, email_to, from_email),
    }
    written = write_record(
        {**notification.to_dict(), "channels": outcomes}, log_uri or _default_log_uri()
    )
    outcomes["log"] = outcome(SENT, written)
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


def record_name(record: dict[str, Any], now: datetime | None = None) -> str:
    """`<UTC time to the microsecond>-<event>-<8 random hex>.json`: names that sort in the
    order they were written, and never collide between workers."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    event = re.sub(r"[^A-Za-z0-9_]+", "_", str(record.get("event") or "note"))[:40]
    return f"{stamp}-{event}-{secrets.token_hex(4)}.json"


def write_record(record: dict[str, Any], base_uri: str | os.PathLike) -> str:
    """Write one notification record as its own JSON object under `base_uri`; return
    the object's URI. A local `base_uri` that is a file, not a folder, raises."""
    local = storage.local_path(base_uri)
    if local is not None and local.is_file():
        raise NotADirectoryError(
            f"{storage.as_uri(base_uri)} is a file; the notifications location must be a "
            "folder or bucket prefix (set ML_PIPELINE_NOTIFICATIONS to one)"
        )
    return storage.write_json(storage.join(base_uri, record_name(record)), record)


def read_log(
    base_uri: str | os.PathLike | None = None, *, limit: int | None = None
) -> list[dict[str, Any]]:
    """The notifications under `base_uri` (default: the settings' `notifications_uri`),
    oldest first; only the `limit` most recent when given. Empty when there are none.
    One listing, then the objects fetched in one batch (concurrent GETs on S3)."""
    uris = storage.list_files(base_uri or _default_log_uri(), suffix=".json")
    if limit is not None:
        uris = uris[-limit:] if limit > 0 else []
    found = storage.read_many(uris)
    return [json.loads(found[uri]) for uri in uris if uri in found]


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

        try:  # Airflow 3 (airflow.hooks.base is deprecated there)
            from airflow.sdk import BaseHook
        except ImportError:  # Airflow 2.11
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


def _default_log_uri() -> str:
    from include.ml_pipeline.config import get_settings

    return get_settings().notifications_uri


# --------------------------------------------------------------------------- Airflow glue


def airflow_run_url(dag_id: str, run_id: str, base_url: str | None = None) -> str | None:
    """The Airflow UI page of a DAG run (grid view), from `[webserver] base_url` (`[api]`
    on Airflow 3, where reading the old option is deprecated)."""
    if base_url is None:
        try:
            import airflow
            from airflow.configuration import conf

            section = "api" if int(airflow.__version__.split(".")[0]) >= 3 else "webserver"
            base_url = conf.get(section, "base_url", fallback=None)
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
    log_uri: str | os.PathLike | None = None,
    model_name: str | None = None,
    api_url: str | None = None,
    timeout: int = DEFAULT_TIMEOUT_SECONDS,
) -> dict[str, dict[str, str]]:
    """Failure callback body: notify about the failed task/DAG run in `context`.

    It never raises (a callback that raises only adds noise to the scheduler log): if
    even the notification record cannot be written, the outcome says so.
    """
    try:
        notification = notification_from_context(context, model_name=model_name, api_url=api_url)
        return send_notification(
            notification,
            slack_conn_id=slack_conn_id,
            smtp_conn_id=smtp_conn_id,
            email_to=email_to,
            log_uri=log_uri,
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
