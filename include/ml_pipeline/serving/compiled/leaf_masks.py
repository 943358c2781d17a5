"""HistGradientBoosting, LightGBM and XGBoost trees evaluated for whole chunks at once, as
leaf bitmasks.

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
`missing_go_to_left` branch: it has its own bin. A column split on categories (LightGBM's
and XGBoost's categorical splits, `TreeArrays.cat_bitset`) has one bin per code up to the
largest code any split lists, one for every other code and one for NaN: the lookup is the
code itself. Trees with more than 64 leaves raise `UnsupportedPipeline` (the compiled
predictor scores instead).

LightGBM and XGBoost trees are read by the serving's `boosters.py` (the same translation
of their dumps, checked there): LightGBM splits `x <= t` in float64, its zero-as-missing
features' near-zeros binned as missing; XGBoost splits `x < t` on the input rounded to
float32 (bins found with `side="right"`), its leaf values summed in float32 from the base
margin, tree after tree, as XGBoost sums them. `tree_sets.library_raw` is what the masks must equal
(checked at load, `model._mask_problem`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from include.ml_pipeline.serving.compiled.onnx_graph import LIGHTGBM_ZERO, TreeArrays
from include.ml_pipeline.serving.compiled.predictor import (
    UnsupportedPipeline,
    binary_proba,
    expit,
    softmax,
)

#: Rows evaluated at a time: the (rows x trees) words of a block stay in cache.
BLOCK_ROWS = 2048
#: Largest merged table (rows of words): beyond it a lookup misses the cache more often
#: than merging saves.
TABLE_ROWS = 4096
#: ... and bytes: XGBoost's 201 trees of 64 leaves (64-bit words) merged to 4,096 rows made
#: a 6.6 MB table (9.7 MB of tables in all; capped: 1.9 MB, the same floats). 1,000 rows
#: through the numba kernel, CPU, eight alternated pairs at load 4-7 (2026-12-04): capped
#: / uncapped 0.82-1.04, median 0.99 (the gain only while other processes fill the shared
#: cache); 20,000 rows 0.98. The other benchmark models' tables stay under it.
TABLE_BYTES = 2 << 20
MAX_LEAVES = 64


def _leaf_order(tree: TreeArrays) -> tuple[list[int], dict[int, int]]:
    """The tree's leaves left to right, and per internal node the mask of the leaves of
    its left subtree (bit i: the i-th leaf)."""
    leaves: list[int] = []
    left_mask: dict[int, int] = {}
    is_leaf = tree.is_leaf.astype(bool)
    left, right = tree.left.tolist(), tree.right.tolist()

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


@dataclass
class TreeSet:
    """What `LeafMasks` reads, whichever library fitted the trees."""

    #: every tree, its `target` the output it adds to, in the model's order
    trees: list[TreeArrays]
    k: int
    #: per output, the value the sum starts from (the trees' leaves hold the rest)
    baseline: np.ndarray
    regression: bool
    #: splits go left on `x < t` (XGBoost), not `x <= t`
    strict: bool = False
    #: inputs rounded to float32 and leaf values summed in float32 (XGBoost)
    float32: bool = False
    #: features whose (near) zeros are missing values (LightGBM `zero_as_missing`)
    zero_as_missing: tuple[int, ...] = ()


def summed_in_order(trees: list[TreeArrays], ordered_sum: list[list[int]]) -> list[TreeArrays]:
    """The trees of a graph with one output per tree (`target` its own column) as
    `TreeSet.trees`: each tree adds to the output j whose `ordered_sum[j]` lists it, the
    outputs' trees in the order the library sums them."""
    return [replace(trees[i], target=j) for j, members in enumerate(ordered_sum) for i in members]


class _Buffers:
    """The arrays a block of up to `rows` rows is evaluated in (`LeafMasks.raw`), reused
    block after block and call after call: flat storage, viewed as contiguous arrays of
    the block's own row count (`views`)."""

    def __init__(self, rows: int, trees: int, dtype: Any, sum_dtype: Any) -> None:
        self.rows, self.trees = rows, trees
        size = rows * trees
        self.alive = np.empty(size, dtype=dtype)
        self.gathered = np.empty(size, dtype=dtype)
        self.floats = np.empty(size, dtype=np.float32 if dtype == np.uint32 else np.float64)
        self.leaf = np.empty(size, dtype=np.intp)
        self.values = np.empty(size, dtype=sum_dtype)

    def views(self, n: int) -> tuple[np.ndarray, ...]:
        """alive, gathered, floats (n x trees); leaf, values (trees x n)."""
        size, trees = n * self.trees, self.trees
        return (
            self.alive[:size].reshape(n, trees),
            self.gathered[:size].reshape(n, trees),
            self.floats[:size].reshape(n, trees),
            self.leaf[:size].reshape(trees, n),
            self.values[:size].reshape(trees, n),
        )


#: Buffers kept per `LeafMasks` for the next calls (one per caller running at once).
POOLED_BUFFERS = 4


class LeafMasks:
    """The trees of a fitted HistGradientBoosting, LightGBM or XGBoost estimator as
    per-feature leaf masks."""

    def __init__(self, found: TreeSet, library: str):
        self.library = library
        self.k, self.regression = found.k, found.regression
        self.strict, self.float32 = found.strict, found.float32
        self.zero_as_missing = frozenset(found.zero_as_missing)
        #: the dtype leaf values are summed in, as the library sums them
        self.sum_dtype = np.float32 if found.float32 else np.float64
        self.baseline = np.asarray(found.baseline, dtype=self.sum_dtype)
        # the trees grouped by class, each class's in the model's order
        targets = np.asarray([t.target for t in found.trees], dtype=np.intp)
        trees = [found.trees[i] for i in np.argsort(targets, kind="stable")]
        orders = [_leaf_order(tree) for tree in trees]
        widest = max(len(leaves) for leaves, _ in orders)
        if widest > MAX_LEAVES:
            raise UnsupportedPipeline(f"a tree with {widest} leaves (leaf masks hold 64)")
        self.dtype = np.uint32 if widest <= 32 else np.uint64
        self.full = self.dtype(np.iinfo(self.dtype).max)
        self.n_trees = len(orders)
        self.values = np.zeros((self.n_trees, widest), dtype=self.sum_dtype)
        splits: dict[int, list[tuple[float, int, int, bool]]] = {}
        category_splits: dict[int, list[tuple[np.ndarray, int, int, bool]]] = {}
        for t, (tree, (leaves, left_mask)) in enumerate(zip(trees, orders, strict=True)):
            self.values[t, : len(leaves)] = tree.value[leaves]
            for node, mask in left_mask.items():
                if tree.categorical_at(node):
                    category_splits.setdefault(int(tree.feature[node]), []).append(
                        (
                            tree.left_categories(node),
                            t,
                            int(self.full) & ~mask,
                            bool(tree.missing_left[node]),
                        )
                    )
                    continue
                splits.setdefault(int(tree.feature[node]), []).append(
                    (
                        float(tree.threshold[node]),
                        t,
                        int(self.full) & ~mask,
                        bool(tree.missing_left[node]),
                    )
                )
        #: per matrix column used by a split: (sorted thresholds, masks (bins + NaN) x trees)
        self.columns: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for column, found_splits in splits.items():
            thresholds = np.unique(np.asarray([s[0] for s in found_splits], dtype=np.float64))
            bins = len(thresholds) + 1
            masks: np.ndarray[Any, Any] = np.full(
                (bins + 1, self.n_trees), self.full, dtype=self.dtype
            )
            for threshold, t, ruled_out, nan_left in found_splits:
                # bin b holds the values past exactly b thresholds (above them; `strict`:
                # at or above): the split sends a row right from the bin past its
                # threshold on (NaN: unless it goes left)
                first = int(np.searchsorted(thresholds, threshold)) + 1
                masks[first:bins, t] &= self.dtype(ruled_out)
                if not nan_left:
                    masks[bins, t] &= self.dtype(ruled_out)
            self.columns[column] = (thresholds, masks)
        #: per categorical matrix column: the number of codes its table has a row for
        self.categorical: dict[int, int] = {}
        for column, found_category_splits in category_splits.items():
            if column in self.columns:
                raise UnsupportedPipeline(f"column {column} split both as number and category")
            codes = max(int(s[0].max()) + 1 for s in found_category_splits)
            self.categorical[column] = codes
            # rows 0..codes-1: that code; row codes: any other code (negative, larger);
            # row codes+1: NaN. A split sends a row right unless its code is in the set.
            masks = np.full((codes + 2, self.n_trees), self.full, dtype=self.dtype)
            for left_codes, t, ruled_out, nan_left in found_category_splits:
                right = np.ones(codes + 2, dtype=bool)
                right[left_codes] = False
                right[codes + 1] = not nan_left
                masks[right, t] &= self.dtype(ruled_out)
            self.columns[column] = (np.empty(0), masks)
        self._offsets = np.arange(self.n_trees, dtype=np.intp) * widest
        # trees in class order (each class's trees in the model's order): one slice each
        self._class_trees: list[tuple[int, int]] = []
        for c in range(self.k):
            first = len(self._class_trees) and self._class_trees[-1][1]
            self._class_trees.append((first, first + int(np.sum(targets == c))))

    def column_bins(self, column: int, values: np.ndarray) -> np.ndarray:
        """The bin of each of `values` (a matrix column) in its table."""
        thresholds, _ = self.columns[column]
        if self.float32:  # compared as the library compares: in float32
            values = values.astype(np.float32)
        if column in self.categorical:  # the libraries' code: the value truncated
            codes = self.categorical[column]
            with np.errstate(invalid="ignore"):
                inside = (values > -1.0) & (values < codes)  # False for NaN
            bins = np.where(inside, np.trunc(np.where(inside, values, 0.0)), codes)
            bins = bins.astype(np.intp)
            bins[np.isnan(values)] = codes + 1
            return bins
        missing = np.isnan(values)
        if column in self.zero_as_missing:
            missing |= np.abs(values) <= LIGHTGBM_ZERO
        bins = np.searchsorted(thresholds, values, side="right" if self.strict else "left")
        if missing.any():
            bins[missing] = len(thresholds) + 1
        return bins

    def column_masks(self, column: int, values: np.ndarray) -> np.ndarray:
        """The masks (len(values) x trees) of rows whose `column` holds `values`."""
        if column not in self.columns:
            return np.full((len(values), self.n_trees), self.full, dtype=self.dtype)
        return self.columns[column][1][self.column_bins(column, values)]

    def merge(self, inputs: list[MaskInput]) -> list[tuple[np.ndarray, list[int], list[int]]]:
        """`inputs` packed into tables of at most `TABLE_ROWS` rows and `TABLE_BYTES`
        bytes (small ones first):
        per table its masks, the inputs it holds and their strides (a row's table index
        is the sum of each input's bin times its stride)."""
        order = sorted(range(len(inputs)), key=lambda i: len(inputs[i].masks))
        row_bytes = self.n_trees * np.dtype(self.dtype).itemsize
        most = min(TABLE_ROWS, TABLE_BYTES // max(1, row_bytes))
        tables: list[tuple[np.ndarray, list[int], list[int]]] = []
        for i in order:
            masks = inputs[i].masks
            if tables and len(tables[-1][0]) * len(masks) <= most:
                table, members, strides = tables[-1]
                merged = (table[:, None, :] & masks[None, :, :]).reshape(-1, self.n_trees)
                strides = [s * len(masks) for s in strides] + [1]
                tables[-1] = (merged, [*members, i], strides)
            else:
                tables.append((masks, [i], [1]))
        return tables

    def raw(self, tables: list[np.ndarray], indexes: list[np.ndarray]) -> np.ndarray:
        """The raw scores (rows x k): row r's leaf masks are `tables[i][indexes[i][r]]`
        ANDed over i. The same floats as the library's raw scores (`tree_sets.library_raw`).

        Every block works in the same few buffers, kept for the next calls (at most
        `POOLED_BUFFERS`; a concurrent caller takes its own): a fresh (rows x trees) array
        per step made each block pay the allocator's page faults (glibc maps and unmaps
        arrays this large), 4x the lookups' own cost (measured: trees 2.1 -> 0.5 us per
        row, 100 trees, 65,536-row chunks), and fresh buffers per call still did when
        glibc returns the freed memory at once (a 1,000-row request of the `hgb_deep`
        regressor: 2.6 against 0.8 ms of CPU)."""
        rows = len(indexes[0])
        out = np.empty((rows, self.k), dtype=np.float64)
        size = min(rows, BLOCK_ROWS)
        pool = self.__dict__.setdefault("_pool", [])
        try:
            buffers = pool.pop()  # atomic: two threads never get the same buffers
        except IndexError:
            buffers = None
        if buffers is None or buffers.rows < size:
            buffers = _Buffers(size, self.n_trees, self.dtype, self.sum_dtype)
        for start in range(0, rows, BLOCK_ROWS):
            end = min(rows, start + BLOCK_ROWS)
            views = buffers.views(end - start)
            alive, gathered = views[0], views[1]
            # mode="clip": the indexes are in range, and "raise" would buffer `out`
            np.take(tables[0], indexes[0][start:end], axis=0, out=alive, mode="clip")
            for table, index in zip(tables[1:], indexes[1:], strict=True):
                np.take(table, index[start:end], axis=0, out=gathered, mode="clip")
                alive &= gathered
            self._sum_leaves(views, out[start:end])
        if len(pool) < POOLED_BUFFERS:
            pool.append(buffers)
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_pool"}  # no buffers

    def _sum_leaves(self, views: tuple[np.ndarray, ...], out: np.ndarray) -> None:
        alive, lowest, exponent, leaf, leaf_values = views
        # the lowest set bit is the row's leaf; its index is the exponent of its float
        np.negative(alive, out=lowest)
        lowest &= alive
        exponent[...] = lowest  # exact: a power of two
        if self.dtype == np.uint32:
            bits = exponent.view(np.int32)
            bits >>= 23
            bias = 127
        else:
            bits = exponent.view(np.int64)
            bits >>= 52
            bias = 1023
        leaf[...] = bits.T  # (trees x rows): a tree's leaves in one row
        leaf += self._offsets[:, None] - bias
        np.take(self.values, leaf, out=leaf_values, mode="clip")
        for c, (first, last) in enumerate(self._class_trees):
            # the baseline, then the trees in order, one by one: as the libraries add them
            # (XGBoost: in float32, as it sums)
            out[:, c] = np.add.reduce(
                leaf_values[first:last], axis=0, dtype=self.sum_dtype, initial=self.baseline[c]
            )

    def link(self, raw: np.ndarray) -> np.ndarray:
        """Probabilities (rows x classes) from raw scores, or a regressor's values."""
        if self.regression:
            return raw[:, 0]
        if self.k == 1:
            return binary_proba(expit(raw[:, 0]))
        return softmax(raw)
