"""The drift report as files: one JSON document per check (the model it is about, where
the data came from, then `DriftReport.to_dict()`), and the per-feature table as HTML.
Both the deployment-time check and the monitoring DAG write their reports here."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from include.ml_pipeline.features import FeatureSpec
    from include.ml_pipeline.monitoring.drift import DriftReport

LATEST_NAME = "drift_latest.json"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._") or "x"


def monitoring_report_path(
    reports_dir: str | Path, model_name: str, version: str, run_key: str
) -> Path:
    """`<reports_dir>/monitoring/drift_<model>_v<version>_<run>.json`."""
    name = f"drift_{_safe(model_name)}_v{_safe(version)}_{_safe(run_key)}.json"
    return Path(reports_dir) / "monitoring" / name


def deployment_report_path(reports_dir: str | Path, version: str) -> Path:
    """`<reports_dir>/drift_v<version>.json`: the check made when that version went live."""
    return Path(reports_dir) / f"drift_v{_safe(version)}.json"


def write_drift_report(
    report: DriftReport | dict[str, Any],
    path: str | Path,
    *,
    facts: Mapping[str, Any] | None = None,
    latest: bool = False,
) -> Path:
    """Write `{**facts, **report.to_dict()}` as JSON to `path` (atomically), and the same
    to `drift_latest.json` beside it when `latest`; return `path`."""
    data = report.to_dict() if hasattr(report, "to_dict") else dict(report)
    text = json.dumps({**(facts or {}), **data}, indent=2, allow_nan=False, default=str)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for target in (path, path.with_name(LATEST_NAME)) if latest else (path,):
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
    return path


def check_and_write(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    spec: FeatureSpec | dict[str, Any],
    thresholds: Any,
    *,
    path: str | Path,
    facts: Mapping[str, Any] | None = None,
    model: Any = None,
    latest: bool = False,
) -> tuple[DriftReport, Path]:
    """Run the drift check (`drift_check.run_drift_check`) and write its report."""
    from include.ml_pipeline.monitoring.drift_check import run_drift_check

    report = run_drift_check(reference, current, spec, thresholds, model=model)
    return report, write_drift_report(report, path, facts=facts, latest=latest)


def drift_table_html(report: DriftReport | dict[str, Any]) -> str:
    """The per-feature drift table as a small standalone HTML page."""
    from include.ml_pipeline.monitoring.drift import DriftReport as Report

    if not hasattr(report, "to_frame"):
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
