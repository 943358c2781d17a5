"""The release statistics against published values and scipy's own implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom, binomtest, ttest_1samp, ttest_rel

from include.ml_pipeline.release.statistics import (
    POCOCK,
    LookPlan,
    paired_accuracy_test,
    paired_error_test,
    share_shifts,
    wilson_bounds,
)


def test_wilson_bounds_match_newcombe_and_scipy():
    # Newcombe (1998), Stat Med 17:857, method 3 on 81/263: 0.2553 to 0.3662 (95%)
    low, high = wilson_bounds(81, 263, alpha=0.025)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    for k, n, alpha in [(0, 10, 0.05), (10, 10, 0.05), (3, 7, 0.01), (950, 1000, 0.0055)]:
        ref = binomtest(k, n).proportion_ci(confidence_level=1 - 2 * alpha, method="wilson")
        assert wilson_bounds(k, n, alpha) == pytest.approx((ref.low, ref.high), abs=1e-12)
    assert wilson_bounds(0, 0, 0.05) == (0.0, 1.0)
    with pytest.raises(ValueError, match="0 <= successes <= n"):
        wilson_bounds(5, 4, 0.05)
    with pytest.raises(ValueError, match="alpha must be in"):
        wilson_bounds(1, 4, 0.6)


def test_exact_mcnemar_without_margin_is_the_textbook_test():
    # Fagerland, Lydersen & Laake (2013), BMC Med Res Methodol 13:91: 1 vs 7 discordant
    # pairs, exact conditional p = 0.070 two-sided, so 9/256 one-sided
    test = paired_accuracy_test(champion_only=1, challenger_only=7, n=21, margin=0.0, alpha=0.05)
    assert test.p_noninferior == pytest.approx(9 / 256)
    assert 2 * test.p_noninferior == pytest.approx(0.0703, abs=1e-4)
    assert test.p_inferior == pytest.approx(1 - 1 / 256)
    assert test.difference == pytest.approx(6 / 21)
    assert test.p_noninferior == pytest.approx(binomtest(7, 8, 0.5, alternative="greater").pvalue)


def test_exact_mcnemar_margin_uses_the_conservative_discordance_bound():
    b, c, n, margin, alpha = 60, 45, 1000, 0.02, 0.025
    test = paired_accuracy_test(b, c, n, margin, alpha)
    psi_low, psi_high = wilson_bounds(b + c, n, alpha)
    theta_ni = 0.5 - margin / (2 * psi_high)
    theta_inf = 0.5 - margin / (2 * psi_low)
    assert test.p_noninferior == pytest.approx(binom.sf(c - 1, b + c, theta_ni))
    assert test.p_inferior == pytest.approx(binom.cdf(c, b + c, theta_inf))
    # the plug-in discordance would give a smaller p-value: the bound is conservative
    plug_in = 0.5 - margin / (2 * (b + c) / n)
    assert test.p_noninferior > binom.sf(c - 1, b + c, plug_in)
    # a margin makes non-inferiority easier to show than the plain McNemar test
    assert test.p_noninferior < paired_accuracy_test(b, c, n, 0.0, alpha).p_noninferior
    # discordance far below the margin: non-inferior whatever the split
    assert paired_accuracy_test(3, 0, 4000, 0.02, 0.025).p_noninferior == 0.0
    # no discordance and no margin: nothing shown
    assert paired_accuracy_test(0, 0, 100, 0.0, 0.05).p_noninferior == 1.0
    with pytest.raises(ValueError, match="champion_only \\+ challenger_only <= n"):
        paired_accuracy_test(6, 5, 10, 0.02, 0.05)


def test_paired_error_test_is_a_t_test_on_squared_errors_with_the_margin():
    # d = [-1, -2, -3]: t = -2 / (1 / sqrt 3) with 2 df, F(t) = 1/2 + t / (2 sqrt(2 + t^2))
    champion = np.array([2.0, 2.0, 2.0])
    challenger = np.sqrt(np.array([3.0, 2.0, 1.0]))
    test = paired_error_test(champion, challenger, margin=0.0)
    t = -2 / (1 / math.sqrt(3))
    assert test.p_noninferior == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)))
    assert test.p_noninferior + test.p_inferior == pytest.approx(1.0)
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, 500), rng.normal(0, 1.02, 500)
    margin = 0.05
    test = paired_error_test(a, b, margin)
    d = b * b - (1 + margin) ** 2 * a * a
    assert test.p_noninferior == pytest.approx(ttest_1samp(d, 0, alternative="less").pvalue)
    assert test.p_inferior == pytest.approx(ttest_1samp(d, 0, alternative="greater").pvalue)
    assert paired_error_test(a, b, 0.0).p_noninferior == pytest.approx(
        ttest_rel(b * b, a * a, alternative="less").pvalue
    )
    assert test.difference == pytest.approx(math.sqrt(np.mean(b * b) / np.mean(a * a)) - 1)
    with pytest.raises(ValueError, match="finite"):
        paired_error_test(np.array([1.0, math.nan]), np.array([1.0, 2.0]), 0.05)
    with pytest.raises(ValueError, match="same length"):
        paired_error_test(np.ones(3), np.ones(4), 0.05)


def test_share_shifts_bound_the_paired_change_of_each_group():
    champion = np.array([0] * 50 + [1] * 50)
    challenger = np.array([0] * 40 + [1] * 60)  # 10 rows moved from group 0 to 1
    shifts = share_shifts(champion, challenger, ["no", "yes"], alpha=0.05)
    assert [s.group for s in shifts] == ["no", "yes"]
    assert shifts[1].shift == pytest.approx(0.10)
    assert shifts[0].shift == pytest.approx(-0.10)
    x = np.r_[np.zeros(90), np.ones(10)]
    half = 1.959963984540054 * x.std(ddof=1) / 10  # z at 0.05 / 2 groups
    assert (shifts[1].low, shifts[1].high) == pytest.approx((0.10 - half, 0.10 + half))


def test_look_plan_spends_alpha_as_lan_demets():
    plan = LookPlan(looks=4, final_sample=4000, alpha=0.05)
    # O'Brien-Fleming-like: 2 (1 - Phi(z_{0.975} / sqrt(t))); at t = 1/2, 0.005575
    assert plan.spent(0.5) == pytest.approx(0.0055746, abs=1e-6)
    assert plan.spent(1.0) == pytest.approx(0.05)
    steps = [plan.alpha_at(k) for k in range(1, 5)]
    assert sum(steps) == pytest.approx(0.05)
    assert steps == sorted(steps)  # almost nothing early, most at the last look
    assert steps[0] < 1e-4
    assert [plan.sample_at(k) for k in range(1, 5)] == [1000, 2000, 3000, 4000]
    assert plan.is_final(4)
    assert not plan.is_final(3)
    pocock = LookPlan(4, 4000, 0.05, POCOCK)
    assert pocock.spent(0.5) == pytest.approx(0.05 * math.log(1 + (math.e - 1) / 2))
    assert sum(pocock.alpha_at(k) for k in range(1, 5)) == pytest.approx(0.05)
    with pytest.raises(ValueError, match=r"look must be 1\.\.4"):
        plan.alpha_at(5)
    with pytest.raises(ValueError, match="spending must be one of"):
        LookPlan(4, 4000, 0.05, "haybittle")
