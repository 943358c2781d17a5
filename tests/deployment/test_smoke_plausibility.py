"""The smoke test's plausibility rule for a regressor's served numbers
(`api_client.implausible_values`): finite, and within the training target's range widened
by PLAUSIBLE_MARGIN of its width (or of its upper end's size, when larger); classifiers
are never judged by it."""

from __future__ import annotations

import math

from include.ml_pipeline.deployment.api_client import PLAUSIBLE_MARGIN, implausible_values

REGRESSION = {"target": {"name": "spend", "problem_type": "regression", "range": [10.0, 110.0]}}


def test_values_inside_the_widened_training_range_pass():
    margin = PLAUSIBLE_MARGIN * max(100.0, 110.0)  # width 100, upper end 110
    edge_low = 10.0 - margin
    edge_high = 110.0 + margin
    assert implausible_values([10.0, 55.5, 110, edge_low, edge_high], REGRESSION) is None


def test_a_value_beyond_the_margin_is_named_with_its_row_and_the_range():
    too_high = 110.0 + PLAUSIBLE_MARGIN * 110.0 + 1.0
    problem = implausible_values([50.0, too_high], REGRESSION)
    assert problem is not None
    assert f"prediction {too_high!r} at row 1" in problem
    assert "training target 'spend' ranged 10 to 110" in problem


def test_non_finite_and_non_numeric_values_are_implausible():
    assert "at row 0" in implausible_values([math.nan], REGRESSION)
    assert "at row 1" in implausible_values([1.0, math.inf], REGRESSION)
    assert "at row 0" in implausible_values(["12.0"], REGRESSION)
    assert "at row 0" in implausible_values([True], REGRESSION)


def test_classifiers_and_contracts_without_a_range_are_not_judged():
    classifier = {"target": {"name": "churn", "problem_type": "binary", "classes": ["no", "yes"]}}
    assert implausible_values(["yes", "no"], classifier) is None
    assert implausible_values([1e12], {"target": {"problem_type": "regression"}}) is None
    assert implausible_values([1e12], None) is None
