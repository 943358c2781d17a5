"""Drift statistics: known values, the decision rule, and measured alarm rates."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from devtools.drift_calibration import measure_detection_rate, measure_false_alarm_rate
from include.ml_pipeline.data_preparation.sample_data import churn_spec, generate_churn_frame
from include.ml_pipeline.features import FeatureSpec
from include.ml_pipeline.monitoring.drift import (
    STATUS_DRIFT,
    STATUS_INSUFFICIENT,
    STATUS_OK,
    DriftReport,
    DriftThresholds,
    categorical_drift,
    compute_drift,
    numeric_drift,
    population_stability_index,
    significance_flags,
)

SHIFTED = {"tenure_months", "monthly_charges", "support_tickets", "contract_type"}
UNSHIFTED = {
    "age",
    "payment_method",
    "internet_service",
    "region",
    "has_partner",
    "paperless_billing",
}

# The bounds documented in devtools/drift_calibration.py's module docstring.
FALSE_ALARM_BOUND = 0.05
DETECTION_BOUND = 0.95


def test_false_alarm_rate_on_undrifted_samples_is_under_documented_bound():
    result = measure_false_alarm_rate(draws=40, rows=2_000, seed=1)
    assert result["draws"] == 40
    assert result["dataset_drift_rate"] <= FALSE_ALARM_BOUND, result
    # Per feature, Bonferroni bounds the family-wise rate at alpha before the effect size.
    assert result["any_feature_rate"] <= 0.05 + 1e-9, result


def test_drifted_batch_is_detected_and_only_shifted_features_flagged():
    result = measure_detection_rate(draws=40, rows=2_000, seed=2)
    assert result["dataset_drift_rate"] >= DETECTION_BOUND, result
    flags = result["per_feature_flags"]
    for name in SHIFTED:
        assert flags[name] >= 38, (name, flags)
    for name in UNSHIFTED:
        assert flags[name] <= 2, (name, flags)


def test_psi_known_values():
    assert population_stability_index([0.5, 0.5], [0.5, 0.5]) == 0.0
    expected = 0.2 * math.log(0.7 / 0.5) + (-0.2) * math.log(0.3 / 0.5)
    assert population_stability_index([0.5, 0.5], [0.7, 0.3]) == pytest.approx(expected)
    # An empty bin adds a finite amount thanks to the epsilon.
    value = population_stability_index([1.0, 0.0], [0.5, 0.5])
    assert math.isfinite(value)
    assert value > 1.0


def test_numeric_drift_statistics():
    rng = np.random.default_rng(0)
    same = numeric_drift("x", rng.normal(0, 1, 5_000), rng.normal(0, 1, 5_000))
    shifted = numeric_drift("x", rng.normal(0, 1, 5_000), rng.normal(1, 1, 5_000))
    assert same.test == "ks"
    assert same.p_value > 0.001
    assert same.psi < 0.02
    assert shifted.p_value < 1e-50
    assert shifted.statistic == pytest.approx(0.38, abs=0.04)  # 2*Phi(0.5)-1
    assert shifted.psi > 0.5
    assert shifted.current_mean == pytest.approx(1.0, abs=0.05)


def test_numeric_missing_values_get_their_own_bin_and_all_missing_is_extreme():
    ref = np.r_[np.arange(1000, dtype=float), [np.nan] * 10]
    cur = np.r_[np.arange(1000, dtype=float), [np.nan] * 500]
    row = numeric_drift("x", ref, cur)
    assert row.current_missing == pytest.approx(500 / 1500)
    assert row.psi > 0.2  # the missing share moved from 1% to 33%
    empty = numeric_drift("x", ref, np.full(200, np.nan))
    assert empty.p_value == 0.0
    assert empty.statistic == 1.0


def test_categorical_drift_counts_missing_and_unseen_categories():
    ref = ["a"] * 500 + ["b"] * 500
    cur = ["a"] * 400 + ["b"] * 400 + ["c"] * 100 + [None] * 100
    row = categorical_drift("cat", ref, cur)
    assert row.test == "chi2"
    assert row.new_categories == ["__missing__", "c"]
    assert row.current_missing == pytest.approx(0.1)
    assert row.p_value < 1e-20
    assert row.psi > 0.5
    same = categorical_drift("cat", ref, list(reversed(ref)))
    assert same.p_value == pytest.approx(1.0)
    assert same.psi == pytest.approx(0.0)


def test_significance_corrections():
    p = [0.001, 0.013, 0.03, 0.5]
    assert significance_flags(p, 0.05, "none") == [True, True, True, False]
    assert significance_flags(p, 0.05, "bonferroni") == [True, False, False, False]
    # Bonferroni: only p < 0.05/4. Holm: 0.001 < 0.05/4, 0.013 < 0.05/3, 0.03 >= 0.05/2 stops.
    assert significance_flags(p, 0.05, "holm") == [True, True, False, False]
    assert significance_flags([math.nan], 0.05, "none") == [False]


def test_large_sample_small_shift_is_significant_but_not_drift():
    rng = np.random.default_rng(3)
    spec = FeatureSpec(target="y", numeric=["x"])
    reference = pd.DataFrame({"x": rng.normal(0, 1, 50_000)})
    current = pd.DataFrame({"x": rng.normal(0.05, 1, 50_000)})
    report = compute_drift(reference, current, spec)
    row = report.features[0]
    assert row.significant, row
    assert not row.material, row
    assert not row.drifted
    assert report.status == STATUS_OK
    # With the effect-size thresholds switched off, the same shift counts as drift.
    loose = compute_drift(reference, current, spec, {"psi_threshold": 0, "ks_threshold": 0})
    assert loose.features[0].drifted
    assert loose.dataset_drift


def test_report_on_generated_drift_is_json_and_frame():
    spec = churn_spec()
    reference = generate_churn_frame(3_000, seed=10)
    current = generate_churn_frame(3_000, seed=11, drift=True)
    report = compute_drift(reference, current, spec)
    assert report.status == STATUS_DRIFT
    assert report.dataset_drift
    assert set(report.drifted_features) >= SHIFTED
    assert report.share_drifted == pytest.approx(report.n_drifted / 11)

    data = json.loads(report.to_json())
    assert data["summary"]["dataset_drift"] is True
    assert {row["feature"] for row in data["features"]} == set(spec.columns)
    again = DriftReport.from_dict(data)
    assert again.drifted_features == report.drifted_features
    assert [r.psi for r in again.features] == pytest.approx([r.psi for r in report.features])

    metrics = report.mlflow_metrics()
    assert metrics["drift_share"] == pytest.approx(report.share_drifted)
    assert metrics["drift_dataset"] == 1.0
    assert metrics["drift_psi_contract_type"] > 0.1
    assert all(isinstance(v, float) for v in metrics.values())

    frame = report.to_frame()
    assert list(frame["feature"]) == spec.columns
    assert frame.set_index("feature").loc["contract_type", "drifted"]
    assert not frame.set_index("feature").loc["region", "drifted"]


def test_too_few_rows_is_insufficient_not_drift():
    spec = churn_spec()
    reference = generate_churn_frame(2_000, seed=1)
    current = generate_churn_frame(50, seed=2, drift=True)
    report = compute_drift(reference, current, spec, {"min_rows": 100})
    assert report.status == STATUS_INSUFFICIENT
    assert not report.dataset_drift
    assert report.n_drifted == 0


def test_large_inputs_are_subsampled():
    spec = churn_spec()
    reference = generate_churn_frame(30_000, seed=1)
    current = generate_churn_frame(30_000, seed=2)
    report = compute_drift(reference, current, spec, DriftThresholds(max_rows=4_000))
    assert report.reference_rows == 30_000
    assert report.current_rows == 30_000
    assert {r.reference_rows for r in report.features} == {4_000}
    assert {r.current_rows for r in report.features} == {4_000}
    assert not report.dataset_drift


def _log_frame(features: pd.DataFrame, positive_share: float, seed: int) -> pd.DataFrame:
    """A frame shaped like `read_inference_log`'s output."""
    rng = np.random.default_rng(seed)
    proba_yes = np.clip(rng.beta(2, 2 / positive_share - 2, len(features)), 0, 1)
    frame = features.drop(columns=["churn"]).copy()
    frame["prediction"] = np.where(proba_yes >= 0.5, "yes", "no")
    frame["proba_no"] = 1 - proba_yes
    frame["proba_yes"] = proba_yes
    frame["model_version"] = "3"
    frame["latency_ms"] = rng.gamma(2, 2, len(features))
    frame["timestamp"] = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(
        np.arange(len(features)), unit="s"
    )
    return frame


def test_prediction_drift_from_inference_log_frame():
    spec = churn_spec()
    reference = generate_churn_frame(3_000, seed=5)
    reference_log = _log_frame(reference, 0.3, seed=1)
    reference_predictions = reference_log[["prediction", "proba_no", "proba_yes"]]

    same = compute_drift(
        reference,
        _log_frame(generate_churn_frame(3_000, seed=6), 0.3, seed=2),
        spec,
        reference_predictions=reference_predictions,
    )
    assert same.prediction_drift is False
    assert {r.feature for r in same.prediction} == {"prediction", "proba_no", "proba_yes"}
    assert same.status == STATUS_OK

    moved = compute_drift(
        reference,
        _log_frame(generate_churn_frame(3_000, seed=7), 0.6, seed=3),
        spec,
        reference_predictions=reference_predictions,
    )
    assert moved.prediction_drift is True
    assert not moved.dataset_drift  # the features did not move, the predictions did
    assert moved.status == STATUS_DRIFT
    rows = {r.feature: r for r in moved.prediction}
    assert rows["prediction"].drifted
    assert rows["proba_yes"].current_mean > rows["proba_yes"].reference_mean + 0.2
    assert "prediction_shift" not in moved.summary()  # predicted classes: no mean to show

    # A plain Series of predicted classes works too.
    series_only = compute_drift(
        reference,
        _log_frame(generate_churn_frame(3_000, seed=7), 0.6, seed=3),
        spec,
        reference_predictions=reference_predictions["prediction"],
    )
    assert [r.feature for r in series_only.prediction] == ["prediction"]
    assert series_only.prediction_drift is True


def test_without_predictions_prediction_drift_is_none():
    spec = churn_spec()
    report = compute_drift(
        generate_churn_frame(500, seed=1), generate_churn_frame(500, seed=2), spec
    )
    assert report.prediction_drift is None
    assert report.prediction == []


def test_thresholds_from_params_and_validation():
    thresholds = DriftThresholds.from_dict({"alpha": 0.01, "drift_share": 0.5, "unknown": 1})
    assert thresholds.alpha == 0.01
    assert thresholds.drift_share == 0.5
    with pytest.raises(ValueError, match="correction"):
        DriftThresholds(correction="fdr")
    with pytest.raises(ValueError, match="alpha"):
        DriftThresholds(alpha=1.5)
