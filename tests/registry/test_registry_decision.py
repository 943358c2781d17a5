"""The deploy gate as a table of cases."""

from __future__ import annotations

import pytest

from include.ml_pipeline.registry.decision import Decision, Thresholds, decide_deployment

GOOD = {"roc_auc": 0.85, "accuracy": 0.80, "f1": 0.62, "log_loss": 0.45}
WEAK = {"roc_auc": 0.50, "accuracy": 0.72, "f1": 0.0, "log_loss": 0.59}
T = {"min_roc_auc": 0.75, "min_accuracy": 0.70, "max_log_loss": 0.60, "tolerance": 0.01}

CASES = [
    # id, challenger, champion, thresholds, deploy, fragments expected in the reasons
    ("no champion, clears thresholds", GOOD, None, T, True, ["No champion yet"]),
    ("no champion, weak", WEAK, None, T, False, ["roc_auc 0.5000 is below the minimum 0.7500"]),
    (
        "accuracy below minimum",
        {**GOOD, "accuracy": 0.65},
        None,
        T,
        False,
        ["accuracy 0.6500 is below the minimum 0.7000"],
    ),
    (
        "log loss above maximum",
        {**GOOD, "log_loss": 0.71},
        None,
        T,
        False,
        ["log_loss 0.7100 exceeds the maximum 0.6000"],
    ),
    (
        "min_f1 checked when set",
        {**GOOD, "f1": 0.3},
        None,
        {**T, "min_f1": 0.5},
        False,
        ["f1 0.3000 is below the minimum 0.5000"],
    ),
    ("better than champion", GOOD, {**GOOD, "roc_auc": 0.80}, T, True, ["at least as good"]),
    ("equal to champion", GOOD, dict(GOOD), T, True, ["at least as good"]),
    (
        "slightly worse, within tolerance",
        GOOD,
        {**GOOD, "roc_auc": 0.855},
        T,
        True,
        ["0.0050 worse than, within the tolerance 0.0100"],
    ),
    (
        "worse than champion beyond tolerance",
        GOOD,
        {**GOOD, "roc_auc": 0.90},
        T,
        False,
        ["0.0500 worse than the champion's 0.9000", "more than the tolerance 0.0100"],
    ),
    (
        "log_loss as primary: lower is better",
        GOOD,
        {**GOOD, "log_loss": 0.30},
        {**T, "primary_metric": "log_loss"},
        False,
        ["0.1500 worse than the champion's 0.3000", "lower is better"],
    ),
    (
        "log_loss as primary: lower challenger wins",
        GOOD,
        {**GOOD, "log_loss": 0.50},
        {**T, "primary_metric": "log_loss"},
        True,
        ["at least as good"],
    ),
    (
        "champion could not be scored",
        GOOD,
        {},
        T,
        True,
        ["champion has no usable roc_auc"],
    ),
    (
        "missing challenger metric fails",
        {"accuracy": 0.8, "log_loss": 0.4},
        None,
        T,
        False,
        ["roc_auc is missing or not a number"],
    ),
    (
        "NaN fails",
        {**GOOD, "roc_auc": float("nan")},
        {**GOOD},
        T,
        False,
        ["roc_auc is missing or not a number"],
    ),
    (
        "thresholds disabled with None",
        WEAK,
        None,
        {"min_roc_auc": None, "min_accuracy": None, "max_log_loss": None},
        True,
        ["No champion yet"],
    ),
    (
        "clears thresholds but loses to champion",
        {**GOOD, "roc_auc": 0.78},
        GOOD,
        T,
        False,
        ["roc_auc 0.7800 meets the minimum", "0.0700 worse"],
    ),
]


@pytest.mark.parametrize(
    ("challenger", "champion", "thresholds", "deploy", "fragments"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_decision_table(challenger, champion, thresholds, deploy, fragments):
    decision = decide_deployment(challenger, champion, thresholds)
    assert isinstance(decision, Decision)
    assert decision.deploy is deploy
    assert decision.reasons[0].startswith("Deploy" if deploy else "Reject")
    text = " ".join(decision.reasons)
    for fragment in fragments:
        assert fragment in text
    assert all(reason.endswith(".") for reason in decision.reasons)
    assert decision.to_dict() == {"deploy": deploy, "reasons": decision.reasons}


def test_defaults_apply_when_thresholds_omitted():
    assert decide_deployment(GOOD, None).deploy is True
    assert decide_deployment(WEAK, None).deploy is False
    assert decide_deployment(GOOD, None, Thresholds()).deploy is True


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"min_auc": 0.7}, "unknown threshold key.*min_auc"),
        ({"primary_metric": "auc"}, "primary_metric must be one of"),
        ({"tolerance": -0.1}, "tolerance must be"),
        ({"min_accuracy": "high"}, "min_accuracy must be a number"),
    ],
)
def test_threshold_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        Thresholds.from_dict(bad)
