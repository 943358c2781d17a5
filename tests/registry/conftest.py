"""Fixtures for the registry tests: a logged model to register, in a given MLflow store."""

from __future__ import annotations

from pathlib import Path

import pytest

from include.ml_pipeline.data_preparation.sample_data import (
    CATEGORICAL_COLUMNS,
    NUMERIC_COLUMNS,
    TARGET,
    generate_churn_frame,
)
from include.ml_pipeline.features import FeatureSpec
from include.ml_pipeline.payloads import CandidateResult
from include.ml_pipeline.training.candidates import WEAK_CANDIDATE
from include.ml_pipeline.training.train import fit_candidate, start_parent_run

SPEC = FeatureSpec(TARGET, list(NUMERIC_COLUMNS), list(CATEGORICAL_COLUMNS))


def log_small_model(
    directory: Path,
    tracking_uri: str,
    experiment: str = "registry-tests",
    artifact_location: str | None = None,
    candidate: dict | None = None,
) -> CandidateResult:
    """Train one cheap candidate on 300 generated rows; return fit_candidate's facts."""
    directory.mkdir(parents=True, exist_ok=True)
    frame = generate_churn_frame(300, seed=3)
    frame[:200].to_parquet(directory / "train.parquet", index=False)
    frame[200:].to_parquet(directory / "validation.parquet", index=False)
    parent = start_parent_run(
        tracking_uri=tracking_uri,
        experiment=experiment,
        artifact_location=artifact_location,
        airflow_run_id=f"setup-{directory.name}",
    )
    return fit_candidate(
        candidate or WEAK_CANDIDATE,
        str(directory / "train.parquet"),
        str(directory / "validation.parquet"),
        SPEC,
        tracking_uri=tracking_uri,
        experiment=experiment,
        parent_run_id=parent,
    )


@pytest.fixture(scope="session")
def small_model_logger():
    """`log_small_model` as a fixture (test modules here are not a package)."""
    return log_small_model
