"""LightGBM's categorical splits (`decision_type` "==", category bitsets) in the compiled
evaluators: the onnxruntime graph (BRANCH_MEMBER nodes) for small batches and the leaf
masks (a per-code lookup) for large ones, against LightGBM's own predict, with unseen,
missing, negative and huge codes."""

from __future__ import annotations

import numpy as np
import pytest

from include.ml_pipeline.serving.compiled.boosters import (
    compile_booster,
    lightgbm_ensemble,
    xgboost_ensemble,
)
from include.ml_pipeline.serving.compiled.onnx_graph import read_tree_ensemble
from include.ml_pipeline.serving.compiled.tree_sets import leaf_masks_of, library_raw

PROBLEMS = ("binary", "multiclass", "regression")
#: codes the model never saw, missing, negative, past any bitset, too large for an int32
ODD_CODES = (np.nan, -1.0, -7.0, 60.0, 75.0, 1e6, 2.0**31, 1e10, np.inf, -np.inf)


def _matrix(rows: int, seed: int) -> np.ndarray:
    """x0, x1 numeric; x2 a 60-level category (NaN in 5% of rows); x3 a 3-level one."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    x[:, 2] = rng.integers(0, 60, rows)
    x[:, 3] = rng.integers(0, 3, rows)
    x[rng.random(rows) < 0.05, 2] = np.nan
    return x


def _target(x: np.ndarray, problem: str) -> np.ndarray:
    effect = np.random.default_rng(0).normal(size=61)
    codes = np.nan_to_num(x[:, 2], nan=60).astype(int)
    signal = 2 * effect[codes] + x[:, 0] + (x[:, 3] == 1)
    if problem == "binary":
        return (signal > 0).astype(int)
    if problem == "multiclass":
        return np.digitize(signal, [-1.0, 0.5, 2.0])
    return 10 * signal + 3


@pytest.mark.parametrize("problem", PROBLEMS)
def test_lightgbm_categorical_splits_equal_lightgbm(problem):
    import lightgbm

    x, test = _matrix(2000, 1), _matrix(700, 2)
    odd = np.resize(np.asarray(ODD_CODES), 140)
    test[:140, 2] = odd
    test[140:280, 3] = odd  # x3 saw no NaN: its splits' missing_type is None
    cls = lightgbm.LGBMRegressor if problem == "regression" else lightgbm.LGBMClassifier
    est = cls(n_estimators=30, num_leaves=15, min_data_per_group=10, cat_smooth=5)
    est.set_params(verbose=-1, random_state=0, n_jobs=1)
    est.fit(x, _target(x, problem), categorical_feature=[2, 3])
    ensemble = lightgbm_ensemble(est)
    categorical = [t for t in ensemble.trees if t.is_categorical is not None]
    assert categorical, "the model has categorical splits"
    assert {int(f) for t in categorical for f in t.feature[t.is_categorical]} == {2, 3}
    path, trees = compile_booster(est)
    assert path == "onnx-lightgbm"
    # the graph holds the same category sets (what `masks.py` reads back)
    read = read_tree_ensemble(trees.model_bytes)
    for mine, back in zip(ensemble.trees, read.trees, strict=True):
        sets = [set(mine.left_categories(i)) for i in np.flatnonzero(mine.is_categorical)]
        if back.is_categorical is None:
            assert not sets
            continue
        back_sets = [set(back.left_categories(i)) for i in np.flatnonzero(back.is_categorical)]
        assert sorted(map(sorted, sets)) == sorted(map(sorted, back_sets))
    expected = est.predict(test) if problem == "regression" else est.predict_proba(test)
    got = trees(test)  # 700 rows: the leaf masks
    assert trees._masks is not None
    assert np.allclose(got, expected, rtol=1e-12, atol=1e-12)
    for i in [*range(0, 140, 7), *range(140, 280, 9), 500]:  # one row: onnxruntime
        assert np.allclose(trees(test[i : i + 1]), expected[i : i + 1], atol=1e-12), i
    # batch scoring's leaf masks: the raw scores, float for float; fractional codes
    # truncated as LightGBM does (-0.5 -> 0, 2.7 -> 2)
    test[280:300, 2] = [-0.5, 2.7, 0.3, 59.9] * 5
    masks = leaf_masks_of(est)
    assert set(masks.categorical) == {2, 3}
    index = [np.arange(len(test))]
    tables = [np.full((1, masks.n_trees), masks.full, dtype=masks.dtype)]
    for column in sorted(masks.columns):
        tables.append(masks.columns[column][1])
        index.append(masks.column_bins(column, test[:, column]))
    assert np.array_equal(masks.raw(tables, index), library_raw(est, test))


def test_the_logged_native_categorical_candidate_answers_as_mlflows_pyfunc(tmp_path, monkeypatch):
    """The LightGBM candidate as training builds and logs it (codes + its own categorical
    splits): served compiled, with the answers of the pyfunc `mlflow models serve` loads,
    unseen and missing categories included; the input contract (the signature's columns)
    unchanged."""
    import mlflow
    import mlflow.pyfunc

    from include.ml_pipeline.features import coerce_features
    from include.ml_pipeline.serving.batch import batch_from_frame
    from include.ml_pipeline.serving.loading.served import build_served_model
    from include.ml_pipeline.training.candidates import make_estimator
    from include.ml_pipeline.training.train import build_pipeline, log_pipeline
    from tests.serving.compiled.test_boosters import _data

    frame, spec = _data("regression", rows=800)  # exact values: the strictest comparison
    problem_type = "regression"
    candidate = {"name": "lgbm", "estimator": "lightgbm", "params": {"n_estimators": 30}}
    pipeline = build_pipeline(spec, make_estimator(candidate, 0, problem_type))
    X = coerce_features(frame, spec)
    pipeline.fit(X, frame[spec.target])
    assert pipeline.steps[0][1].named_transformers_["categorical"].steps[-1][0] == "ordinal"
    # a file store: the model is what is checked, and a new database costs ~10 s of migrations
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(tmp_path.as_uri())
    mlflow.set_experiment("categoricals")
    with mlflow.start_run():
        info = log_pipeline(pipeline, X, spec)
    assert [c.name for c in info.signature.inputs.inputs] == spec.columns
    rows = X.head(60).copy()
    column = spec.categorical[0]
    rows.loc[rows.index[:10], column] = "never_seen_before"
    rows.loc[rows.index[10:20], column] = None
    expected = mlflow.pyfunc.load_model(info.model_uri).predict(rows)
    served = build_served_model(pipeline, spec, name="m", version="1", alias="a", max_rows=100)
    assert (served.predict_path, served.fallback_reason) == ("compiled:onnx-lightgbm", None)
    got = served.predictor.predict(batch_from_frame(rows, spec.numeric, spec.categorical))
    assert np.allclose(got.labels, np.asarray(expected, dtype=np.float64), rtol=1e-12, atol=0)


@pytest.mark.parametrize("problem", PROBLEMS)
def test_xgboost_categorical_splits_equal_xgboost(problem):
    """XGBoost's categorical splits (`feature_types` "c", listed categories right): the
    same structures with the children swapped; float32 sums as XGBoost's, bit for bit."""
    import xgboost

    x, test = _matrix(2000, 3), _matrix(700, 4)
    test[:140, 2] = np.resize(np.asarray(ODD_CODES), 140)
    cls = xgboost.XGBRegressor if problem == "regression" else xgboost.XGBClassifier
    est = cls(n_estimators=30, max_depth=4, n_jobs=1, random_state=0, max_cat_to_onehot=1)
    est.set_params(feature_types=["q", "q", "c", "c"], enable_categorical=True)
    est.fit(x, _target(x, problem))
    path, trees = compile_booster(est)
    assert path == "onnx-xgboost"
    assert any(t.is_categorical is not None for t in xgboost_ensemble(est).trees)
    margin = xgboost.XGBModel.predict(est, test, output_margin=True).reshape(len(test), -1)
    masks = trees.masks()
    assert masks is not None
    assert np.array_equal(masks(test), margin.astype(np.float64))
    expected = est.predict(test) if problem == "regression" else est.predict_proba(test)
    for i in [*range(0, 140, 7), 500]:  # one row: onnxruntime's float32 graph
        assert np.allclose(trees(test[i : i + 1]), expected[i : i + 1], rtol=1e-6, atol=1e-7), i
