"""Per-run locations: every Airflow run gets its own folder and table names."""

from __future__ import annotations

from pathlib import Path

from include.ml_pipeline.config import Settings
from include.ml_pipeline.data.warehouse import run_key


def run_dir(settings: Settings, run_id: str) -> Path:
    """`<storage_root>/runs/<run key>`: splits, staging copies, manifests of one run."""
    path = settings.storage_root / "runs" / run_key(run_id)
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_data_uri(settings: Settings) -> str:
    """Where the pipeline looks for raw data unless the `data_uri` Param says otherwise."""
    return str(settings.storage_root / "incoming" / "customer_churn.csv")
