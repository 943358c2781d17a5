"""The stated release decision: does the challenger replace the champion? **pass**,
**fail** or **inconclusive**, with every check's number, threshold and reason.

`decide(evidence, look, policy)` runs at each planned look (`LookPlan`: look `k` of `K`
waits for `k / K` of `policy.final_requests` challenger requests and tests at that look's
share of alpha). The checks, in order:

1. **sample**: the look's requests reached; else the verdict is *inconclusive* and the
   champion stays (the default; nothing else can pass), except that a challenger whose
   errors already exceed `max_error_rate` of the look's sample fails at once;
2. **guardrails** (plain limits, no test: operational health): the challenger's error
   rate at most `max_error_rate` and at most the champion's plus `error_rate_margin`;
   its p95 latency at most `max_latency_ratio` times the champion's plus
   `latency_slack_ms` (and at most `max_p95_latency_ms` when set);
3. **agreement**: the share of paired rows where the two answers agree (classification:
   the same label; regression: within `regression_tolerance` times the standard
   deviation of the champion's answers), by its Wilson bounds: passes when the lower
   bound reaches `min_agreement`, fails when the upper bound is below it;
4. **shifts**: per class (classification) or per range of the champion's answers
   (regression: `range_bins` quantile bins), the change of its share from the champion's
   answers to the challenger's: passes when the upper bound of the change is within
   `max_share_shift`, fails when its lower bound is beyond;
5. **non-inferiority** once at least `min_labels` paired rows have a true label: the
   exact McNemar test with `accuracy_margin` (classification) or the paired test on
   squared errors with `rmse_margin` (regression): passes when the challenger is shown
   no worse than the margin at the look's alpha, fails when shown worse than it at
   `futility_alpha` (a non-binding futility rule: it stops a bad challenger early and can
   only turn waits into fails, so it never adds a false promotion). Fewer labels:
   skipped and said so (or inconclusive with `labels_required`).

Verdict: any check failed -> **fail**; all passed (or skipped) -> **pass**; otherwise
**inconclusive** at an interim look, and **fail** at the last one ("not shown in the
planned sample": the champion stays). Every test of a look runs at that look's alpha, so
the chance of a false pass over all looks stays within `alpha`.

Without labels, a pass says only that the challenger answers like the champion and is
healthy; a worse model that agrees often enough passes. The false-promotion bound in the
docs (docs/safe-release.md) holds with labels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from include.ml_pipeline.release.records import CHALLENGER, CHAMPION, PairedRecord
from include.ml_pipeline.release.statistics import (
    OBRIEN_FLEMING,
    LookPlan,
    PairedTest,
    paired_accuracy_test,
    paired_error_test,
    share_shifts,
    wilson_bounds,
)

PASS = "pass"
FAIL = "fail"
INCONCLUSIVE = "inconclusive"
SKIPPED = "skipped"
VERDICTS = (PASS, FAIL, INCONCLUSIVE)


@dataclass(frozen=True)
class DecisionPolicy:
    """Every default of the release decision, in one place (the module docstring says
    what each check does with them)."""

    #: looks planned over the experiment, and the challenger requests of the last one
    looks: int = 4
    final_requests: int = 4000
    #: one-sided level of every "pass" over all looks together, and how it is spent
    alpha: float = 0.05
    spending: str = OBRIEN_FLEMING
    #: guardrails
    max_error_rate: float = 0.01
    error_rate_margin: float = 0.005
    max_latency_ratio: float = 1.5
    latency_slack_ms: float = 2.0
    max_p95_latency_ms: float | None = None
    #: agreement (regression: |challenger - champion| <= tolerance * sd(champion answers))
    min_agreement: float = 0.90
    regression_tolerance: float = 0.5
    #: per-class / per-range share shift
    max_share_shift: float = 0.05
    range_bins: int = 5
    #: non-inferiority on labels
    min_labels: int = 200
    accuracy_margin: float = 0.02
    rmse_margin: float = 0.05
    labels_required: bool = False
    #: fail as soon as a look shows the challenger worse than the margin at this level
    #: (non-binding futility: it only turns waits into fails, never into passes)
    futility_alpha: float = 0.10

    def __post_init__(self) -> None:
        LookPlan(self.looks, self.final_requests, self.alpha, self.spending)  # validates them
        shares = ("max_error_rate", "error_rate_margin", "min_agreement", "max_share_shift")
        for name in (*shares, "accuracy_margin", "futility_alpha"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(
                    f"DecisionPolicy.{name} must be in [0, 1), got {getattr(self, name)}"
                )
        for name in (
            "max_latency_ratio",
            "latency_slack_ms",
            "regression_tolerance",
            "rmse_margin",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"DecisionPolicy.{name} must be >= 0, got {getattr(self, name)}")
        if self.range_bins < 2 or self.min_labels < 2:
            raise ValueError(
                f"DecisionPolicy: range_bins and min_labels must be >= 2, "
                f"got {self.range_bins} and {self.min_labels}"
            )

    @property
    def plan(self) -> LookPlan:
        return LookPlan(self.looks, self.final_requests, self.alpha, self.spending)


@dataclass(frozen=True)
class Check:
    """One check: its status (pass / fail / inconclusive / skipped), the number it
    measured, the threshold it compares with, and why it came out so."""

    name: str
    status: str
    value: float | None
    threshold: float | None
    reason: str


@dataclass(frozen=True)
class ReleaseDecision:
    """The verdict of one look, every check behind it, and one sentence for people."""

    verdict: str
    look: int
    looks: int
    alpha: float  # the level this look's tests ran at
    requests: int  # challenger requests seen
    required: int  # the requests this look waits for
    paired: int  # rows both arms answered
    labelled: int  # ... of them with a true label
    checks: tuple[Check, ...]
    summary: str

    @property
    def keeps_champion(self) -> bool:
        return self.verdict != PASS

    def check(self, name: str) -> Check:
        for item in self.checks:
            if item.name == name:
                return item
        raise KeyError(f"no check {name!r}: {', '.join(c.name for c in self.checks)}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["keeps_champion"] = self.keeps_champion
        return out


@dataclass(frozen=True)
class Evidence:
    """What the decision reads, column by column: the paired rows' answers (and labels
    where `has_label`), and per arm the requests asked, those that failed and the
    latencies of those answered. `Evidence.of(records)` builds it from `PairedRecord`s;
    simulations build it from arrays."""

    regression: bool
    champion: np.ndarray
    challenger: np.ndarray
    labels: np.ndarray
    has_label: np.ndarray
    challenger_requests: int
    challenger_failures: int
    champion_requests: int
    champion_failures: int
    challenger_latency_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    champion_latency_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def of(cls, records: Iterable[PairedRecord], regression: bool) -> Evidence:
        """Per request (its first row): was each arm asked, did it fail, how long it
        took; per paired row: both answers and the label."""
        rows = list(records)
        asked: dict[str, dict[str, tuple[bool, float | None]]] = {CHAMPION: {}, CHALLENGER: {}}
        for r in rows:
            for arm, answer, error, latency in (
                (CHAMPION, r.champion_answer, r.champion_error, r.champion_latency_ms),
                (CHALLENGER, r.challenger_answer, r.challenger_error, r.challenger_latency_ms),
            ):
                if (answer is not None or error is not None) and r.request_id not in asked[arm]:
                    asked[arm][r.request_id] = (error is not None, latency)
        paired = [r for r in rows if r.is_paired]
        if regression:
            a = np.array([float(r.champion_answer) for r in paired], dtype=float)
            b = np.array([float(r.challenger_answer) for r in paired], dtype=float)
            y = np.array([math.nan if r.label is None else float(r.label) for r in paired])
            has = ~np.isnan(y)
        else:
            a = np.array([str(r.champion_answer) for r in paired], dtype=object)
            b = np.array([str(r.challenger_answer) for r in paired], dtype=object)
            y = np.array(["" if r.label is None else str(r.label) for r in paired], dtype=object)
            has = np.array([r.label is not None for r in paired], dtype=bool)

        def latencies(arm: str) -> np.ndarray:
            values = [lat for failed, lat in asked[arm].values() if not failed and lat is not None]
            return np.array(values, dtype=float)

        return cls(
            regression=regression,
            champion=a,
            challenger=b,
            labels=y,
            has_label=has,
            challenger_requests=len(asked[CHALLENGER]),
            challenger_failures=sum(failed for failed, _ in asked[CHALLENGER].values()),
            champion_requests=len(asked[CHAMPION]),
            champion_failures=sum(failed for failed, _ in asked[CHAMPION].values()),
            challenger_latency_ms=latencies(CHALLENGER),
            champion_latency_ms=latencies(CHAMPION),
        )


def decide_records(
    records: Iterable[PairedRecord],
    regression: bool,
    look: int,
    policy: DecisionPolicy | None = None,
) -> ReleaseDecision:
    """`decide` on `PairedRecord`s (see `Evidence.of`)."""
    return decide(Evidence.of(records, regression), look, policy)


def decide(evidence: Evidence, look: int, policy: DecisionPolicy | None = None) -> ReleaseDecision:
    """The verdict of planned look `look` (1..policy.looks) on `evidence`."""
    policy = policy or DecisionPolicy()
    plan = policy.plan
    alpha = plan.alpha_at(look)
    required = plan.sample_at(look)
    n = evidence.challenger_requests
    checks: list[Check] = []
    error_check = _error_rate(evidence, policy)
    if n < required:
        sample = Check(
            "sample",
            INCONCLUSIVE,
            n,
            required,
            f"{n} challenger requests of the {required} look {look} of {plan.looks} waits for",
        )
        # errors beyond what the look's whole sample allows fail at once
        if evidence.challenger_failures > policy.max_error_rate * required:
            error_check = Check(
                "error_rate",
                FAIL,
                error_check.value,
                policy.max_error_rate,
                f"{evidence.challenger_failures} failed challenger requests already exceed "
                f"{policy.max_error_rate:.2%} of the {required} this look waits for",
            )
            checks = [sample, error_check]
        else:
            checks = [sample]
        return _verdict(evidence, look, plan, alpha, required, checks)
    checks.append(Check("sample", PASS, n, required, f"{n} >= {required} challenger requests"))
    checks.append(error_check)
    checks.append(_error_rate_vs_champion(evidence, policy))
    checks.extend(_latency(evidence, policy))
    checks.append(_agreement(evidence, policy, alpha))
    checks.extend(_shifts(evidence, policy, alpha))
    checks.append(_non_inferiority(evidence, policy, alpha))
    return _verdict(evidence, look, plan, alpha, required, checks)


def answer_checks(evidence: Evidence, policy: DecisionPolicy | None = None) -> list[Check]:
    """The checks that read only the two arms' answers (agreement, then the per-class or
    per-range shifts), at the policy's whole alpha: one look, e.g. a replay of logged
    requests before the challenger sees a live one (`deployment/replay.py`)."""
    policy = policy or DecisionPolicy()
    return [_agreement(evidence, policy, policy.alpha), *_shifts(evidence, policy, policy.alpha)]


# --------------------------------------------------------------------------- the checks


def _rate(failures: int, requests: int) -> float:
    return failures / requests if requests else 0.0


def _error_rate(evidence: Evidence, policy: DecisionPolicy) -> Check:
    rate = _rate(evidence.challenger_failures, evidence.challenger_requests)
    ok = rate <= policy.max_error_rate
    return Check(
        "error_rate",
        PASS if ok else FAIL,
        rate,
        policy.max_error_rate,
        f"challenger error rate {rate:.2%} ({evidence.challenger_failures} of "
        f"{evidence.challenger_requests}) {'<=' if ok else '>'} the limit "
        f"{policy.max_error_rate:.2%}",
    )


def _error_rate_vs_champion(evidence: Evidence, policy: DecisionPolicy) -> Check:
    rate = _rate(evidence.challenger_failures, evidence.challenger_requests)
    base = _rate(evidence.champion_failures, evidence.champion_requests)
    limit = base + policy.error_rate_margin
    ok = rate <= limit
    return Check(
        "error_rate_vs_champion",
        PASS if ok else FAIL,
        rate,
        limit,
        f"challenger error rate {rate:.2%} {'<=' if ok else '>'} the champion's {base:.2%} "
        f"+ {policy.error_rate_margin:.2%}",
    )


def _latency(evidence: Evidence, policy: DecisionPolicy) -> list[Check]:
    if not len(evidence.challenger_latency_ms) or not len(evidence.champion_latency_ms):
        return [Check("p95_latency", SKIPPED, None, None, "no latencies logged for both arms")]
    p95 = float(np.percentile(evidence.challenger_latency_ms, 95))
    base = float(np.percentile(evidence.champion_latency_ms, 95))
    limit = base * policy.max_latency_ratio + policy.latency_slack_ms
    ok = p95 <= limit
    out = [
        Check(
            "p95_latency",
            PASS if ok else FAIL,
            p95,
            limit,
            f"challenger p95 {p95:.3g} ms {'<=' if ok else '>'} {policy.max_latency_ratio:g} x "
            f"the champion's {base:.3g} ms + {policy.latency_slack_ms:g} ms",
        )
    ]
    if policy.max_p95_latency_ms is not None:
        ok = p95 <= policy.max_p95_latency_ms
        out.append(
            Check(
                "p95_latency_limit",
                PASS if ok else FAIL,
                p95,
                policy.max_p95_latency_ms,
                f"challenger p95 {p95:.3g} ms {'<=' if ok else '>'} the limit "
                f"{policy.max_p95_latency_ms:g} ms",
            )
        )
    return out


def agreeing_rows(evidence: Evidence, policy: DecisionPolicy) -> tuple[int, int, str]:
    """(rows whose two answers agree, paired rows, what agreeing means): classification
    the same label; regression within `regression_tolerance` x the sd of the champion's
    answers."""
    a, b = evidence.champion, evidence.challenger
    if evidence.regression:
        scale = _scale(a)
        agree = int(np.count_nonzero(np.abs(b - a) <= policy.regression_tolerance * scale))
        what = (
            f"within {policy.regression_tolerance:g} x {scale:.4g} (sd of the champion's answers)"
        )
    else:
        agree = int(np.count_nonzero(a == b))
        what = "the same label"
    return agree, len(a), what


def _agreement(evidence: Evidence, policy: DecisionPolicy, alpha: float) -> Check:
    agree, n, what = agreeing_rows(evidence, policy)
    low, high = wilson_bounds(agree, n, alpha)
    share = agree / n if n else 0.0
    head = f"{agree} of {n} paired rows {what} ({share:.2%}; Wilson bounds {low:.4f}..{high:.4f})"
    if n and low >= policy.min_agreement:
        return Check("agreement", PASS, low, policy.min_agreement, f"{head}: lower bound >= limit")
    if n and high < policy.min_agreement:
        return Check("agreement", FAIL, high, policy.min_agreement, f"{head}: upper bound < limit")
    return Check("agreement", INCONCLUSIVE, low, policy.min_agreement, f"{head}: not yet shown")


def _scale(values: np.ndarray) -> float:
    """The spread agreement is judged against: the sd of the champion's answers (their
    mean's size, or 1, when they are all equal)."""
    if not len(values):
        return 1.0
    sd = float(np.std(values))
    return sd if sd > 0 else (abs(float(np.mean(values))) or 1.0)


def _groups(evidence: Evidence, policy: DecisionPolicy) -> tuple[np.ndarray, np.ndarray, list[str]]:
    a, b = evidence.champion, evidence.challenger
    if evidence.regression:
        edges = np.unique(np.quantile(a, np.linspace(0, 1, policy.range_bins + 1)[1:-1]))
        bounds = [-math.inf, *edges.tolist(), math.inf]
        names = [
            f"range {i + 1} of {len(bounds) - 1} ({bounds[i]:.4g}..{bounds[i + 1]:.4g}]"
            for i in range(len(bounds) - 1)
        ]
        return np.searchsorted(edges, a, "left"), np.searchsorted(edges, b, "left"), names
    classes, codes = np.unique(np.concatenate([a, b]), return_inverse=True)
    return codes[: len(a)], codes[len(a) :], [str(c) for c in classes]


def _shifts(evidence: Evidence, policy: DecisionPolicy, alpha: float) -> list[Check]:
    if not len(evidence.champion):
        return [Check("share_shift", INCONCLUSIVE, None, policy.max_share_shift, "no paired rows")]
    a, b, names = _groups(evidence, policy)
    out = []
    limit = policy.max_share_shift
    for s in share_shifts(a, b, names, alpha):
        head = (
            f"share {s.champion_share:.2%} (champion) -> {s.challenger_share:.2%} "
            f"(challenger), |shift| bounds {s.low:.4f}..{s.high:.4f}"
        )
        if s.high <= limit:
            status, value, tail = PASS, s.high, "upper bound within the limit"
        elif s.low > limit:
            status, value, tail = FAIL, s.low, "lower bound beyond the limit"
        else:
            status, value, tail = INCONCLUSIVE, s.high, "not yet shown within the limit"
        out.append(Check(f"share_shift[{s.group}]", status, value, limit, f"{head}: {tail}"))
    return out


def _non_inferiority(evidence: Evidence, policy: DecisionPolicy, alpha: float) -> Check:
    has = evidence.has_label
    labelled = int(np.count_nonzero(has))
    if labelled < policy.min_labels:
        status = INCONCLUSIVE if policy.labels_required else SKIPPED
        return Check(
            "non_inferiority",
            status,
            labelled,
            policy.min_labels,
            f"{labelled} labelled paired rows, fewer than the {policy.min_labels} the test needs"
            + (" (labels are required)" if policy.labels_required else ": accuracy not tested"),
        )
    a, b, y = evidence.champion[has], evidence.challenger[has], evidence.labels[has]
    futility = max(alpha, policy.futility_alpha)
    test: PairedTest
    if evidence.regression:
        test = paired_error_test(a - y, b - y, policy.rmse_margin)
        p_worse = test.p_inferior
        what = f"RMSE ratio - 1 = {test.difference:+.4f}, margin +{policy.rmse_margin:g}"
    else:
        right_a, right_b = a == y, b == y
        counts = (
            int(np.count_nonzero(right_a & ~right_b)),
            int(np.count_nonzero(right_b & ~right_a)),
            labelled,
            policy.accuracy_margin,
        )
        test = paired_accuracy_test(*counts, alpha)
        # the discordance bound of the "worse" side at the level it is judged at
        p_worse = paired_accuracy_test(*counts, futility).p_inferior
        what = f"accuracy difference {test.difference:+.4f}, margin -{policy.accuracy_margin:g}"
    head = f"{test.test} on {labelled} labelled rows: {what}; {test.detail}"
    if test.p_noninferior <= alpha:
        status, value, level, tail = PASS, test.p_noninferior, alpha, "non-inferior"
    elif p_worse <= futility:
        status, value, level = FAIL, p_worse, futility
        tail = "worse than the champion beyond the margin"
    else:
        status, value, level = INCONCLUSIVE, test.p_noninferior, alpha
        tail = "not yet shown non-inferior"
    return Check(
        "non_inferiority",
        status,
        value,
        level,
        f"{head}: p={value:.3g} vs {level:.3g}, {tail}",
    )


# --------------------------------------------------------------------------- the verdict


def _verdict(
    evidence: Evidence,
    look: int,
    plan: LookPlan,
    alpha: float,
    required: int,
    checks: list[Check],
) -> ReleaseDecision:
    n = evidence.challenger_requests
    labelled = int(np.count_nonzero(evidence.has_label))
    where = f"look {look} of {plan.looks} ({n} challenger requests, {labelled} labelled)"
    failed = [c for c in checks if c.status == FAIL]
    open_ = [c for c in checks if c.status == INCONCLUSIVE]
    skipped = [c.name for c in checks if c.status == SKIPPED]
    if failed:
        verdict = FAIL
        summary = (
            f"FAIL at {where}: {failed[0].name}: {failed[0].reason}; the champion stays, "
            f"the challenger is aborted."
        )
    elif checks[0].name == "sample" and checks[0].status == INCONCLUSIVE:
        verdict = INCONCLUSIVE
        summary = (
            f"INCONCLUSIVE at {where}: too little traffic ({n} of the {required} requests "
            f"this look needs); the champion stays (the default) until the evidence is there."
        )
    elif not open_:
        verdict = PASS
        extra = f" (not tested: {', '.join(skipped)})" if skipped else ""
        summary = (
            f"PASS at {where}: every check met at alpha {alpha:.3g}{extra}; "
            f"the challenger may replace the champion."
        )
    elif plan.is_final(look):
        verdict = FAIL
        summary = (
            f"FAIL at {where}, the last planned look: {', '.join(c.name for c in open_)} "
            f"not shown in the planned sample; the champion stays."
        )
    else:
        verdict = INCONCLUSIVE
        summary = (
            f"INCONCLUSIVE at {where}: {', '.join(c.name for c in open_)} not yet shown; "
            f"the champion stays; next look at {plan.sample_at(look + 1)} requests."
        )
    return ReleaseDecision(
        verdict=verdict,
        look=look,
        looks=plan.looks,
        alpha=alpha,
        requests=n,
        required=required,
        paired=len(evidence.champion),
        labelled=labelled,
        checks=tuple(checks),
        summary=summary,
    )
