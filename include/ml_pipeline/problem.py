"""Problem types (binary, multiclass, regression): which one a label column is, why, and
what each type means for the metrics.

`infer_problem_type` decides from facts about the label column after its missing values
are dropped (`LabelFacts`: how many values, how many distinct, whether they are all
numbers, all whole numbers, all true/false), or takes the type the `problem_type` Param
asks for. The rule, in order:

1. two distinct values -> **binary** (whatever their type: `yes`/`no`, 0/1, 1.5/2.5);
2. text or true/false labels -> **multiclass** (classification; more than
   `MAX_CLASSES` of them is refused by validation, naming the Param that fixes it);
3. numbers with a fractional part anywhere -> **regression**;
4. whole numbers -> **multiclass** when they have at most `MAX_CLASSES` distinct values
   and either at most `FEW_CLASSES` of them (ratings 1-5, a 0/1/2 code, wine quality 3-9)
   or few compared with the rows (distinct / rows at most `UNIQUE_RATIO_LARGE` from
   `LARGE_TABLE_ROWS` rows on, `UNIQUE_RATIO_SMALL` below: AutoGluon's thresholds);
   else **regression** (integer prices, counts with a long tail, ages in years).

The limits of rule 4: a whole-number target with 11-50 values can go either way -- a
count of 0..30 items over 10,000 rows is classed as multiclass, the same over 200 rows as
regression -- and an integer code with more than 50 values (a zip code, a product id used
as a label) is regression. The reason stated with the decision says which, and the
`problem_type` Param overrides it.

Metric directions live in `names.GREATER_IS_BETTER`; here are which metrics a problem
type has, the default selection/primary metric of each (`roc_auc`, `rmse`), and the lift
over a baseline (relative error reduction for regression error metrics).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from include.ml_pipeline.names import (
    CLASSIFICATION_METRICS,
    GREATER_IS_BETTER,
    REGRESSION_METRICS,
)

AUTO = "auto"
BINARY = "binary"
MULTICLASS = "multiclass"
REGRESSION = "regression"
PROBLEM_TYPES = (BINARY, MULTICLASS, REGRESSION)
PROBLEM_TYPE_CHOICES = (AUTO, *PROBLEM_TYPES)

#: Classification has at most this many classes (validation's `max_classes` rule).
MAX_CLASSES = 50
#: Whole numbers with at most this many distinct values are classes whatever the rows.
FEW_CLASSES = 10
#: AutoGluon's unique-ratio thresholds (`infer_problem_type`): whole numbers whose distinct
#: share of the rows is at most this are classes.
LARGE_TABLE_ROWS = 1000
UNIQUE_RATIO_LARGE = 0.05
UNIQUE_RATIO_SMALL = 0.1

#: What a metric Param set to "auto" becomes.
DEFAULT_METRIC = {BINARY: "roc_auc", MULTICLASS: "roc_auc", REGRESSION: "rmse"}
#: A regression error metric: the lift over the baseline is a relative reduction of it.
_RELATIVE_LIFT = frozenset({"rmse", "mae", "mape"})


class ProblemTypeError(ValueError):
    """A problem type or a metric that does not fit it; the message names the Param."""


@dataclass(frozen=True)
class LabelFacts:
    """The label column after dropping missing values."""

    rows: int  # labelled rows
    distinct: int
    numeric: bool  # every value is a finite number (a numeric column, or text of numbers)
    whole: bool  # ... and a whole number
    boolean: bool = False  # every value is true/false

    @classmethod
    def of(cls, values: Iterable[Any]) -> LabelFacts:
        """The facts of a list/Series of labels (missing values dropped): for tests and
        for frames already in memory; the pipeline gathers them in SQL."""
        import math

        present = [v for v in values if v is not None and not (isinstance(v, float) and v != v)]
        boolean = bool(present) and all(
            isinstance(v, bool) or str(v).strip().lower() in ("true", "false") for v in present
        )
        numbers: list[float] = []
        for value in present:
            if isinstance(value, bool):
                break
            try:
                number = float(value)
            except (TypeError, ValueError):
                break
            if not math.isfinite(number):
                break
            numbers.append(number)
        numeric = not boolean and bool(present) and len(numbers) == len(present)
        return cls(
            rows=len(present),
            distinct=len({str(v) for v in present}) if not numeric else len(set(numbers)),
            numeric=numeric,
            whole=numeric and all(n == int(n) for n in numbers),
            boolean=boolean,
        )


@dataclass(frozen=True)
class ProblemDecision:
    """The problem type and the sentence that says why (what reports and tags show)."""

    problem_type: str
    reason: str
    inferred: bool  # False: the problem_type Param set it

    @property
    def is_regression(self) -> bool:
        return self.problem_type == REGRESSION

    def to_dict(self) -> dict[str, Any]:
        return {"problem_type": self.problem_type, "reason": self.reason, "inferred": self.inferred}


def check_problem_type(value: Any) -> str:
    """`value` if it is one of auto|binary|multiclass|regression, else a named error."""
    if value not in PROBLEM_TYPE_CHOICES:
        raise ProblemTypeError(
            f"problem_type must be one of {', '.join(PROBLEM_TYPE_CHOICES)}; got {value!r}"
        )
    return str(value)


def _fix(other: str) -> str:
    return f"if that is wrong, set the problem_type Param to {other}"


def infer_problem_type(facts: LabelFacts, requested: str = AUTO) -> ProblemDecision:
    """The problem type of a label column with `facts` (see the module docstring), or the
    `requested` one when it is not `auto` (then the reason says so)."""
    requested = check_problem_type(requested)
    n, k = facts.rows, facts.distinct
    if requested != AUTO:
        return ProblemDecision(
            requested, f"problem_type {requested} set by the problem_type Param", inferred=False
        )
    if k == 2:
        return ProblemDecision(
            BINARY,
            f"the label has two distinct values: binary classification ({_fix(REGRESSION)})"
            if facts.numeric
            else "the label has two distinct values: binary classification",
            inferred=True,
        )
    if facts.boolean or not facts.numeric:
        what = "true/false" if facts.boolean else "text"
        return ProblemDecision(
            MULTICLASS,
            f"the label is {what} with {k} distinct values: multiclass classification",
            inferred=True,
        )
    if not facts.whole:
        return ProblemDecision(
            REGRESSION,
            f"the label is numbers with fractional parts ({k:,} distinct values): regression",
            inferred=True,
        )
    ratio = k / n if n else 1.0
    limit = UNIQUE_RATIO_LARGE if n >= LARGE_TABLE_ROWS else UNIQUE_RATIO_SMALL
    if k <= MAX_CLASSES and (k <= FEW_CLASSES or ratio <= limit):
        why = (
            f"at most {FEW_CLASSES}"
            if k <= FEW_CLASSES
            else f"{ratio:.1%} of {n:,} rows, at most {limit:.0%}"
        )
        return ProblemDecision(
            MULTICLASS,
            f"the label is whole numbers with {k} distinct values ({why}): multiclass "
            f"classification ({_fix(REGRESSION)})",
            inferred=True,
        )
    why = (
        f"more than {MAX_CLASSES}"
        if k > MAX_CLASSES
        else f"{ratio:.1%} of {n:,} rows, more than {limit:.0%}"
    )
    return ProblemDecision(
        REGRESSION,
        f"the label is whole numbers with {k:,} distinct values ({why}): regression "
        f"({_fix(MULTICLASS)})",
        inferred=True,
    )


# --------------------------------------------------------------------------- metrics


def is_regression(problem_type: str | None) -> bool:
    return problem_type == REGRESSION


def metric_names(problem_type: str | None) -> tuple[str, ...]:
    """The metrics scored for a problem type."""
    return REGRESSION_METRICS if is_regression(problem_type) else CLASSIFICATION_METRICS


def resolve_metric(value: str | None, problem_type: str | None, param: str) -> str:
    """The metric a Param names for this problem type: `auto` (or None) is the type's
    default; a metric of the other kind of problem is an error naming the Param."""
    problem_type = problem_type or BINARY
    if value in (None, "", AUTO):
        return DEFAULT_METRIC[problem_type]
    allowed = metric_names(problem_type)
    if value not in allowed:
        raise ProblemTypeError(
            f"{param} {value!r} does not fit a {problem_type} problem: use one of "
            f"{', '.join(allowed)} or auto (if the problem type is wrong, set problem_type)"
        )
    return str(value)


def lift(metric: str, value: float, baseline: float) -> float:
    """How much better `value` is than `baseline` on `metric`: for a regression error
    metric (RMSE, MAE, MAPE) the relative reduction `(baseline - value) / baseline`, else
    the difference in the metric's better direction."""
    if metric in _RELATIVE_LIFT:
        if baseline <= 0:
            return 0.0 if value >= baseline else float("inf")
        return (baseline - value) / baseline
    return value - baseline if GREATER_IS_BETTER[metric] else baseline - value


def is_relative_lift(metric: str) -> bool:
    return metric in _RELATIVE_LIFT


def baseline_name(problem_type: str | None) -> tuple[str, str]:
    """What the baseline model is called and what it does, in a report's words."""
    if is_regression(problem_type):
        return "mean baseline", "a model predicting the training mean"
    return "class-prior baseline", "a model predicting the class shares"
