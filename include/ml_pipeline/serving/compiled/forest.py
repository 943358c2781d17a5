"""A fitted `RandomForestRegressor` as the same onnxruntime `TreeEnsemble` the
HistGradientBoosting path uses (`onnx_graph.tree_ensemble_model`, evaluated by
`trees.OnnxTrees`), so a random-forest champion is served compiled and gets a serving
artifact like the other tree models.

Two details make the graph answer exactly as scikit-learn does:

* scikit-learn's trees compare the input *cast to float32* with a float64 threshold
  (`float32(x) <= t`). The graph compares the float64 input, so each threshold `t` is
  replaced by the largest float64 `t'` with `x <= t'` exactly when `float32(x) <= t`
  (`float32_split`): the same branch for every input, without a cast per request.
* the forest averages its trees; each leaf value is divided by the number of trees and
  the graph sums them (equal to scikit-learn's sum-then-divide within ~1e-15 relative).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from include.ml_pipeline.serving.compiled.onnx_graph import TreeArrays
from include.ml_pipeline.serving.compiled.predictor import UnsupportedPipeline

#: float32 rounds to infinity from here on (FLT_MAX plus half its last place).
_FLOAT32_OVERFLOW = 2.0**128


def float32_split(threshold: np.ndarray) -> np.ndarray:
    """Per threshold `t`, the largest float64 `t'` such that, for every float64 `x`,
    `x <= t'` exactly when `float32(x) <= t` (round to nearest, ties to even)."""
    t = np.asarray(threshold, dtype=np.float64)
    with np.errstate(over="ignore"):
        f = t.astype(np.float32)
        f = np.where(f.astype(np.float64) > t, np.nextafter(f, np.float32(-np.inf)), f)
        above = np.nextafter(f, np.float32(np.inf)).astype(np.float64)
    above = np.where(np.isinf(above), _FLOAT32_OVERFLOW, above)
    low = f.astype(np.float64)
    middle = low + (above - low) / 2  # exact: float32 neighbours halve exactly in float64
    with np.errstate(over="ignore"):
        rounds_down = middle.astype(np.float32).astype(np.float64) == low
    return np.where(rounds_down, middle, np.nextafter(middle, -np.inf))


def forest_trees(est: Any) -> list[TreeArrays]:
    """The trees of a fitted `RandomForestRegressor` as `TreeArrays` of output 0 (what
    `onnx_graph.tree_ensemble_model` reads), thresholds mapped by `float32_split` and leaf
    values already averaged."""
    if getattr(est, "n_outputs_", 1) != 1:
        raise UnsupportedPipeline("RandomForestRegressor with several outputs")
    trees = []
    count = len(est.estimators_)
    for member in est.estimators_:
        tree = member.tree_
        left = np.asarray(tree.children_left, dtype=np.intp)
        is_leaf = left == -1
        missing_left = getattr(tree, "missing_go_to_left", None)
        trees.append(
            TreeArrays(
                target=0,
                feature=np.where(is_leaf, 0, tree.feature).astype(np.intp),
                threshold=np.where(is_leaf, 0.0, float32_split(tree.threshold)),
                missing_left=(
                    np.zeros(len(left), dtype=bool)
                    if missing_left is None
                    else np.asarray(missing_left, dtype=bool)
                ),
                left=left,
                right=np.asarray(tree.children_right, dtype=np.intp),
                is_leaf=is_leaf,
                value=np.asarray(tree.value, dtype=np.float64)[:, 0, 0] / count,
            )
        )
    return trees
