"""The tests a release decision rests on: a Wilson bound on agreement, an exact paired
non-inferiority test on labelled classifications, a paired non-inferiority test on the
errors of labelled regressions, and looks planned ahead so that checking a running
experiment again and again does not inflate false promotions.

Every test here is one-sided at a level `alpha` that the look plan gives (`LookPlan`):

- **Agreement** (`wilson_bounds`): the Wilson score interval of a proportion (Wilson
  1927; Newcombe 1998's method 3); each bound is a one-sided bound at `alpha` (the
  two-sided interval at `1 - 2 * alpha`).
- **Classification with labels** (`paired_accuracy_test`): the exact McNemar test on the
  discordant pairs, with a margin. Of `n` labelled requests, `b` were answered right by
  the champion only and `c` by the challenger only; the accuracy difference is
  `(c - b) / n`. Given the `d = b + c` discordant pairs, `c ~ Binomial(d, theta)`, and a
  challenger exactly `margin` less accurate has `theta0 = 1/2 - margin / (2 * psi)` where
  `psi` is the share of discordant pairs. `psi` is unknown; it is taken at its upper
  Wilson bound for the non-inferiority side and at its lower bound for the inferiority
  side: a larger `psi` gives a larger `theta0` (harder to show non-inferiority), a smaller
  one a smaller `theta0` (harder to show inferiority), so both choices are conservative.
  With `margin = 0` this is the textbook exact (one-sided) McNemar test.
- **Regression with labels** (`paired_error_test`): a paired t-test on
  `d_i = e_challenger_i**2 - (1 + margin)**2 * e_champion_i**2`, the squared errors of
  the two models on the same request. Its mean is below zero exactly when the
  challenger's RMSE is below `(1 + margin)` times the champion's, so the test is of the
  hypothesis a release cares about (MSE is a mean). A sign or Wilcoxon test would test a
  median or a symmetric shift instead: a challenger better on most requests but much
  worse on a few passes those while its RMSE is worse. The t-test leans on the central
  limit theorem for `d`, reasonable at the hundreds of labels a look requires
  (`DecisionPolicy.min_labels`); the simulated streams in tests/release check its level.
- **Looks** (`LookPlan`): `looks` checks planned at equal shares of the final sample;
  the one-sided `alpha` is spent over them by a Lan-DeMets spending function
  (O'Brien-Fleming-like by default: almost nothing at the first look, most at the last;
  Pocock-like spends evenly), and look `k` tests at its increment
  `spent(k / K) - spent((k - 1) / K)`. By the union bound the chance of any false pass
  over all looks is at most the sum of the increments, `alpha`, whatever the correlation
  between looks and whichever exact or asymptotic test runs at each look (the
  "Bonferroni split" of the spending plan). It is conservative (exact group-sequential
  boundaries would spend a little more at the last look); the simulations in
  tests/release measure what it costs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

OBRIEN_FLEMING = "obrien_fleming"
POCOCK = "pocock"
SPENDING_FUNCTIONS = (OBRIEN_FLEMING, POCOCK)


# --------------------------------------------------------------------------- agreement


def wilson_bounds(successes: int, n: int, alpha: float) -> tuple[float, float]:
    """The Wilson score bounds of the proportion `successes / n`: each a one-sided
    bound at level `alpha` (the two-sided interval at confidence `1 - 2 * alpha`).
    `n == 0` gives (0, 1): nothing is known. The same numbers as scipy's
    `binomtest(k, n).proportion_ci(1 - 2 * alpha, method="wilson")` (tested), from the
    closed form: a decision takes a few and a simulated stream thousands, and scipy's
    computes a two-sided exact p-value on the way."""
    _check_alpha(alpha)
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"wilson_bounds: need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    z = _z(alpha)
    p = successes / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, center - half), min(1.0, center + half)


# --------------------------------------------------------------------------- paired tests


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison of the challenger with the champion on labelled requests.

    `difference` is the challenger's advantage in the test's own unit (accuracy points
    for classification; for regression, the challenger's RMSE over the champion's minus
    one, so negative is better); `p_noninferior` is the p-value of "the challenger is
    worse than the champion by at least the margin" (small: it is not), `p_inferior` of
    "it is worse by at most the margin" (small: it is worse by more)."""

    test: str
    n: int
    difference: float
    margin: float
    p_noninferior: float
    p_inferior: float
    detail: str


def paired_accuracy_test(
    champion_only: int, challenger_only: int, n: int, margin: float, alpha: float
) -> PairedTest:
    """The exact McNemar test with a non-inferiority `margin` (accuracy points, e.g.
    0.02) on `n` labelled requests of which `champion_only` only the champion answered
    right and `challenger_only` only the challenger (see the module docstring; `alpha`
    sets the confidence of the bound taken for the share of discordant pairs)."""
    from scipy.special import bdtr, bdtrc

    _check_alpha(alpha)
    b, c = int(champion_only), int(challenger_only)
    d = b + c
    if n <= 0 or b < 0 or c < 0 or d > n:
        raise ValueError(
            f"paired_accuracy_test: need 0 <= champion_only + challenger_only <= n, "
            f"got {b} + {c} of {n}"
        )
    if not 0 <= margin < 1:
        raise ValueError(f"paired_accuracy_test: margin must be in [0, 1), got {margin}")
    psi_low, psi_high = wilson_bounds(d, n, alpha)
    if d == 0:
        # identical correctness on every request: the difference is 0; with a margin the
        # discordance bound decides, without one nothing is shown either way
        theta_ni = 0.5 - margin / (2 * psi_high) if psi_high > 0 else 0.5
        p_ni = 0.0 if theta_ni <= 0 else 1.0
        return PairedTest("exact_mcnemar", n, 0.0, margin, p_ni, 1.0, "no discordant pairs")
    theta_ni = 0.5 - margin / (2 * psi_high)
    theta_inf = 0.5 - margin / (2 * psi_low) if psi_low > 0 else -math.inf
    # P(C >= c | theta0): small when the challenger wins more discordant pairs than a
    # challenger `margin` worse would
    p_ni = 0.0 if theta_ni <= 0 else float(bdtrc(c - 1, d, theta_ni))
    # P(C <= c | theta0): small when it wins fewer
    p_inf = 1.0 if theta_inf <= 0 else float(bdtr(c, d, theta_inf))
    detail = (
        f"{c} discordant pairs won by the challenger, {b} by the champion; null at "
        f"theta={max(theta_ni, 0.0):.4f} (discordance bound {psi_high:.4f})"
    )
    return PairedTest("exact_mcnemar", n, (c - b) / n, margin, p_ni, p_inf, detail)


def paired_error_test(
    champion_errors: np.ndarray, challenger_errors: np.ndarray, margin: float
) -> PairedTest:
    """The paired non-inferiority t-test on squared errors with a relative RMSE
    `margin` (e.g. 0.05: the challenger's RMSE may be at most 5% above the champion's);
    the arrays hold each model's error (prediction minus label) on the same requests."""
    from scipy.special import stdtr

    a = np.asarray(champion_errors, dtype=float)
    b = np.asarray(challenger_errors, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(
            f"paired_error_test: need two 1-D arrays of the same length, "
            f"got {a.shape} and {b.shape}"
        )
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("paired_error_test: errors must be finite numbers")
    if margin < 0:
        raise ValueError(f"paired_error_test: margin must be >= 0, got {margin}")
    n = len(a)
    mse_a, mse_b = float(np.mean(a * a)) if n else 0.0, float(np.mean(b * b)) if n else 0.0
    ratio = math.sqrt(mse_b / mse_a) if mse_a > 0 else (1.0 if mse_b == 0 else math.inf)
    if n < 2:
        return PairedTest("paired_t", n, ratio - 1, margin, 1.0, 1.0, "fewer than 2 labels")
    d = b * b - (1 + margin) ** 2 * a * a
    mean, sd = float(np.mean(d)), float(np.std(d, ddof=1))
    if sd == 0.0:  # every difference equal: the sign of it is the answer
        p_ni, p_inf = (0.0, 1.0) if mean < 0 else (1.0, 0.0) if mean > 0 else (1.0, 1.0)
    else:  # scipy.stats.ttest_1samp's statistic and one-sided p-values (tested)
        t = mean / (sd / math.sqrt(n))
        p_ni, p_inf = float(stdtr(n - 1, t)), float(stdtr(n - 1, -t))
    detail = f"RMSE {math.sqrt(mse_b):.6g} (challenger) vs {math.sqrt(mse_a):.6g} (champion)"
    return PairedTest("paired_t", n, ratio - 1, margin, p_ni, p_inf, detail)


# --------------------------------------------------------------------------- share shifts


@dataclass(frozen=True)
class ShareShift:
    """The shift of one group's share (a class, or a range of the champion's
    predictions) from the champion's answers to the challenger's on the same requests,
    with one-sided bounds on its size."""

    group: str
    champion_share: float
    challenger_share: float
    low: float  # lower bound of |shift|
    high: float  # upper bound of |shift|

    @property
    def shift(self) -> float:
        return self.challenger_share - self.champion_share


def share_shifts(
    champion_groups: np.ndarray, challenger_groups: np.ndarray, names: list[str], alpha: float
) -> list[ShareShift]:
    """Per group `g` (the codes 0..len(names)-1 in the two arrays, paired by request):
    the mean of `[challenger in g] - [champion in g]` with a normal bound on its size at
    `alpha / len(names)` each (Bonferroni over the groups)."""
    _check_alpha(alpha)
    a = np.asarray(champion_groups)
    b = np.asarray(challenger_groups)
    n = len(a)
    z = _z(alpha / max(len(names), 1))
    out = []
    for code, name in enumerate(names):
        x = (b == code).astype(float) - (a == code).astype(float)
        mean = float(x.mean()) if n else 0.0
        se = float(x.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf
        size = abs(mean)
        out.append(
            ShareShift(
                group=name,
                champion_share=float((a == code).mean()) if n else 0.0,
                challenger_share=float((b == code).mean()) if n else 0.0,
                low=max(0.0, size - z * se),
                high=size + z * se,
            )
        )
    return out


# --------------------------------------------------------------------------- looks


@dataclass(frozen=True)
class LookPlan:
    """`looks` checks planned at equal shares of `final_sample` (requests), spending a
    one-sided `alpha` by a Lan-DeMets function (see the module docstring)."""

    looks: int
    final_sample: int
    alpha: float
    spending: str = OBRIEN_FLEMING

    def __post_init__(self) -> None:
        _check_alpha(self.alpha)
        if self.looks < 1:
            raise ValueError(f"LookPlan: looks must be >= 1, got {self.looks}")
        if self.final_sample < self.looks:
            raise ValueError(
                f"LookPlan: final_sample ({self.final_sample}) must be >= looks ({self.looks})"
            )
        if self.spending not in SPENDING_FUNCTIONS:
            raise ValueError(
                f"LookPlan: spending must be one of {', '.join(SPENDING_FUNCTIONS)}, "
                f"got {self.spending!r}"
            )

    def spent(self, fraction: float) -> float:
        """The alpha spent up to `fraction` (0..1) of the final sample."""
        from scipy.special import ndtr

        t = min(max(float(fraction), 0.0), 1.0)
        if t == 0.0:
            return 0.0
        if self.spending == POCOCK:
            return self.alpha * math.log(1 + (math.e - 1) * t)
        # O'Brien-Fleming-like: 2 * (1 - Phi(z_{1 - alpha/2} / sqrt(t))), alpha at t = 1
        return float(2 * ndtr(-_z(self.alpha / 2) / math.sqrt(t)))

    def alpha_at(self, look: int) -> float:
        """The level every test of look `look` (1..looks) runs at."""
        self._check_look(look)
        return self.spent(look / self.looks) - self.spent((look - 1) / self.looks)

    def sample_at(self, look: int) -> int:
        """The requests look `look` waits for."""
        self._check_look(look)
        return math.ceil(self.final_sample * look / self.looks)

    def is_final(self, look: int) -> bool:
        self._check_look(look)
        return look == self.looks

    def _check_look(self, look: int) -> None:
        if not 1 <= int(look) <= self.looks:
            raise ValueError(f"look must be 1..{self.looks} (the planned looks), got {look}")


def _z(alpha: float) -> float:
    """The standard normal quantile with `alpha` above it (scipy's ufunc: a decision
    takes a handful, a simulated stream thousands)."""
    from scipy.special import ndtri

    return -float(ndtri(alpha))


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
