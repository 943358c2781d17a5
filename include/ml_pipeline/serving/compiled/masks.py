"""Large batches of a float64 tree ensemble scored as leaf bitmasks (QuickScorer): batch
scoring's `LeafMasks` (`batch_scoring/leaf_masks.py`) on the compiled predictor's matrix.

Per 1,000-row request of the benchmark regressor (103 trees x 31 leaves, 24 matrix
columns), CPU time, medians: onnxruntime's `TreeEnsemble` 3.96 ms on one thread, leaf masks
1.46 ms; at 100 rows 0.35 against 0.17 ms; at one row onnxruntime wins (0.011 against
0.2 ms), so `trees.OnnxTrees` uses the masks from `trees.MASK_ROWS` rows on.

The trees are read back from the serialised graph (`onnx_graph.read_tree_ensemble`), the
only form a serving artifact keeps, and handed to `LeafMasks` as the fitted
HistGradientBoosting attributes it reads (`_TreesAsEstimator`). The raw scores are the
baseline plus each tree's leaf value added in the model's order, as scikit-learn's and
LightGBM's own predict add them. Graphs of another kind (float32 XGBoost, whose sums run
in float32, and trees of more than 64 leaves, such as a random forest's) raise
`UnsupportedPipeline` and stay on onnxruntime.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from include.ml_pipeline.batch_scoring.leaf_masks import MAX_LEAVES, LeafMasks, MaskInput
from include.ml_pipeline.serving.compiled.onnx_graph import DOUBLE, LEQ, read_tree_ensemble
from include.ml_pipeline.serving.compiled.predictor import UnsupportedPipeline

_NODE = np.dtype(
    [
        ("value", np.float64),
        ("feature_idx", np.intp),
        ("num_threshold", np.float64),
        ("missing_go_to_left", np.uint8),
        ("left", np.uint32),
        ("right", np.uint32),
        ("is_leaf", np.uint8),
        ("is_categorical", np.uint8),
        ("depth", np.uint32),  # read (max) by HGBTrees for its numpy walk, not used here
    ]
)


class _TreesAsEstimator:
    """The attributes of a fitted HistGradientBoosting estimator that `LeafMasks` reads,
    from trees given as `TreeArrays` (`k` per iteration, output 0 to k-1 in turn)."""

    _preprocessor = None
    loss = "squared_error"

    def __init__(self, trees: list[Any], k: int, baseline: np.ndarray, regression: bool):
        if len(trees) % k or any(t.target != i % k for i, t in enumerate(trees)):
            raise UnsupportedPipeline("trees do not take turns per output")
        if not regression:
            self.classes_ = np.arange(max(2, k))
        self.n_trees_per_iteration_ = k
        self._baseline_prediction = np.asarray(baseline, dtype=np.float64).reshape(1, -1)
        self._bin_mapper = SimpleNamespace(make_known_categories_bitsets=lambda: (None, None))
        predictors = []
        for tree in trees:
            if int(np.sum(tree.is_leaf)) > MAX_LEAVES:
                raise UnsupportedPipeline(f"a tree with more than {MAX_LEAVES} leaves")
            nodes = np.zeros(len(tree.is_leaf), dtype=_NODE)
            nodes["value"] = tree.value
            nodes["feature_idx"] = tree.feature
            nodes["num_threshold"] = tree.threshold
            nodes["missing_go_to_left"] = tree.missing_left
            nodes["left"] = np.where(tree.is_leaf, 0, tree.left)
            nodes["right"] = np.where(tree.is_leaf, 0, tree.right)
            nodes["is_leaf"] = tree.is_leaf
            predictors.append(SimpleNamespace(nodes=nodes))
        self._predictors = [predictors[i : i + k] for i in range(0, len(predictors), k)]


class MaskedTrees:
    """Raw scores (rows x k, baseline included) of the compiled matrix by leaf masks."""

    def __init__(self, model_bytes: bytes, k: int, baseline: np.ndarray, regression: bool):
        read = read_tree_ensemble(model_bytes)
        if read.elem_type != DOUBLE or read.modes != frozenset({LEQ}) or read.n_targets != k:
            raise UnsupportedPipeline("leaf masks take float64 `x <= t` graphs only")
        self.trees = LeafMasks(_TreesAsEstimator(read.trees, k, baseline, regression))
        self.columns = sorted(self.trees.columns)
        merged = self.trees.merge(
            [MaskInput(self.trees.columns[c][1], f"column {c}") for c in self.columns]
        )
        self.tables = [table for table, _, _ in merged]
        self.plan = [(members, strides) for _, members, strides in merged]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        rows = x.shape[0]
        if not self.columns:  # no split at all: every tree is one leaf
            full = np.full((1, self.trees.n_trees), self.trees.full, self.trees.dtype)
            return self.trees.raw([full], [np.zeros(rows, dtype=np.intp)])
        bins = [self.trees.column_bins(c, x[:, c]) for c in self.columns]
        indexes = []
        for members, strides in self.plan:
            index = bins[members[0]] * strides[0]
            for member, stride in zip(members[1:], strides[1:], strict=True):
                index += bins[member] * stride
            indexes.append(index)
        return self.trees.raw(self.tables, indexes)
