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
    assert decision.to_dict() == {
        "deploy": deploy,
        "reasons": decision.reasons,
        "contract_changes": [],
    }


PRIOR = {"roc_auc": 0.50, "accuracy": 0.72, "f1": 0.0, "log_loss": 0.59}


def test_defaults_apply_when_thresholds_omitted():
    # The defaults changed (issue "a guarded model contract"): no absolute threshold is
    # set; the class-prior baseline scored on the same split is what keeps WEAK out.
    assert decide_deployment(GOOD, None, baseline_metrics=PRIOR).deploy is True
    assert decide_deployment(WEAK, None, baseline_metrics=PRIOR).deploy is False
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


# --------------------------------------------------------------------------- the baseline

HARD = {"roc_auc": 0.69, "accuracy": 0.66, "f1": 0.41, "log_loss": 0.63}


@pytest.mark.parametrize(
    ("challenger", "thresholds", "deploy", "fragment"),
    [
        (GOOD, {}, True, "beats the class-prior baseline's 0.5000 by 0.3500"),
        # A hard but real problem deploys with the defaults when it clearly beats the prior.
        (HARD, {}, True, "by 0.1900, at least the required lift 0.0500"),
        # A model that learnt nothing (the prior itself) is rejected, naming the lift.
        (PRIOR, {}, False, "only 0.0000 better than the class-prior baseline's 0.5000"),
        ({**PRIOR, "roc_auc": 0.53}, {}, False, "less than the required lift 0.0500"),
        ({**PRIOR, "roc_auc": 0.53}, {"min_lift_over_baseline": 0.02}, True, "at least the"),
        (PRIOR, {"min_lift_over_baseline": None}, True, "No champion yet"),
        # An absolute threshold, when set, still applies on top of the baseline.
        (HARD, {"min_roc_auc": 0.75}, False, "roc_auc 0.6900 is below the minimum 0.7500"),
        (
            {**GOOD, "log_loss": 0.40},
            {"primary_metric": "log_loss"},
            True,
            "beats the class-prior baseline's 0.5900 by 0.1900",
        ),
        ({**GOOD, "log_loss": 0.58}, {"primary_metric": "log_loss"}, False, "only 0.0100"),
        ({**GOOD, "roc_auc": float("nan")}, {}, False, "roc_auc is missing or not a number"),
    ],
)
def test_baseline_gate(challenger, thresholds, deploy, fragment):
    decision = decide_deployment(challenger, None, thresholds, baseline_metrics=PRIOR)
    assert decision.deploy is deploy, decision.reasons
    assert fragment in " ".join(decision.reasons)
    assert decision.reasons[0].startswith("Deploy" if deploy else "Reject")


def test_weak_prior_equals_the_baseline_and_is_rejected_even_without_champion():
    decision = decide_deployment(WEAK, None, None, baseline_metrics={**WEAK})
    assert decision.deploy is False
    assert decision.reasons[0] == "Reject: the challenger failed 1 check (baseline)."
    assert "roc_auc" in decision.reasons[1]


def test_baseline_without_a_usable_metric_is_said_and_skipped():
    decision = decide_deployment(GOOD, None, {}, baseline_metrics={"roc_auc": float("nan")})
    assert decision.deploy is True
    assert "baseline has no usable roc_auc" in " ".join(decision.reasons)


def test_champion_that_cannot_be_scored_says_why():
    decision = decide_deployment(
        GOOD,
        None,
        {},
        champion_error="KeyError: missing column(s): age",
        baseline_metrics=PRIOR,
    )
    text = " ".join(decision.reasons)
    assert "could not be scored on this test split (KeyError: missing column(s): age)" in text
    assert "thresholds alone decide" not in text


# --------------------------------------------------------------------------- the contract

from include.ml_pipeline.registry.contract import (  # noqa: E402
    ContractChange,
    ContractComparison,
)

RENAMED = ContractChange(
    "renamed",
    "age",
    "column 'age' is gone and 'age_1' (numeric) is new: renamed?",
    "send 'age_1' instead of 'age'",
)
ADDED = ContractChange(
    "added",
    "noise",
    "new column 'noise' (numeric) would be required",
    "send 'noise' as a number (or null)",
)


def test_a_contract_change_is_rejected_by_default_naming_each_difference():
    contract = ContractComparison("3", [RENAMED, ADDED])
    decision = decide_deployment(GOOD, GOOD, {}, baseline_metrics=PRIOR, contract=contract)
    assert decision.deploy is False
    assert decision.reasons[0] == "Reject: the challenger failed 1 check (input contract)."
    text = " ".join(decision.reasons)
    assert "differs from champion v3's, so today's clients would break" in text
    assert "column 'age' is gone and 'age_1'" in text
    assert "new column 'noise' (numeric) would be required" in text
    assert "allow_contract_change" in text
    assert decision.contract_changes == [str(RENAMED), str(ADDED)]


def test_an_allowed_contract_change_deploys_and_says_what_clients_must_change():
    contract = ContractComparison("3", [RENAMED, ADDED])
    decision = decide_deployment(
        GOOD, GOOD, {"allow_contract_change": True}, baseline_metrics=PRIOR, contract=contract
    )
    assert decision.deploy is True
    text = " ".join(decision.reasons)
    assert "allowed by allow_contract_change" in text
    assert "Clients must change: send 'age_1' instead of 'age'; send 'noise'" in text
    assert len(decision.contract_changes) == 2


def test_same_contract_and_uncomparable_contract_are_said():
    same = decide_deployment(GOOD, GOOD, {}, contract=ContractComparison("3", []))
    assert same.deploy is True
    assert "same as champion v3's" in " ".join(same.reasons)
    unknown = decide_deployment(
        GOOD, GOOD, {}, contract=ContractComparison("3", compared=False, note="it cannot be read")
    )
    assert unknown.deploy is True
    assert "not compared with champion v3's: it cannot be read." in " ".join(unknown.reasons)


def test_allow_contract_change_must_be_a_boolean():
    with pytest.raises(ValueError, match="allow_contract_change must be true or false"):
        Thresholds.from_dict({"allow_contract_change": "yes"})
    with pytest.raises(ValueError, match="min_lift_over_baseline must be"):
        Thresholds.from_dict({"min_lift_over_baseline": -0.1})


def test_a_different_problem_gets_one_sentence_naming_the_two_ways_forward():
    """Titanic passengers registered under the churn model: no column in common. The
    reasons say so in one sentence; the per-column list stays in contract_changes."""
    from include.ml_pipeline.data_preparation.sample_data import churn_spec, generate_churn_frame
    from include.ml_pipeline.features import FeatureSpec
    from include.ml_pipeline.registry.contract import build_contract, compare
    from tests.support.models import titanic_passengers

    churn = build_contract(generate_churn_frame(300, seed=1), churn_spec())
    passengers = titanic_passengers("age_group")
    other = build_contract(
        passengers, FeatureSpec("survived", [], ["class", "sex", "age_group"], "binary")
    )
    comparison = compare("3", churn, other)
    assert comparison.different_problem.startswith("it shares none of the champion's 11 input")
    decision = decide_deployment(GOOD, GOOD, {}, baseline_metrics=PRIOR, contract=comparison)
    assert decision.deploy is False
    contract_reasons = [r for r in decision.reasons if "champion v3" in r and "problem" in r]
    assert len(contract_reasons) == 1
    sentence = contract_reasons[0]
    assert "This is a different problem, not a new version of champion v3" in sentence
    assert "own model_name" in sentence
    assert "allow_contract_change" in sentence
    assert "is no longer an input" not in " ".join(decision.reasons)  # not the column list
    assert len(decision.contract_changes) == len(comparison.changes) > 10
    # the same labels but no column in common, or the same columns but no label in common
    relabelled = dict(churn, target=dict(churn["target"], labels=["stay", "leave"]))
    assert "none of its labels" in compare("3", churn, relabelled).different_problem
    allowed = decide_deployment(
        GOOD, GOOD, {"allow_contract_change": True}, baseline_metrics=PRIOR, contract=comparison
    )
    assert allowed.deploy is True
    # an ordinary change (one renamed column) is not a different problem
    assert compare("3", churn, dict(churn, columns=churn["columns"][1:])).different_problem is None
