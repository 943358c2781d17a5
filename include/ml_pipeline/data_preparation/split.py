"""Stratified, seeded train / validation / test split, computed in the warehouse.

Within each class, rows are ordered by a hash of (row id, seed) and cut at the requested
fractions, so every split keeps the class mix, and the same data with the same seed
always gives the same rows, whatever the engine's thread count. A regression target is
stratified on equal-count quantile bins of its value (`regression_bins`), so every split
spans the target's range. Each split is written
as one Parquet object under the run's folder on the storage root, which the training
tasks (possibly on other workers) read by its URI.
"""

from __future__ import annotations

from include.ml_pipeline.data_preparation.ingest import ROW_ID
from include.ml_pipeline.data_preparation.warehouse import (
    quote_ident,
    quote_literal,
    write_parquet,
)
from include.ml_pipeline.features import FeatureSpec
from include.ml_pipeline.payloads import SplitResult
from include.ml_pipeline.storage import join

SPLITS = ("train", "validation", "test")
#: A regression target is cut into at most this many quantile bins, of at least
#: `MIN_BIN_ROWS` rows each, to stratify on.
MAX_BINS = 10
MIN_BIN_ROWS = 40
_STRATUM = "__stratum"


def regression_bins(rows: int) -> int:
    """How many quantile bins a regression target of `rows` rows is stratified on."""
    return max(1, min(MAX_BINS, rows // MIN_BIN_ROWS))


def check_fractions(test_size: float, validation_size: float) -> None:
    for name, value in (("test_size", test_size), ("validation_size", validation_size)):
        if not 0 < value < 1:
            raise ValueError(f"{name} must be between 0 and 1; got {value}")
    if test_size + validation_size >= 0.9:
        raise ValueError(
            f"test_size + validation_size must leave at least 10% for training; "
            f"got {test_size} + {validation_size}"
        )


def split_sql(
    source: str,
    dest: str,
    target: str,
    test: float,
    validation: float,
    seed: int,
    *,
    bins: int | None = None,
) -> str:
    """`bins`: stratify on that many quantile bins of a numeric target (regression)
    instead of its values."""
    t = quote_ident(target)
    if bins:
        strata = (
            f"binned AS (SELECT *, ntile({int(bins)}) OVER (ORDER BY {t}, {ROW_ID}) "
            f"AS {_STRATUM} FROM {quote_ident(source)}),"
        )
        by, origin, drop = _STRATUM, "binned", f"rk, n, {_STRATUM}"
    else:
        strata, by, origin, drop = "", t, quote_ident(source), "rk, n"
    return f"""
CREATE OR REPLACE TABLE {quote_ident(dest)} AS
WITH {strata} ranked AS (
  SELECT *,
         row_number() OVER (PARTITION BY {by} ORDER BY hash({ROW_ID}, {int(seed)}), {ROW_ID}) AS rk,
         count(*) OVER (PARTITION BY {by}) AS n
  FROM {origin}
)
SELECT * EXCLUDE ({drop}),
       CASE WHEN rk <= round(n * {float(test)}) THEN 'test'
            WHEN rk <= round(n * {float(test)}) + round(n * {float(validation)}) THEN 'validation'
            ELSE 'train' END AS split
FROM ranked ORDER BY {ROW_ID}
"""


def split_table(
    con,
    source: str,
    dest: str,
    spec: FeatureSpec,
    out_uri: str,
    *,
    test_size: float,
    validation_size: float,
    seed: int,
) -> SplitResult:
    """Split `source` into `dest` (with a `split` column) and write one Parquet object per
    split, `<out_uri>/<split>.parquet` (a folder URI or path)."""
    check_fractions(test_size, validation_size)
    bins = None
    if spec.is_regression:
        bins = regression_bins(
            con.execute(f"SELECT count(*) FROM {quote_ident(source)}").fetchone()[0]
        )
    con.execute(split_sql(source, dest, spec.target, test_size, validation_size, seed, bins=bins))
    columns = ", ".join(quote_ident(c) for c in [*spec.columns, spec.target])
    rows: dict[str, int] = {}
    classes: dict[str, dict[str, int]] = {}
    for name in SPLITS:
        where = f"FROM {quote_ident(dest)} WHERE split = {quote_literal(name)}"
        if spec.is_regression:  # no classes: the count of rows
            classes[name] = {}
            rows[name] = int(con.execute(f"SELECT count(*) {where}").fetchone()[0])
            continue
        counts = con.execute(
            f"SELECT CAST({quote_ident(spec.target)} AS VARCHAR), count(*) {where} "
            "GROUP BY 1 ORDER BY 1"
        ).fetchall()
        classes[name] = {str(k): int(v) for k, v in counts}
        rows[name] = sum(classes[name].values())
    empty = [name for name, n in rows.items() if n == 0]
    if empty:
        raise ValueError(
            f"split of {source}: the {', '.join(empty)} split(s) are empty; "
            "add rows or change test_size/validation_size"
        )
    uris = {
        name: write_parquet(
            con,
            f"(SELECT {columns} FROM {quote_ident(dest)} WHERE split = {quote_literal(name)} "
            f"ORDER BY {ROW_ID})",
            join(out_uri, f"{name}.parquet"),
        )
        for name in SPLITS
    }
    return SplitResult(
        uris=uris,
        rows=rows,
        class_counts=classes,
        seed=seed,
        feature_spec=spec,
    )
