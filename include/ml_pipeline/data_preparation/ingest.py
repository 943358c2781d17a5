"""Find the raw data and load it into the warehouse.

Local paths (and `file://` URIs) are read in place by DuckDB. A remote object (s3://,
gs://, ...) is first copied, as a stream, into the task's temporary folder through a
`RawSource` -- the Astro SDK's `File` (`AstroSdkSource`, the Airflow 2.11 path) or fsspec
through `storage.py` (`StorageSource`, the Airflow 3 path; the orchestration layer picks
one) -- then read the same way, and the copy is removed when the load ends: the raw table
itself (a Parquet object under the storage root) is what outlives the task. CSV columns
are loaded as text so that one bad value cannot abort the load: typing is the job of
validation and preprocessing, which can then say exactly which column and value are
wrong.

A CSV file is read with a dialect decided here, not by the engine's sniffer (which, on a
file with one ragged row, silently reads every line as a single column):

* the first bytes say what the file is: gzip-compressed (read as such whatever its name),
  Parquet (read as Parquet), UTF-16 (by its byte-order mark), or something that is not a
  text table at all (a zip archive or Excel workbook, bz2/xz, binary) -- refused;
* the text is UTF-8 (a UTF-8 byte-order mark is fine); a file that is not is read as
  Latin-1, with a warning;
* the delimiter is the one of `,` `;` tab `|` that splits the first records into the
  same number of fields (more than one);
* the header is the first record: names are trimmed, an empty name becomes `column<i>`
  (with a warning), and two columns with the same name (ignoring case) are refused, since
  the engine would silently rename one to `<name>_1`;
* the engine then reads with exactly that dialect and strict quoting, so a row with more
  or fewer fields than the header, or a quote that never closes, fails with its line.

Every failure is a `DataSourceError` whose message names the file, says what is wrong in
our words, and how to fix it; `rule` names the check (`file_format`, `duplicate_column`,
`ragged_row`, `unterminated_quote`, ...).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import math
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from include.ml_pipeline import storage
from include.ml_pipeline.data_preparation.warehouse import (
    quote_ident,
    quote_literal,
    row_count,
    table_columns,
)
from include.ml_pipeline.errors import DataSourceError
from include.ml_pipeline.payloads import LoadResult
from include.ml_pipeline.storage import fingerprint, local_path

ROW_ID = "__row_id"
DELIMITERS = (",", ";", "\t", "|")
#: Bytes of (decompressed) text looked at to decide the encoding, delimiter and header.
HEAD_BYTES = 1 << 20
#: Records parsed to decide the delimiter.
SNIFF_RECORDS = 50

_MAGIC = {
    b"PK\x03\x04": "a zip archive (or an Excel .xlsx workbook)",
    b"\xd0\xcf\x11\xe0": "an Excel .xls workbook",
    b"BZh": "bz2-compressed",
    b"\xfd7zXZ\x00": "xz-compressed",
    b"\x28\xb5\x2f\xfd": "zstd-compressed",
    b"7z\xbc\xaf": "a 7-Zip archive",
}


class RawSource(Protocol):
    """How a remote `data_uri` is reached: whether it is there, and a local copy of it."""

    def exists(self, uri: str) -> bool: ...

    def local_copy(self, uri: str) -> contextlib.AbstractContextManager[Path]: ...


@dataclass(frozen=True)
class StorageSource:
    """Remote raw data through fsspec (`storage.py`), with `options` (storage options from
    the data connection; None: the storage root's, `storage.storage_options`)."""

    options: dict[str, Any] | None = None

    def exists(self, uri: str) -> bool:
        return storage.exists(uri, self.options)

    def local_copy(self, uri: str) -> contextlib.AbstractContextManager[Path]:
        return storage.local_copy(uri, options=self.options)


@dataclass(frozen=True)
class AstroSdkSource:
    """Remote raw data through the Astro SDK's `File` (its hooks read the Airflow
    connection `conn_id`: aws, google_cloud_platform, wasb, http, ...)."""

    conn_id: str | None = None

    def exists(self, uri: str) -> bool:
        from astro.files import File

        return bool(File(path=uri, conn_id=self.conn_id).exists())

    @contextlib.contextmanager
    def local_copy(self, uri: str) -> Iterator[Path]:
        from astro.files import File
        from smart_open import open as smart_open

        location = File(path=uri, conn_id=self.conn_id).location
        with tempfile.TemporaryDirectory(prefix="ml_pipeline_raw_") as tmp:
            target = Path(tmp) / (Path(urlparse(uri).path).name or "source.csv")
            with (
                smart_open(
                    location.smartopen_uri, "rb", transport_params=location.transport_params
                ) as src,
                target.open("wb") as dst,
            ):
                shutil.copyfileobj(src, dst, length=1 << 20)
            yield target


def source_exists(uri: str, source: RawSource) -> bool:
    """True when the data at `uri` is there (used by the `esperar_datos` sensor)."""
    path = local_path(uri)
    if path is not None:
        return path.is_file()
    return bool(source.exists(uri))


@contextlib.contextmanager
def staged_source(uri: str, source: RawSource) -> Iterator[Path]:
    """A local file with the data at `uri`: the file itself, or a temporary copy of a
    remote object removed when the block ends."""
    path = local_path(uri)
    if path is not None:
        if not path.is_file():
            raise DataSourceError(f"{uri}: no such file", rule="missing_file")
        yield path
        return
    with contextlib.ExitStack() as stack:
        try:
            staged = stack.enter_context(source.local_copy(uri))
        except FileNotFoundError:
            raise DataSourceError(f"{uri}: no such object", rule="missing_file") from None
        yield staged


def detect_format(path: Path) -> str:
    """`parquet` or `csv`, by the file's first bytes (Parquet files start with `PAR1`),
    whatever its name says: a CSV saved as `.parquet` is read as the CSV it is."""
    with path.open("rb") as handle:
        if handle.read(4) == b"PAR1":
            return "parquet"
    return "csv"


@dataclass
class CsvDialect:
    """How to read one CSV file, as decided by `sniff_csv`."""

    delimiter: str
    columns: list[str]
    encoding: str = "utf-8"
    compression: str = "none"
    skip: int = 0  # blank lines before the header
    warnings: list[str] = field(default_factory=list)


def _head(path: Path, uri: str) -> tuple[bytes, str]:
    """The first bytes of the file's text (decompressed) and its compression."""
    with path.open("rb") as handle:
        raw = handle.read(8)
    if raw.startswith(b"\x1f\x8b"):
        try:
            with gzip.open(path, "rb") as handle:
                return handle.read(HEAD_BYTES), "gzip"
        except (OSError, EOFError) as exc:
            raise DataSourceError(
                f"{uri}: the file starts like gzip but cannot be decompressed ({exc}); "
                "compress it again with gzip, or give the uncompressed CSV",
                rule="file_format",
            ) from None
    for magic, what in _MAGIC.items():
        if raw.startswith(magic):
            raise DataSourceError(
                f"{uri}: the file is {what}, not a CSV or Parquet table; export or extract "
                "the table as a CSV (UTF-8) or Parquet file (gzip-compressed CSV is fine)",
                rule="file_format",
            )
    with path.open("rb") as handle:
        return handle.read(HEAD_BYTES), "none"


def _decode(head: bytes, uri: str) -> tuple[str, str, list[str]]:
    """(text, DuckDB encoding name, warnings) of the head bytes."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return head.decode("utf-16", errors="ignore"), "utf-16", []
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    if b"\x00" in head:
        raise DataSourceError(
            f"{uri}: the file holds NUL bytes, so it is not a text table (binary data, or "
            "UTF-16 without a byte-order mark); save it as CSV in UTF-8",
            rule="file_format",
        )
    if len(head) == HEAD_BYTES:  # cut at the last full line: no half character at the end
        head = head[: head.rfind(b"\n") + 1] or head
    try:
        return head.decode("utf-8"), "utf-8", []
    except UnicodeDecodeError as exc:
        return head.decode("latin-1"), "latin-1", [_latin1_warning(exc.start)]


def _latin1_warning(offset: int | None = None) -> str:
    where = f" (first non-UTF-8 byte at offset {offset:,})" if offset is not None else ""
    return (
        f"the file is not UTF-8{where}: it was read as Latin-1 (ISO-8859-1); "
        "save it as UTF-8 if some text looks wrong"
    )


def _records(text: str, delimiter: str, limit: int) -> list[list[str]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar='"')
    out: list[list[str]] = []
    try:
        for row in reader:
            if row:  # blank lines are skipped by the engine too
                out.append(row)
            if len(out) >= limit:
                break
    except csv.Error:
        pass  # a record cut by the head limit, or bad quoting: judged by the engine
    return out


def choose_delimiter(text: str, preferred: str = ",") -> str:
    """The delimiter that splits the first records into the same number of fields (more
    than one) most consistently; `preferred` on a tie, and when none splits anything."""
    best, best_score = preferred, (0.0, 0)
    for delimiter in sorted(DELIMITERS, key=lambda d: d != preferred):
        rows = _records(text, delimiter, SNIFF_RECORDS)
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        same = sum(1 for r in rows if len(r) == width) / len(rows)
        score = (same, width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def header_like_values(records: list[list[str]]) -> list[str]:
    """The first record's fields when that record looks like data rather than names:
    every field is a number, or at least half of them (and two or more) are numbers or
    values that occur again in their column in the next records. Else []."""
    header, rows = records[0], records[1:]
    names = [h.strip() for h in header]
    if not names:
        return []
    if all(_is_number(n) for n in names):
        return names
    looks = []
    for i, name in enumerate(names):
        if not name:
            continue
        column = {r[i].strip() for r in rows if i < len(r)}
        if _is_number(name) or name in column:
            looks.append(name)
    return looks if len(looks) >= 2 and len(looks) >= 0.5 * len(names) else []


def sniff_csv(path: Path, uri: str) -> CsvDialect:
    """Decide compression, encoding, delimiter and header of the CSV at `path`."""
    head, compression = _head(path, uri)
    text, encoding, warnings = _decode(head, uri)
    if not text.strip():
        raise DataSourceError(
            f"{uri}: the file holds no text (only blank lines)", rule="empty_file"
        )
    preferred = "\t" if path.name.lower().endswith((".tsv", ".tsv.gz", ".tab")) else ","
    delimiter = choose_delimiter(text, preferred)
    records = _records(text, delimiter, SNIFF_RECORDS)
    if not records:
        raise DataSourceError(
            f"{uri}: no header line could be read (a quote opened on the first line never "
            "closes?); the first line must name the columns",
            rule="unterminated_quote",
        )
    data_like = header_like_values(records)
    if data_like:
        shown = ", ".join(repr(v) for v in data_like[:8])
        raise DataSourceError(
            f"{uri}: the first line ({shown}{', ...' if len(data_like) > 8 else ''}) looks "
            "like a data row, not column names; add a header line naming the columns",
            rule="header_looks_like_data",
        )
    columns: list[str] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(records[0]):
        name = raw.strip()
        if not name:
            name = f"column{index}"
            warnings.append(f"column {index + 1} has no name in the header: it is called {name!r}")
        key = name.lower()
        if key in seen:
            first = seen[key]
            raise DataSourceError(
                f"{uri}: the header names two columns {columns[first]!r} and {name!r} "
                f"(columns {first + 1} and {index + 1}; names are compared ignoring case); "
                "give every column its own name (the engine would silently rename one to "
                f"{name + '_1'!r}, and clients would have to send it)",
                rule="duplicate_column",
            )
        seen[key] = index
        columns.append(name)
    blank = re.match(r"(?:[ \t\r]*\n)*", text)
    skip = blank.group(0).count("\n") if blank else 0
    return CsvDialect(delimiter, columns, encoding, compression, skip, warnings)


def _csv_reader(path: Path, dialect: CsvDialect) -> str:
    columns = "{" + ", ".join(f"{quote_literal(name)}: 'VARCHAR'" for name in dialect.columns) + "}"
    return (
        f"read_csv({quote_literal(str(path))}, header = true, auto_detect = false, "
        f"columns = {columns}, delim = {quote_literal(dialect.delimiter)}, quote = '\"', "
        f"escape = '\"', strict_mode = true, null_padding = false, "
        f"encoding = {quote_literal(dialect.encoding)}, "
        f"compression = {quote_literal(dialect.compression)}, skip = {int(dialect.skip)})"
    )


def load_sql(path: Path, table: str, file_format: str, dialect: CsvDialect | None = None) -> str:
    """SQL that (re)creates `table` from the file, numbering rows in file order."""
    if file_format == "parquet":
        reader = f"read_parquet({quote_literal(str(path))})"
    elif dialect is not None:
        reader = _csv_reader(path, dialect)
    else:
        reader = (
            f"read_csv({quote_literal(str(path))}, header = true, all_varchar = true, "
            "auto_detect = true, normalize_names = false)"
        )
    return (
        f"CREATE OR REPLACE TABLE {quote_ident(table)} AS "
        f"SELECT row_number() OVER () AS {ROW_ID}, * FROM {reader}"
    )


def _delimiter_name(delimiter: str) -> str:
    return {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}.get(
        delimiter, repr(delimiter)
    )


def explain_csv_error(uri: str, exc: Exception, dialect: CsvDialect) -> DataSourceError:
    """Our message (file, line, what is wrong, the fix) for an error of the CSV reader."""
    text = str(exc)
    line = re.search(r"Line:\s*(\d+)", text)
    at = f"line {line.group(1)}" if line else "a line"
    counts = re.search(r"Expected Number of Columns:\s*(\d+)\s*Found:\s*(\d+)", text)
    delimiter = _delimiter_name(dialect.delimiter)
    if counts:
        expected, found = counts.groups()
        return DataSourceError(
            f"{uri}: {at} (counting the header as line 1) has {found} fields but the header "
            f"has {expected} ({delimiter}-separated): a missing or extra {delimiter}, or a "
            f"value holding a {delimiter} without quotes; fix that row (quote values that "
            "contain the delimiter)",
            rule="ragged_row",
        )
    if "unterminated quote" in text.lower():
        return DataSourceError(
            f"{uri}: a quoted value starting on {at} never closes (a '\"' without its "
            "closing '\"'); close the quote, or double the quote characters inside it",
            rule="unterminated_quote",
        )
    if "maximum line size" in text.lower():
        return DataSourceError(
            f"{uri}: {at} is longer than the reader accepts (a quote that never closes "
            "usually causes this); check the quoting around that line",
            rule="line_too_long",
        )
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    first = re.sub(r"^[A-Za-z ]*Error:\s*", "", first)
    return DataSourceError(
        f"{uri}: cannot be read as a {delimiter}-separated CSV in {dialect.encoding} "
        f"({first}); save it as a CSV with a header line (UTF-8, comma-separated) or as "
        "Parquet",
        rule="unreadable_csv",
    )


def _load_csv(con, path: Path, table: str, uri: str) -> CsvDialect:
    dialect = sniff_csv(path, uri)
    try:
        con.execute(load_sql(path, table, "csv", dialect))
    except Exception as exc:
        if "invalid unicode" in str(exc).lower() and dialect.encoding == "utf-8":
            dialect.encoding = "latin-1"
            dialect.warnings.append(_latin1_warning())
            try:
                con.execute(load_sql(path, table, "csv", dialect))
            except Exception as again:
                raise explain_csv_error(uri, again, dialect) from None
        else:
            raise explain_csv_error(uri, exc, dialect) from None
    return dialect


def _load_parquet(con, path: Path, table: str, uri: str) -> None:
    try:
        con.execute(load_sql(path, table, "parquet"))
    except Exception as exc:
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
        first = re.sub(r"^[A-Za-z ]*Error:\s*", "", first)
        raise DataSourceError(
            f"{uri}: cannot be read as Parquet ({first}); write the file again "
            "(e.g. pandas.DataFrame.to_parquet) or give it as a CSV",
            rule="unreadable_parquet",
        ) from None


def load_into_table(con, uri: str, table: str, source: RawSource | None = None) -> LoadResult:
    """Load the file at `uri` into `table`; return a `LoadResult` (small, XCom-safe;
    `table_uri` is left empty: the caller knows where it writes the table)."""
    with staged_source(uri, source or StorageSource()) as path:
        size = path.stat().st_size
        if size == 0:
            raise DataSourceError(f"{uri}: the file is empty (0 bytes)", rule="empty_file")
        file_format = detect_format(path)
        warnings: list[str] = []
        if file_format == "parquet":
            _load_parquet(con, path, table, uri)
        else:
            warnings = _load_csv(con, path, table, uri).warnings
        digest = fingerprint(path)
    columns = [name for name, _ in table_columns(con, table) if name != ROW_ID]
    return LoadResult(
        table=table,
        table_uri="",
        source_uri=uri,
        file_format=file_format,
        rows=row_count(con, table),
        columns=columns,
        bytes=size,
        fingerprint=digest,
        warnings=warnings,
    )
