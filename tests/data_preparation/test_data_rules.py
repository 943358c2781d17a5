"""Unit tests of the door's rules that the corpus does not isolate: label typing, the
identifier heuristics, the leakage score, the CSV dialect, and that the steps turn every
deterministic failure into one that is not retried."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from include.ml_pipeline.data_preparation import ingest, preprocess, validate, warehouse
from include.ml_pipeline.data_preparation.sample_data import generate_churn_frame
from include.ml_pipeline.errors import DataError


@pytest.fixture
def con(tmp_path):
    with warehouse.task_warehouse() as connection:
        yield connection


def _table(con, name, values: dict):
    frame = pd.DataFrame(values)
    con.register("frame_view", frame)
    con.execute(
        f"CREATE OR REPLACE TABLE {name} AS SELECT row_number() OVER () AS __row_id, "
        "* FROM frame_view"
    )
    con.unregister("frame_view")


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (["0", "1", "1"], "BIGINT"),
        (["0.0", "1.0", "2.0"], "BIGINT"),
        (["0.5", "1.5", "1.5"], "VARCHAR"),  # TRY_CAST to BIGINT would round these
        (["True", "false", "TRUE"], "BOOLEAN"),
        (["yes", "no", "yes"], "VARCHAR"),  # DuckDB would cast 'yes' to true: not a boolean
        (["1", "0", "x"], "VARCHAR"),
        (["0x10", "1", "2"], "VARCHAR"),
    ],
)
def test_label_types(con, labels, expected):
    _table(con, "t", {"y": labels})
    assert preprocess.target_type(con, "t", "y") == expected


def test_identifier_heuristics():
    rows = 1000
    ids = {
        "distinct": 1000,
        "non_null": 1000,
        "tokens": 0,
        "integers": 1000,
        "min": 1.0,
        "max": 1000.0,
    }
    assert preprocess.identifier_reason("anything", "numeric", ids, rows)  # row numbers
    scattered = {**ids, "min": 10_000.0, "max": 9_999_999.0}
    assert preprocess.identifier_reason("customer_id", "numeric", scattered, rows)
    assert preprocess.identifier_reason("PassengerId", "numeric", scattered, rows)
    assert preprocess.identifier_reason("zip_code", "numeric", scattered, rows) is None
    assert preprocess.identifier_reason("paid", "numeric", scattered, rows) is None
    floats = {**scattered, "integers": 10}
    assert preprocess.identifier_reason("order_id", "numeric", floats, rows) is None
    text = {"distinct": 900, "non_null": 1000}
    assert preprocess.identifier_reason("name", "categorical", text, rows)
    assert preprocess.identifier_reason("city", "categorical", {"distinct": 40}, rows) is None


def test_leakage_scores(con):
    frame = generate_churn_frame(2000, seed=4)
    frame["copy"] = frame["churn"]
    frame["flag"] = (frame["churn"] == "yes").astype(int)
    frame["row"] = [f"R{i}" for i in range(len(frame))]
    _table(con, "t", {c: frame[c].astype(str) for c in frame.columns})
    score = lambda c, kind, distinct=2000: validate.leakage_score(  # noqa: E731
        con, "t", c, kind, "churn", len(frame), distinct
    )
    assert score("copy", "categorical") == pytest.approx(1.0)
    assert score("flag", "numeric", 2) == pytest.approx(1.0)
    assert score("row", "categorical") < 0.05  # unique per row: pooled, no signal
    assert score("contract_type", "categorical") < 0.3
    assert score("monthly_charges", "numeric") < 0.3


def test_choose_delimiter_prefers_consistent_splits():
    assert ingest.choose_delimiter("a;b;c\n1,5;2;x\n3,5;4;y\n") == ";"
    assert ingest.choose_delimiter("a,b\n1,2\n") == ","
    assert ingest.choose_delimiter("a\tb\n1\t2\n") == "\t"
    assert ingest.choose_delimiter("single\n1\n2\n") == ","


def test_header_like_values():
    assert ingest.header_like_values([["1", "2.5", "3"], ["4", "5", "6"]]) == ["1", "2.5", "3"]
    rows = [["12", "north", "yes"], ["3", "north", "no"], ["5", "south", "yes"]]
    assert ingest.header_like_values(rows) == ["12", "north", "yes"]
    assert ingest.header_like_values([["age", "region", "churn"], ["3", "north", "no"]]) == []


def test_engine_errors_become_data_errors_and_io_errors_stay_retryable():
    from include.ml_pipeline.orchestration.compat import AirflowFailException
    from include.ml_pipeline.orchestration.steps.deployment_dag.data_preparation import (
        fail_on_bad_data,
    )

    @fail_on_bad_data
    def converts():
        duckdb.connect().execute("SELECT CAST('x' AS INTEGER)")

    with pytest.raises(AirflowFailException, match="could not process this data") as err:
        converts()
    assert isinstance(err.value.__cause__, DataError)
    assert "Conversion Error" not in str(err.value)

    @fail_on_bad_data
    def locked():
        raise duckdb.IOException("Could not set lock on file")

    with pytest.raises(duckdb.IOException):
        locked()


def test_numbers_beyond_the_limit_and_tokens(con):
    _table(con, "t", {"x": ["1", "NA", "nan", "?", "1e151", "-1e150", "inf", "7"]})
    got = con.execute(f"SELECT {warehouse.finite_number('x')} FROM t ORDER BY __row_id")
    assert [r[0] for r in got.fetchall()] == [1.0, None, None, None, None, -1e150, None, 7.0]


def test_mostly_numeric_share_decides_the_kind(con):
    n = 200
    values = np.where(np.arange(n) % 10 == 0, "n/a?", "3")  # 90% numbers: numeric + refused
    mixed = np.where(np.arange(n) % 10 < 4, "text", "3")  # 60% numbers: categorical + warning
    _table(con, "t", {"a": values, "b": mixed, "y": np.where(np.arange(n) % 2, "p", "q")})
    from include.ml_pipeline.data_preparation.profile import profile_table

    profile = profile_table(con, "t")
    kinds = validate.infer_kinds(profile, validate.ValidationRules(target="y"))
    assert kinds == {"a": "numeric", "b": "categorical"}
