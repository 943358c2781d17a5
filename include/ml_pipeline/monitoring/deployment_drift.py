"""Drift at deployment time: the training split (the reference) against the most recent
inference-log traffic when there is enough of it, else against the untouched test split
(a baseline that should show no drift); the report is written under the reports URI
and logged to the deployed version's training run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from include.ml_pipeline.payloads import DriftResult, RegisteredModel


def drift_at_deployment(
    model: RegisteredModel,
    *,
    thresholds: dict[str, Any],
    window_hours: float,
    tracking_uri: str,
    reports_uri: str | os.PathLike,
    inference_log_dir: str | Path | None = None,
) -> DriftResult:
    """Drift of recent traffic (any version, repeated rows counted once) or of the test
    split against the training split the registered `model` was fitted on. `summary` is
    `DriftReport.summary()` plus `current_source` (which data, how many rows) and
    `reference` (the training split's URI); `report_uri` is the report's object."""
    from include.ml_pipeline.monitoring.drift import DriftThresholds
    from include.ml_pipeline.monitoring.drift_check import check_drift
    from include.ml_pipeline.monitoring.drift_report import (
        deployment_report_uri,
        write_drift_report,
    )
    from include.ml_pipeline.monitoring.mlflow_logging import log_drift
    from include.ml_pipeline.monitoring.windows import (
        read_frame,
        recent_traffic,
        reference_frame,
        window_start,
    )
    from include.ml_pipeline.registry.mlflow_setup import configure_mlflow

    split_uris = model.split.uris
    feature_spec = model.split.feature_spec
    limits = DriftThresholds.from_dict(thresholds)
    reference = reference_frame(split_uris["train"], feature_spec)
    traffic = recent_traffic(window_start(None, window_hours), inference_log_dir=inference_log_dir)
    traffic = readable_traffic(traffic, feature_spec)
    if len(traffic):  # repeated rows (smoke tests, retries) are one observation each
        traffic = traffic.drop_duplicates(subset=feature_spec.columns)
    if len(traffic) >= limits.min_rows:
        current, source = traffic, f"inference log, last {window_hours:g} h ({len(traffic)} rows)"
    else:
        current = read_frame(split_uris["test"])
        source = f"test split ({len(current)} rows; too little traffic yet: {len(traffic)} rows)"
    context = {"current_source": source, "reference": split_uris["train"]}
    report = check_drift(reference, current, feature_spec, limits)
    uri = write_drift_report(
        report,
        deployment_report_uri(reports_uri, model.version),
        facts={
            "model_name": model.model_name,
            "version": model.version,
            "model_uri": model.model_uri,
            **context,
        },
    )
    log_drift(
        configure_mlflow(tracking_uri),
        model.run_id,
        report,
        artifact_dir="monitoring",
        report_uri=uri,
    )
    return DriftResult(
        summary={**report.summary(), **context}, report_uri=uri, report=report.to_dict()
    )


def readable_traffic(traffic: Any, spec: Any) -> Any:
    """The logged requests this model could have been sent: every feature column present,
    numeric columns numeric. The log holds whatever the API served before (another model,
    an older contract); rows of another contract are not this model's traffic."""
    import pandas as pd

    if not len(traffic):
        return traffic
    if any(column not in traffic.columns for column in spec.columns):
        return traffic.iloc[0:0]
    keep = pd.Series(True, index=traffic.index)
    for column in spec.numeric:
        values = traffic[column]
        parsed = pd.to_numeric(values, errors="coerce")
        keep &= values.isna() | parsed.notna()
    return traffic[keep]
