"""A random-forest regressor is served on the compiled path: its trees on onnxruntime
(`compiled/forest.py`), equal to the pipeline's predict within 1e-9 relative, with a
plain-data serving artifact; scikit-learn's float32 split comparison is reproduced at every
split, not just on typical rows."""

from __future__ import annotations

import numpy as np
import pytest

from include.ml_pipeline.data_preparation.sample_data import generate_churn_frame
from include.ml_pipeline.features import coerce_features
from include.ml_pipeline.serving.batch import batch_from_frame, concat_batches
from include.ml_pipeline.serving.compiled.compiler import compile_pipeline
from include.ml_pipeline.serving.compiled.forest import float32_split
from include.ml_pipeline.serving.compiled.verify import verification_batch
from include.ml_pipeline.serving.loading.artifact import read_predictor, write_predictor
from include.ml_pipeline.serving.loading.served import build_served_model
from tests.support.models import regression_pipeline

RTOL = 1e-9


def assert_close(got, expected) -> None:
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape
    error = np.abs(got - expected) / np.maximum(1.0, np.abs(expected))
    assert error.max() <= RTOL, f"{int((error > RTOL).sum())} values differ, max {error.max():.3g}"


@pytest.fixture(scope="module")
def forest():
    """The default `random_forest` regression candidate with 12 trees, and some rows."""
    pipeline, spec = regression_pipeline(
        "random_forest", rows=1500, seed=4, params={"n_estimators": 12}
    )
    frame = generate_churn_frame(400, seed=98, problem="regression")
    numeric, categorical = list(spec.numeric), list(spec.categorical)
    batch = concat_batches(
        batch_from_frame(coerce_features(frame, spec), numeric, categorical),
        verification_batch(pipeline, numeric, categorical),
    )
    return pipeline, spec, batch


def test_a_random_forest_regressor_is_served_compiled_with_an_artifact(forest, tmp_path):
    pipeline, spec, batch = forest
    served = build_served_model(
        pipeline, spec, name="spend", version="1", alias="champion", max_rows=2000
    )
    assert served.info()["predict_path"] == "compiled:onnx-rf"
    assert served.info()["fallback_reason"] is None
    expected = pipeline.predict(batch.to_frame())
    got = served.predictor.predict(batch).labels
    assert all(type(v) is float for v in got)
    assert_close(got, expected)
    for i in (0, 7, 401):  # one row at a time: the single-threaded session
        assert_close(served.predictor.predict(batch.slice(i, i + 1)).labels, expected[i : i + 1])
    # the serving artifact is plain data (JSON + ONNX) and reads back to the same numbers
    digests = write_predictor(served.predictor, tmp_path)
    assert set(digests) == {"predictor.json", "trees.onnx"}
    assert read_predictor(tmp_path, digests).predict(batch).labels == got


def test_every_split_takes_scikit_learns_branch(forest):
    """Inputs placed on and around every split threshold of the model matrix (where
    float32 rounding decides the branch) give scikit-learn's numbers."""
    pipeline, spec, batch = forest
    compiled = compile_pipeline(pipeline, spec.numeric, spec.categorical)
    est = pipeline.steps[-1][1]
    base = compiled.transform(batch)
    rng = np.random.default_rng(3)
    rows, raw_differs = [], False
    for member in est.estimators_[:4]:
        tree = member.tree_
        for node in np.nonzero(tree.children_left != -1)[0]:
            feature, threshold = int(tree.feature[node]), float(tree.threshold[node])
            low = np.float32(threshold)
            if float(low) > threshold:
                low = np.nextafter(low, np.float32(-np.inf))
            high = np.nextafter(low, np.float32(np.inf))
            middle = (float(low) + float(high)) / 2
            for x in (
                threshold,
                middle,
                np.nextafter(middle, -np.inf),
                np.nextafter(middle, np.inf),
            ):
                row = base[rng.integers(len(base))].copy()
                row[feature] = x
                rows.append(row)
                raw_differs |= (np.float32(x) <= threshold) != (x <= threshold)
    matrix = np.asarray(rows)
    assert raw_differs  # these inputs tell the float32 comparison from the float64 one
    assert_close(compiled.proba_fn(matrix), est.predict(matrix))


def test_float32_split_reproduces_the_float32_comparison():
    rng = np.random.default_rng(0)
    thresholds = np.concatenate(
        [
            rng.normal(size=3000) * 10.0 ** rng.integers(-30, 30, 3000),
            [0.0, -0.0, 1.5, -2.75, 1e-45, -1e-45, 3.0e38, -3.0e38],
        ]
    )
    mapped = float32_split(thresholds)
    low = thresholds.astype(np.float32)
    high = np.nextafter(low, np.float32(np.inf)).astype(np.float64)
    middle = (low.astype(np.float64) + high) / 2
    inputs = [thresholds, mapped, low.astype(np.float64), high, middle]
    inputs += [np.nextafter(x, d) for x in (thresholds, mapped, middle) for d in (-np.inf, np.inf)]
    with np.errstate(over="ignore"):
        for x in inputs:
            assert np.array_equal(x <= mapped, x.astype(np.float32) <= thresholds)
