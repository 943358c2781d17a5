"""The deploy gate: does the challenger go live?

A challenger is deployed only if it passes every check that applies, all measured on
the same test split:

* **baseline**: it beats the baseline on the primary metric by at least
  `min_lift_over_baseline`: for classification the class-prior baseline (a model that
  predicts the training class shares for every row: ROC AUC 0.5, accuracy the majority
  share), by that much of the metric; for regression the mean baseline (the training
  mean for every row: R^2 about 0), by that share of its error (0.05: an RMSE at least 5%
  lower, `problem.lift`). This is what lets a first model deploy
  on a hard but real problem (ROC AUC 0.69) while a model that learnt nothing is kept
  out;
* **absolute thresholds** (`min_roc_auc`, `min_accuracy`, `min_f1`, `max_log_loss`;
  regression `max_rmse`, `min_r2`), each only when set (by default none is);
* **champion**: when a champion exists, the challenger does not lose to it on the
  primary metric by more than `tolerance` (for a regression error metric a share of the
  champion's: 0.01 is 1% higher RMSE). When the champion exists but could not be
  scored on this split (`champion_error`, e.g. its columns are not in the new data),
  the decision says so and why, and the other checks decide;
* **input contract**: the challenger takes the same columns with the same kinds and
  returns the same label type and set as the champion (`registry.contract`). A change
  is rejected, naming each difference, unless `allow_contract_change` is set; then it
  is deployed and `Decision.contract_changes` says what clients must change. A challenger
  that shares no input column (or no label) with the champion is a *different problem*:
  one sentence says so and names the two ways forward (its own `model_name`, served next
  to this one, or `allow_contract_change`); the per-column list stays in
  `Decision.contract_changes` (the run's report), not in the reasons.

Every check adds one human-readable sentence with the numbers to `reasons` -- passes as
well as failures -- so the record on the model version explains itself. A metric that
is missing or NaN fails its check.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from include.ml_pipeline.names import GREATER_IS_BETTER
from include.ml_pipeline.payloads import Decision
from include.ml_pipeline.problem import baseline_name, is_relative_lift, lift

if TYPE_CHECKING:  # pragma: no cover
    from include.ml_pipeline.registry.contract import ContractComparison


@dataclass(frozen=True)
class Thresholds:
    """Gate settings. A threshold set to None is not checked."""

    min_roc_auc: float | None = None
    min_accuracy: float | None = None
    max_log_loss: float | None = None
    min_f1: float | None = None
    max_rmse: float | None = None
    min_r2: float | None = None
    primary_metric: str = "roc_auc"
    tolerance: float = 0.01
    min_lift_over_baseline: float | None = 0.05
    allow_contract_change: bool = False

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
        if not isinstance(out.allow_contract_change, bool):
            raise ValueError(
                f"allow_contract_change must be true or false; got {out.allow_contract_change!r}"
            )
        for f in fields(cls):
            value = getattr(out, f.name)
            is_limit = f.name.startswith(("min_", "max_")) and value is not None
            if is_limit and (not isinstance(value, int | float) or isinstance(value, bool)):
                raise ValueError(f"{f.name} must be a number or null; got {value!r}")
        if out.min_lift_over_baseline is not None and out.min_lift_over_baseline < 0:
            raise ValueError(
                f"min_lift_over_baseline must be >= 0 or null; got {out.min_lift_over_baseline}"
            )
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
    ("max_rmse", "rmse", False),
    ("min_r2", "r2", True),
)


def _absolute(challenger_metrics, thresholds: Thresholds, reasons: list[str]) -> list[str]:
    failed = []
    for key, metric, at_least in _ABSOLUTE_CHECKS:
        limit = getattr(thresholds, key)
        if limit is None:
            continue
        value = _number(challenger_metrics, metric)
        if value is None:
            failed.append(key)
            reasons.append(
                f"Challenger {metric} is missing or not a number, so the "
                f"{'minimum' if at_least else 'maximum'} of {_fmt(limit)} cannot be checked."
            )
            continue
        passed = value >= limit if at_least else value <= limit
        if not passed:
            failed.append(key)
        if at_least:
            relation = "meets the minimum" if passed else "is below the minimum"
        else:
            relation = "is within the maximum" if passed else "exceeds the maximum"
        reasons.append(f"Challenger {metric} {_fmt(value)} {relation} {_fmt(limit)}.")
    return failed


def _baseline(
    challenger_metrics,
    baseline_metrics,
    thresholds: Thresholds,
    reasons: list[str],
    problem_type: str | None = None,
) -> list[str]:
    margin = thresholds.min_lift_over_baseline
    if margin is None or baseline_metrics is None:
        return []
    primary = thresholds.primary_metric
    greater = GREATER_IS_BETTER[primary]
    challenger = _number(challenger_metrics, primary)
    baseline = _number(baseline_metrics, primary)
    name, what = baseline_name(problem_type)
    if baseline is None:
        reasons.append(
            f"The {name} has no usable {primary} on this test split, so the "
            "lift over it is not checked."
        )
        return []
    if challenger is None:
        reasons.append(
            f"Challenger {primary} is missing or not a number, so it cannot be compared with "
            f"the {name}'s {_fmt(baseline)}."
        )
        return ["baseline"]
    gained = lift(primary, challenger, baseline)
    better = "higher" if greater else "lower"
    if is_relative_lift(primary):
        shown, needed = f"{gained:.1%}", f"{margin:.1%}"
        unit = f"relative {primary} reduction; {better} is better"
    else:
        shown, needed, unit = _fmt(gained), _fmt(margin), f"{better} is better"
    if gained >= margin:
        reasons.append(
            f"Challenger {primary} {_fmt(challenger)} beats the {name}'s "
            f"{_fmt(baseline)} by {shown}, at least the required lift {needed} "
            f"(min_lift_over_baseline; {unit})."
        )
        return []
    reasons.append(
        f"Challenger {primary} {_fmt(challenger)} is only {shown} better than the "
        f"{name}'s {_fmt(baseline)} ({what}), less than the required lift {needed} "
        f"(min_lift_over_baseline; {unit}): it has learnt little or nothing from the "
        "features."
    )
    return ["baseline"]


def _champion(
    challenger_metrics,
    champion_metrics,
    champion_error: str | None,
    thresholds: Thresholds,
    reasons: list[str],
) -> list[str]:
    primary = thresholds.primary_metric
    greater = GREATER_IS_BETTER[primary]
    challenger = _number(challenger_metrics, primary)
    champion = _number(champion_metrics, primary)
    if champion_metrics is None and champion_error:
        reasons.append(
            f"The champion could not be scored on this test split ({champion_error}), so "
            "the challenger is not compared with it; the other checks decide."
        )
        return []
    if champion_metrics is None:
        reasons.append("No champion yet: no model to compare with; the other checks decide.")
        return []
    if champion is None:
        reasons.append(
            f"The champion has no usable {primary} on this test split, so the challenger is "
            "not compared with it; the other checks decide."
        )
        return []
    if challenger is None:
        reasons.append(
            f"Challenger {primary} is missing or not a number, so it cannot be compared "
            f"with the champion's {_fmt(champion)}."
        )
        return ["champion"]
    # How much worse the challenger is (positive = worse), in the metric's direction; for
    # a regression error metric relative to the champion's (0.01: 1% higher RMSE).
    shortfall = -lift(primary, challenger, champion)
    tolerance = float(thresholds.tolerance)
    better_word = "higher" if greater else "lower"
    fmt = (lambda v: f"{v:.1%}") if is_relative_lift(primary) else _fmt
    if shortfall <= tolerance:
        if shortfall <= 0:
            detail = f"is at least as good as ({better_word} is better)"
        else:
            detail = f"is {fmt(shortfall)} worse than, within the tolerance {fmt(tolerance)},"
        reasons.append(
            f"Challenger {primary} {_fmt(challenger)} {detail} the champion's "
            f"{_fmt(champion)} on the same test split."
        )
        return []
    reasons.append(
        f"Challenger {primary} {_fmt(challenger)} is {fmt(shortfall)} worse than the "
        f"champion's {_fmt(champion)} on the same test split, more than the "
        f"tolerance {fmt(tolerance)} ({better_word} is better)."
    )
    return ["champion"]


#: How the reason that names a different problem begins (the run summary shows it alone).
DIFFERENT_PROBLEM = "This is a different problem"


def _contract(
    contract: ContractComparison | None, thresholds: Thresholds, reasons: list[str]
) -> tuple[list[str], list[str]]:
    """(failed checks, contract changes for `Decision.contract_changes`)."""
    if contract is None:
        return [], []
    champion = (
        f"champion v{contract.champion_version}" if contract.champion_version else ("the champion")
    )
    if not contract.compared:
        reasons.append(f"The input contract is not compared with {champion}'s: {contract.note}.")
        return [], []
    if not contract.changed:
        reasons.append(
            f"The input contract is the same as {champion}'s (same columns, kinds, label "
            "type and labels)."
        )
        return [], []
    changes = [str(change) for change in contract.changes]
    listed = "; ".join(change.description for change in contract.changes)
    if contract.different_problem and not thresholds.allow_contract_change:
        reasons.append(
            f"{DIFFERENT_PROBLEM}, not a new version of {champion}: "
            f"{contract.different_problem}. Give it its own model_name (e.g. CONF="
            "'model_name=<name>'; the model API serves it next to this one), or set "
            f"allow_contract_change to replace {champion} (its {len(changes)} "
            "differences are listed in the report under contract_changes)."
        )
        return ["input contract"], changes
    if thresholds.allow_contract_change:
        actions = "; ".join(change.client_action for change in contract.changes)
        reasons.append(
            f"The input contract differs from {champion}'s, allowed by "
            f"allow_contract_change: {listed}. Clients must change: {actions}."
        )
        return [], changes
    reasons.append(
        f"The input contract differs from {champion}'s, so today's clients would break: "
        f"{listed}. Set allow_contract_change to deploy it anyway (the deployed "
        "notification then says what clients must change)."
    )
    return ["input contract"], changes


def decide_deployment(
    challenger_metrics: dict[str, Any],
    champion_metrics: dict[str, Any] | None,
    thresholds: Thresholds | dict[str, Any] | None = None,
    *,
    champion_error: str | None = None,
    baseline_metrics: dict[str, Any] | None = None,
    contract: ContractComparison | None = None,
    problem_type: str | None = None,
) -> Decision:
    """Deploy iff every check that applies passes; see the module docstring.

    `champion_error`: why a champion that exists could not be scored on this test
    split. `baseline_metrics`: the class-prior baseline on the same split (None: the
    lift is not checked). `contract`: the challenger's input contract compared with the
    champion's (None: no champion, nothing to compare). `problem_type`: which baseline it
    is and how its lift is measured (classification when None)."""
    if not isinstance(thresholds, Thresholds):
        thresholds = Thresholds.from_dict(thresholds)
    reasons: list[str] = []
    failed = _absolute(challenger_metrics, thresholds, reasons)
    failed += _baseline(challenger_metrics, baseline_metrics, thresholds, reasons, problem_type)
    failed += _champion(challenger_metrics, champion_metrics, champion_error, thresholds, reasons)
    contract_failed, changes = _contract(contract, thresholds, reasons)
    failed += contract_failed
    ok = not failed
    if ok:
        header = "Deploy: the challenger passed every check."
    else:
        names = ", ".join(dict.fromkeys(failed))
        header = (
            f"Reject: the challenger failed {len(failed)} check"
            f"{'s' if len(failed) != 1 else ''} ({names})."
        )
    reasons.insert(0, header)
    return Decision(deploy=ok, reasons=reasons, contract_changes=changes)
