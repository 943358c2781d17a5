"""The warehouse of one task: an in-memory DuckDB whose tables live as Parquet objects.

No task relies on a table another task created in a file on its own disk. Each task opens
`task_warehouse(inputs=..., outputs=...)`: its input tables (Parquet objects under the
storage root, `runs.table_uri`) become views of the same names, its SQL runs in memory
(spilling to a temporary folder that is removed afterwards), and its output tables are
written back as Parquet objects when the block ends without an error. Remote inputs are
downloaded once into the task's temporary folder (`storage.local_copy`: every query then
reads a local file) and outputs are uploaded whole (`storage.staged_output`: a reader
never sees half an object); DuckDB itself only ever touches local files. The same code
runs on the embedded `file://` root and on `s3://` alike.

Only table names, URIs and small summaries travel through XCom.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from include.ml_pipeline import storage

if TYPE_CHECKING:  # pragma: no cover
    import duckdb

#: A run's warehouse tables (not its splits) are removed once every one of them is older
#: than this: its data stages finished long ago (`prune_old_tables`).
TABLES_MAX_AGE_SECONDS = 24 * 3600


@contextlib.contextmanager
def task_warehouse(
    inputs: Mapping[str, str] | None = None, outputs: Mapping[str, str] | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB for one task: each `inputs` table name -> Parquet URI is a
    view, and each `outputs` table (or view) name -> URI is written as Parquet when the
    block ends without an error. Everything it writes locally is removed afterwards."""
    import duckdb

    with contextlib.ExitStack() as stack:
        spill = stack.enter_context(tempfile.TemporaryDirectory(prefix="ml_pipeline_duckdb_"))
        con = duckdb.connect(":memory:", config={"temp_directory": spill})
        stack.callback(con.close)
        for table, uri in (inputs or {}).items():
            try:
                local = stack.enter_context(storage.local_copy(uri))
            except FileNotFoundError:
                raise FileNotFoundError(
                    f"table {table}: no Parquet object at {uri}; the task that writes it did "
                    "not finish, or its run's tables were pruned (older than "
                    f"{TABLES_MAX_AGE_SECONDS // 3600} h): clear and re-run the run's data "
                    "tasks from descargar_datos"
                ) from None
            con.execute(
                f"CREATE VIEW {quote_ident(table)} AS "
                f"SELECT * FROM read_parquet({quote_literal(str(local))})"
            )
        yield con
        for table, uri in (outputs or {}).items():
            write_parquet(con, quote_ident(table), uri)


def write_parquet(con: duckdb.DuckDBPyConnection, relation: str, uri: str) -> str:
    """Write `relation` (a quoted table name or a parenthesised query) as one Parquet
    object at `uri`, whole; return the URI."""
    with storage.staged_output(uri) as local:
        con.execute(f"COPY {relation} TO {quote_literal(str(local))} (FORMAT parquet)")
    return storage.as_uri(uri)


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
    return f"(CASE WHEN {missing_token(column)} THEN NULL ELSE TRY_CAST({text} AS DOUBLE) END)"


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
    return int(con.execute(f"SELECT count(*) FROM {quote_ident(table)}").fetchall()[0][0])


def prune_old_tables(
    runs_uri: str, keep: str, max_age_seconds: float = TABLES_MAX_AGE_SECONDS
) -> list[str]:
    """Remove the `tables/` folder of every run under `runs_uri` but `keep` whose tables
    are all older than `max_age_seconds`; return the removed folders' URIs.

    Each run has its own folder, so a run never touches another one's tables while it is
    running; a run's data stages last minutes, so a day-old table belongs to a finished
    run. Splits are never removed: a registered version's training split is the drift
    reference of its monitoring."""
    fs, root = storage.filesystem(runs_uri)
    if not fs.exists(root):
        return []
    now = time.time()
    removed = []
    for entry in fs.ls(root, detail=False):
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        tables = entry.rstrip("/") + "/tables"
        if name == keep or not fs.isdir(tables):
            continue
        stamps = [_modified(fs, path) for path in fs.find(tables)]
        if stamps and now - max(stamps) > max_age_seconds:
            fs.rm(tables, recursive=True)
            removed.append(storage.join(runs_uri, name, "tables"))
    return removed


def _modified(fs, path: str) -> float:
    """Seconds since the epoch of the object's last modification."""
    stamp = fs.modified(path)
    return stamp.timestamp() if hasattr(stamp, "timestamp") else float(stamp)
