"""Regression metrics, per-class metrics of a multiclass model and a confusion matrix
that stays readable with many classes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from include.ml_pipeline import plots
from include.ml_pipeline.names import GREATER_IS_BETTER
from include.ml_pipeline.training.evaluate import mean_baseline
from include.ml_pipeline.training.metrics import per_class_metrics, regression_metrics


def test_regression_metrics_and_mape_only_when_the_target_never_crosses_zero():
    metrics = regression_metrics([1.0, 2.0, 4.0], [1.0, 3.0, 3.0])
    assert metrics["rmse"] == pytest.approx(math.sqrt(2 / 3))
    assert metrics["mae"] == pytest.approx(2 / 3)
    assert metrics["r2"] == pytest.approx(1 - 2 / (14 / 3))
    assert metrics["mape"] == pytest.approx((0 + 0.5 + 0.25) / 3)
    assert "mape" not in regression_metrics([-1.0, 0.0, 2.0], [0.0, 0.0, 2.0])
    assert math.isnan(regression_metrics([3.0, 3.0], [3.0, 2.0])["r2"])
    with pytest.raises(ValueError, match="finite"):
        regression_metrics([1.0, float("nan")], [1.0, 1.0])
    assert all(name in GREATER_IS_BETTER for name in metrics)


def test_the_mean_baseline_scores_r2_about_zero():
    rng = np.random.default_rng(0)
    baseline = mean_baseline(rng.normal(10, 2, 5000), rng.normal(10, 2, 1000))
    assert abs(baseline["r2"]) < 0.01
    assert baseline["rmse"] == pytest.approx(2.0, rel=0.1)


def test_per_class_metrics_of_a_multiclass_model():
    classes = ["a", "b", "c"]
    proba = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4], [0.1, 0.8, 0.1]])
    out = per_class_metrics(["a", "b", "c", "a"], proba, classes)
    assert out["a"] == {
        "support": 2,
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(2 / 3),
        "roc_auc_ovr": 0.5,
    }
    assert out["c"]["roc_auc_ovr"] == 1.0


def test_a_confusion_matrix_of_30_classes_stays_a_readable_size():
    labels = [f"class_{i}" for i in range(30)]
    rng = np.random.default_rng(1)
    y = rng.choice(labels, 600)
    fig = plots.plot_confusion_matrix(y, rng.choice(labels, 600), labels)
    width, height = fig.get_size_inches()
    assert height <= plots.MAX_MATRIX_INCHES
    assert width <= plots.MAX_MATRIX_INCHES + 1
    assert len(plots.figure_to_png_bytes(fig)) > 1000
