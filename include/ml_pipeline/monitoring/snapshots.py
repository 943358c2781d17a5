"""The monitoring run's frozen current window as an object under the storage root:
`<storage_uri>/monitoring/<run key>/current.parquet`. `load_current` freezes it and the
later steps of the same run (`compute_drift`, `log_to_mlflow`) thaw it, on whichever
worker they run; a retried step sees the same rows. The Parquet encoding itself is
`windows.snapshot_current` / `windows.read_snapshot`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from include.ml_pipeline import storage

if TYPE_CHECKING:  # pragma: no cover
    import os

    import pandas as pd

SNAPSHOT_FOLDER = "monitoring"
SNAPSHOT_NAME = "current.parquet"


def snapshot_uri(storage_uri: str | os.PathLike, run_key: str) -> str:
    """`<storage_uri>/monitoring/<run key>/current.parquet`."""
    return storage.join(storage_uri, SNAPSHOT_FOLDER, run_key, SNAPSHOT_NAME)


def freeze_window(frame: pd.DataFrame, uri: str | os.PathLike) -> str:
    """Write the current rows to the Parquet object at `uri` (whole, or not at all);
    return its URI."""
    from include.ml_pipeline.monitoring.windows import snapshot_current

    with storage.staged_output(uri) as local:
        snapshot_current(frame, local)
    return storage.as_uri(uri)


def thaw_window(uri: str | os.PathLike) -> pd.DataFrame:
    """The rows `freeze_window` wrote to `uri`, `timestamp` as UTC datetimes again."""
    from include.ml_pipeline.monitoring.windows import read_snapshot

    with storage.local_copy(uri) as local:
        return read_snapshot(local)
