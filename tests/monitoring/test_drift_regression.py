"""Drift of a regressor: its prediction is a continuous output, compared as a number (KS
and PSI), from the model's own scores and from the inference log's floats alike, and
summarised in the target's units."""

from __future__ import annotations

import pandas as pd

from include.ml_pipeline.data_preparation.sample_data import (
    CATEGORICAL_COLUMNS,
    NUMERIC_COLUMNS,
    REGRESSION_TARGET,
    generate_churn_frame,
)
from include.ml_pipeline.features import FeatureSpec, coerce_features
from include.ml_pipeline.monitoring.drift import STATUS_DRIFT, STATUS_OK
from include.ml_pipeline.monitoring.drift_check import (
    check_drift,
    model_predictions,
    prediction_shift_text,
)
from include.ml_pipeline.training.candidates import make_estimator
from include.ml_pipeline.training.train import build_pipeline

SPEC = FeatureSpec(REGRESSION_TARGET, NUMERIC_COLUMNS, CATEGORICAL_COLUMNS, "regression")


def _model(frame):
    ridge = {"name": "ridge", "estimator": "ridge", "params": {"alpha": 1.0}}
    pipeline = build_pipeline(SPEC, make_estimator(ridge, 0, "regression"))
    return pipeline.fit(coerce_features(frame, SPEC), frame[REGRESSION_TARGET])


def test_a_regressor_prediction_drifts_as_a_continuous_output():
    reference = generate_churn_frame(3000, seed=1, problem="regression")
    model = _model(reference)
    same = generate_churn_frame(1500, seed=2, problem="regression")
    drifted = generate_churn_frame(1500, seed=2, drift=True, problem="regression")
    drifted["monthly_charges"] *= 1.8  # prices up a lot: the predicted spend moves too

    quiet = check_drift(reference, same, SPEC, {"min_rows": 100}, model=model)
    assert quiet.status == STATUS_OK
    assert [(r.feature, r.kind) for r in quiet.prediction] == [("prediction", "numeric")]
    assert quiet.prediction_drift is False

    moved = check_drift(reference, drifted, SPEC, {"min_rows": 100}, model=model)
    assert moved.status == STATUS_DRIFT
    assert moved.prediction_drift is True
    assert moved.prediction[0].kind == "numeric"

    # The summary (XCom, notification, retraining reason) says it in the target's units.
    shift = moved.summary()["prediction_shift"]
    assert shift["current_mean"] == moved.prediction[0].current_mean
    assert shift["current_mean"] > shift["reference_mean"] * 1.1  # prices up, spend up
    assert shift["drifted"] is True
    text = prediction_shift_text(moved.summary(), REGRESSION_TARGET)
    assert text.startswith(f"predicted {REGRESSION_TARGET}: mean ")
    assert f"{shift['reference_mean']:,.2f} -> {shift['current_mean']:,.2f} (+" in text
    assert text.endswith(": drifted")
    calm = prediction_shift_text(quiet.summary(), REGRESSION_TARGET)
    assert calm.endswith(": within the drift thresholds")

    # The inference log's shape: the current rows carry the served floats.
    logged = drifted.assign(prediction=model_predictions(model, drifted, SPEC)["prediction"])
    assert pd.api.types.is_float_dtype(logged["prediction"])
    from_log = check_drift(reference, logged, SPEC, {"min_rows": 100}, model=model)
    assert from_log.prediction[0].kind == "numeric"
    assert from_log.prediction_drift is True


def test_the_dashboard_shows_a_regressor_predicted_values_not_classes(tmp_path):
    from include.ml_pipeline import storage
    from include.ml_pipeline.monitoring.dashboard import (
        DashboardContext,
        render_dashboard,
        summarize_traffic,
    )

    traffic = pd.DataFrame(
        {
            "timestamp": pd.date_range("2026-12-01", periods=300, freq="min", tz="UTC"),
            "prediction": [100.0 + i for i in range(300)],
            "latency_ms": 1.5,
            "model_version": "3",
        }
    )
    summary = summarize_traffic(traffic)
    assert "classes" not in summary
    assert summary["predicted_values"]["p50"] == 249.5
    uri = render_dashboard(
        DashboardContext(
            model_name="spend",
            version=3,
            metrics={"rmse": 80.0, "r2": 0.6, "mape": 0.2},
            previous_metrics={"rmse": 90.0, "r2": 0.5, "mape": 0.3},
            traffic=traffic,
        ),
        tmp_path,
    )
    page = storage.read_text(uri)
    assert "predicted value" in page
    assert "predicted class" not in page
    assert page.count("better") >= 3  # lower RMSE and MAPE, higher R^2: all improvements
