"""Large batches of float64 tree graphs are scored as leaf masks (`compiled/masks.py`):
the trees read back from the graph bytes are the trees written (the same bytes again),
the masks give scikit-learn's own raw scores bit for bit (also from a serving artifact,
which keeps only the graph), small batches stay on onnxruntime, and float32 graphs take
the masks only with their ordered sums (XGBoost's: `test_boosters.py` checks its bits)."""

from __future__ import annotations

import numpy as np
import pytest

from include.ml_pipeline.features import coerce_features
from include.ml_pipeline.serving.batch import batch_from_frame, concat_batches
from include.ml_pipeline.serving.compiled import trees as trees_module
from include.ml_pipeline.serving.compiled.compiler import compile_pipeline
from include.ml_pipeline.serving.compiled.onnx_graph import (
    DOUBLE,
    LEQ,
    hgb_tree_arrays,
    read_tree_ensemble,
    tree_ensemble_model,
)
from include.ml_pipeline.serving.compiled.trees import MASK_ROWS, HGBTrees
from include.ml_pipeline.serving.compiled.verify import verification_batch
from include.ml_pipeline.serving.loading.artifact import read_predictor, write_predictor
from tests.support.models import fit_pipeline, regression_pipeline, training_frame


@pytest.fixture(scope="module", params=["regression", "str", "multi"])
def fitted(request):
    if request.param == "regression":
        pipeline, spec = regression_pipeline("hgb_deep", rows=1500, params={"max_iter": 30})
        frame, _ = training_frame(400, seed=9)
    else:
        frame, spec = training_frame(1500, seed=9, labels=request.param)
        pipeline = fit_pipeline(frame, spec, "hgb")
    batch = concat_batches(
        batch_from_frame(coerce_features(frame.head(300), spec), spec.numeric, spec.categorical),
        verification_batch(pipeline, spec.numeric, spec.categorical),  # NaN, unseen values
    )
    return pipeline, spec, batch


def test_graph_read_back_is_the_graph_written(fitted):
    pipeline, _, _ = fitted
    hgb = HGBTrees(pipeline[-1])
    arrays = [hgb_tree_arrays(k, predictor) for k, predictor in hgb.predictors]
    graph = tree_ensemble_model(arrays, hgb.k, 30)
    read = read_tree_ensemble(graph)
    assert (read.n_targets, read.modes, read.elem_type) == (hgb.k, frozenset({LEQ}), DOUBLE)
    assert tree_ensemble_model(read.trees, hgb.k, 30) == graph
    with pytest.raises(ValueError, match="wire type 3"):
        read_tree_ensemble(b"\x0b")  # a wire type the writer never uses


def test_large_batches_take_leaf_masks_with_scikit_learns_raw_scores(fitted, tmp_path):
    pipeline, spec, batch = fitted
    compiled = compile_pipeline(pipeline, spec.numeric, spec.categorical)
    from_artifact = read_predictor(tmp_path, write_predictor(compiled, tmp_path))
    x = compiled.transform(batch)
    assert x.shape[0] >= MASK_ROWS
    expected = HGBTrees(pipeline[-1]).raw_large(x)  # scikit-learn's own tree predictors
    for predictor in (compiled, from_artifact):
        trees = predictor.proba_fn
        assert trees._masks is None  # built at the first large batch, not at load
        assert np.array_equal(trees.masks()(x), expected)
        got = predictor.predict(batch)
        assert trees._masks is not None
        frame = batch.to_frame()
        if predictor.regression:  # the same floats as the pipeline's predict
            assert np.array_equal(np.asarray(got.labels), pipeline.predict(frame))
        else:
            assert got.labels == pipeline.predict(frame).tolist()
            # the raw scores are equal; the link is numpy's, not scipy's: a last bit apart
            assert np.abs(got.proba - pipeline.predict_proba(frame)).max() <= 1e-15


def test_small_batches_and_plainly_summed_float32_graphs_stay_on_onnxruntime(fitted):
    pipeline, spec, batch = fitted
    compiled = compile_pipeline(pipeline, spec.numeric, spec.categorical)
    trees = compiled.proba_fn
    small = compiled.predict(batch.slice(0, MASK_ROWS - 1))
    assert trees._masks is None
    assert not trees._masks_built
    large = compiled.predict(batch.slice(0, MASK_ROWS))
    assert trees._masks is not None
    # the two evaluators agree up to the order of the sums
    if compiled.regression:
        assert np.allclose(small.labels, large.labels[: MASK_ROWS - 1], rtol=1e-12)
    else:
        assert np.abs(small.proba - large.proba[: MASK_ROWS - 1]).max() <= 1e-12
    # float32 without an ordered sum: onnxruntime's sum, which the masks do not reproduce
    state = {**trees.__getstate__(), "float32": True}
    as_float32 = trees_module.OnnxTrees.__new__(trees_module.OnnxTrees)
    as_float32.__setstate__(state)
    assert as_float32.masks() is None
