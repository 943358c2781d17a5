"""HistGradientBoosting trees evaluated for whole chunks at once, as leaf bitmasks.

A row's leaf in one tree is found without walking the tree (QuickScorer, Lucchese et al.,
SIGIR 2015): number the tree's leaves left to right; a split that sends the row right
rules out the leaves of its left subtree; the row's leaf is the leftmost leaf no split
ruled out. Which splits on a feature send a row right depends only on where the value
falls among that feature's thresholds (its *bin*), so for every feature, bin and tree the
AND of the ruled-out masks is computed once, at load: a table of one machine word per
tree for each bin. Tables of small features are merged (the AND of every pair of rows) so
that a chunk needs few lookups: per table one gather of a row of words and one AND per
row; the leaf is the lowest set bit; the raw score is the baseline plus the leaf values
added tree by tree in the model's order, as scikit-learn adds them, so the raw scores are
the same floats (checked at load).

Inputs are given by the caller as (mask table, bin per row): a numeric matrix column
binned by `column_bins`, or a categorical column whose categories map to rows of a table
made with `column_masks` (one-hot columns never built). NaN takes each split's
`missing_go_to_left` branch: it has its own bin. Trees with more than 64 leaves or
categorical splits raise `UnsupportedPipeline` (the compiled predictor scores instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from include.ml_pipeline.serving.compiled.predictor import (
    UnsupportedPipeline,
    binary_proba,
    expit,
    softmax,
)
from include.ml_pipeline.serving.compiled.trees import HGBTrees

#: Rows evaluated at a time: the (rows x trees) words of a block stay in cache.
BLOCK_ROWS = 2048
#: Largest merged table (rows of words): beyond it a lookup misses the cache more often
#: than merging saves.
TABLE_ROWS = 4096
MAX_LEAVES = 64


def _leaf_order(nodes: Any) -> tuple[list[int], dict[int, int]]:
    """The tree's leaves left to right, and per internal node the mask of the leaves of
    its left subtree (bit i: the i-th leaf)."""
    leaves: list[int] = []
    left_mask: dict[int, int] = {}
    is_leaf = nodes["is_leaf"].astype(bool)
    left, right = nodes["left"].tolist(), nodes["right"].tolist()

    def visit(node: int) -> int:  # the mask of the leaves under `node`
        if is_leaf[node]:
            leaves.append(node)
            return 1 << (len(leaves) - 1)
        under_left = visit(left[node])
        left_mask[node] = under_left
        return under_left | visit(right[node])

    visit(0)
    return leaves, left_mask


@dataclass
class MaskInput:
    """One input of the trees: its table (bins x trees) and, per chunk, its bin per row."""

    masks: np.ndarray
    name: str


class LeafMasks:
    """The trees of a fitted HistGradientBoosting estimator as per-feature leaf masks."""

    def __init__(self, est: Any):
        trees = HGBTrees(est)  # the same checks: categorical splits, losses
        self.k, self.baseline, self.regression = trees.k, trees.baseline, trees.regression
        # the trees grouped by class, each class's in the model's order
        predictors = [trees.predictors[i] for i in np.argsort(trees.tree_class, kind="stable")]
        orders = [_leaf_order(predictor.nodes) for _, predictor in predictors]
        widest = max(len(leaves) for leaves, _ in orders)
        if widest > MAX_LEAVES:
            raise UnsupportedPipeline(f"a tree with {widest} leaves (leaf masks hold 64)")
        self.dtype = np.uint32 if widest <= 32 else np.uint64
        self.full = self.dtype(np.iinfo(self.dtype).max)
        self.n_trees = len(orders)
        self.values = np.zeros((self.n_trees, widest), dtype=np.float64)
        splits: dict[int, list[tuple[float, int, int, bool]]] = {}
        for t, ((_, predictor), (leaves, left_mask)) in enumerate(
            zip(predictors, orders, strict=True)
        ):
            nodes = predictor.nodes
            self.values[t, : len(leaves)] = nodes["value"][leaves]
            for node, mask in left_mask.items():
                splits.setdefault(int(nodes["feature_idx"][node]), []).append(
                    (
                        float(nodes["num_threshold"][node]),
                        t,
                        int(self.full) & ~mask,
                        bool(nodes["missing_go_to_left"][node]),
                    )
                )
        #: per matrix column used by a split: (sorted thresholds, masks (bins + NaN) x trees)
        self.columns: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for column, found in splits.items():
            thresholds = np.unique(np.asarray([s[0] for s in found], dtype=np.float64))
            bins = len(thresholds) + 1
            masks: np.ndarray[Any, Any] = np.full(
                (bins + 1, self.n_trees), self.full, dtype=self.dtype
            )
            for threshold, t, ruled_out, nan_left in found:
                # bin b holds the values above exactly b thresholds: the split sends a row
                # right from the bin past its threshold on (NaN: unless it goes left)
                first = int(np.searchsorted(thresholds, threshold)) + 1
                masks[first:bins, t] &= self.dtype(ruled_out)
                if not nan_left:
                    masks[bins, t] &= self.dtype(ruled_out)
            self.columns[column] = (thresholds, masks)
        self._offsets = np.arange(self.n_trees, dtype=np.intp) * widest
        # trees in class order (each class's trees in the model's order): one slice each
        self._class_trees: list[tuple[int, int]] = []
        for c in range(self.k):
            first = len(self._class_trees) and self._class_trees[-1][1]
            self._class_trees.append((first, first + int(np.sum(trees.tree_class == c))))

    def column_bins(self, column: int, values: np.ndarray) -> np.ndarray:
        """The bin of each of `values` (a matrix column) in its table."""
        thresholds, _ = self.columns[column]
        bins = np.searchsorted(thresholds, values)
        missing = np.isnan(values)
        if missing.any():
            bins[missing] = len(thresholds) + 1
        return bins

    def column_masks(self, column: int, values: np.ndarray) -> np.ndarray:
        """The masks (len(values) x trees) of rows whose `column` holds `values`."""
        if column not in self.columns:
            return np.full((len(values), self.n_trees), self.full, dtype=self.dtype)
        return self.columns[column][1][self.column_bins(column, values)]

    def merge(self, inputs: list[MaskInput]) -> list[tuple[np.ndarray, list[int], list[int]]]:
        """`inputs` packed into tables of at most `TABLE_ROWS` rows (small ones first):
        per table its masks, the inputs it holds and their strides (a row's table index
        is the sum of each input's bin times its stride)."""
        order = sorted(range(len(inputs)), key=lambda i: len(inputs[i].masks))
        tables: list[tuple[np.ndarray, list[int], list[int]]] = []
        for i in order:
            masks = inputs[i].masks
            if tables and len(tables[-1][0]) * len(masks) <= TABLE_ROWS:
                table, members, strides = tables[-1]
                merged = (table[:, None, :] & masks[None, :, :]).reshape(-1, self.n_trees)
                strides = [s * len(masks) for s in strides] + [1]
                tables[-1] = (merged, [*members, i], strides)
            else:
                tables.append((masks, [i], [1]))
        return tables

    def raw(self, tables: list[np.ndarray], indexes: list[np.ndarray]) -> np.ndarray:
        """The raw scores (rows x k): row r's leaf masks are `tables[i][indexes[i][r]]`
        ANDed over i. The same floats as scikit-learn's `_raw_predict`."""
        rows = len(indexes[0])
        out = np.empty((rows, self.k), dtype=np.float64)
        for start in range(0, rows, BLOCK_ROWS):
            end = min(rows, start + BLOCK_ROWS)
            alive = tables[0].take(indexes[0][start:end], axis=0)  # (rows x trees) words
            for table, index in zip(tables[1:], indexes[1:], strict=True):
                alive &= table.take(index[start:end], axis=0)
            out[start:end] = self._sum_leaves(alive)
        return out

    def _sum_leaves(self, alive: np.ndarray) -> np.ndarray:
        # the lowest set bit is the row's leaf; its index is the exponent of its float
        lowest = np.negative(alive)
        lowest &= alive
        if self.dtype == np.uint32:
            exponent = lowest.astype(np.float32).view(np.int32)
            exponent >>= 23
            bias = 127
        else:
            exponent = lowest.astype(np.float64).view(np.int64)
            exponent >>= 52
            bias = 1023
        leaf = exponent.T.astype(np.intp)  # (trees x rows): a tree's leaves in one row
        leaf += self._offsets[:, None] - bias
        leaf_values = self.values.take(leaf)
        raw = np.empty((len(alive), self.k), dtype=np.float64)
        for c, (first, last) in enumerate(self._class_trees):
            # the baseline, then the trees in order, one by one: as scikit-learn adds them
            raw[:, c] = np.add.reduce(
                leaf_values[first:last], axis=0, initial=float(self.baseline[c])
            )
        return raw

    def link(self, raw: np.ndarray) -> np.ndarray:
        """Probabilities (rows x classes) from raw scores, or a regressor's values."""
        if self.regression:
            return raw[:, 0]
        if self.k == 1:
            return binary_proba(expit(raw[:, 0]))
        return softmax(raw)
