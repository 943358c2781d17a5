"""The embedded warehouse: a DuckDB database file holding the pipeline's tables.

Data stays in the database (or in Parquet files) and moves through SQL; only table
names, paths and small summaries travel through XCom.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import duckdb

@contextmanager
def connect(path: str | Path, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the DuckDB file at `path` (created if absent) and close it afterwards."""
    import duckdb

    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), read_only=read_only)
    try:
        yield con
    finally:
        con.close()


def quote_ident(name: str) -> str:
    """Quote an identifier for DuckDB SQL (column names come from user files)."""
    return '"' + name.replace('"', '""') + '"'


def text_value(column: str) -> str:
    """SQL for a column's value as trimmed text, with empty strings as NULL."""
    return f"NULLIF(TRIM(CAST({quote_ident(column)} AS VARCHAR)), '')"


def quote_literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


#: Texts that mean "no value" in a numeric column (compared ignoring case): what
#: spreadsheets, R, pandas and SQL exports write for a missing number.
MISSING_NUMBER_TOKENS = ("na", "n/a", "nan", "null", "none", "?", "-", "--", ".", "#n/a")
#: Numbers beyond this magnitude break scaling and fitting (their squares overflow a
#: float64), so they are refused like infinities.
MAX_ABS_NUMBER = 1e150


def missing_token(column: str) -> str:
    """SQL: true when the column's text is one of `MISSING_NUMBER_TOKENS`."""
    tokens = ", ".join(quote_literal(t) for t in MISSING_NUMBER_TOKENS)
    return f"(lower({text_value(column)}) IN ({tokens}))"


def number_value(column: str) -> str:
    """SQL for a column's value as a DOUBLE: NULL for empty text, a missing-number token
    or text that is not a number; infinities and huge numbers are kept (validation
    refuses them, naming the line)."""
    text = text_value(column)
    return (
        f"(CASE WHEN {missing_token(column)} THEN NULL "
        f"ELSE TRY_CAST({text} AS DOUBLE) END)"
    )


def finite_number(column: str) -> str:
    """SQL for a column's value as a finite DOUBLE within +-`MAX_ABS_NUMBER` (else NULL)."""
    num = number_value(column)
    return f"(CASE WHEN abs({num}) <= {MAX_ABS_NUMBER:g} THEN {num} END)"



def table_name(stage: str, key: str) -> str:
    return f"{stage}__{key}"


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    """(name, DuckDB type) for each column of `table`, in order."""
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = ? ORDER BY ordinal_position",
        [table],
    ).fetchall()
    return [(str(name), str(kind)) for name, kind in rows]


def row_count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return int(con.execute(f"SELECT count(*) FROM {quote_ident(table)}").fetchone()[0])


def prune_run_tables(con: duckdb.DuckDBPyConnection, keep_keys: set[str]) -> list[str]:
    """Drop the stage tables of runs other than `keep_keys`; return the dropped names."""
    names = [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_name LIKE '%\\_\\_%' "
            "ESCAPE '\\'"
        ).fetchall()
    ]
    dropped = []
    for name in names:
        key = name.split("__", 1)[1]
        if key not in keep_keys:
            con.execute(f"DROP TABLE IF EXISTS {quote_ident(name)}")
            dropped.append(name)
    return dropped
