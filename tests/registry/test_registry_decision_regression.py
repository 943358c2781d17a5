"""The deploy gate on a regression problem: the mean baseline, a relative RMSE lift, the
optional max_rmse / min_r2, and a relative tolerance against the champion."""

from __future__ import annotations

from include.ml_pipeline.registry.decision import Thresholds, decide_deployment

GOOD = {"rmse": 80.0, "mae": 60.0, "r2": 0.6}
MEAN = {"rmse": 126.0, "mae": 100.0, "r2": -0.001}
T = {"primary_metric": "rmse"}


def _decide(challenger, *, champion=None, baseline=MEAN, **thresholds):
    return decide_deployment(
        challenger,
        champion,
        Thresholds.from_dict({**T, **thresholds}),
        baseline_metrics=baseline,
        problem_type="regression",
    )


def test_a_model_that_beats_the_mean_by_the_relative_lift_deploys():
    decision = _decide(GOOD)
    assert decision.deploy
    assert "beats the mean baseline's 126.0000 by 36.5%" in decision.reasons[1]
    assert "relative rmse reduction" in decision.reasons[1]


def test_the_mean_predictor_is_rejected_by_the_baseline_check():
    decision = _decide({"rmse": 125.0, "r2": 0.01})
    assert not decision.deploy
    assert "(baseline)" in decision.reasons[0]
    assert "only 0.8% better than the mean baseline's 126.0000" in decision.reasons[1]
    assert "a model predicting the training mean" in decision.reasons[1]


def test_absolute_regression_thresholds():
    assert not _decide(GOOD, max_rmse=70.0).deploy
    assert not _decide(GOOD, min_r2=0.7).deploy
    decision = _decide(GOOD, max_rmse=90.0, min_r2=0.5)
    assert decision.deploy
    assert "Challenger rmse 80.0000 is within the maximum 90.0000." in decision.reasons


def test_the_champion_tolerance_is_a_share_of_its_rmse():
    within = _decide(GOOD, champion={"rmse": 79.5}, tolerance=0.01)
    assert within.deploy
    assert "0.6% worse than, within the tolerance 1.0%" in " ".join(within.reasons)
    worse = _decide(GOOD, champion={"rmse": 70.0}, tolerance=0.01)
    assert not worse.deploy
    assert "14.3% worse than the champion's 70.0000" in " ".join(worse.reasons)
