"""Unit tests of the data-preparation functions on a real DuckDB file."""

from __future__ import annotations

import pandas as pd
import pytest

from include.ml_pipeline.data_preparation import (
    ingest,
    preprocess,
    sample_data,
    split,
    validate,
    warehouse,
)
from include.ml_pipeline.errors import DataSourceError, DataValidationError
from include.ml_pipeline.features import FeatureSpec


@pytest.fixture
def con(tmp_path):
    with warehouse.task_warehouse() as connection:
        yield connection


@pytest.fixture
def sample_csv(tmp_path):
    return sample_data.write_dataset(tmp_path / "sample.csv", rows=1_000, seed=3)


def rules(**overrides):
    base = dict(
        target="churn",
        required_columns=sample_data.NUMERIC_COLUMNS,
        numeric_columns=sample_data.NUMERIC_COLUMNS,
        min_rows=100,
    )
    base.update(overrides)
    return validate.ValidationRules(**base)


def load(con, path, tmp_path, table="raw__t"):
    return ingest.load_into_table(con, str(path), table)


def test_generator_is_seeded_and_learnable():
    a = sample_data.generate_churn_frame(2_000, seed=1)
    b = sample_data.generate_churn_frame(2_000, seed=1)
    pd.testing.assert_frame_equal(a, b)
    assert set(a["churn"]) == {"yes", "no"}
    assert a["tenure_months"].isna().mean() > 0
    assert a["payment_method"].isna().mean() > 0
    drifted = sample_data.generate_churn_frame(2_000, seed=1, drift=True)
    assert drifted["monthly_charges"].mean() > a["monthly_charges"].mean() + 10


def test_load_keeps_every_row_as_text_in_file_order(con, sample_csv, tmp_path):
    result = load(con, sample_csv, tmp_path)
    assert result.rows == 1_000
    features = [*sample_data.NUMERIC_COLUMNS, *sample_data.CATEGORICAL_COLUMNS]
    assert result.columns == [*features, "churn"]
    assert len(result.fingerprint) == 64
    first = con.execute('SELECT "__row_id", "churn" FROM raw__t ORDER BY 1 LIMIT 1').fetchone()
    assert first == (1, pd.read_csv(sample_csv)["churn"][0])


def test_load_parquet(con, tmp_path):
    path = sample_data.write_dataset(tmp_path / "s.parquet", rows=300, seed=1)
    result = load(con, path, tmp_path)
    assert result.file_format == "parquet"
    assert result.rows == 300


def test_missing_and_empty_files_are_named(con, tmp_path):
    with pytest.raises(DataSourceError, match=r"nope\.csv: no such file"):
        load(con, tmp_path / "nope.csv", tmp_path)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataSourceError, match=r"empty\.csv: the file is empty \(0 bytes\)"):
        load(con, empty, tmp_path)


def test_header_only_file_fails_min_rows(con, tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("a,b,churn\n")
    load(con, path, tmp_path)
    with pytest.raises(DataValidationError, match=r"min_rows.*0 data rows"):
        validate.validate_table(
            con, "raw__t", rules(required_columns=[], numeric_columns=[]), str(path)
        )


def test_valid_sample_passes_with_inferred_kinds(con, sample_csv, tmp_path):
    load(con, sample_csv, tmp_path)
    report = validate.validate_table(con, "raw__t", rules(), str(sample_csv))
    assert report.rows == 1_000
    assert {report.kinds[c] for c in sample_data.NUMERIC_COLUMNS} == {"numeric"}
    assert {report.kinds[c] for c in sample_data.CATEGORICAL_COLUMNS} == {"categorical"}
    assert set(report.classes) == {"yes", "no"}


def test_missing_target_column_is_named(con, tmp_path):
    frame = sample_data.generate_churn_frame(300).drop(columns=["churn"])
    path = tmp_path / "no_target.csv"
    frame.to_csv(path, index=False)
    load(con, path, tmp_path)
    with pytest.raises(DataValidationError) as err:
        validate.validate_table(con, "raw__t", rules(), str(path))
    assert "column 'churn': rule 'required_column' broken: column is absent" in str(err.value)
    assert "no_target.csv" in str(err.value)


def test_single_class_is_rejected(con, tmp_path):
    frame = sample_data.generate_churn_frame(300)
    frame["churn"] = "no"
    path = tmp_path / "one_class.csv"
    frame.to_csv(path, index=False)
    load(con, path, tmp_path)
    expected = r"'churn': rule 'min_classes' broken: 1 class \('no'\)"
    with pytest.raises(DataValidationError, match=expected):
        validate.validate_table(con, "raw__t", rules(), str(path))


def test_garbage_in_numeric_column_names_value_and_line(con, tmp_path):
    frame = sample_data.generate_churn_frame(300)
    frame["age"] = frame["age"].astype(object)
    frame.loc[41, "age"] = "forty-two"
    path = tmp_path / "garbage.csv"
    frame.to_csv(path, index=False)
    load(con, path, tmp_path)
    with pytest.raises(DataValidationError) as err:
        validate.validate_table(con, "raw__t", rules(), str(path))
    message = str(err.value)
    assert "column 'age': rule 'numeric_parseable' broken" in message
    assert "'forty-two' on line 43" in message  # header is line 1, row 41 is line 43


def test_garbage_detected_without_declared_types(con, tmp_path):
    frame = sample_data.generate_churn_frame(400)
    frame["monthly_charges"] = frame["monthly_charges"].astype(object)
    frame.loc[7, "monthly_charges"] = "n/a?"
    path = tmp_path / "g.csv"
    frame.to_csv(path, index=False)
    load(con, path, tmp_path)
    with pytest.raises(DataValidationError, match=r"'monthly_charges'.*numeric_parseable.*'n/a\?'"):
        validate.validate_table(
            con, "raw__t", rules(required_columns=[], numeric_columns=[]), str(path)
        )


def test_null_range_duplicate_and_class_count_rules(con, tmp_path):
    frame = sample_data.generate_churn_frame(400)
    frame.loc[:300, "region"] = None
    frame.loc[0, "age"] = 250
    frame = pd.concat([frame, frame.iloc[:100]])
    frame.loc[frame.index[:3], "churn"] = "maybe"
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    load(con, path, tmp_path)
    with pytest.raises(DataValidationError) as err:
        validate.validate_table(
            con,
            "raw__t",
            rules(value_ranges={"age": [0, 120]}, max_duplicate_fraction=0.05),
            str(path),
        )
    broken = {(v.column, v.rule) for v in err.value.violations}
    assert ("region", "max_null_fraction") in broken
    assert ("age", "value_range") in broken
    assert (None, "max_duplicate_fraction") in broken
    assert ("churn", "min_class_count") in broken


def test_preprocess_types_dedupes_and_excludes_identifiers(con, tmp_path):
    frame = sample_data.generate_churn_frame(500)
    frame.insert(0, "customer_id", [f"C{i:05d}" for i in range(500)])
    frame["constant"] = "same"
    frame = pd.concat([frame, frame.iloc[:10]]).reset_index(drop=True)
    frame.loc[frame.index[-1], "churn"] = None
    path = tmp_path / "p.csv"
    frame.to_csv(path, index=False)
    load(con, path, tmp_path)
    report = validate.validate_table(con, "raw__t", rules(max_duplicate_fraction=0.5), str(path))
    result = preprocess.preprocess_table(con, "raw__t", "clean__t", "churn", report.kinds)
    assert "customer_id" in result.excluded_columns
    assert "constant" in result.excluded_columns
    assert result.dropped_unlabelled == 1
    assert result.dropped_duplicates == 9
    assert result.rows_out == 500
    spec = result.feature_spec
    assert spec.numeric == sample_data.NUMERIC_COLUMNS
    types = dict(warehouse.table_columns(con, "clean__t"))
    assert types["age"] == "DOUBLE"
    assert types["region"] == "VARCHAR"


def test_integer_labels_stay_integers(con, tmp_path):
    frame = sample_data.generate_churn_frame(300)
    frame["churn"] = (frame["churn"] == "yes").astype(int)
    path = tmp_path / "int.csv"
    frame.to_csv(path, index=False)
    load(con, path, tmp_path)
    report = validate.validate_table(con, "raw__t", rules(), str(path))
    result = preprocess.preprocess_table(con, "raw__t", "clean__t", "churn", report.kinds)
    assert result.target_type == "BIGINT"


def _split(con, tmp_path, seed, out="s"):
    spec = FeatureSpec("churn", sample_data.NUMERIC_COLUMNS, sample_data.CATEGORICAL_COLUMNS)
    return split.split_table(
        con,
        "clean__t",
        "split__t",
        spec,
        tmp_path / out,
        test_size=0.2,
        validation_size=0.25,
        seed=seed,
    )


def test_split_is_stratified_seeded_and_reproducible(con, sample_csv, tmp_path):
    load(con, sample_csv, tmp_path)
    report = validate.validate_table(con, "raw__t", rules(), str(sample_csv))
    preprocess.preprocess_table(con, "raw__t", "clean__t", "churn", report.kinds)
    first = _split(con, tmp_path, seed=7, out="a")
    again = _split(con, tmp_path, seed=7, out="b")
    other = _split(con, tmp_path, seed=8, out="c")
    assert first.rows == {"train": 550, "validation": 250, "test": 200}
    for name in split.SPLITS:
        a = pd.read_parquet(first.uris[name])
        pd.testing.assert_frame_equal(a, pd.read_parquet(again.uris[name]))
        share = (a["churn"] == "yes").mean()
        overall = report.classes["yes"] / report.rows
        assert abs(share - overall) < 0.01, name
    assert not pd.read_parquet(first.uris["test"]).equals(pd.read_parquet(other.uris["test"]))
    train = pd.read_parquet(first.uris["train"])
    test = pd.read_parquet(first.uris["test"])
    assert len(pd.merge(train, test, how="inner")) == 0  # disjoint rows


def test_split_fractions_are_checked():
    with pytest.raises(ValueError, match="test_size must be between 0 and 1"):
        split.check_fractions(1.5, 0.1)
    with pytest.raises(ValueError, match="at least 10% for training"):
        split.check_fractions(0.5, 0.45)
