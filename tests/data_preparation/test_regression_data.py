"""Regression through data preparation: the problem type decided and stated, the
regression target rules, the label typed as a number, the split stratified on quantile
bins of the target."""

from __future__ import annotations

import numpy as np
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
from include.ml_pipeline.errors import DataValidationError
from include.ml_pipeline.features import FeatureSpec

TARGET = sample_data.REGRESSION_TARGET


@pytest.fixture
def con():
    with warehouse.task_warehouse() as connection:
        yield connection


def _load(con, tmp_path, frame: pd.DataFrame, table="raw__t"):
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    ingest.load_into_table(con, str(path), table)
    return table


def _validate(con, table, **rules):
    return validate.validate_table(
        con, table, validate.ValidationRules(target=TARGET, **rules), "data.csv"
    )


def test_a_numeric_target_is_regression_with_the_reason(con, tmp_path):
    frame = sample_data.generate_churn_frame(600, seed=2, problem="regression")
    report = _validate(con, _load(con, tmp_path, frame))
    assert report.problem_type == "regression"
    assert "fractional" in report.problem_reason
    assert report.classes == {}
    spec_table = preprocess.preprocess_table(
        con, "raw__t", "clean__t", TARGET, report.kinds, problem_type=report.problem_type
    )
    assert spec_table.target_type == preprocess.LABEL_NUMBER
    assert spec_table.feature_spec.problem_type == "regression"
    values = con.execute(f'SELECT "{TARGET}" FROM clean__t').fetchnumpy()[TARGET]
    assert values.dtype == np.float64


def test_missing_targets_are_dropped_and_counted_and_a_dominant_value_is_a_warning(con, tmp_path):
    rng = np.random.default_rng(0)
    y = np.where(rng.random(400) < 0.7, 0.0, rng.gamma(2.0, 300.0, 400).round(2))
    y = y.astype(object)
    y[:30] = None
    y[30:34] = "NA"
    frame = pd.DataFrame({"x": rng.normal(size=400), "g": rng.choice(["a", "b"], 400), TARGET: y})
    report = _validate(con, _load(con, tmp_path, frame), max_target_null_fraction=0.0)
    assert report.problem_type == "regression"
    text = " | ".join(report.warnings)
    assert "34 rows (8.5%) have no value in the target" in text
    assert f"target {TARGET!r} is 0.0 in" in text
    assert "mean baseline is hard to beat" in text
    result = preprocess.preprocess_table(
        con, "raw__t", "clean__t", TARGET, report.kinds, problem_type="regression"
    )
    assert (result.rows_out, result.dropped_unlabelled) == (366, 34)


def test_a_constant_or_non_numeric_regression_target_is_refused_naming_the_rule(con, tmp_path):
    frame = pd.DataFrame({"x": np.arange(200.0), TARGET: [3.5] * 200})
    with pytest.raises(DataValidationError) as caught:
        _validate(con, _load(con, tmp_path, frame), problem_type="regression")
    assert "constant_target" in str(caught.value)
    frame = pd.DataFrame({"x": np.arange(200.0), TARGET: ["low", "high"] * 100})
    with pytest.raises(DataValidationError) as caught:
        _validate(con, _load(con, tmp_path, frame, "raw__u"), problem_type="regression")
    message = str(caught.value)
    assert "target_type" in message
    assert "'high'" in message
    assert "problem_type" in message


def test_many_whole_numbers_are_regression_and_the_param_can_say_otherwise(con, tmp_path):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.normal(size=2000), TARGET: rng.integers(300, 19000, 2000)})
    table = _load(con, tmp_path, frame)
    report = _validate(con, table)
    assert report.problem_type == "regression"
    assert "problem_type Param to multiclass" in report.problem_reason
    with pytest.raises(DataValidationError, match="max_classes"):
        _validate(con, table, problem_type="multiclass")


def test_ratings_stay_classification(con, tmp_path):
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"x": rng.normal(size=500), TARGET: rng.integers(1, 6, 500)})
    report = _validate(con, _load(con, tmp_path, frame))
    assert report.problem_type == "multiclass"
    assert set(report.classes) == {"1", "2", "3", "4", "5"}


def test_the_split_is_stratified_on_quantile_bins_seeded_and_reproducible(con, tmp_path):
    rng = np.random.default_rng(3)
    y = np.concatenate([rng.normal(0, 1, 900), rng.normal(100, 1, 100)])  # a rare high tail
    frame = pd.DataFrame({"x": rng.normal(size=1000), TARGET: y})
    report = _validate(con, _load(con, tmp_path, frame))
    preprocess.preprocess_table(
        con, "raw__t", "clean__t", TARGET, report.kinds, problem_type="regression"
    )
    spec = FeatureSpec(TARGET, ["x"], [], "regression")

    def run(dest, seed):
        out = tmp_path / dest
        result = split.split_table(
            con, "clean__t", dest, spec, str(out), test_size=0.2, validation_size=0.2, seed=seed
        )
        return result, {n: pd.read_parquet(out / f"{n}.parquet") for n in split.SPLITS}

    result, parts = run("split__a", 42)
    assert result.rows == {"train": 600, "validation": 200, "test": 200}
    for name, part in parts.items():  # every split holds its share of the high tail
        assert (part[TARGET] > 50).sum() == {"train": 60, "validation": 20, "test": 20}[name]
    _, again = run("split__b", 42)
    pd.testing.assert_frame_equal(parts["test"], again["test"])
    _, other = run("split__c", 7)
    assert not parts["test"][TARGET].equals(other["test"][TARGET])
