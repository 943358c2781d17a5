"""Find the raw data and load it into the warehouse.

Local paths (and `file://` URIs) are read in place by DuckDB. Any other scheme that
the Astro SDK's `File` understands (s3://, gs://, http(s)://, ...) is first copied, as a
stream, to a staging folder, then read the same way. CSV columns are loaded as text so
that one bad value cannot abort the load: typing is the job of validation and
preprocessing, which can then say exactly which column and value are wrong.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlparse

from include.ml_pipeline.contracts.payloads import LoadResult
from include.ml_pipeline.data_preparation.errors import DataSourceError
from include.ml_pipeline.data_preparation.warehouse import (
    quote_ident,
    quote_literal,
    row_count,
    table_columns,
)
from include.ml_pipeline.storage import fingerprint, local_path

ROW_ID = "__row_id"
SUPPORTED_SUFFIXES = (".csv", ".parquet", ".pq", ".tsv", ".txt", ".csv.gz")



def source_exists(uri: str, conn_id: str | None = None) -> bool:
    """True when the data at `uri` is there (used by the `esperar_datos` sensor)."""
    path = local_path(uri)
    if path is not None:
        return path.is_file()
    from astro.files import File  # the Astro SDK knows the remote schemes

    return bool(File(path=uri, conn_id=conn_id).exists())


def stage_source(uri: str, staging_dir: Path, conn_id: str | None = None) -> Path:
    """Return a local file with the data at `uri`, copying a remote object if needed."""
    path = local_path(uri)
    if path is not None:
        if not path.is_file():
            raise DataSourceError(f"{uri}: no such file")
        return path
    from astro.files import File
    from smart_open import open as smart_open

    location = File(path=uri, conn_id=conn_id).location
    staging_dir.mkdir(parents=True, exist_ok=True)
    target = staging_dir / (Path(urlparse(uri).path).name or "source.csv")
    tmp = target.with_name(target.name + ".part")
    with (
        smart_open(location.smartopen_uri, "rb", transport_params=location.transport_params) as src,
        tmp.open("wb") as dst,
    ):
        shutil.copyfileobj(src, dst, length=1 << 20)
    tmp.replace(target)
    return target



def detect_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    return "csv"


def load_sql(path: Path, table: str, file_format: str) -> str:
    """SQL that (re)creates `table` from the file, numbering rows in file order."""
    if file_format == "parquet":
        reader = f"read_parquet({quote_literal(str(path))})"
    else:
        reader = (
            f"read_csv({quote_literal(str(path))}, header = true, all_varchar = true, "
            "auto_detect = true, normalize_names = false, null_padding = true)"
        )
    return (
        f"CREATE OR REPLACE TABLE {quote_ident(table)} AS "
        f"SELECT row_number() OVER () AS {ROW_ID}, * FROM {reader}"
    )




def load_into_table(con, uri: str, table: str, staging_dir: Path, conn_id: str | None = None):
    """Load the file at `uri` into `table`; return a `LoadResult` (small, XCom-safe)."""
    path = stage_source(uri, staging_dir, conn_id)
    size = path.stat().st_size
    if size == 0:
        raise DataSourceError(f"{uri}: the file is empty (0 bytes)")
    file_format = detect_format(path)
    try:
        con.execute(load_sql(path, table, file_format))
    except Exception as exc:  # DuckDB's parser says what is wrong; keep it, add the file
        raise DataSourceError(f"{uri}: cannot be read as {file_format}: {exc}") from exc
    columns = [name for name, _ in table_columns(con, table) if name != ROW_ID]
    return LoadResult(
        table=table,
        source_uri=uri,
        local_path=str(path),
        file_format=file_format,
        rows=row_count(con, table),
        columns=columns,
        bytes=size,
        fingerprint=fingerprint(path),
    )
