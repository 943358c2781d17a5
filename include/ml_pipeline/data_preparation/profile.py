"""One aggregate query that profiles every column of a raw (text) table.

Per column: how many values are present, how many are missing-number tokens (`NA`,
`NaN`, `?`, ...), how many parse as numbers, how many of those are infinite or too large
to compute with (and the first one with its line), how many are integers, the first
value that is not a number (and its line), min and max of the finite numbers, the number
of distinct values, and how many values equal the column's own name (a header that is
really a data row). Validation checks its rules against this profile; preprocessing
chooses the features from the same facts, so both agree on what a column is.
"""

from __future__ import annotations

from typing import Any

from include.ml_pipeline.data_preparation.warehouse import (
    MAX_ABS_NUMBER,
    missing_token,
    number_value,
    quote_ident,
    quote_literal,
    row_count,
    table_columns,
    text_value,
)

ROW_ID = "__row_id"

#: DuckDB types whose values are numbers (a Parquet source keeps its types).
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
    "UHUGEINT",
)


def is_numeric_type(duck_type: str) -> bool:
    return duck_type.upper().startswith(NUMERIC_TYPES)


def is_nested_type(duck_type: str) -> bool:
    """A list, array, struct, map or union column (Parquet): not one value per cell."""
    upper = duck_type.upper()
    return upper.endswith("]") or upper.startswith(("STRUCT", "MAP", "UNION"))


_FIELDS = (
    "non_null",
    "tokens",
    "numeric_values",
    "infinite",
    "integers",
    "min",
    "max",
    "distinct",
    "bad_example",
    "bad_row",
    "infinite_example",
    "infinite_row",
    "name_hits",
    "token_example",
)


def profile_sql(table: str, columns: list[tuple[str, str]]) -> str:
    """One aggregate query over all `columns` (name, type); `len(_FIELDS)` outputs each."""
    parts = []
    for i, (name, _duck_type) in enumerate(columns):
        text = text_value(name)
        token = missing_token(name)
        num = number_value(name)
        finite = f"abs({num}) <= {MAX_ABS_NUMBER:g}"
        bad = f"{text} IS NOT NULL AND NOT {token} AND {num} IS NULL"
        infinite = f"{num} IS NOT NULL AND NOT ({finite})"
        parts += [
            f"count({text}) AS c{i}_non_null",
            f"count(*) FILTER (WHERE {token}) AS c{i}_tokens",
            f"count({num}) AS c{i}_numeric",
            f"count(*) FILTER (WHERE {infinite}) AS c{i}_infinite",
            f"count(*) FILTER (WHERE {finite} AND {num} = trunc({num})) AS c{i}_integers",
            f"min({num}) FILTER (WHERE {finite}) AS c{i}_min",
            f"max({num}) FILTER (WHERE {finite}) AS c{i}_max",
            f"approx_count_distinct({text}) AS c{i}_distinct",
            f"arg_min({text}, {ROW_ID}) FILTER (WHERE {bad}) AS c{i}_bad_example",
            f"min({ROW_ID}) FILTER (WHERE {bad}) AS c{i}_bad_row",
            f"arg_min({text}, {ROW_ID}) FILTER (WHERE {infinite}) AS c{i}_inf_example",
            f"min({ROW_ID}) FILTER (WHERE {infinite}) AS c{i}_inf_row",
            f"count(*) FILTER (WHERE {text} = {quote_literal(name)}) AS c{i}_name_hits",
            f"arg_min({text}, {ROW_ID}) FILTER (WHERE {token}) AS c{i}_token_example",
        ]
    return f"SELECT {', '.join(parts)} FROM {quote_ident(table)}"


def _line(row: int | None) -> int | None:
    # __row_id counts data rows from 1; the file line adds the header
    return int(row) + 1 if row is not None else None


def profile_table(con, table: str) -> dict[str, Any]:
    """Per-column facts of `table` (every column but the row id), computed in the
    database: `{"table", "rows", "columns": {name: {...}}}`."""
    columns = [(n, t) for n, t in table_columns(con, table) if n != ROW_ID]
    rows = row_count(con, table)
    profile: dict[str, Any] = {"table": table, "rows": rows, "columns": {}}
    if not columns:
        return profile
    values = con.execute(profile_sql(table, columns)).fetchone()
    width = len(_FIELDS)
    for i, (name, duck_type) in enumerate(columns):
        facts = dict(zip(_FIELDS, values[i * width : (i + 1) * width], strict=True))
        non_null = int(facts["non_null"])
        tokens = int(facts["tokens"])
        numeric = int(facts["numeric_values"])
        candidates = non_null - tokens  # values that are meant to be something
        profile["columns"][name] = {
            "source_type": duck_type,
            "nested": is_nested_type(duck_type),
            "non_null": non_null,
            "null_fraction": (1 - non_null / rows) if rows else 0.0,
            "tokens": tokens,
            "token_example": facts["token_example"],
            "numeric_values": numeric,
            "numeric_share": (numeric / candidates) if candidates else 0.0,
            "infinite": int(facts["infinite"]),
            "infinite_example": facts["infinite_example"],
            "infinite_line": _line(facts["infinite_row"]),
            "integers": int(facts["integers"]),
            "min": facts["min"],
            "max": facts["max"],
            # approximate (HyperLogLog): never more than the values there are
            "distinct": min(int(facts["distinct"] or 0), non_null),
            "bad_example": facts["bad_example"],
            "bad_line": _line(facts["bad_row"]),
            "name_hits": int(facts["name_hits"]),
        }
    return profile
