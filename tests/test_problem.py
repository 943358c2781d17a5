"""The problem type inferred from the label column, with the known wrong guesses."""

from __future__ import annotations

import numpy as np
import pytest

from include.ml_pipeline.problem import (
    BINARY,
    MULTICLASS,
    REGRESSION,
    LabelFacts,
    ProblemTypeError,
    infer_problem_type,
    lift,
    resolve_metric,
)

RNG = np.random.default_rng(0)


def _infer(values, requested="auto"):
    return infer_problem_type(LabelFacts.of(values), requested)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(list(RNG.integers(1, 6, 5000)), MULTICLASS, id="ratings 1-5"),
        pytest.param(list(RNG.integers(1, 6, 60)), MULTICLASS, id="ratings 1-5, 60 rows"),
        pytest.param(list(RNG.integers(0, 3, 400)), MULTICLASS, id="a 0/1/2 code"),
        pytest.param(list(RNG.integers(3, 10, 6000)), MULTICLASS, id="wine quality 3-9"),
        pytest.param(
            list(RNG.integers(300, 19000, 50_000)), REGRESSION, id="integer prices, 1000s of values"
        ),
        pytest.param(list(RNG.integers(0, 90, 2000)), REGRESSION, id="ages in years"),
        pytest.param(list(RNG.integers(0, 30, 200)), REGRESSION, id="counts 0-29 in 200 rows"),
        pytest.param(list(RNG.integers(0, 30, 10_000)), MULTICLASS, id="counts 0-29 in 10k rows"),
        pytest.param(list(RNG.normal(size=500)), REGRESSION, id="floats"),
        pytest.param([1.5, 2.0, 3.0] * 50, REGRESSION, id="few floats with fractions"),
        pytest.param([0.0, 1.0, 2.0] * 50, MULTICLASS, id="whole floats"),
        pytest.param(["1.5", "2.25", "3.0", "4.75"] * 40, REGRESSION, id="numbers as text"),
        pytest.param(["a", "b", "c"] * 30, MULTICLASS, id="strings"),
        pytest.param(["yes", "no"] * 30, BINARY, id="two strings"),
        pytest.param([True, False] * 30, BINARY, id="booleans"),
        pytest.param([0, 1] * 30, BINARY, id="0/1"),
        pytest.param([1.5, 2.5] * 30, BINARY, id="two floats"),
        pytest.param([0.0] * 900 + list(RNG.gamma(2, 500, 100)), REGRESSION, id="mostly zeros"),
    ],
)
def test_inferred_problem_type(values, expected):
    decision = _infer(values)
    assert decision.problem_type == expected, decision.reason
    assert decision.inferred


def test_missing_values_are_dropped_before_deciding():
    facts = LabelFacts.of([1.0, None, float("nan"), 2.0, 1.0])
    assert (facts.rows, facts.distinct) == (3, 2)
    assert _infer([1.0, None, 2.0]).problem_type == BINARY


def test_a_guess_that_may_be_wrong_names_the_param_that_fixes_it():
    ratings = _infer(list(RNG.integers(1, 6, 500)))
    assert "problem_type Param to regression" in ratings.reason
    prices = _infer(list(RNG.integers(300, 19000, 5000)))
    assert "problem_type Param to multiclass" in prices.reason
    assert "more than 50" in prices.reason


def test_the_param_overrides_the_inference():
    decision = _infer(list(RNG.integers(1, 6, 500)), REGRESSION)
    assert decision.problem_type == REGRESSION
    assert not decision.inferred
    assert "problem_type Param" in decision.reason
    with pytest.raises(ProblemTypeError, match="problem_type must be one of"):
        _infer([1, 2], "classification")


def test_metrics_resolve_per_problem_type_and_refuse_the_wrong_kind():
    assert resolve_metric("auto", REGRESSION, "selection_metric") == "rmse"
    assert resolve_metric("auto", BINARY, "selection_metric") == "roc_auc"
    assert resolve_metric("r2", REGRESSION, "selection_metric") == "r2"
    with pytest.raises(ProblemTypeError, match="selection_metric 'roc_auc' does not fit"):
        resolve_metric("roc_auc", REGRESSION, "selection_metric")


def test_lift_is_a_relative_error_reduction_for_regression():
    assert lift("rmse", 8.0, 10.0) == pytest.approx(0.2)
    assert lift("rmse", 11.0, 10.0) == pytest.approx(-0.1)
    assert lift("r2", 0.4, 0.0) == pytest.approx(0.4)
    assert lift("roc_auc", 0.7, 0.5) == pytest.approx(0.2)
    assert lift("log_loss", 0.5, 0.7) == pytest.approx(0.2)
