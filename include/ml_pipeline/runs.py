"""Per-run names and locations: every Airflow run gets its own key and its own folder
under the storage root, so runs (and the workers that run their tasks) never share a
file.

    <storage_uri>/runs/<run key>/tables/<stage>.parquet     raw, clean (the warehouse tables)
    <storage_uri>/runs/<run key>/splits/<split>.parquet     train, validation, test

Batch scoring (`ml_batch_scoring`) waits for tables under `<storage_uri>/batch_scoring/
incoming` and writes each run's output to `<storage_uri>/batch_scoring/runs/<run key>/`.
"""

from __future__ import annotations

import hashlib
import re

from include.ml_pipeline.config import Settings
from include.ml_pipeline.storage import join

_RUN_KEY = re.compile(r"[^0-9A-Za-z]+")


def run_key(run_id: str) -> str:
    """A short, SQL-safe key for an Airflow run id (used in table and folder names)."""
    slug = _RUN_KEY.sub("_", run_id).strip("_")[:40]
    digest = hashlib.sha1(run_id.encode()).hexdigest()[:8]
    return f"{slug}_{digest}".lower()


def runs_uri(settings: Settings) -> str:
    """`<storage_uri>/runs`: one folder per run below it."""
    return join(settings.storage_uri, "runs")


def run_uri(settings: Settings, run_id: str) -> str:
    """`<storage_uri>/runs/<run key>`: the tables and splits of one run (a URI; nothing is
    created here: writing an object under it creates what a local root needs)."""
    return join(runs_uri(settings), run_key(run_id))


def table_uri(settings: Settings, run_id: str, stage: str) -> str:
    """`<run>/tables/<stage>.parquet`: the warehouse table of one stage of one run."""
    return join(run_uri(settings, run_id), "tables", f"{stage}.parquet")


def splits_uri(settings: Settings, run_id: str) -> str:
    """`<run>/splits`: the folder of the run's train/validation/test Parquet objects."""
    return join(run_uri(settings, run_id), "splits")


def default_data_uri(settings: Settings) -> str:
    """Where the pipeline looks for raw data unless the `data_uri` Param says otherwise:
    `<storage_uri>/incoming/customer_churn.csv`."""
    return join(settings.storage_uri, "incoming", "customer_churn.csv")


def batch_incoming_uri(settings: Settings) -> str:
    """`<storage_uri>/batch_scoring/incoming`: where `ml_batch_scoring` looks for a table
    unless its `input_uri` Param says otherwise."""
    return join(settings.storage_uri, "batch_scoring", "incoming")


def batch_runs_uri(settings: Settings) -> str:
    """`<storage_uri>/batch_scoring/runs`: one folder per batch-scoring run below it."""
    return join(settings.storage_uri, "batch_scoring", "runs")


def batch_run_uri(settings: Settings, run_id: str) -> str:
    """`<storage_uri>/batch_scoring/runs/<run key>`: one batch run's plan, parts and
    manifest."""
    return join(batch_runs_uri(settings), run_key(run_id))
