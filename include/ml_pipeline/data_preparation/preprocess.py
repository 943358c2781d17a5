"""Typing and cleaning in the warehouse, and the choice of feature columns.

Only stateless work happens here: casting text to numbers (missing-number tokens such as
`NA` and `NaN` become NULL), trimming, turning empty strings into NULL, dropping rows
without a label, and choosing the features (identifier-like and constant columns are left
out, with the reason recorded). Everything that is *fitted* (imputation values, scaling,
the category vocabulary) is fitted later inside the model's scikit-learn pipeline
(`features.build_preprocessor`), so that serving applies exactly what training learnt.

Repeated rows are kept: in a table of a few categorical columns, identical rows are
normal, and removing them changes the class balance the model learns. They are removed
only when the table has an identifier column and the repeated rows agree on it too (the
same record exported twice). Validation warns about both cases.

Labels keep their type: integers stay integers, `true`/`false` (any case, or a Parquet
boolean) become booleans, anything else is text exactly as written (trimmed): `"[no]"`
stays the string `"[no]"`, and `0.5` stays the string `"0.5"`. List, struct and map
labels (Parquet) are refused by validation.
"""

from __future__ import annotations

import re
from typing import Any

from include.ml_pipeline.data_preparation.ingest import ROW_ID
from include.ml_pipeline.data_preparation.warehouse import (
    finite_number,
    quote_ident,
    row_count,
    table_columns,
    text_value,
)
from include.ml_pipeline.features import FeatureSpec
from include.ml_pipeline.payloads import PreprocessResult

#: A text column with more distinct values than this share of the rows is an identifier.
ID_LIKE_SHARE = 0.5
ID_LIKE_MIN_DISTINCT = 50
#: A numeric column of distinct integers is an identifier when its name says so
#: (`id`, `customer_id`, `ID`, `uuid`, `key`, `index`, an unnamed pandas index) or when
#: its values are the row numbers (min..max with no gap).
ID_NAME = re.compile(
    r"(^|[_\W])(id|uuid|guid|key|index|idx|rownum)$|^(id|uuid)([_\W]|$)|^unnamed: ?\d+$|^column0$",
    re.IGNORECASE,
)
CAMEL_CASE_ID = re.compile(r"[a-z](Id|ID)$")  # customerId, PassengerID
NUMERIC_ID_DISTINCT_SHARE = 0.9

LABEL_BOOLEAN = "BOOLEAN"
LABEL_INTEGER = "BIGINT"
LABEL_TEXT = "VARCHAR"
LABEL_NUMBER = "DOUBLE"  # a regression target


def identifier_reason(name: str, kind: str, col: dict[str, Any], rows: int) -> str | None:
    """Why column `name` (profile facts `col`) is an identifier, or None if it is not."""
    n = col.get("distinct", 0)
    if kind == "categorical":
        if n >= ID_LIKE_MIN_DISTINCT and n > ID_LIKE_SHARE * rows:
            return f"identifier-like text ({n} distinct values in {rows} rows)"
        return None
    present = col.get("non_null", 0) - col.get("tokens", 0)
    if present < ID_LIKE_MIN_DISTINCT or col.get("integers", 0) < present:
        return None
    if n < NUMERIC_ID_DISTINCT_SHARE * present:
        return None
    lo, hi = col.get("min"), col.get("max")
    row_numbers = lo is not None and hi is not None and (hi - lo + 1) <= n * 1.02
    if ID_NAME.search(name) or CAMEL_CASE_ID.search(name) or row_numbers:
        what = "row numbers" if row_numbers else "distinct integers named like an id"
        return f"identifier-like numbers ({what}: {n} distinct values in {rows} rows)"
    return None


def choose_features(
    kinds: dict[str, str],
    columns: dict[str, dict[str, Any]] | dict[str, int],
    rows: int,
    exclude: list[str] | tuple[str, ...] = (),
) -> tuple[list[str], list[str], dict[str, str]]:
    """Split columns into (numeric, categorical, excluded-with-reason).

    `columns` is the profile's per-column facts (`profile.profile_table`), or just the
    distinct count of each column."""
    numeric, categorical, excluded = [], [], {}
    for name, kind in kinds.items():
        col = columns.get(name, {})
        col = col if isinstance(col, dict) else {"distinct": int(col)}
        n = col.get("distinct", 0)
        reason = identifier_reason(name, kind, col, rows)
        if name in exclude:
            excluded[name] = "excluded by the exclude_columns parameter"
        elif n <= 1:
            excluded[name] = "constant (one distinct value or none)"
        elif reason:
            excluded[name] = reason
        elif kind == "numeric":
            numeric.append(name)
        else:
            categorical.append(name)
    return numeric, categorical, excluded


def identifier_columns(excluded: dict[str, str]) -> list[str]:
    """The columns `choose_features` left out as identifiers."""
    return [name for name, why in excluded.items() if why.startswith("identifier-like")]


def target_type(con, table: str, target: str) -> str:
    """`BOOLEAN` when every label is true/false (any case), `BIGINT` when every label is
    a whole number, else `VARCHAR` (the labels as written)."""
    text = text_value(target)
    number = f"TRY_CAST({text} AS DOUBLE)"
    non_bool, non_int = con.execute(
        f"SELECT count(*) FILTER (WHERE lower({text}) NOT IN ('true', 'false')), "
        f"count(*) FILTER (WHERE NOT coalesce(isfinite({number}) AND {number} = "
        f"trunc({number}) AND abs({number}) < 9e15, false)) "
        f"FROM {quote_ident(table)} WHERE {text} IS NOT NULL"
    ).fetchone()
    if not non_bool:
        return LABEL_BOOLEAN
    return LABEL_TEXT if non_int else LABEL_INTEGER


def label_sql(target: str, label_type: str) -> str:
    text = text_value(target)
    if label_type == LABEL_NUMBER:
        return finite_number(target)
    if label_type == LABEL_BOOLEAN:
        return f"(lower({text}) = 'true')"
    if label_type == LABEL_INTEGER:
        return f"CAST(CAST({text} AS DOUBLE) AS BIGINT)"
    return text


def clean_sql(
    source: str,
    dest: str,
    spec: FeatureSpec,
    label_type: str,
    dedupe_on: list[str] | None = None,
) -> str:
    """SQL that creates `dest`: typed features, the typed label, labelled rows only; rows
    repeating another row on every column of `dedupe_on` dropped (None: none dropped)."""
    cols = [f"{ROW_ID}"]
    cols += [f"{finite_number(c)} AS {quote_ident(c)}" for c in spec.numeric]
    cols += [f"{text_value(c)} AS {quote_ident(c)}" for c in spec.categorical]
    cols.append(f"{label_sql(spec.target, label_type)} AS {quote_ident(spec.target)}")
    labelled = finite_number if label_type == LABEL_NUMBER else text_value
    where = f"WHERE {labelled(spec.target)} IS NOT NULL"
    if dedupe_on:
        key = ", ".join(text_value(c) for c in dedupe_on)
        where += f" QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY {ROW_ID}) = 1"
    body = f"SELECT {', '.join(cols)} FROM {quote_ident(source)} {where}"
    return f"CREATE OR REPLACE TABLE {quote_ident(dest)} AS {body} ORDER BY {ROW_ID}"


def preprocess_table(
    con,
    source: str,
    dest: str,
    target: str,
    kinds: dict[str, str],
    *,
    exclude_columns: list[str] | None = None,
    drop_duplicates: bool = True,
    problem_type: str = "",
) -> PreprocessResult:
    """Create `dest` from `source` with typed, cleaned columns; return what was done.

    `drop_duplicates`: drop rows that repeat another row on every column, identifier
    included, when the table has an identifier column (see the module docstring).
    `problem_type` regression: the label is a number, rows without one dropped."""
    from include.ml_pipeline.data_preparation.profile import profile_table

    profile = profile_table(con, source)
    rows_in = profile["rows"]
    numeric, categorical, excluded = choose_features(
        kinds, profile["columns"], rows_in, exclude_columns or []
    )
    spec = FeatureSpec(
        target=target, numeric=numeric, categorical=categorical, problem_type=problem_type
    )
    regression = problem_type == "regression"
    label_type = LABEL_NUMBER if regression else target_type(con, source, target)
    present = finite_number(target) if regression else text_value(target)
    labelled = con.execute(
        f"SELECT count(*) FROM {quote_ident(source)} WHERE {present} IS NOT NULL"
    ).fetchone()[0]
    ids = identifier_columns(excluded)
    dedupe_on = None
    if drop_duplicates and ids:
        dedupe_on = [n for n, _ in table_columns(con, source) if n != ROW_ID]
    con.execute(clean_sql(source, dest, spec, label_type, dedupe_on))
    rows_out = row_count(con, dest)
    return PreprocessResult(
        table=dest,
        table_uri="",  # where the caller writes `dest`
        rows_in=rows_in,
        rows_out=rows_out,
        dropped_unlabelled=rows_in - labelled,
        dropped_duplicates=labelled - rows_out,
        feature_spec=spec,
        target_type=label_type,
        excluded_columns=excluded,
    )
