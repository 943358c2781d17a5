"""Candidate configurations: defaults are valid, errors name the bad key, estimators build."""

from __future__ import annotations

import json

import pytest

from include.ml_pipeline.training.candidates import (
    DEFAULT_CANDIDATES,
    WEAK_CANDIDATE,
    CandidateError,
    default_candidates,
    make_estimator,
    validate_candidate,
    validate_candidates,
    weak_candidates,
)


def test_defaults_are_valid_json_and_cover_both_families():
    checked = [c.to_dict() for c in validate_candidates(default_candidates())]
    assert json.loads(json.dumps(checked)) == checked
    kinds = {c["estimator"] for c in checked}
    assert {"logistic_regression", "hist_gradient_boosting"} <= kinds
    assert sum(c["estimator"] == "logistic_regression" for c in checked) >= 2
    assert sum(c["estimator"] == "hist_gradient_boosting" for c in checked) >= 2


def test_default_candidates_returns_a_copy():
    first = default_candidates()
    first[0]["params"]["C"] = 123
    assert DEFAULT_CANDIDATES[0]["params"]["C"] != 123


def test_weak_candidate_is_valid_and_a_prior_dummy():
    (weak,) = weak_candidates()
    assert weak == WEAK_CANDIDATE
    assert type(make_estimator(weak)).__name__ == "DummyClassifier"


def test_accepts_json_text():
    checked = validate_candidates(json.dumps(DEFAULT_CANDIDATES))
    assert [c.to_dict() for c in checked] == DEFAULT_CANDIDATES


@pytest.mark.parametrize(
    ("candidate", "message"),
    [
        ("logreg", "must be a dict"),
        ({"name": "x", "estimator": "dummy", "parms": {}}, "unknown key.*'parms'"),
        ({"estimator": "dummy"}, "missing required key 'name'"),
        ({"name": "x"}, "missing required key 'estimator'"),
        ({"name": "has space", "estimator": "dummy"}, "key 'name'"),
        ({"name": "x", "estimator": "svm"}, "key 'estimator' must be one of"),
        ({"name": "x", "estimator": "dummy", "params": [1]}, "key 'params' must be a dict"),
        (
            {"name": "x", "estimator": "logistic_regression", "params": {"alpha": 1}},
            "params key.*'alpha' not accepted by LogisticRegression",
        ),
        (
            {"name": "x", "estimator": "logistic_regression", "params": {"C": -1.0}},
            "'C' parameter",
        ),
        (
            {"name": "x", "estimator": "hist_gradient_boosting", "params": {"max_iter": "10"}},
            "'max_iter' parameter",
        ),
        (
            {"name": "x", "estimator": "logistic_regression", "params": {"C": float("nan")}},
            "finite number",
        ),
        (
            {"name": "x", "estimator": "logistic_regression", "params": {"C": object()}},
            "JSON value",
        ),
    ],
)
def test_validation_errors_name_the_key(candidate, message):
    with pytest.raises(CandidateError, match=message):
        validate_candidate(candidate)


def test_list_errors_name_the_index_and_duplicates():
    with pytest.raises(CandidateError, match=r"candidates\[1\].*'estimator'"):
        validate_candidates([WEAK_CANDIDATE, {"name": "y", "estimator": "svm"}])
    with pytest.raises(CandidateError, match="used twice"):
        validate_candidates([WEAK_CANDIDATE, WEAK_CANDIDATE])
    with pytest.raises(CandidateError, match="non-empty list"):
        validate_candidates([])
    with pytest.raises(CandidateError, match="not valid JSON"):
        validate_candidates("[{")


def test_make_estimator_sets_seed_unless_given():
    lr = make_estimator({"name": "a", "estimator": "logistic_regression", "params": {"C": 0.5}}, 7)
    assert lr.C == 0.5
    assert lr.random_state == 7
    assert lr.max_iter >= 1000
    hgb = make_estimator(
        {"name": "b", "estimator": "hist_gradient_boosting", "params": {"random_state": 1}}, 7
    )
    assert hgb.random_state == 1
    rf = make_estimator({"name": "c", "estimator": "random_forest"}, 3)
    assert rf.random_state == 3
