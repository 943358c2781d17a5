"""select_best: ranking by a validation metric, in the metric's direction."""

from __future__ import annotations

import pytest

from include.ml_pipeline.payloads import CandidateResult
from include.ml_pipeline.training.evaluate import select_best


def _result(name, **metrics):
    return CandidateResult(
        candidate=name,
        estimator="logistic_regression",
        params={},
        run_id=f"run-{name}",
        model_uri=f"models:/m-{name}",
        metrics=metrics,
        fit_seconds=None,
        train_fingerprint=None,
        reused=False,
    )


RESULTS = [
    _result("a", roc_auc=0.80, log_loss=0.50),
    _result("b", roc_auc=0.85, log_loss=0.55),
    _result("c", roc_auc=0.85, log_loss=0.40),
]


def test_highest_auc_first_wins_a_tie():
    chosen = select_best(RESULTS, "roc_auc", True)
    assert chosen.best.candidate == "b"
    assert chosen.ranking == [["b", 0.85], ["c", 0.85], ["a", 0.80]]
    assert chosen.best is RESULTS[1]  # the winner as it came, not a modified copy


def test_direction_inferred_and_overridable():
    assert select_best(RESULTS, "log_loss").best.candidate == "c"
    assert select_best(RESULTS, "log_loss", greater_is_better=True).best.candidate == "b"


def test_skips_none_missing_and_nan():
    results = [None, _result("x"), _result("y", roc_auc=float("nan")), _result("z", roc_auc=0.6)]
    assert select_best(results, "roc_auc").best.candidate == "z"


def test_errors_say_what_is_missing():
    with pytest.raises(ValueError, match="no candidate result has a finite 'f1'"):
        select_best(RESULTS, "f1")
    with pytest.raises(ValueError, match="unknown direction"):
        select_best(RESULTS, "custom")
    assert select_best([_result("q", custom=1.0)], "custom", True).best.candidate == "q"
