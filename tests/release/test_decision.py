"""The release decision table: each check decides what it should, and the verdict follows
(default policy: 4 looks over 4,000 challenger requests)."""

from __future__ import annotations

import numpy as np
import pytest

from include.ml_pipeline.release.decision import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    SKIPPED,
    DecisionPolicy,
    Evidence,
    decide,
)

N = 4000


def evidence(
    champion,
    challenger,
    labels=None,
    regression=False,
    failures=0,
    champion_failures=0,
    latency=1.0,
    champion_latency=1.0,
):
    a, b = np.asarray(champion), np.asarray(challenger)
    n = len(a)
    has = np.zeros(n, bool) if labels is None else np.ones(n, bool)
    y = np.zeros(n) if labels is None else np.asarray(labels)
    return Evidence(
        regression=regression,
        champion=a,
        challenger=b,
        labels=y,
        has_label=has,
        challenger_requests=n + failures,
        challenger_failures=failures,
        champion_requests=n + champion_failures,
        champion_failures=champion_failures,
        challenger_latency_ms=np.full(n, latency, dtype=float),
        champion_latency_ms=np.full(n, champion_latency, dtype=float),
    )


def labels_of(n, seed=0, positive=0.3):
    return (np.random.default_rng(seed).random(n) < positive).astype(int)


def flip(y, share, seed):
    """`y` with a random `share` of it flipped (0 <-> 1)."""
    rng = np.random.default_rng(seed)
    out = y.copy()
    idx = rng.choice(len(y), round(share * len(y)), replace=False)
    out[idx] = 1 - out[idx]
    return out


def test_too_little_traffic_is_inconclusive_and_keeps_the_champion():
    y = labels_of(999)
    decision = decide(evidence(y, y), look=1)
    assert decision.verdict == INCONCLUSIVE
    assert decision.keeps_champion
    assert [c.name for c in decision.checks] == ["sample"]
    assert decision.check("sample").value == 999
    assert decision.check("sample").threshold == 1000
    assert "too little traffic" in decision.summary
    assert "champion stays" in decision.summary


def test_errors_beyond_the_look_sample_fail_before_the_minimum():
    y = labels_of(500)
    decision = decide(evidence(y, y, failures=11), look=1)  # 11 > 1% of 1,000
    assert decision.verdict == FAIL
    assert decision.check("error_rate").status == FAIL
    assert "11 failed challenger requests" in decision.summary


def test_the_same_answers_pass_and_say_accuracy_was_not_tested():
    y = labels_of(N)
    decision = decide(evidence(y, y), look=4)
    assert decision.verdict == PASS
    assert not decision.keeps_champion
    assert decision.check("non_inferiority").status == SKIPPED
    assert "not tested: non_inferiority" in decision.summary
    assert decision.alpha == pytest.approx(DecisionPolicy().plan.alpha_at(4))
    assert {c.name for c in decision.checks} >= {
        "sample",
        "error_rate",
        "error_rate_vs_champion",
        "p95_latency",
        "agreement",
        "share_shift[0]",
        "share_shift[1]",
        "non_inferiority",
    }
    # with labels required and none arrived: wait, then fail at the last look
    strict = DecisionPolicy(labels_required=True)
    assert decide(evidence(y, y), look=2, policy=strict).verdict == INCONCLUSIVE
    final = decide(evidence(y, y), look=4, policy=strict)
    assert final.verdict == FAIL
    assert "non_inferiority not shown" in final.summary


@pytest.mark.parametrize(
    ("kwargs", "check", "policy"),
    [
        ({"failures": 50, "champion_failures": 40}, "error_rate", None),  # 1.2% > 1%
        ({"failures": 33}, "error_rate_vs_champion", None),  # 0.8% > 0% + 0.5%
        ({"latency": 10.0, "champion_latency": 1.0}, "p95_latency", None),
        ({"latency": 30.0, "champion_latency": 25.0}, "p95_latency_limit", 20.0),
    ],
)
def test_guardrails_fail_the_challenger(kwargs, check, policy):
    y = labels_of(N)
    chosen = DecisionPolicy(max_p95_latency_ms=policy) if policy else None
    decision = decide(evidence(y, y, **kwargs), look=4, policy=chosen)
    assert decision.verdict == FAIL
    assert decision.check(check).status == FAIL
    assert [c.name for c in decision.checks if c.status == FAIL] == [check]


def test_a_challenger_that_disagrees_fails_on_agreement():
    y = labels_of(N)
    decision = decide(evidence(y, flip(y, 0.2, seed=1)), look=2)
    agreement = decision.check("agreement")
    assert agreement.status == FAIL
    assert agreement.value < 0.9
    assert decision.verdict == FAIL


def test_a_challenger_that_moves_answers_to_one_class_fails_on_its_share():
    y = labels_of(N)
    challenger = y.copy()
    challenger[np.flatnonzero(y == 0)[: int(0.08 * N)]] = 1  # 8% more "1" answers
    decision = decide(evidence(y, challenger), look=4)
    assert decision.check("agreement").status == PASS
    shift = decision.check("share_shift[1]")
    assert shift.status == FAIL
    assert shift.value > 0.05
    assert decision.verdict == FAIL
    assert "share" in decision.summary


def test_what_the_last_look_has_not_shown_fails_and_an_interim_look_waits():
    y = labels_of(N)
    challenger = flip(y, 0.095, seed=2)  # agreement 0.905: bounds straddle 0.90
    interim = decide(evidence(y, challenger), look=3)
    assert interim.check("agreement").status == INCONCLUSIVE
    assert interim.verdict == INCONCLUSIVE
    assert "next look at 4000 requests" in interim.summary
    final = decide(evidence(y, challenger), look=4)
    assert final.verdict == FAIL
    assert "the last planned look" in final.summary


def test_labels_decide_non_inferiority_for_classification():
    y = labels_of(N, seed=5)
    champion = flip(y, 0.10, seed=6)  # 90% accurate
    worse = flip(champion, 0.06, seed=7)  # about 4.8 points less accurate, 94% agreement
    decision = decide(evidence(champion, worse, labels=y), look=4)
    assert decision.check("non_inferiority").status == FAIL
    assert decision.verdict == FAIL
    assert "exact_mcnemar" in decision.check("non_inferiority").reason
    same = champion.copy()
    wrong = np.flatnonzero(champion != y)[:120]
    right = np.flatnonzero(champion == y)[:120]
    same[wrong] = y[wrong]  # as many fixed as broken: the same accuracy
    same[right] = 1 - y[right]
    decision = decide(evidence(champion, same, labels=y), look=4)
    assert decision.check("non_inferiority").status == PASS
    assert decision.verdict == PASS
    assert "not tested" not in decision.summary


def test_regression_agreement_ranges_and_errors():
    rng = np.random.default_rng(11)
    y = rng.normal(10, 3, N)
    champion = y + rng.normal(0, 1, N)
    close = y + 0.8 * (champion - y) + 0.6 * rng.normal(0, 1, N)  # same RMSE, correlated
    decision = decide(evidence(champion, close, labels=y, regression=True), look=4)
    assert decision.verdict == PASS, decision.summary
    ranges = [c for c in decision.checks if c.name.startswith("share_shift[range")]
    assert len(ranges) == DecisionPolicy().range_bins
    assert decision.check("non_inferiority").status == PASS
    assert "paired_t" in decision.check("non_inferiority").reason
    biased = champion + 2.0  # every answer 2 higher: beyond 0.5 sd of the answers
    decision = decide(evidence(champion, biased, labels=y, regression=True), look=4)
    assert decision.check("agreement").status == FAIL
    assert decision.check("non_inferiority").status == FAIL
    moved = [c for c in decision.checks if c.name.startswith("share_shift[range")]
    assert moved[0].status == FAIL
    assert moved[-1].status == FAIL
    worse = y + 1.25 * (champion - y)  # 25% higher RMSE, perfectly correlated
    decision = decide(evidence(champion, worse, labels=y, regression=True), look=4)
    assert decision.check("non_inferiority").status == FAIL
    assert decision.verdict == FAIL


def test_a_look_outside_the_plan_is_refused():
    y = labels_of(10)
    with pytest.raises(ValueError, match=r"look must be 1\.\.4"):
        decide(evidence(y, y), look=0)
    decision = decide(evidence(y, y), look=1)
    assert decision.to_dict()["keeps_champion"] is True


def test_a_policy_out_of_range_is_refused_by_name():
    with pytest.raises(ValueError, match=r"DecisionPolicy.min_agreement must be in \[0, 1\)"):
        DecisionPolicy(min_agreement=1.5)
    with pytest.raises(ValueError, match="final_sample"):
        DecisionPolicy(looks=5, final_requests=3)


def test_evidence_from_records_counts_requests_errors_and_pairs():
    from include.ml_pipeline.release.records import PairedRecord

    records = [
        # one request of two rows: both arms answered, the second row labelled
        PairedRecord("r1", 0, "champion", 1.0, 1.5, 2.0, 3.0),
        PairedRecord("r1", 1, "champion", 2.0, 2.5, 2.0, 3.0, label=2.2),
        # the challenger failed this one: counted once, never paired
        PairedRecord("r2", 0, "champion", 4.0, None, 1.0, None, challenger_error="timeout"),
        # canary without the champion's answer: the challenger's request, not a pair
        PairedRecord("r3", 0, "challenger", None, 7.0, None, 5.0),
    ]
    ev = Evidence.of(records, regression=True)
    assert ev.champion.tolist() == [1.0, 2.0]
    assert ev.challenger.tolist() == [1.5, 2.5]
    assert ev.has_label.tolist() == [False, True]
    assert ev.labels[1] == pytest.approx(2.2)
    assert (ev.challenger_requests, ev.challenger_failures) == (3, 1)
    assert (ev.champion_requests, ev.champion_failures) == (2, 0)
    assert sorted(ev.challenger_latency_ms.tolist()) == [3.0, 5.0]
    assert sorted(ev.champion_latency_ms.tolist()) == [1.0, 2.0]
    labels = Evidence.of(
        [
            PairedRecord("a", 0, "champion", 1, "1", label="1"),
            PairedRecord("b", 0, "champion", "0", 0),
        ],
        regression=False,
    )
    # answers and labels compared as text: 1 (int) and "1" (str) are the same label
    assert labels.champion.tolist() == ["1", "0"]
    assert labels.challenger.tolist() == ["1", "0"]
    assert labels.labels.tolist() == ["1", ""]


def test_an_interim_look_fails_a_challenger_shown_worse_than_the_margin():
    y = labels_of(1000, seed=8)
    champion = flip(y, 0.10, seed=9)
    worse = champion.copy()
    right = np.flatnonzero(champion == y)[:35]
    worse[right] = 1 - y[right]  # 3.5 points less accurate, 96.5% agreement
    decision = decide(evidence(champion, worse, labels=y), look=1)
    check = decision.check("non_inferiority")
    assert check.status == FAIL
    assert check.threshold == DecisionPolicy().futility_alpha
    assert decision.verdict == FAIL
    # without futility the first look (alpha 0.00009) only waits
    patient = decide(
        evidence(champion, worse, labels=y), look=1, policy=DecisionPolicy(futility_alpha=0)
    )
    assert patient.check("non_inferiority").status == INCONCLUSIVE
