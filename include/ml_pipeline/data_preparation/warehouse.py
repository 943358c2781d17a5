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
