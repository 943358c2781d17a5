"""Typing and cleaning in the warehouse, and the choice of feature columns.

Only stateless work happens here: casting text to numbers, trimming, turning empty
strings into NULL, dropping rows without a label and exact duplicates, and choosing the
features (identifier-like and constant columns are left out, with the reason recorded).
Everything that is *fitted* (imputation values, scaling, the category vocabulary) is
fitted later inside the model's scikit-learn pipeline (`features.build_preprocessor`),
so that serving applies exactly what training learnt.
"""

from __future__ import annotations

from include.ml_pipeline.contracts.payloads import PreprocessResult
from include.ml_pipeline.data_preparation.ingest import ROW_ID
from include.ml_pipeline.data_preparation.warehouse import quote_ident, row_count, text_value
from include.ml_pipeline.features import FeatureSpec

#: A text column with more distinct values than this share of the rows is an identifier.
ID_LIKE_SHARE = 0.5
ID_LIKE_MIN_DISTINCT = 50




def choose_features(
    kinds: dict[str, str],
    distinct: dict[str, int],
    rows: int,
    exclude: list[str] | tuple[str, ...] = (),
) -> tuple[list[str], list[str], dict[str, str]]:
    """Split columns into (numeric, categorical, excluded-with-reason)."""
    numeric, categorical, excluded = [], [], {}
    for name, kind in kinds.items():
        n = distinct.get(name, 0)
        if name in exclude:
            excluded[name] = "excluded by the exclude_columns parameter"
        elif n <= 1:
            excluded[name] = "constant (one distinct value or none)"
        elif kind == "categorical" and n >= ID_LIKE_MIN_DISTINCT and n > ID_LIKE_SHARE * rows:
            excluded[name] = f"identifier-like text ({n} distinct values in {rows} rows)"
        elif kind == "numeric":
            numeric.append(name)
        else:
            categorical.append(name)
    return numeric, categorical, excluded


def target_type(con, table: str, target: str) -> str:
    """BIGINT when every label is an integer (labels stay integers), else VARCHAR."""
    text = text_value(target)
    non_int = con.execute(
        f"SELECT count(*) FROM {quote_ident(table)} "
        f"WHERE {text} IS NOT NULL AND TRY_CAST({text} AS BIGINT) IS NULL"
    ).fetchone()[0]
    return "VARCHAR" if non_int else "BIGINT"


def clean_sql(source: str, dest: str, spec: FeatureSpec, label_type: str, dedupe: bool) -> str:
    cols = [f"{ROW_ID}"]
    cols += [f"TRY_CAST({text_value(c)} AS DOUBLE) AS {quote_ident(c)}" for c in spec.numeric]
    cols += [f"{text_value(c)} AS {quote_ident(c)}" for c in spec.categorical]
    cols.append(f"CAST({text_value(spec.target)} AS {label_type}) AS {quote_ident(spec.target)}")
    body = (
        f"SELECT {', '.join(cols)} FROM {quote_ident(source)} "
        f"WHERE {text_value(spec.target)} IS NOT NULL"
    )
    if dedupe:
        data_cols = ", ".join(quote_ident(c) for c in [*spec.columns, spec.target])
        body = (
            f"SELECT * FROM ({body}) "
            f"QUALIFY row_number() OVER (PARTITION BY {data_cols} ORDER BY {ROW_ID}) = 1"
        )
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
) -> PreprocessResult:
    """Create `dest` from `source` with typed, cleaned columns; return what was done."""
    rows_in = row_count(con, source)
    distinct = {
        name: int(
            con.execute(
                f"SELECT approx_count_distinct({text_value(name)}) FROM {quote_ident(source)}"
            ).fetchone()[0]
        )
        for name in kinds
    }
    numeric, categorical, excluded = choose_features(
        kinds, distinct, rows_in, exclude_columns or []
    )
    spec = FeatureSpec(target=target, numeric=numeric, categorical=categorical)
    label_type = target_type(con, source, target)
    labelled = con.execute(
        f"SELECT count(*) FROM {quote_ident(source)} WHERE {text_value(target)} IS NOT NULL"
    ).fetchone()[0]
    con.execute(clean_sql(source, dest, spec, label_type, drop_duplicates))
    rows_out = row_count(con, dest)
    return PreprocessResult(
        table=dest,
        rows_in=rows_in,
        rows_out=rows_out,
        dropped_unlabelled=rows_in - labelled,
        dropped_duplicates=labelled - rows_out,
        feature_spec=spec.to_dict(),
        target_type=label_type,
        excluded_columns=excluded,
    )
