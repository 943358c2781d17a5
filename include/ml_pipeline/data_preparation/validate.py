"""Schema and quality rules, checked by SQL inside the warehouse.

One aggregate query profiles every column (non-null count, how many values parse as
numbers, an example of a value that does not, min/max, distinct count); the rules then
compare that profile with `ValidationRules`. Every broken rule becomes a `Violation`
naming the column, the rule and the observed value, and all of them are raised together
in one `DataValidationError`, so the user fixes the file once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from include.ml_pipeline.contracts.payloads import ValidationReport
from include.ml_pipeline.data_preparation.errors import DataValidationError, Violation
from include.ml_pipeline.data_preparation.ingest import ROW_ID
from include.ml_pipeline.data_preparation.warehouse import (
    quote_ident,
    row_count,
    table_columns,
    text_value,
)

NUMERIC_TYPES = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "FLOAT",
    "DOUBLE",
    "DECIMAL",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
)
#: A text column is taken as numeric when at least this share of its values parse as numbers;
#: the rest are then reported as unparseable values rather than silently dropped.
NUMERIC_SHARE = 0.95
MAX_CLASSES = 50


@dataclass(frozen=True)
class ValidationRules:
    """The rules a raw table must meet. Built from the DAG's Params."""

    target: str
    required_columns: list[str] = field(default_factory=list)
    numeric_columns: list[str] = field(default_factory=list)
    categorical_columns: list[str] = field(default_factory=list)
    value_ranges: dict[str, list[float]] = field(default_factory=dict)
    min_rows: int = 100
    max_null_fraction: float = 0.5
    max_target_null_fraction: float = 0.01
    max_duplicate_fraction: float = 0.1
    min_class_count: int = 10

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ValidationRules:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in params.items() if k in names})


def _is_numeric_type(duck_type: str) -> bool:
    return duck_type.upper().startswith(NUMERIC_TYPES)


def profile_sql(table: str, columns: list[tuple[str, str]]) -> tuple[str, list[str]]:
    """One aggregate query over all columns; returns (sql, output names)."""
    parts, names = [], []
    for i, (name, _duck_type) in enumerate(columns):
        text = text_value(name)
        num = f"TRY_CAST({text} AS DOUBLE)"
        bad = f"{text} IS NOT NULL AND {num} IS NULL"
        parts += [
            f"count({text}) AS c{i}_nonnull",
            f"count({num}) AS c{i}_numeric",
            f"min({num}) AS c{i}_min",
            f"max({num}) AS c{i}_max",
            f"approx_count_distinct({text}) AS c{i}_distinct",
            f"arg_min({text}, {ROW_ID}) FILTER (WHERE {bad}) AS c{i}_bad_example",
            f"min({ROW_ID}) FILTER (WHERE {bad}) AS c{i}_bad_row",
        ]
        names.append(name)
    return f"SELECT {', '.join(parts)} FROM {quote_ident(table)}", names


def profile_table(con, table: str) -> dict[str, Any]:
    """Per-column facts and class counts of `table`, computed in the database."""
    columns = [(n, t) for n, t in table_columns(con, table) if n != ROW_ID]
    rows = row_count(con, table)
    profile: dict[str, Any] = {"table": table, "rows": rows, "columns": {}}
    if not columns:
        return profile
    sql, _names = profile_sql(table, columns)
    values = con.execute(sql).fetchone()
    width = 7
    for i, (name, duck_type) in enumerate(columns):
        nonnull, numeric, lo, hi, distinct, bad_example, bad_row = values[
            i * width : (i + 1) * width
        ]
        profile["columns"][name] = {
            "source_type": duck_type,
            "non_null": int(nonnull),
            "null_fraction": (1 - nonnull / rows) if rows else 0.0,
            "numeric_values": int(numeric),
            "numeric_share": (numeric / nonnull) if nonnull else 0.0,
            "min": lo,
            "max": hi,
            "distinct": int(distinct or 0),
            "bad_example": bad_example,
            # __row_id counts data rows from 1; the file line adds the header
            "bad_line": int(bad_row) + 1 if bad_row is not None else None,
        }
    return profile


def infer_kinds(profile: dict[str, Any], rules: ValidationRules) -> dict[str, str]:
    """numeric / categorical for every column but the target (declared kinds win)."""
    kinds = {}
    for name, col in profile["columns"].items():
        if name == rules.target:
            continue
        if name in rules.categorical_columns:
            kinds[name] = "categorical"
        elif (
            name in rules.numeric_columns
            or _is_numeric_type(col["source_type"])
            or (col["non_null"] and col["numeric_share"] >= NUMERIC_SHARE)
        ):
            kinds[name] = "numeric"
        else:
            kinds[name] = "categorical"
    return kinds


def class_counts(con, table: str, target: str) -> dict[str, int]:
    text = text_value(target)
    rows = con.execute(
        f"SELECT {text} AS label, count(*) FROM {quote_ident(table)} "
        f"WHERE {text} IS NOT NULL GROUP BY 1 ORDER BY 2 DESC LIMIT {MAX_CLASSES + 1}"
    ).fetchall()
    return {str(label): int(n) for label, n in rows}


def duplicate_rows(con, table: str) -> int:
    cols = ", ".join(quote_ident(n) for n, _ in table_columns(con, table) if n != ROW_ID)
    sql = (
        f"SELECT (SELECT count(*) FROM {quote_ident(table)}) - "
        f"(SELECT count(*) FROM (SELECT DISTINCT {cols} FROM {quote_ident(table)}))"
    )
    return int(con.execute(sql).fetchone()[0])


def check_rules(
    profile: dict[str, Any], classes: dict[str, int], duplicates: int, rules: ValidationRules
) -> list[Violation]:
    """Compare a profile with the rules; return every violation (empty list: valid)."""
    v: list[Violation] = []
    rows, columns = profile["rows"], profile["columns"]
    if rows < rules.min_rows:
        v.append(Violation(None, "min_rows", f"{rows} data rows", f"at least {rules.min_rows}"))
    for name in [rules.target, *rules.required_columns]:
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
        target = columns[rules.target]
        if target["null_fraction"] > rules.max_target_null_fraction:
            v.append(
                Violation(
                    rules.target,
                    "target_nulls",
                    f"{target['null_fraction']:.1%} of rows have no label",
                    f"at most {rules.max_target_null_fraction:.1%}",
                )
            )
        if len(classes) < 2:
            seen = ", ".join(repr(c) for c in classes) or "none"
            v.append(
                Violation(
                    rules.target,
                    "min_classes",
                    f"{len(classes)} class ({seen})",
                    "at least 2 classes",
                )
            )
        elif len(classes) > MAX_CLASSES:
            v.append(
                Violation(
                    rules.target,
                    "max_classes",
                    f"more than {MAX_CLASSES} classes",
                    f"at most {MAX_CLASSES} (is this a regression target?)",
                )
            )
        else:
            for label, n in classes.items():
                if n < rules.min_class_count:
                    v.append(
                        Violation(
                            rules.target,
                            "min_class_count",
                            f"class {label!r} has {n} rows",
                            f"at least {rules.min_class_count} per class",
                        )
                    )
    kinds = infer_kinds(profile, rules)
    features = [c for c in kinds]
    if rules.target in columns and not features:
        v.append(
            Violation(
                None, "has_features", "no column besides the target", "at least one feature column"
            )
        )
    for name, kind in kinds.items():
        col = columns[name]
        if kind == "numeric" and col["non_null"] > col["numeric_values"]:
            bad = col["non_null"] - col["numeric_values"]
            v.append(
                Violation(
                    name,
                    "numeric_parseable",
                    f"{bad} value(s) are not numbers, first {col['bad_example']!r} "
                    f"on line {col['bad_line']}",
                    "numbers only",
                )
            )
        if rows and col["null_fraction"] > rules.max_null_fraction:
            v.append(
                Violation(
                    name,
                    "max_null_fraction",
                    f"{col['null_fraction']:.1%} missing",
                    f"at most {rules.max_null_fraction:.1%}",
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
    if rows and duplicates / rows > rules.max_duplicate_fraction:
        v.append(
            Violation(
                None,
                "max_duplicate_fraction",
                f"{duplicates} duplicate rows ({duplicates / rows:.1%})",
                f"at most {rules.max_duplicate_fraction:.1%}",
            )
        )
    return v




def validate_table(con, table: str, rules: ValidationRules, source: str) -> ValidationReport:
    """Profile `table`, check `rules`; raise `DataValidationError` naming every violation."""
    profile = profile_table(con, table)
    has_target = rules.target in profile["columns"]
    classes = class_counts(con, table, rules.target) if has_target else {}
    duplicates = duplicate_rows(con, table) if profile["rows"] else 0
    violations = check_rules(profile, classes, duplicates, rules)
    if violations:
        raise DataValidationError(f"{source} (table {table})", violations)
    return ValidationReport(
        source=source,
        rows=profile["rows"],
        kinds=infer_kinds(profile, rules),
        classes=classes,
        duplicates=duplicates,
        null_fractions={n: round(c["null_fraction"], 6) for n, c in profile["columns"].items()},
        table=table,
    )
