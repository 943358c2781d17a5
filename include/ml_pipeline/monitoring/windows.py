"""The two sides of a drift check, as frames: the reference (the champion's training
split) and the current window (recent inference-log rows of a version, or a batch file),
plus the Parquet snapshot that freezes a window so a retried task sees the same rows."""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from include.ml_pipeline import storage
from include.ml_pipeline.errors import MonitoringError
from include.ml_pipeline.features import FeatureSpec
from include.ml_pipeline.names import (
    INFERENCE_LOG_SOURCE,
    LIVE_TRAFFIC,
    TRAIN_PATH_TAG,
)
from include.ml_pipeline.storage import as_uri

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


def read_frame(uri: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet file (or folder of Parquet files) at a path or a storage URI
    (`file://`, `s3://`, ...). `columns` keeps those that exist (the caller checks what
    it needs)."""
    import pandas as pd

    source = os.fspath(uri)
    if not storage.exists(source):
        raise FileNotFoundError(f"no such file: {source}")
    name = source.lower().rstrip("/")
    is_csv = name.endswith((".csv", ".csv.gz", ".txt"))
    if not is_csv and not name.endswith((".parquet", ".pq")) and storage.is_file(source):
        raise MonitoringError(f"unsupported file type (need .csv or .parquet): {source}")
    with storage.local_copy(source) as local:
        frame = pd.read_csv(local) if is_csv else pd.read_parquet(local)
    if columns is not None:
        frame = frame[[c for c in columns if c in frame.columns]]
    return frame


def _require_features(frame: pd.DataFrame, spec: FeatureSpec, what: str) -> None:
    missing = [c for c in spec.columns if c not in frame.columns]
    if missing:
        raise MonitoringError(f"{what} lacks the model's feature column(s): {', '.join(missing)}")


def reference_frame(train_path: str | None, spec: FeatureSpec) -> pd.DataFrame:
    """The champion's training split (its feature columns and the target if present)."""
    if not train_path:
        raise MonitoringError(
            f"the champion has no reference data: tag its version with `{TRAIN_PATH_TAG}` "
            "(the train split Parquet) or log the split as its run's training input"
        )
    frame = read_frame(train_path, [*spec.columns, spec.target])
    _require_features(frame, spec, f"reference {train_path}")
    if frame.empty:
        raise MonitoringError(f"reference {train_path} is empty")
    return frame


def time_bucket(span: timedelta) -> tuple[str, str]:
    """The time bucket of a chart or table over `span`: its pandas frequency and its
    name (a minute up to 2 h, 5 minutes up to 12 h, an hour up to 4 days, else a day)."""
    seconds = span.total_seconds()
    if seconds <= 2 * 3600:
        return "min", "minute"
    if seconds <= 12 * 3600:
        return "5min", "5 minutes"
    if seconds <= 4 * 86400:
        return "h", "hour"
    return "D", "day"


def window_start(logical_date: datetime | str | None, window_hours: float) -> datetime:
    """`logical_date - window_hours` (now when there is no logical date), in UTC."""
    if logical_date is None:
        end = datetime.now(UTC)
    elif isinstance(logical_date, str):
        end = datetime.fromisoformat(logical_date)
    else:
        end = logical_date
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    return (end - timedelta(hours=float(window_hours))).astimezone(UTC)


def recent_traffic(
    since: datetime | None,
    *,
    model_version: str | None = None,
    inference_log_dir: str | os.PathLike | None = None,
    max_rows: int | None = None,
    model_name: str | None = None,
    kinds: tuple[str, ...] | None = (LIVE_TRAFFIC,),
) -> pd.DataFrame:
    """The inference-log rows since `since` (of one version / model when given; the most
    recent `max_rows`), with their `prediction` / `proba_*` columns: live traffic only
    unless `kinds` says otherwise (smoke tests and benchmarks mark theirs). The log
    (`inference_log_dir`: a path or URI) defaults to the settings' `inference_log_uri`."""
    from include.ml_pipeline.monitoring.inference_log import read_inference_log

    return read_inference_log(
        _log_location(inference_log_dir),
        since=since,
        model_version=model_version,
        limit=max_rows,
        model_name=model_name,
        kinds=kinds,
    )


def _log_location(inference_log_dir: str | os.PathLike | None) -> str:
    if inference_log_dir is not None:
        return as_uri(inference_log_dir)
    from include.ml_pipeline.config import get_settings

    return get_settings().inference_log_uri


def current_frame(
    source: str,
    spec: FeatureSpec,
    *,
    model_version: str | None = None,
    inference_log_dir: str | os.PathLike | None = None,
    since: datetime | None = None,
    max_rows: int | None = None,
    model_name: str | None = None,
) -> pd.DataFrame:
    """The data to compare with the reference.

    `source="inference_log"`: `recent_traffic` (live traffic) of `model_version` (and
    `model_name` when given) since `since`. Anything
    else is a batch file (CSV or Parquet path or URI), read whole. An empty frame is valid
    (the drift check reports `insufficient_data`).
    """
    if source == INFERENCE_LOG_SOURCE:
        frame = recent_traffic(
            since,
            model_version=model_version,
            inference_log_dir=inference_log_dir,
            max_rows=max_rows,
            model_name=model_name,
        )
        if frame.empty:
            # no traffic in the window (a quiet hour): zero rows with the model's columns,
            # so the snapshot and the drift check see the schema and report
            # `insufficient_data` instead of missing columns
            return frame.reindex(columns=list(spec.columns))
        _require_features(frame, spec, f"inference log {_log_location(inference_log_dir)}")
        return frame
    frame = read_frame(source)
    _require_features(frame, spec, f"batch {source}")
    return frame


def snapshot_current(frame: pd.DataFrame, path: str | os.PathLike) -> str | os.PathLike:
    """Freeze the current rows to Parquet at `path` (a path or storage URI; written whole,
    so a reader never sees half), so a retry sees the same data. Returns `path`."""
    out = frame.copy()
    if "timestamp" in out.columns:
        out["timestamp"] = out["timestamp"].astype(str)
    with storage.staged_output(path) as tmp:
        try:
            out.to_parquet(tmp, index=False)
        except (TypeError, ValueError):  # mixed types in a text column: keep them as text
            for column in out.columns:
                if out[column].dtype == object:
                    out[column] = out[column].map(_text_or_none)
            out.to_parquet(tmp, index=False)
    return path


def read_snapshot(path: str | os.PathLike) -> pd.DataFrame:
    """A frozen window back as a frame, `timestamp` (if any) as UTC datetimes again."""
    import pandas as pd

    with storage.local_copy(path) as local:
        frame = pd.read_parquet(local)
    if "timestamp" in frame.columns:
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    return frame


def _text_or_none(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value if isinstance(value, str) else str(value)
