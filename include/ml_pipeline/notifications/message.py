"""The notification message: one dataclass, rendered for each channel.

A `Notification` carries what a person needs to act on a pipeline event: which model and
version, its key metrics, why the decision was taken, the error if any, and links to the
MLflow run, the Airflow run and the model API. It renders as plain text (logs, e-mail
fallback), Markdown (MLflow, READMEs), Slack mrkdwn blocks and escaped HTML (e-mail).
Nothing here imports Airflow.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

EVENT_DEPLOYED = "deployed"
EVENT_REJECTED = "rejected"
EVENT_FAILED = "failed"
EVENT_ROLLED_BACK = "rolled_back"
EVENT_DRIFT = "drift"
EVENT_RETRAINING = "retraining"
#: A release on live evidence decided: its `details["verdict"]` is pass / fail / inconclusive.
EVENT_RELEASE = "release"
SEVERITY = {
    EVENT_DEPLOYED: "info",
    EVENT_RETRAINING: "info",
    EVENT_REJECTED: "warning",
    EVENT_DRIFT: "warning",
    EVENT_RELEASE: "warning",
    EVENT_FAILED: "error",
    EVENT_ROLLED_BACK: "error",
}
#: The severity of a release verdict (an unknown or missing verdict keeps `warning`).
VERDICT_SEVERITY = {"pass": "info", "inconclusive": "warning", "fail": "error"}
EMOJI = {"info": ":white_check_mark:", "warning": ":warning:", "error": ":x:"}
SUBJECT_PREFIX = "[ml-pipeline]"


@dataclass
class Notification:
    """A pipeline event worth telling someone about."""

    event: str
    title: str
    model_name: str | None = None
    version: str | int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    mlflow_run_url: str | None = None
    airflow_run_url: str | None = None
    api_url: str | None = None
    #: The dashboard object's URI (`file://...` or `s3://...`).
    dashboard_uri: str | None = None
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    error: str | None = None
    log_url: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def __post_init__(self) -> None:
        if not self.event or not isinstance(self.event, str):
            raise ValueError("a notification needs an event name")
        if self.version is not None:
            self.version = str(self.version)
        self.reasons = [str(r) for r in self.reasons]

    @property
    def severity(self) -> str:
        """`info`, `warning` or `error`: by event, and for a release by its verdict."""
        if self.event == EVENT_RELEASE:
            return VERDICT_SEVERITY.get(str(self.details.get("verdict")), SEVERITY[EVENT_RELEASE])
        return SEVERITY.get(self.event, "info")

    @property
    def model_label(self) -> str | None:
        if not self.model_name:
            return None
        return f"{self.model_name} v{self.version}" if self.version else self.model_name

    @property
    def subject(self) -> str:
        """E-mail subject: `[ml-pipeline] DEPLOYED: <title>`."""
        return f"{SUBJECT_PREFIX} {self.event.upper()}: {self.title}"

    def links(self) -> list[tuple[str, str]]:
        pairs = [
            ("MLflow run", self.mlflow_run_url),
            ("Airflow run", self.airflow_run_url),
            ("Task log", self.log_url),
            ("Model API", self.api_url),
            ("Dashboard", self.dashboard_uri),
        ]
        return [(label, str(url)) for label, url in pairs if url]

    def airflow_ids(self) -> str | None:
        parts = [
            f"{name}={value}"
            for name, value in (("dag", self.dag_id), ("run", self.run_id), ("task", self.task_id))
            if value
        ]
        return " ".join(parts) or None

    def metric_items(self) -> list[tuple[str, str]]:
        return [(str(k), _format_metric(v)) for k, v in self.metrics.items()]

    # ------------------------------------------------------------------ renderings

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = self.severity
        data["metrics"] = {k: _json_number(v) for k, v in self.metrics.items()}
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=str, sort_keys=True)

    def to_text(self) -> str:
        lines = [f"[{self.event.upper()}] {self.title}"]
        if self.model_label:
            lines.append(f"Model: {self.model_label}")
        if self.metrics:
            lines.append("Metrics: " + ", ".join(f"{k}={v}" for k, v in self.metric_items()))
        if self.reasons:
            lines.append("Reasons:")
            lines.extend(f"  - {reason}" for reason in self.reasons)
        if self.error:
            lines.append(f"Error: {self.error}")
        if self.airflow_ids():
            lines.append(f"Airflow: {self.airflow_ids()}")
        for key, value in self.details.items():
            lines.append(f"{key}: {value}")
        for label, url in self.links():
            lines.append(f"{label}: {url}")
        return "\n".join(lines)

    def to_markdown(self, *, alert: bool = False) -> str:
        """Markdown (MLflow, READMEs). `alert=True`: for a channel that shows the title
        itself and renders only basic Markdown (Apprise: a Teams Adaptive Card, Discord,
        e-mail): no heading, the metrics on one line instead of a table, and only
        http(s) URLs as links."""
        lines = [] if alert else [f"### {self.event.upper()}: {self.title}", ""]
        if self.model_label:
            lines.append(f"**Model:** `{self.model_label}`")
        if self.metrics and alert:
            metrics = ", ".join(f"{k}={v}" for k, v in self.metric_items())
            lines += ["", f"**Metrics:** {metrics}"]
        elif self.metrics:
            lines += ["", "| metric | value |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in self.metric_items()]
        if self.reasons:
            lines += ["", "**Reasons:**"] + [f"- {reason}" for reason in self.reasons]
        if self.error:
            lines += ["", f"**Error:** `{self.error}`"]
        if self.airflow_ids():
            lines += ["", f"**Airflow:** {self.airflow_ids()}"]
        for key, value in self.details.items():
            lines.append(f"- {key}: {value}")
        links = [
            f"{label}: {url}"
            if alert and not url.startswith(("http://", "https://"))
            else f"[{label}]({url})"
            for label, url in self.links()
        ]
        if links:
            lines += ["", " · ".join(links)]
        return "\n".join(lines).strip() + "\n"

    def to_slack_text(self) -> str:
        """Slack mrkdwn (with `&`, `<`, `>` escaped as Slack requires)."""
        lines = [f"{EMOJI[self.severity]} *{_slack(self.event.upper())}: {_slack(self.title)}*"]
        if self.model_label:
            lines.append(f"*Model:* `{_slack(self.model_label)}`")
        if self.metrics:
            metrics = ", ".join(f"{_slack(k)}={_slack(v)}" for k, v in self.metric_items())
            lines.append(f"*Metrics:* {metrics}")
        if self.reasons:
            lines.append("*Reasons:*")
            lines.extend(f"• {_slack(reason)}" for reason in self.reasons)
        if self.error:
            lines.append(f"*Error:* `{_slack(self.error)}`")
        if self.airflow_ids():
            lines.append(f"*Airflow:* {_slack(self.airflow_ids())}")
        for key, value in self.details.items():
            lines.append(f"*{_slack(key)}:* {_slack(value)}")
        links = [
            f"<{_slack(url)}|{label}>"
            if url.startswith(("http://", "https://"))
            else f"{label}: {_slack(url)}"
            for label, url in self.links()
        ]
        if links:
            lines.append(" | ".join(links))
        return "\n".join(lines)

    def to_slack_payload(self) -> dict[str, Any]:
        """Incoming-webhook body: `text` (also the notification fallback) plus one block."""
        text = self.to_slack_text()
        return {
            "text": text,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}],
        }

    def to_html(self) -> str:
        """E-mail body; every value is HTML-escaped."""
        e = html.escape
        parts = [f"<h2>{e(self.event.upper())}: {e(self.title)}</h2>"]
        if self.model_label:
            parts.append(f"<p><b>Model:</b> <code>{e(self.model_label)}</code></p>")
        if self.metrics:
            rows = "".join(
                f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in self.metric_items()
            )
            parts.append(f"<table border='1' cellpadding='4'>{rows}</table>")
        if self.reasons:
            items = "".join(f"<li>{e(r)}</li>" for r in self.reasons)
            parts.append(f"<p><b>Reasons:</b></p><ul>{items}</ul>")
        if self.error:
            parts.append(f"<p><b>Error:</b> <code>{e(self.error)}</code></p>")
        if self.airflow_ids():
            parts.append(f"<p><b>Airflow:</b> {e(self.airflow_ids() or '')}</p>")
        for key, value in self.details.items():
            parts.append(f"<p><b>{e(str(key))}:</b> {e(str(value))}</p>")
        links = []
        for label, url in self.links():
            if url.startswith(("http://", "https://")):
                links.append(f'<a href="{e(url, quote=True)}">{e(label)}</a>')
            else:
                links.append(f"{e(label)}: {e(url)}")
        if links:
            parts.append("<p>" + " | ".join(links) + "</p>")
        return "\n".join(parts)


def _format_metric(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return "nan" if math.isnan(value) else f"{value:.4f}"


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def _slack(value: Any) -> str:
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
