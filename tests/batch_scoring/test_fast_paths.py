"""Every champion kind the compiler knows takes a fast path in batch, and that path equals
the model's own `predict` (`predict_proba`) row for row: regressors (HistGradientBoosting
and LightGBM / XGBoost as leaf masks, random forest and ridge compiled), LightGBM and
XGBoost classifiers as leaf masks. Fitted in-process (small data, few trees), scored from
an Arrow table as a part's chunk is; no registry."""

from __future__ import annotations

import numpy as np
import pytest

from include.ml_pipeline.batch_scoring.model import PREDICTION, batch_model
from include.ml_pipeline.features import FeatureSpec

#: (problem, estimator kind, params, the path batch scoring must take)
CASES = [
    (
        "regression",
        "hist_gradient_boosting",
        {"max_iter": 20},
        "compiled:onnx-hgb+leaf-masks-numba",
    ),
    ("regression", "lightgbm", {"n_estimators": 20}, "compiled:onnx-lightgbm+leaf-masks-numba"),
    ("regression", "xgboost", {"n_estimators": 20}, "compiled:onnx-xgboost+leaf-masks-numba"),
    ("regression", "random_forest", {"n_estimators": 5, "max_depth": 8}, "compiled:onnx-rf"),
    ("regression", "ridge", {}, "compiled:numpy-linear"),
    ("binary", "lightgbm", {"n_estimators": 20}, "compiled:onnx-lightgbm+leaf-masks-numba"),
    ("multiclass", "xgboost", {"n_estimators": 10}, "compiled:onnx-xgboost+leaf-masks-numba"),
]


@pytest.fixture(autouse=True)
def _one_thread():
    """OpenMP barriers crawl on a busy 2-core box: fit and predict on one thread."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def _fitted(problem: str, kind: str, params: dict):
    from include.ml_pipeline.data_preparation.sample_data import (
        CATEGORICAL_COLUMNS,
        NUMERIC_COLUMNS,
        REGRESSION_TARGET,
        generate_churn_frame,
    )
    from include.ml_pipeline.features import coerce_features
    from include.ml_pipeline.training.candidates import make_estimator
    from include.ml_pipeline.training.train import build_pipeline
    from tests.support.models import training_frame

    if problem == "regression":
        frame = generate_churn_frame(800, seed=4, problem="regression")
        spec = FeatureSpec(REGRESSION_TARGET, list(NUMERIC_COLUMNS), list(CATEGORICAL_COLUMNS))
        problem_type = "regression"
    else:
        frame, spec = training_frame(800, seed=4, labels="str" if problem == "binary" else "multi")
        problem_type = None
    candidate = {"name": kind, "estimator": kind, "params": params}
    pipeline = build_pipeline(spec, make_estimator(candidate, 0, problem_type))
    return pipeline.fit(coerce_features(frame, spec), frame[spec.target]), spec


@pytest.mark.parametrize(("problem", "kind", "params", "path"), CASES)
def test_the_fast_path_equals_the_models_predict_row_for_row(
    problem, kind, params, path, monkeypatch
):
    import pyarrow as pa

    from include.ml_pipeline.batch_scoring import model as models
    from include.ml_pipeline.data_preparation.sample_data import generate_churn_frame
    from include.ml_pipeline.features import coerce_features

    pipeline, spec = _fitted(problem, kind, params)
    model = batch_model(pipeline, spec, name=f"{problem}-{kind}", version="1")
    assert model.path == path, model.reason  # the fast path, not the scikit-learn one

    frame = coerce_features(generate_churn_frame(1_500, seed=9), spec)
    frame.loc[::11, spec.numeric[0]] = np.nan  # missing values take the imputer's value
    frame.loc[::13, spec.categorical[0]] = None
    frame.loc[::17, spec.categorical[-1]] = "never_seen_before"
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.set_column(  # categories read as Parquet dictionaries, as parts read them
        table.schema.get_field_index(spec.categorical[0]),
        spec.categorical[0],
        table.column(spec.categorical[0]).dictionary_encode(),
    )
    got = model.score(table)
    # the kernel's inputs built and scored in blocks of rows: the same answers
    monkeypatch.setattr(models, "INPUT_BLOCK_ROWS", 256)
    blocked = model.score(table)
    for name, values in got.items():
        as_list = values.to_pylist() if isinstance(values, pa.Array) else values.tolist()
        other = blocked[name]
        assert (other.to_pylist() if isinstance(other, pa.Array) else other.tolist()) == as_list
    expected = pipeline.predict(frame)
    if problem == "regression":
        if kind == "random_forest":  # averaged in another order: equal within ~1e-15
            np.testing.assert_allclose(got[PREDICTION], expected, rtol=1e-12, atol=0)
        else:
            assert np.array_equal(got[PREDICTION], np.asarray(expected, dtype=np.float64))
        return
    labels = got[PREDICTION]
    labels = labels.to_pylist() if isinstance(labels, pa.Array) else labels.tolist()
    assert labels == expected.tolist()
    proba = np.column_stack([got[f"proba_{c}"] for c in pipeline.classes_])
    np.testing.assert_allclose(proba, pipeline.predict_proba(frame), rtol=0, atol=1e-6)


@pytest.mark.parametrize("columns", [1, 2, 3])
def test_the_labels_index_is_numpys_argmax_ties_and_nan_included(columns):
    """`argmax` (two columns by comparisons) picks what `argmax(axis=1)` picks: the first
    largest column, a tie going to the first, a NaN counting as the largest."""
    from include.ml_pipeline.batch_scoring.model import argmax

    proba = np.random.default_rng(3).random((400, columns))
    proba[:50, -1] = proba[:50, 0]  # ties
    proba[50:80, 0] = np.nan
    proba[70:100, -1] = np.nan  # both NaN on rows 70-79
    assert argmax(proba).tolist() == proba.argmax(axis=1).tolist()
    assert argmax(proba[100:]).tolist() == proba[100:].argmax(axis=1).tolist()  # no NaN
