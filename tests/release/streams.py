"""Simulated release experiments: a champion and a challenger answering the same stream
of requests (shadow), every request labelled, decided at each planned look on the
stream so far, as the DAG would. Seeded: the same rates on every run."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from include.ml_pipeline.release.decision import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    DecisionPolicy,
    Evidence,
    decide,
)


@dataclass(frozen=True)
class Outcome:
    """How many simulated experiments ended in each verdict (the first look that was not
    inconclusive decides; still inconclusive after the last look counts as such), and the
    mean number of requests seen when the verdict came."""

    experiments: int
    counts: dict[str, int]
    mean_requests: float

    def rate(self, verdict: str) -> float:
        return self.counts.get(verdict, 0) / self.experiments


def classification_stream(
    rng: np.random.Generator, n: int, accuracy: float, drop: float, discordance: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binary labels (30% positive); the champion right with probability `accuracy`, the
    challenger `drop` points less, the two disagreeing on correctness on `discordance`
    of the requests."""
    p10 = (discordance + drop) / 2  # champion right only
    p01 = (discordance - drop) / 2  # challenger right only
    p11 = accuracy - p10
    cells = rng.choice(4, size=n, p=[p11, p10, p01, 1 - p11 - p10 - p01])
    y = (rng.random(n) < 0.3).astype(np.int64)
    champion_right = (cells == 0) | (cells == 1)
    challenger_right = (cells == 0) | (cells == 2)
    a = np.where(champion_right, y, 1 - y)
    b = np.where(challenger_right, y, 1 - y)
    return a, b, y


def regression_stream(
    rng: np.random.Generator, n: int, rmse_ratio: float, correlation: float = 0.8
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A signal with sd 3, the champion's errors N(0, 1), the challenger's N(0,
    rmse_ratio**2), correlated `correlation` (the two find the same requests hard)."""
    y = rng.normal(10.0, 3.0, n)
    e_a = rng.normal(0.0, 1.0, n)
    e_b = rmse_ratio * (correlation * e_a + np.sqrt(1 - correlation**2) * rng.normal(0.0, 1.0, n))
    return y + e_a, y + e_b, y


def run_experiments(
    kind: str,
    experiments: int,
    seed: int,
    policy: DecisionPolicy,
    **stream: float,
) -> Outcome:
    """`experiments` simulated shadow experiments of `kind` (classification/regression),
    each decided look by look until a verdict other than inconclusive."""
    rng = np.random.default_rng(seed)
    plan = policy.plan
    total = plan.final_sample
    counts: Counter[str] = Counter()
    seen = 0
    latency = np.ones(total)
    for _ in range(experiments):
        if kind == "regression":
            a, b, y = regression_stream(rng, total, **stream)
        else:
            a, b, y = classification_stream(rng, total, **stream)
        verdict = INCONCLUSIVE
        for look in range(1, plan.looks + 1):
            n = plan.sample_at(look)
            evidence = Evidence(
                regression=kind == "regression",
                champion=a[:n],
                challenger=b[:n],
                labels=y[:n],
                has_label=np.ones(n, dtype=bool),
                challenger_requests=n,
                challenger_failures=0,
                champion_requests=n,
                champion_failures=0,
                challenger_latency_ms=latency[:n],
                champion_latency_ms=latency[:n],
            )
            verdict = decide(evidence, look, policy).verdict
            if verdict != INCONCLUSIVE:
                break
        counts[verdict] += 1
        seen += n
    counted = {v: counts.get(v, 0) for v in (PASS, FAIL, INCONCLUSIVE)}
    return Outcome(experiments, counted, seen / max(experiments, 1))
