"""A quiet hour (no live traffic in the window) is `insufficient_data`, not a failed run:
the frozen window keeps the model's columns, and the drift check reads it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from include.ml_pipeline.features import FeatureSpec
from include.ml_pipeline.monitoring import windows
from include.ml_pipeline.monitoring.drift import STATUS_INSUFFICIENT
from include.ml_pipeline.monitoring.drift_check import check_drift
from include.ml_pipeline.storage import as_uri

SPEC = FeatureSpec(target="y", numeric=["age", "income"], categorical=["plan"])


def test_an_empty_window_is_insufficient_data(tmp_path):
    rng = np.random.default_rng(0)
    reference = pd.DataFrame(
        {
            "age": rng.normal(40, 10, 500),
            "income": rng.normal(50_000, 8_000, 500),
            "plan": rng.choice(["a", "b"], 500),
            "y": rng.choice(["no", "yes"], 500),
        }
    )
    current = windows.current_frame(
        "inference_log", SPEC, inference_log_dir=tmp_path / "no_traffic_yet", model_version="1"
    )
    assert current.empty
    assert list(current.columns) == SPEC.columns

    uri = as_uri(tmp_path / "monitoring" / "run" / "current.parquet")
    windows.snapshot_current(current, uri)
    frozen = windows.read_snapshot(uri)
    report = check_drift(reference, frozen, SPEC, None)
    summary = report.summary()
    assert summary["status"] == STATUS_INSUFFICIENT
    assert summary["n_drifted"] == 0
