"""Schema and quality rules, checked by SQL inside the warehouse.

One aggregate query profiles every column (`profile.profile_table`); the rules then
compare that profile with `ValidationRules`. Every broken rule becomes a `Violation`
naming the column, the rule and the observed value (with the line of the first bad
value), and all of them are raised together in one `DataValidationError`, so the user
fixes the file once. What is unusual but usable becomes a warning in the report instead
(`ValidationReport.warnings`), printed by `make run`.

The rules, by name:

* table: `min_rows`, `header_looks_like_data` (every header name is a number, or most
  are values of their own column: a file without a header line), `has_features`,
  `max_duplicate_fraction` (only when set; by default repeated rows are a warning);
* target: `required_column`, `target_nulls`, `target_type` (a list/struct label, or
  text for a regression target), then by problem type (`problem.infer_problem_type`, or
  the `problem_type` Param): classification `min_classes`, `max_classes`,
  `min_class_count`, `label_spelling` (labels that differ only by case or spacing, e.g.
  `Yes` and `yes`); regression `finite_target` and `constant_target` (rows without a
  target are dropped and counted in a warning; a target dominated by one value, as
  claims or counts often are, is a warning too);
* features: `required_column`, `numeric_parseable` (a column of numbers with text in
  it), `finite_numbers` (`inf`, `1e400`, numbers beyond +-1e150), `max_null_fraction`,
  `value_range`, `nested_column` (lists/structs, Parquet), `target_leakage` (one column
  that alone predicts the target almost perfectly).

Kinds: a column is numeric when declared so, typed so (Parquet), or when at least
`MOSTLY_NUMERIC_SHARE` of its values parse as numbers (missing-number tokens such as `NA`
and `NaN` do not count; they are missing values); its other values are then reported by
`numeric_parseable` rather than turning the column into text. Anything else is
categorical.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from include.ml_pipeline.data_preparation.ingest import ROW_ID
from include.ml_pipeline.data_preparation.profile import (
    is_numeric_type,
    profile_table,
)
from include.ml_pipeline.data_preparation.warehouse import (
    MAX_ABS_NUMBER,
    finite_number,
    missing_token,
    number_value,
    quote_ident,
    table_columns,
    text_value,
)
from include.ml_pipeline.errors import DataValidationError, Violation
from include.ml_pipeline.payloads import ValidationReport
from include.ml_pipeline.problem import (
    AUTO,
    BINARY,
    MAX_CLASSES,
    LabelFacts,
    ProblemDecision,
    infer_problem_type,
)

#: A text column is numeric when at least this share of its values parse as numbers; the
#: rest are then reported as unparseable values rather than silently dropped.
MOSTLY_NUMERIC_SHARE = 0.8
#: A regression target whose most common value covers this share of rows: a warning.
DOMINANT_VALUE_SHARE = 0.5
#: Fewer rows than this: a warning that test metrics are noisy.
SMALL_TABLE_ROWS = 500
#: Leakage is measured on at most this many rows.
LEAKAGE_SAMPLE_ROWS = 200_000
#: Categories with fewer rows than this count as one "rare" group when measuring leakage
#: (so that an identifier, unique per row, does not look like a perfect predictor).
LEAKAGE_MIN_CATEGORY_ROWS = 10


@dataclass(frozen=True)
class ValidationRules:
    """The rules a raw table must meet. Built from the DAG's Params."""

    target: str
    required_columns: list[str] = field(default_factory=list)
    numeric_columns: list[str] = field(default_factory=list)
    categorical_columns: list[str] = field(default_factory=list)
    exclude_columns: list[str] = field(default_factory=list)
    value_ranges: dict[str, list[float]] = field(default_factory=dict)
    min_rows: int = 100
    max_null_fraction: float = 0.5
    max_target_null_fraction: float = 0.01
    #: None: repeated rows are only a warning; a number: more than that share fails.
    max_duplicate_fraction: float | None = None
    min_class_count: int = 10
    #: Share of the target's uncertainty one column may explain (None: not checked).
    leakage_threshold: float | None = 0.95
    drop_duplicates: bool = True
    #: auto | binary | multiclass | regression (`problem.infer_problem_type`).
    problem_type: str = AUTO

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ValidationRules:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in params.items() if k in names})


def infer_kinds(profile: dict[str, Any], rules: ValidationRules) -> dict[str, str]:
    """numeric / categorical for every column but the target (declared kinds win)."""
    kinds = {}
    for name, col in profile["columns"].items():
        if name == rules.target:
            continue
        if name in rules.categorical_columns or col.get("nested"):
            kinds[name] = "categorical"
        elif (
            name in rules.numeric_columns
            or is_numeric_type(col["source_type"])
            or (col["non_null"] > col["tokens"] and col["numeric_share"] >= MOSTLY_NUMERIC_SHARE)
        ):
            kinds[name] = "numeric"
        else:
            kinds[name] = "categorical"
    return kinds


def class_counts(con, table: str, target: str) -> dict[str, int]:
    text = text_value(target)
    rows = con.execute(
        f"SELECT {text} AS label, count(*) FROM {quote_ident(table)} "
        f"WHERE {text} IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {MAX_CLASSES + 1}"
    ).fetchall()
    return {str(label): int(n) for label, n in rows}


@dataclass(frozen=True)
class TargetFacts:
    """What validation knows about the label column, besides the problem type."""

    facts: LabelFacts
    tokens: int  # missing-number markers (`NA`, `?`) in a numeric label
    non_numeric: int
    non_numeric_example: str | None
    infinite: int
    top_value: str | None
    top_count: int


def target_facts(con, table: str, target: str) -> TargetFacts:
    """The label column's facts in one query (missing values and, for numbers, missing
    markers dropped)."""
    text, num, token = text_value(target), number_value(target), missing_token(target)
    t = quote_ident(table)
    row = con.execute(
        f"WITH t AS (SELECT {text} AS v, {num} AS num, {token} AS token FROM {t} "
        f"WHERE {text} IS NOT NULL) SELECT count(*), count(*) FILTER (WHERE token), "
        "count(*) FILTER (WHERE lower(v) NOT IN ('true', 'false')), "
        "count(*) FILTER (WHERE NOT token AND num IS NULL), "
        "min(v) FILTER (WHERE NOT token AND num IS NULL), "
        f"count(*) FILTER (WHERE NOT (abs(num) <= {MAX_ABS_NUMBER:g})), "
        f"count(*) FILTER (WHERE abs(num) <= {MAX_ABS_NUMBER:g} AND num <> trunc(num)), "
        "count(DISTINCT v), count(DISTINCT num) FROM t"
    ).fetchone()
    n, tokens, non_bool, non_numeric, example, infinite, fractional, dv, dn = row
    numeric = bool(non_bool) and not non_numeric and n > tokens
    top = con.execute(
        f"SELECT {text}, count(*) FROM {t} WHERE {text} IS NOT NULL "
        f"AND NOT {token} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1"
    ).fetchone()
    facts = LabelFacts(
        rows=int(n - tokens) if numeric else int(n),
        distinct=int(dn if numeric else dv),
        numeric=numeric,
        whole=numeric and not fractional,
        boolean=n > 0 and not non_bool,
    )
    return TargetFacts(
        facts=facts,
        tokens=int(tokens),
        non_numeric=int(non_numeric),
        non_numeric_example=example,
        infinite=int(infinite),
        top_value=top[0] if top else None,
        top_count=int(top[1]) if top else 0,
    )


def decide_problem(target: TargetFacts, rules: ValidationRules) -> ProblemDecision:
    """The problem type: the Param's, or inferred from the label column."""
    return infer_problem_type(target.facts, rules.problem_type)


def duplicate_rows(con, table: str) -> int:
    """Rows that repeat an earlier row on every column."""
    cols = ", ".join(quote_ident(n) for n, _ in table_columns(con, table) if n != ROW_ID)
    sql = (
        f"SELECT (SELECT count(*) FROM {quote_ident(table)}) - "
        f"(SELECT count(*) FROM (SELECT DISTINCT {cols} FROM {quote_ident(table)}))"
    )
    return int(con.execute(sql).fetchone()[0])


# --------------------------------------------------------------------------- leakage


def _entropy(counts: list[int]) -> float:
    total = sum(counts)
    return -sum(c / total * math.log(c / total) for c in counts if c)


def leakage_score(
    con,
    table: str,
    column: str,
    kind: str,
    target: str,
    rows: int,
    distinct: int = 0,
    *,
    regression: bool = False,
) -> float:
    """How much of the target's uncertainty `column` alone removes (Theil's U, 0..1):
    1 - H(target | column) / H(target), with numbers cut into equal-count bins (at least
    20 rows each, at most 50 bins) and categories under `LEAKAGE_MIN_CATEGORY_ROWS` rows
    pooled; a numeric column with no more distinct values than bins is binned by value.
    A copy of the target, or a 1:1 recoding of it, scores 1. A regression target is cut
    into 20 equal-count bins first (a copy of it then scores close to 1)."""
    y = text_value(target)
    if regression:
        y = f"ntile(20) OVER (ORDER BY {finite_number(target)})"
    sample = ""
    if rows > LEAKAGE_SAMPLE_ROWS:
        sample = f" AND hash({ROW_ID}) % {math.ceil(rows / LEAKAGE_SAMPLE_ROWS)} = 0"
    base = f"FROM {quote_ident(table)} WHERE {text_value(target)} IS NOT NULL{sample}"
    if regression:
        base += f" AND {finite_number(target)} IS NOT NULL"
    bins = max(2, min(50, rows // 20))
    if kind == "numeric" and distinct > bins:
        x = finite_number(column)
        sql = (
            f"WITH t AS (SELECT {x} AS x, {y} AS y {base}) "
            f"SELECT CASE WHEN x IS NULL THEN 0 ELSE ntile({bins}) OVER "
            f"(PARTITION BY x IS NULL ORDER BY x) END AS bin, y FROM t"
        )
    else:
        x = f"coalesce({text_value(column)}, chr(0))"
        sql = (
            f"WITH t AS (SELECT {x} AS x, {y} AS y {base}), "
            f"c AS (SELECT x, y, count(*) OVER (PARTITION BY x) AS nx FROM t) "
            f"SELECT CASE WHEN nx >= {LEAKAGE_MIN_CATEGORY_ROWS} THEN x ELSE chr(1) END "
            f"AS bin, y FROM c"
        )
    cells = con.execute(f"SELECT bin, y, count(*) FROM ({sql}) GROUP BY ALL").fetchall()
    by_label: dict[Any, int] = {}
    by_bin: dict[Any, list[int]] = {}
    for bin_, label, n in cells:
        by_label[label] = by_label.get(label, 0) + n
        by_bin.setdefault(bin_, []).append(n)
    h_y = _entropy(list(by_label.values()))
    if h_y <= 0:
        return 0.0
    total = sum(by_label.values())
    h_y_x = sum(sum(c) / total * _entropy(c) for c in by_bin.values())
    return max(0.0, 1.0 - h_y_x / h_y)


# --------------------------------------------------------------------------- helpers


def _parses_as_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def header_looks_like_data(profile: dict[str, Any]) -> list[str]:
    """The header names that look like values (numbers, or values of their own column)
    when the header as a whole looks like a data row; else an empty list."""
    columns = profile["columns"]
    names = list(columns)
    if not names:
        return []
    numbers = [n for n in names if _parses_as_number(n)]
    if len(numbers) == len(names):
        return numbers
    values = [n for n in names if _parses_as_number(n) or columns[n]["name_hits"] > 0]
    if len(values) >= 2 and len(values) >= 0.5 * len(names):
        return values
    return []


def _spelling_key(label: str) -> str:
    return re.sub(r"\s+", " ", label.strip()).casefold()


def label_spellings(classes: dict[str, int]) -> list[list[str]]:
    """Groups of labels that differ only by case or spacing (`Yes`, `yes`, `YES `)."""
    groups: dict[str, list[str]] = {}
    for label in classes:
        groups.setdefault(_spelling_key(label), []).append(label)
    return [labels for labels in groups.values() if len(labels) > 1]


def _fmt_rows(n: int) -> str:
    return f"{n:,} row{'s' if n != 1 else ''}"


# --------------------------------------------------------------------------- the rules


def check_rules(
    profile: dict[str, Any],
    classes: dict[str, int],
    duplicates: int,
    rules: ValidationRules,
    *,
    leakage: dict[str, float] | None = None,
    file_format: str = "csv",
    target_info: TargetFacts | None = None,
    problem: ProblemDecision | None = None,
) -> list[Violation]:
    """Compare a profile with the rules; return every violation (empty list: valid).
    `problem` (with `target_info`): a regression target gets the regression rules."""
    from include.ml_pipeline.data_preparation.preprocess import choose_features

    v: list[Violation] = []
    rows, columns = profile["rows"], profile["columns"]
    if rows < rules.min_rows:
        v.append(
            Violation(
                None,
                "min_rows",
                f"{rows} data rows",
                f"at least {rules.min_rows} (the min_rows parameter)",
            )
        )
    data_like = header_looks_like_data(profile) if file_format == "csv" else []
    if data_like:
        shown = ", ".join(repr(n) for n in data_like[:8])
        v.append(
            Violation(
                None,
                "header_looks_like_data",
                f"the first line ({shown}{', ...' if len(data_like) > 8 else ''}) looks like "
                "a data row, not column names",
                "a first line naming the columns: add a header line to the file",
            )
        )
    else:
        for name in dict.fromkeys([rules.target, *rules.required_columns]):
            if name not in columns:
                v.append(
                    Violation(
                        name,
                        "required_column",
                        "column is absent",
                        f"one of the file's columns ({', '.join(list(columns)[:20])})",
                    )
                )
    if rules.target in columns and rows:
        if problem is not None and problem.is_regression and target_info is not None:
            v += _regression_target_rules(columns[rules.target], target_info, rules)
        else:
            v += _target_rules(columns[rules.target], classes, rules, problem)
    kinds = infer_kinds(profile, rules)
    numeric, categorical, _excluded = choose_features(kinds, columns, rows, rules.exclude_columns)
    features = set(numeric) | set(categorical)
    if rules.target in columns and not kinds:
        v.append(
            Violation(
                None, "has_features", "no column besides the target", "at least one feature column"
            )
        )
    elif rules.target in columns and rows and not features and not data_like:
        left_out = "; ".join(f"{n!r}: {why}" for n, why in list(_excluded.items())[:10])
        v.append(
            Violation(
                None,
                "has_features",
                f"no usable feature column ({left_out})",
                "at least one feature column that is not constant, an identifier or excluded",
            )
        )
    for name, kind in kinds.items():
        col = columns[name]
        if name in rules.exclude_columns:
            continue
        if col["nested"]:
            v.append(
                Violation(
                    name,
                    "nested_column",
                    f"values of type {col['source_type']} (lists or records, not one value)",
                    "one number or text per cell: flatten it, or list it in exclude_columns",
                )
            )
            continue
        if name not in features:
            continue  # constant or identifier-like: not used, warned about
        if kind == "numeric":
            bad = col["non_null"] - col["tokens"] - col["numeric_values"]
            if bad > 0:
                v.append(
                    Violation(
                        name,
                        "numeric_parseable",
                        f"{bad} value(s) are not numbers, first {col['bad_example']!r} "
                        f"on line {col['bad_line']}",
                        "numbers only (fix those values or leave them empty; if the column "
                        "is text, list it in categorical_columns)",
                    )
                )
            if col["infinite"]:
                v.append(
                    Violation(
                        name,
                        "finite_numbers",
                        f"{col['infinite']} value(s) are infinite or too large to compute "
                        f"with, first {col['infinite_example']!r} on line "
                        f"{col['infinite_line']}",
                        "finite numbers within +-1e150 (leave unknown values empty)",
                    )
                )
        missing = col["null_fraction"] + (col["tokens"] / rows if kind == "numeric" else 0)
        if rows and missing > rules.max_null_fraction:
            v.append(
                Violation(
                    name,
                    "max_null_fraction",
                    f"{missing:.1%} missing",
                    f"at most {rules.max_null_fraction:.1%} (raise max_null_fraction, or "
                    "list the column in exclude_columns)",
                )
            )
        score = (leakage or {}).get(name)
        threshold = rules.leakage_threshold
        if threshold is not None and score is not None and score >= threshold:
            v.append(
                Violation(
                    name,
                    "target_leakage",
                    f"this column alone predicts {rules.target!r} almost perfectly (it "
                    f"explains {score:.1%} of the label's uncertainty): a copy or recoding "
                    "of the label, or something known only after it",
                    f"less than {threshold:.0%} (leakage_threshold): list the column in "
                    "exclude_columns; if it is truly known before the label, raise "
                    "leakage_threshold or set it to null",
                )
            )
    for name, bounds in rules.value_ranges.items():
        col = columns.get(name)
        if col is None or col["min"] is None:
            continue
        lo, hi = bounds
        if (lo is not None and col["min"] < lo) or (hi is not None and col["max"] > hi):
            v.append(
                Violation(
                    name,
                    "value_range",
                    f"values from {col['min']:g} to {col['max']:g}",
                    f"within [{lo}, {hi}]",
                )
            )
    limit = rules.max_duplicate_fraction
    if limit is not None and rows and duplicates / rows > limit:
        v.append(
            Violation(
                None,
                "max_duplicate_fraction",
                f"{duplicates} duplicate rows ({duplicates / rows:.1%})",
                f"at most {limit:.1%}",
            )
        )
    return v


def _nested_target(rules: ValidationRules, target: dict[str, Any], expected: str) -> Violation:
    return Violation(
        rules.target,
        "target_type",
        f"labels of type {target['source_type']} (lists or records)",
        expected,
    )


def _regression_target_rules(
    target: dict[str, Any], info: TargetFacts, rules: ValidationRules
) -> list[Violation]:
    name = rules.target
    if target["nested"]:
        return [_nested_target(rules, target, "one number per row for a regression target")]
    if info.non_numeric:
        return [
            Violation(
                name,
                "target_type",
                f"{info.non_numeric} value(s) are not numbers, first {info.non_numeric_example!r}",
                "numbers for a regression target (problem_type is regression); fix the "
                "values, or set the problem_type Param to auto, binary or multiclass",
            )
        ]
    v: list[Violation] = []
    if info.infinite:
        v.append(
            Violation(
                name,
                "finite_target",
                f"{info.infinite} value(s) are infinite or beyond +-1e150",
                "finite numbers (leave an unknown target empty: the row is dropped)",
            )
        )
    if info.facts.distinct < 2:
        seen = repr(info.top_value) if info.top_value is not None else "no value"
        v.append(
            Violation(
                name,
                "constant_target",
                f"every labelled row has the same target ({seen})",
                "a target that varies: a model of a constant learns nothing",
            )
        )
    return v


def _target_rules(
    target: dict[str, Any],
    classes: dict[str, int],
    rules: ValidationRules,
    problem: ProblemDecision | None = None,
) -> list[Violation]:
    v: list[Violation] = []
    name = rules.target
    if target["nested"]:
        return [_nested_target(rules, target, "one label (text, integer or boolean) per row")]
    if target["null_fraction"] > rules.max_target_null_fraction:
        v.append(
            Violation(
                name,
                "target_nulls",
                f"{target['null_fraction']:.1%} of rows have no label",
                f"at most {rules.max_target_null_fraction:.1%}",
            )
        )
    if len(classes) < 2:
        seen = ", ".join(repr(c) for c in classes) or "none"
        v.append(
            Violation(name, "min_classes", f"{len(classes)} class ({seen})", "at least 2 classes")
        )
        return v
    if len(classes) > MAX_CLASSES:
        v.append(
            Violation(
                name,
                "max_classes",
                f"more than {MAX_CLASSES} classes",
                f"at most {MAX_CLASSES} (is this a regression target? set the "
                "problem_type Param to regression)",
            )
        )
        return v
    if problem is not None and problem.problem_type == BINARY and len(classes) != 2:
        v.append(
            Violation(
                name,
                "binary_classes",
                f"{len(classes)} classes ({', '.join(map(repr, list(classes)[:5]))})",
                "exactly 2 for problem_type binary: set the problem_type Param to auto or "
                "multiclass",
            )
        )
    for group in label_spellings(classes):
        shown = " and ".join(f"{label!r} ({_fmt_rows(classes[label])})" for label in group)
        v.append(
            Violation(
                name,
                "label_spelling",
                f"labels {shown} differ only by case or spacing",
                "one spelling per class: write them the same way",
            )
        )
    for label, n in classes.items():
        if n < rules.min_class_count:
            v.append(
                Violation(
                    name,
                    "min_class_count",
                    f"class {label!r} has {n} rows",
                    f"at least {rules.min_class_count} per class",
                )
            )
    return v


# --------------------------------------------------------------------------- warnings


def collect_warnings(
    profile: dict[str, Any],
    classes: dict[str, int],
    duplicates: int,
    rules: ValidationRules,
    label_type: str | None = None,
    target_info: TargetFacts | None = None,
    problem: ProblemDecision | None = None,
) -> list[str]:
    """What is unusual but usable: one sentence each, saying what happens to it."""
    from include.ml_pipeline.data_preparation.preprocess import (
        LABEL_TEXT,
        choose_features,
        identifier_columns,
    )

    out: list[str] = []
    rows, columns = profile["rows"], profile["columns"]
    kinds = infer_kinds(profile, rules)
    _numeric, _categorical, excluded = choose_features(kinds, columns, rows, rules.exclude_columns)
    for name, why in excluded.items():
        if why.startswith("identifier-like"):
            out.append(f"column {name!r} looks like an identifier ({why}): not used as a feature")
        elif why.startswith("constant"):
            col = columns[name]
            what = "no value" if not col["non_null"] else "the same value in every row"
            out.append(f"column {name!r} has {what}: not used as a feature")
    for name, kind in kinds.items():
        col = columns[name]
        if name in excluded:
            continue
        if kind == "numeric" and col["tokens"]:
            out.append(
                f"column {name!r}: {_fmt_rows(col['tokens'])} hold {col['token_example']!r} "
                "or a similar missing-value marker: read as missing numbers"
            )
        candidates = col["non_null"] - col["tokens"]
        mixed = candidates and col["numeric_share"] >= 0.5 and col["bad_example"] is not None
        if kind == "categorical" and mixed and name not in rules.categorical_columns:
            out.append(
                f"column {name!r} is mostly numbers ({col['numeric_share']:.0%}) but also "
                f"text (first {col['bad_example']!r} on line {col['bad_line']}): it is used "
                "as categorical text; fix the values or list it in numeric_columns"
            )
    if duplicates:
        ids = identifier_columns(excluded)
        share = f"{duplicates / rows:.1%}" if rows and duplicates / rows >= 0.001 else "<0.1%"
        if ids and rules.drop_duplicates:
            out.append(
                f"{_fmt_rows(duplicates)} ({share}) repeat another row exactly, identifier "
                f"{', '.join(map(repr, ids))} included (the same record twice): "
                "preprocessing keeps the first of each"
            )
        else:
            why = (
                "drop_duplicates is off"
                if ids
                else "no identifier column says they are the same record"
            )
            out.append(
                f"{_fmt_rows(duplicates)} ({share}) repeat another row exactly: "
                f"they are kept ({why})"
            )
    if 0 < rows < SMALL_TABLE_ROWS:
        out.append(
            f"only {rows:,} rows: the test split holds a few dozen of them, so its "
            "metrics (and the deploy gate) are noisy"
        )
    if problem is not None and problem.is_regression and target_info is not None:
        out += _regression_warnings(columns.get(rules.target), target_info, rules, rows)
        return out
    labels = list(classes)
    if labels and label_type == LABEL_TEXT:
        if all(re.fullmatch(r"\s*[\[{(].*[\]})]\s*", label) for label in labels):
            out.append(
                f"labels look like lists or records ({', '.join(map(repr, labels[:3]))}): "
                "they are kept as text exactly as written, and the model API returns them so"
            )
        elif all(_parses_as_number(label) for label in labels):
            out.append(
                f"labels are decimal numbers ({', '.join(map(repr, labels[:3]))}): they are "
                "kept as text labels exactly as written"
            )
    return out


def _regression_warnings(
    target: dict[str, Any] | None, info: TargetFacts, rules: ValidationRules, rows: int
) -> list[str]:
    out = []
    missing = rows - info.facts.rows
    if target is not None and missing > 0:
        out.append(
            f"{_fmt_rows(missing)} ({missing / rows:.1%}) have no value in the target "
            f"{rules.target!r}: dropped before training"
        )
    labelled = info.facts.rows
    if labelled and info.top_count / labelled >= DOMINANT_VALUE_SHARE:
        out.append(
            f"target {rules.target!r} is {info.top_value} in {info.top_count / labelled:.0%} "
            "of rows (as claims or counts often are): a legitimate target, but the mean "
            "baseline is hard to beat and RMSE is dominated by the other rows"
        )
    return out


def measure_leakage(
    con, table: str, profile: dict[str, Any], rules: ValidationRules, *, regression: bool = False
) -> dict[str, float]:
    """`leakage_score` of every feature column (none when the check is off)."""
    from include.ml_pipeline.data_preparation.preprocess import choose_features

    columns = profile["columns"]
    if rules.leakage_threshold is None or rules.target not in columns:
        return {}
    kinds = infer_kinds(profile, rules)
    numeric, categorical, _ = choose_features(
        kinds, columns, profile["rows"], rules.exclude_columns
    )
    return {
        name: leakage_score(
            con,
            table,
            name,
            kinds[name],
            rules.target,
            profile["rows"],
            columns[name]["distinct"],
            regression=regression,
        )
        for name in [*numeric, *categorical]
        if not columns[name]["nested"]
    }


def validate_table(
    con,
    table: str,
    rules: ValidationRules,
    source: str,
    *,
    load_warnings: list[str] | tuple[str, ...] = (),
    file_format: str = "csv",
) -> ValidationReport:
    """Profile `table`, check `rules`; raise `DataValidationError` naming every violation,
    or return the report (kinds, classes, warnings)."""
    from include.ml_pipeline.data_preparation.preprocess import LABEL_NUMBER, target_type

    profile = profile_table(con, table)
    has_target = rules.target in profile["columns"]
    nested = has_target and profile["columns"][rules.target]["nested"]
    info = target_facts(con, table, rules.target) if has_target and not nested else None
    problem = decide_problem(info, rules) if info is not None else None
    regression = problem is not None and problem.is_regression
    classes = class_counts(con, table, rules.target) if has_target and not regression else {}
    duplicates = duplicate_rows(con, table) if profile["rows"] else 0
    if info is not None and regression:
        usable_target = info.facts.numeric and info.facts.distinct >= 2 and not info.infinite
    else:
        usable_target = has_target and not nested and 2 <= len(classes) <= MAX_CLASSES
    leakage = (
        measure_leakage(con, table, profile, rules, regression=regression) if usable_target else {}
    )
    violations = check_rules(
        profile,
        classes,
        duplicates,
        rules,
        leakage=leakage,
        file_format=file_format,
        target_info=info,
        problem=problem,
    )
    if violations:
        raise DataValidationError(f"{source} (table {table})", violations)
    label_type = LABEL_NUMBER if regression else target_type(con, table, rules.target)
    return ValidationReport(
        source=source,
        rows=profile["rows"],
        kinds=infer_kinds(profile, rules),
        classes=classes,
        duplicates=duplicates,
        null_fractions={n: round(c["null_fraction"], 6) for n, c in profile["columns"].items()},
        table=table,
        warnings=[
            *load_warnings,
            *collect_warnings(profile, classes, duplicates, rules, label_type, info, problem),
        ],
        problem_type=problem.problem_type if problem else "",
        problem_reason=problem.reason if problem else "",
    )
