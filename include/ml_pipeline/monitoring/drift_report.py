"""The drift report as objects under the reports URI: one JSON document per check (the
model it is about, where the data came from, then `DriftReport.to_dict()`), and the
per-feature table as HTML. Both the deployment-time check and the monitoring DAG write
their reports here, through `storage` (a local folder or a bucket alike)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from include.ml_pipeline import storage

if TYPE_CHECKING:  # pragma: no cover
    import os

    from include.ml_pipeline.monitoring.drift import DriftReport

LATEST_NAME = "drift_latest.json"
MONITORING_FOLDER = "monitoring"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._") or "x"


def monitoring_report_uri(
    reports_uri: str | os.PathLike, model_name: str, version: str, run_key: str, kind: str = "drift"
) -> str:
    """`<reports_uri>/monitoring/<kind>_<model>_v<version>_<run>.json` (`kind`: `drift`,
    or `live` for the live performance report)."""
    name = f"{kind}_{_safe(model_name)}_v{_safe(version)}_{_safe(run_key)}.json"
    return storage.join(reports_uri, MONITORING_FOLDER, name)


def deployment_report_uri(reports_uri: str | os.PathLike, version: str) -> str:
    """`<reports_uri>/drift_v<version>.json`: the check made when that version went live."""
    return storage.join(reports_uri, f"drift_v{_safe(version)}.json")


def write_drift_report(
    report: DriftReport | dict[str, Any],
    uri: str | os.PathLike,
    *,
    facts: Mapping[str, Any] | None = None,
    latest: bool = False,
) -> str:
    """Write `{**facts, **report.to_dict()}` as JSON to `uri` (whole: a reader never sees
    half of it), and the same to `drift_latest.json` beside it when `latest`; return the
    report's URI."""
    data = report.to_dict() if hasattr(report, "to_dict") else dict(report)
    text = json.dumps({**(facts or {}), **data}, indent=2, allow_nan=False, default=str)
    written = storage.write_text(uri, text)
    if latest:
        storage.write_text(written.rsplit("/", 1)[0] + "/" + LATEST_NAME, text)
    return written


def read_drift_report(uri: str | os.PathLike) -> dict[str, Any]:
    """A report written by `write_drift_report`, as the dict it holds."""
    return storage.read_json(uri)


def drift_table_html(report: DriftReport | dict[str, Any]) -> str:
    """The per-feature drift table as a small standalone HTML page."""
    from include.ml_pipeline.monitoring.drift import DriftReport as Report

    if isinstance(report, dict):
        report = Report.from_dict(report)
    frame = report.to_frame()
    summary = report.summary()
    head = (
        f"<h2>Drift: {summary['status']}</h2><p>{summary['n_drifted']} of "
        f"{summary['n_features']} features drifted ({summary['share_drifted']:.0%}); "
        f"prediction drift: {summary['prediction_drift']}</p>"
    )
    table = frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="", border=1)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Drift</title></head>"
        f"<body>{head}{table}</body></html>"
    )
