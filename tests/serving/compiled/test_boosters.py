"""LightGBM and XGBoost models on the compiled path: the ONNX trees read from their own
dumps reproduce the library's predict / predict_proba (binary, multiclass, regression;
random inputs with NaN, unseen categories), survive pickling and the serving artifact, and
what the compiler does not translate is served by scikit-learn with the reason named."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from include.ml_pipeline.features import FeatureSpec, build_preprocessor, coerce_features
from include.ml_pipeline.serving.batch import batch_from_frame, concat_batches
from include.ml_pipeline.serving.compiled.boosters import compile_booster
from include.ml_pipeline.serving.compiled.compiler import compile_pipeline
from include.ml_pipeline.serving.compiled.predictor import (
    CompiledPredictor,
    SklearnPredictor,
)
from include.ml_pipeline.serving.compiled.verify import verification_batch, verify_predictor
from include.ml_pipeline.serving.loading.artifact import read_predictor, write_predictor
from include.ml_pipeline.serving.loading.served import build_served_model
from tests.support.models import training_frame

PROBLEMS = ("binary", "multiclass", "regression")


def _data(problem: str, rows: int = 1200, seed: int = 3):
    if problem == "regression":
        from include.ml_pipeline.data_preparation.sample_data import (
            CATEGORICAL_COLUMNS,
            NUMERIC_COLUMNS,
            REGRESSION_TARGET,
            generate_churn_frame,
        )

        frame = generate_churn_frame(rows, seed=seed, problem="regression")
        spec = FeatureSpec(
            REGRESSION_TARGET, list(NUMERIC_COLUMNS), list(CATEGORICAL_COLUMNS), "regression"
        )
        return frame, spec
    return training_frame(rows, seed=seed, labels="str" if problem == "binary" else "multi")


def _estimator(library: str, problem: str, **params):
    if library == "lightgbm":
        import lightgbm

        cls = lightgbm.LGBMRegressor if problem == "regression" else lightgbm.LGBMClassifier
        return cls(n_estimators=40, num_leaves=15, verbose=-1, random_state=0, n_jobs=1, **params)
    import xgboost

    cls = xgboost.XGBRegressor if problem == "regression" else xgboost.XGBClassifier
    return cls(n_estimators=40, max_depth=4, n_jobs=1, random_state=0, **params)


def _pipeline(library: str, problem: str):

    frame, spec = _data(problem)
    target = frame[spec.target]
    if library == "xgboost" and problem != "regression":  # XGBoost wants labels 0..k-1
        target = target.astype("category").cat.codes
    # as training builds it: categories as codes, the library's own categorical splits
    from include.ml_pipeline.training.train import build_pipeline

    extra = {"min_data_per_group": 20} if library == "lightgbm" else {}
    pipeline = build_pipeline(spec, _estimator(library, problem, **extra))
    pipeline.fit(coerce_features(frame, spec), target)
    return pipeline, frame, spec


@pytest.fixture(
    scope="module", params=[(lib, p) for lib in ("lightgbm", "xgboost") for p in PROBLEMS]
)
def fitted(request):
    library, problem = request.param
    return (library, problem, *_pipeline(library, problem))


def test_compiled_booster_pipeline_equals_the_library(fitted, tmp_path):
    library, problem, pipeline, frame, spec = fitted
    compiled = compile_pipeline(pipeline, spec.numeric, spec.categorical)
    assert compiled.estimator_path == f"onnx-{library}"
    # its own categorical splits, on the codes
    from include.ml_pipeline.serving.compiled.boosters import lightgbm_ensemble, xgboost_ensemble

    read = lightgbm_ensemble if library == "lightgbm" else xgboost_ensemble
    assert any(t.is_categorical is not None for t in read(pipeline.steps[-1][1]).trees)
    sample = concat_batches(
        batch_from_frame(coerce_features(frame.head(200), spec), spec.numeric, spec.categorical),
        verification_batch(pipeline, spec.numeric, spec.categorical),  # NaN, unseen categories
    )
    assert verify_predictor(compiled, pipeline, sample) is None
    got = compiled.predict(sample)
    frame_in = sample.to_frame()
    if problem == "regression":
        expected = np.asarray(pipeline.predict(frame_in), dtype=np.float64)
        if library == "xgboost":  # float32 sums in XGBoost's order: the same bits
            assert np.array_equal(np.asarray(got.labels), expected)
        else:
            assert np.allclose(got.labels, expected, rtol=1e-12, atol=1e-12)
    else:
        assert got.labels == np.asarray(pipeline.predict(frame_in)).tolist()
        error = np.abs(got.proba - pipeline.predict_proba(frame_in)).max()
        assert error <= (1e-7 if library == "xgboost" else 1e-12)
    # pickled (compile worker -> server) and as a serving artifact: the same answers
    restored = pickle.loads(pickle.dumps(compiled))
    assert restored.predict(sample).labels == got.labels
    from_artifact = read_predictor(tmp_path, write_predictor(compiled, tmp_path))
    assert verify_predictor(from_artifact, pipeline, sample) is None
    assert from_artifact.predict(sample).labels == got.labels
    if problem == "binary":  # what the API serves: this path, no fallback reason
        served = build_served_model(pipeline, spec, name="m", version="1", alias="a", max_rows=9)
        assert isinstance(served.predictor, CompiledPredictor)
        assert (served.predict_path, served.fallback_reason) == (f"compiled:onnx-{library}", None)


def _matrix(rows: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 6))
    x[:, 4] = rng.integers(0, 2, rows)  # a 0/1 (one-hot like) column: exact zeros
    x[rng.random(x.shape) < 0.15] = np.nan
    return x


def _target(x: np.ndarray, problem: str) -> np.ndarray:
    signal = np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) ** 2 + np.nan_to_num(x[:, 4])
    if problem == "binary":
        return (signal > 1.0).astype(int)
    if problem == "multiclass":
        return np.digitize(signal, [0.0, 1.0, 2.0])
    return 10 * signal + 3


@pytest.mark.parametrize(
    "params",
    [
        {"zero_as_missing": True},  # missing_type Zero: near-zeros and NaN go default_left
        {"use_missing": False},  # missing_type None: NaN is read as 0.0
        {"boosting_type": "rf", "bagging_freq": 1, "bagging_fraction": 0.7},  # average_output
        {"objective": "huber"},
    ],
)
def test_lightgbm_missing_types_and_averaging(params):
    x, test = _matrix(1500, 1), _matrix(600, 2)
    test[:40, 4] = 1e-40  # a near-zero LightGBM treats as zero
    est = _estimator("lightgbm", "regression", **params).fit(x, _target(x, "regression"))
    path, trees = compile_booster(est)
    assert path == "onnx-lightgbm"
    assert np.allclose(trees(test), est.predict(test), rtol=1e-12, atol=1e-12)
    for i in range(0, 600, 97):  # single rows take the single-threaded session
        assert np.allclose(trees(test[i : i + 1]), est.predict(test[i : i + 1]), atol=1e-12)


@pytest.mark.parametrize("problem", PROBLEMS)
def test_xgboost_early_stopping_and_random_inputs(problem):
    import xgboost

    x, test = _matrix(1500, 3), _matrix(600, 4)
    est = _estimator("xgboost", problem, early_stopping_rounds=3)
    est.set_params(n_estimators=200, learning_rate=0.5)
    est.fit(
        x[:1200],
        _target(x[:1200], problem),
        eval_set=[(x[1200:], _target(x[1200:], problem))],
        verbose=False,
    )
    assert est.best_iteration < 199  # stopped early: predict uses the best iteration's trees
    _, trees = compile_booster(est)
    if problem == "regression":
        assert np.array_equal(trees(test), est.predict(test).astype(np.float64))
    else:
        assert np.abs(trees(test) - est.predict_proba(test)).max() <= 1e-7
    # 600 rows took the leaf masks (`masks.py`): XGBoost's float32 sums, order and margins
    assert trees._masks is not None
    margin = xgboost.XGBModel.predict(est, test, output_margin=True).reshape(len(test), -1)
    assert np.array_equal(trees._masks(test), margin.astype(np.float64))


def test_unknown_estimators_are_served_by_scikit_learn_with_the_reason():
    import lightgbm
    import xgboost
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    class OwnEstimator(ClassifierMixin, BaseEstimator):  # a user's own estimator
        def fit(self, X, y):
            self.inner_ = LogisticRegression(max_iter=500).fit(X, y)
            self.classes_ = self.inner_.classes_
            return self

        def predict_proba(self, X):
            return self.inner_.predict_proba(X)

        def predict(self, X):
            return self.inner_.predict(X)

    frame, spec = training_frame(600, seed=9)
    X = coerce_features(frame, spec)
    y = frame[spec.target]
    codes = y.astype("category").cat.codes
    cases = [
        (OwnEstimator(), y, "OwnEstimator is not one the compiler knows"),
        (
            xgboost.XGBRegressor(n_estimators=5, objective="count:poisson"),
            codes,
            "XGBoost objective 'count:poisson'",
        ),
        (
            lightgbm.LGBMClassifier(
                n_estimators=5, objective="multiclassova", num_class=2, verbose=-1
            ),
            y,
            "LightGBM",
        ),
    ]
    for estimator, target, reason in cases:
        pipeline = Pipeline([("preprocess", build_preprocessor(spec)), ("model", estimator)])
        pipeline.fit(X, target)
        served = build_served_model(
            pipeline, spec, name="m", version="1", alias="champion", max_rows=100
        )
        assert isinstance(served.predictor, SklearnPredictor), reason
        assert served.predict_path == "sklearn"
        assert reason in served.fallback_reason
        info = served.info()  # what GET /model shows
        assert info["predict_path"] == "sklearn"
        assert reason in info["fallback_reason"]
        batch = batch_from_frame(X.head(10), spec.numeric, spec.categorical)
        assert served.predictor.predict(batch).labels == pipeline.predict(X.head(10)).tolist()
