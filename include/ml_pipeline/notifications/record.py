"""The local notification record, and what happened on each channel.

Every notification is written as its own JSON object under `notifications_uri` (from the
settings unless given: `<storage_uri>/notifications/`, a local folder or a bucket prefix)
*before* any channel is tried, then rewritten with each channel's outcome. Objects cannot
be appended to on S3, so there is no shared log file: each notification is its own object,
named `<UTC time>-<event>-<random>.json` so that listing the prefix gives them in order
(`read_log`). This is the record `make run` prints; a failure to write it raises.

Delivery (Slack, e-mail, Apprise, Jira: Airflow connections and hooks) lives in
`orchestration/alerts.py`; nothing here imports Airflow.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from include.ml_pipeline import storage

if TYPE_CHECKING:  # pragma: no cover
    import os

SENT = "sent"
SKIPPED = "skipped"
FAILED = "failed"
#: A channel's outcome in the record written before delivery starts.
PENDING = "pending"


def outcome(status: str, detail: str = "") -> dict[str, str]:
    return {"status": status, "detail": detail}


def failed_channels(outcomes: dict[str, dict[str, str]]) -> dict[str, str]:
    """{channel: why} for every channel whose delivery failed."""
    return {name: o.get("detail", "") for name, o in outcomes.items() if o["status"] == FAILED}


def describe_outcomes(outcomes: dict[str, dict[str, str]]) -> str:
    """One line for humans: `log: sent (/path); slack: skipped (not configured); ...`."""
    parts = []
    for channel, result in outcomes.items():
        detail = f" ({result['detail']})" if result.get("detail") else ""
        parts.append(f"{channel}: {result['status']}{detail}")
    return "; ".join(parts)


def recipients(email_to: str | Iterable[str] | None) -> list[str]:
    """E-mail addresses from a `,`/`;`-separated string or a list, blanks dropped."""
    if not email_to:
        return []
    items = email_to.replace(";", ",").split(",") if isinstance(email_to, str) else email_to
    return [address.strip() for address in items if address and address.strip()]


def record_name(record: dict[str, Any], now: datetime | None = None) -> str:
    """`<UTC time to the microsecond>-<event>-<8 random hex>.json`: names that sort in the
    order they were written, and never collide between workers."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    event = re.sub(r"[^A-Za-z0-9_]+", "_", str(record.get("event") or "note"))[:40]
    return f"{stamp}-{event}-{secrets.token_hex(4)}.json"


def record_uri(record: dict[str, Any], base_uri: str | os.PathLike | None = None) -> str:
    """Where `record` is written: a new object under `base_uri` (default: the settings'
    `notifications_uri`). A local `base_uri` that is a file, not a folder, raises."""
    base_uri = base_uri or default_log_uri()
    local = storage.local_path(base_uri)
    if local is not None and local.is_file():
        raise NotADirectoryError(
            f"{storage.as_uri(base_uri)} is a file; the notifications location must be a "
            "folder or bucket prefix (set ML_PIPELINE_NOTIFICATIONS to one)"
        )
    return storage.join(base_uri, record_name(record))


def read_log(
    base_uri: str | os.PathLike | None = None, *, limit: int | None = None
) -> list[dict[str, Any]]:
    """The notifications under `base_uri` (default: the settings' `notifications_uri`),
    oldest first; only the `limit` most recent when given. Empty when there are none.
    One listing, then the objects fetched in one batch (concurrent GETs on S3)."""
    uris = storage.list_files(base_uri or default_log_uri(), suffix=".json")
    if limit is not None:
        uris = uris[-limit:] if limit > 0 else []
    found = storage.read_many(uris)
    return [json.loads(found[uri]) for uri in uris if uri in found]


def default_log_uri() -> str:
    from include.ml_pipeline.config import get_settings

    return get_settings().notifications_uri
