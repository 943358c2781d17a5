"""The release decision on simulated shadow experiments at the default sample sizes (4
looks over 4,000 requests, every request labelled): how often a worse challenger is
promoted, and how often an equal one is turned away.

Seeded, so the numbers are the same on every run. `RELEASE_SIMULATIONS=2000 pytest
tests/release/test_simulated_streams.py -s` measures with more experiments (the figures in
docs/safe-release.md); the default keeps the test within a few seconds.
"""

from __future__ import annotations

import functools
import os

import pytest

from include.ml_pipeline.release.decision import FAIL, INCONCLUSIVE, PASS, DecisionPolicy
from include.ml_pipeline.release.statistics import LookPlan
from tests.release.streams import run_experiments

EXPERIMENTS = int(os.environ.get("RELEASE_SIMULATIONS", "150"))
POLICY = DecisionPolicy()
#: the one-sided level the looks spend: a challenger worse than the margin passes at
#: most this often
FALSE_PROMOTION_BOUND = POLICY.alpha
#: an equal challenger is turned away (fail) at most this often at the default sizes
EQUAL_REJECTION_BOUND = 0.10

CLASSIFICATION = {"accuracy": 0.85, "discordance": 0.08}
WORSE = [
    ("3 points less accurate", "classification", {**CLASSIFICATION, "drop": 0.03}),
    ("at the margin: 2 points less", "classification", {**CLASSIFICATION, "drop": 0.02}),
    ("RMSE 10% higher", "regression", {"rmse_ratio": 1.10}),
    ("at the margin: RMSE 5% higher", "regression", {"rmse_ratio": 1.05}),
]
EQUAL = [
    ("equally accurate", "classification", {**CLASSIFICATION, "drop": 0.0}),
    ("the same RMSE", "regression", {"rmse_ratio": 1.0}),
]


@functools.cache
def _outcome(kind, seed, stream):
    """The experiments of one scenario (`stream`: its settings as sorted pairs), run once
    per session: the plan test reuses the margin case's."""
    return run_experiments(kind, EXPERIMENTS, seed=seed, policy=POLICY, **dict(stream))


def _report(name, outcome):
    rates = ", ".join(f"{v} {outcome.rate(v):.1%}" for v in (PASS, FAIL, INCONCLUSIVE))
    print(
        f"\n{name} ({outcome.experiments} experiments): {rates}; "
        f"decided after {outcome.mean_requests:.0f} requests on average"
    )


@pytest.mark.parametrize(("name", "kind", "stream"), WORSE, ids=[w[0] for w in WORSE])
def test_a_worse_challenger_is_rarely_promoted(name, kind, stream):
    outcome = _outcome(kind, 2024, tuple(sorted(stream.items())))
    _report(name, outcome)
    assert outcome.rate(PASS) <= FALSE_PROMOTION_BOUND


@pytest.mark.parametrize(("name", "kind", "stream"), EQUAL, ids=[e[0] for e in EQUAL])
def test_an_equal_challenger_is_rarely_turned_away(name, kind, stream):
    outcome = _outcome(kind, 2025, tuple(sorted(stream.items())))
    _report(name, outcome)
    assert outcome.rate(FAIL) <= EQUAL_REJECTION_BOUND
    assert outcome.rate(INCONCLUSIVE) == 0.0  # the last look always decides


def test_the_look_plan_is_what_keeps_repeated_looks_honest(monkeypatch):
    """The regression margin case with every look at the full alpha (no spending):
    checking four times promotes the worse challenger more often than alpha allows."""
    name, kind, stream = WORSE[3]
    planned = _outcome(kind, 2024, tuple(sorted(stream.items())))
    monkeypatch.setattr(LookPlan, "alpha_at", lambda self, look: self.alpha)
    naive = run_experiments(kind, EXPERIMENTS, seed=2024, policy=POLICY, **stream)
    _report(f"{name}, every look at alpha {POLICY.alpha:g}", naive)
    assert naive.rate(PASS) > FALSE_PROMOTION_BOUND >= planned.rate(PASS)
