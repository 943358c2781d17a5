"""The deploy gate: does the challenger go live?

A challenger is deployed only if it clears every absolute threshold *and*, when a
champion exists, does not lose to it on the primary metric by more than `tolerance`
(both measured on the same test split). With no champion the thresholds alone decide.
Every check adds one human-readable sentence with the numbers to `reasons` — passes as
well as failures — so the record on the model version explains itself. A metric that
is missing or NaN fails its check.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from include.ml_pipeline.contracts.names import GREATER_IS_BETTER
from include.ml_pipeline.contracts.payloads import Decision


@dataclass(frozen=True)
class Thresholds:
    """Gate settings. A threshold set to None is not checked."""

    min_roc_auc: float | None = 0.75
    min_accuracy: float | None = 0.70
    max_log_loss: float | None = 0.60
    min_f1: float | None = None
    primary_metric: str = "roc_auc"
    tolerance: float = 0.01

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Thresholds:
        """Build from a (Param) dict; unknown keys raise `ValueError` naming them."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown threshold key(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        out = cls(**data)
        if out.primary_metric not in GREATER_IS_BETTER:
            raise ValueError(
                f"primary_metric must be one of {', '.join(sorted(GREATER_IS_BETTER))}; "
                f"got {out.primary_metric!r}"
            )
        if not (isinstance(out.tolerance, int | float) and out.tolerance >= 0):
            raise ValueError(f"tolerance must be a number >= 0; got {out.tolerance!r}")
        for f in fields(cls):
            value = getattr(out, f.name)
            is_limit = f.name.startswith(("min_", "max_")) and value is not None
            if is_limit and (not isinstance(value, int | float) or isinstance(value, bool)):
                raise ValueError(f"{f.name} must be a number or null; got {value!r}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)




def _number(metrics: dict[str, Any] | None, name: str) -> float | None:
    if not metrics or metrics.get(name) is None:
        return None
    try:
        value = float(metrics[name])
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _fmt(value: float) -> str:
    return f"{value:.4f}"


# (threshold field, metric, True if the metric must be >= the threshold)
_ABSOLUTE_CHECKS = (
    ("min_roc_auc", "roc_auc", True),
    ("min_accuracy", "accuracy", True),
    ("min_f1", "f1", True),
    ("max_log_loss", "log_loss", False),
)


def decide_deployment(
    challenger_metrics: dict[str, Any],
    champion_metrics: dict[str, Any] | None,
    thresholds: Thresholds | dict[str, Any] | None = None,
    *,
    champion_error: str | None = None,
) -> Decision:
    """Deploy iff every configured threshold passes and the challenger is not worse than
    the champion's primary metric by more than the tolerance. See the module docstring.
    `champion_error`: why a champion that exists could not be scored on this test split."""
    if not isinstance(thresholds, Thresholds):
        thresholds = Thresholds.from_dict(thresholds)
    reasons: list[str] = []
    ok = True

    for key, metric, at_least in _ABSOLUTE_CHECKS:
        limit = getattr(thresholds, key)
        if limit is None:
            continue
        value = _number(challenger_metrics, metric)
        if value is None:
            ok = False
            reasons.append(
                f"Challenger {metric} is missing or not a number, so the "
                f"{'minimum' if at_least else 'maximum'} of {_fmt(limit)} cannot be checked."
            )
            continue
        passed = value >= limit if at_least else value <= limit
        ok = ok and passed
        if at_least:
            relation = "meets the minimum" if passed else "is below the minimum"
        else:
            relation = "is within the maximum" if passed else "exceeds the maximum"
        reasons.append(f"Challenger {metric} {_fmt(value)} {relation} {_fmt(limit)}.")

    primary = thresholds.primary_metric
    greater = GREATER_IS_BETTER[primary]
    challenger = _number(challenger_metrics, primary)
    champion = _number(champion_metrics, primary)
    if champion_metrics is None and champion_error:
        reasons.append(
            f"The champion could not be scored on this test split ({champion_error}): "
            "the thresholds alone decide."
        )
    elif champion_metrics is None:
        reasons.append("No champion yet: the thresholds alone decide.")
    elif champion is None:
        reasons.append(
            f"The champion has no usable {primary} on this test split: the thresholds alone decide."
        )
    elif challenger is None:
        ok = False
        reasons.append(
            f"Challenger {primary} is missing or not a number, so it cannot be compared "
            f"with the champion's {_fmt(champion)}."
        )
    else:
        # How much worse the challenger is (positive = worse), in the metric's direction.
        shortfall = (champion - challenger) if greater else (challenger - champion)
        tolerance = float(thresholds.tolerance)
        better_word = "higher" if greater else "lower"
        if shortfall <= tolerance:
            if shortfall <= 0:
                detail = f"is at least as good as ({better_word} is better)"
            else:
                detail = f"is {_fmt(shortfall)} worse than, within the tolerance {_fmt(tolerance)},"
            reasons.append(
                f"Challenger {primary} {_fmt(challenger)} {detail} the champion's "
                f"{_fmt(champion)} on the same test split."
            )
        else:
            ok = False
            reasons.append(
                f"Challenger {primary} {_fmt(challenger)} is {_fmt(shortfall)} worse than the "
                f"champion's {_fmt(champion)} on the same test split, more than the "
                f"tolerance {_fmt(tolerance)} ({better_word} is better)."
            )
    reasons.insert(
        0,
        "Deploy: the challenger passed every check."
        if ok
        else "Reject: the challenger failed at least one check.",
    )
    return Decision(deploy=ok, reasons=reasons)
