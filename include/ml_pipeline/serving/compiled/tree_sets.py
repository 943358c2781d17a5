"""The trees of a fitted estimator as a `TreeSet` for `LeafMasks` (`leaf_masks.py`), and
the raw scores the estimator's own library gives, which the masks must equal float for
float: HistGradientBoosting (through `trees.HGBTrees`, the same checks), LightGBM and
XGBoost (through `boosters.py`, the same translation the compiled graphs use)."""

from __future__ import annotations

from typing import Any

import numpy as np

from include.ml_pipeline.serving.compiled.leaf_masks import LeafMasks, TreeSet, summed_in_order
from include.ml_pipeline.serving.compiled.predictor import UnsupportedPipeline
from include.ml_pipeline.serving.compiled.trees import HGBTrees


def leaf_masks_of(est: Any) -> LeafMasks:
    """`LeafMasks` of a fitted HistGradientBoosting, LightGBM or XGBoost estimator;
    raises `UnsupportedPipeline` for anything else (or what those readers refuse)."""
    library, trees = tree_set(est)
    return LeafMasks(trees, library)


def tree_set(est: Any) -> tuple[str, TreeSet]:
    """(library, trees) of a fitted HistGradientBoosting, LightGBM or XGBoost estimator;
    raises `UnsupportedPipeline` for anything else (or what those readers refuse)."""
    from include.ml_pipeline.serving.compiled.boosters import (
        library_of,
        lightgbm_ensemble,
        xgboost_ensemble,
    )
    from include.ml_pipeline.serving.compiled.onnx_graph import LT, hgb_tree_arrays

    library = library_of(est)
    if library is None:
        if not hasattr(est, "_predictors"):
            raise UnsupportedPipeline(f"{type(est).__name__}: no leaf masks for its trees")
        hgb = HGBTrees(est)  # the same checks: categorical splits, losses
        trees = [hgb_tree_arrays(k, predictor) for k, predictor in hgb.predictors]
        return "hgb", TreeSet(trees, hgb.k, hgb.baseline, hgb.regression)
    ensemble = lightgbm_ensemble(est) if library == "lightgbm" else xgboost_ensemble(est)
    trees = ensemble.trees
    if ensemble.ordered_sum is not None:
        trees = summed_in_order(trees, ensemble.ordered_sum)
    return library, TreeSet(
        trees,
        ensemble.k,
        np.zeros(ensemble.k),  # LightGBM: in the first trees; XGBoost: leaf-only trees
        ensemble.regression,
        strict=ensemble.mode == LT,
        float32=ensemble.float32,
        zero_as_missing=ensemble.zero_as_missing,
    )


def library_raw(est: Any, x: np.ndarray) -> np.ndarray:
    """The raw scores (rows x outputs, float64) the fitted estimator's own library gives
    for the matrix `x`: what `LeafMasks.raw` must equal, float for float."""
    import warnings

    from include.ml_pipeline.serving.compiled.boosters import library_of

    library = library_of(est)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fitted on named columns, scored on a matrix
        if library == "lightgbm":
            raw = est.predict(x, raw_score=True)
        elif library == "xgboost":
            import xgboost

            # the margin of `XGBModel.predict` (a subclass's `predict` may map labels)
            raw = xgboost.XGBModel.predict(est, x, output_margin=True)
        else:
            raw = HGBTrees(est).raw_large(x)
    raw = np.asarray(raw, dtype=np.float64)
    return raw.reshape(len(x), -1)
