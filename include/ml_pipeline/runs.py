"""Per-run names and locations: every Airflow run gets its own key, folder and tables."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from include.ml_pipeline.config import Settings

_RUN_KEY = re.compile(r"[^0-9A-Za-z]+")


def run_key(run_id: str) -> str:
    """A short, SQL-safe key for an Airflow run id (used in table and folder names)."""
    slug = _RUN_KEY.sub("_", run_id).strip("_")[:40]
    digest = hashlib.sha1(run_id.encode()).hexdigest()[:8]
    return f"{slug}_{digest}".lower()


def run_dir(settings: Settings, run_id: str) -> Path:
    """`<storage_root>/runs/<run key>`: splits, staging copies, manifests of one run."""
    path = settings.storage_root / "runs" / run_key(run_id)
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_data_uri(settings: Settings) -> str:
    """Where the pipeline looks for raw data unless the `data_uri` Param says otherwise."""
    return str(settings.storage_root / "incoming" / "customer_churn.csv")
