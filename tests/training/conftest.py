"""Fixtures for the training tests: generated churn splits and a throw-away MLflow store."""

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


def write_splits(frame, directory: Path, seed: int = 0) -> dict[str, str]:
    """Shuffle and split 70/15/15 into Parquet files; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    shuffled = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    a, b = int(len(shuffled) * 0.70), int(len(shuffled) * 0.85)
    paths = {}
    for name, part in (
        ("train", shuffled[:a]),
        ("validation", shuffled[a:b]),
        ("test", shuffled[b:]),
    ):
        path = directory / f"{name}.parquet"
        part.to_parquet(path, index=False)
        paths[name] = str(path)
    return paths


@pytest.fixture(scope="session")
def churn_spec() -> FeatureSpec:
    return FeatureSpec(TARGET, list(NUMERIC_COLUMNS), list(CATEGORICAL_COLUMNS))


@pytest.fixture(scope="session")
def churn_splits(tmp_path_factory) -> dict[str, str]:
    return write_splits(generate_churn_frame(2000, seed=7), tmp_path_factory.mktemp("churn"))


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("mlflow")
    return {
        "tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
        "artifact_location": (root / "artifacts").as_uri(),
        "experiment": "tests",
    }


@pytest.fixture(scope="session")
def split_writer():
    """`write_splits` as a fixture (test modules here are not a package)."""
    return write_splits
