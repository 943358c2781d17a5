"""Large batches of a float64 tree ensemble scored as leaf bitmasks (QuickScorer): batch
scoring's `LeafMasks` (`serving/compiled/leaf_masks.py`) on the compiled predictor's matrix.

Per 1,000-row request of the benchmark regressor (103 trees x 31 leaves, 24 matrix
columns), CPU time, medians: onnxruntime's `TreeEnsemble` 3.96 ms on one thread, leaf masks
1.46 ms; at 100 rows 0.35 against 0.17 ms; at one row onnxruntime wins (0.011 against
0.2 ms), so `trees.OnnxTrees` uses the masks from `trees.MASK_ROWS` rows on.

The trees are read back from the serialised graph (`onnx_graph.read_tree_ensemble`), the
only form a serving artifact keeps, and handed to `LeafMasks` as a `TreeSet`. The raw scores are the
baseline plus each tree's leaf value added in the model's order, as scikit-learn's and
LightGBM's own predict add them. XGBoost's float32 graphs (`x < t` on the input rounded to
float32, one output per tree) are read with their `ordered_sum`: each output's trees,
base margin first, summed in float32 in that order, as XGBoost sums them (1,000 rows of
the benchmark's 100-round binary model: trees 4.9 ms of CPU on onnxruntime's two threads
plus the ordered sum, 0.75 ms as masks). Trees of more than 64 leaves (a random forest's)
and graphs of another shape raise `UnsupportedPipeline` and stay on onnxruntime.

Once the numba kernels are loaded (`numba_trees`, warmed up in the background), a batch is
binned and summed by them in one pass (`numba_trees.MatrixSums`): the same floats,
checked against the numpy masks on its first batch.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from include.ml_pipeline.serving.compiled import numba_trees
from include.ml_pipeline.serving.compiled.leaf_masks import (
    LeafMasks,
    MaskInput,
    TreeSet,
    summed_in_order,
)
from include.ml_pipeline.serving.compiled.onnx_graph import (
    DOUBLE,
    FLOAT,
    LEQ,
    LT,
    MEMBER,
    read_tree_ensemble,
)
from include.ml_pipeline.serving.compiled.predictor import UnsupportedPipeline

log = logging.getLogger(__name__)


class MaskedTrees:
    """Raw scores (rows x k, baseline included) of the compiled matrix by leaf masks."""

    def __init__(
        self,
        model_bytes: bytes,
        k: int,
        baseline: np.ndarray,
        regression: bool,
        ordered_sum: list[list[int]] | None = None,
    ):
        """`ordered_sum`: `trees.OnnxTrees`'s, for a graph with one output per tree
        (XGBoost's float32 graphs): output j is the float32 sum of the trees
        `ordered_sum[j]` in that order."""
        read = read_tree_ensemble(model_bytes)
        trees = list(read.trees)
        if ordered_sum is None:
            if (
                read.elem_type != DOUBLE
                or not read.modes <= frozenset({LEQ, MEMBER})
                or read.n_targets != k
            ):
                raise UnsupportedPipeline(
                    "leaf masks take float64 `x <= t` / category-set graphs only"
                )
            if len(trees) % k or any(t.target != i % k for i, t in enumerate(trees)):
                raise UnsupportedPipeline("trees do not take turns per output")
        else:
            if (
                read.elem_type != FLOAT
                or not read.modes <= frozenset({LT, MEMBER})
                or read.n_targets != len(trees)
                or len(ordered_sum) != k
            ):
                raise UnsupportedPipeline(
                    "leaf masks take ordered sums of float32 `x < t` graphs with one "
                    "output per tree only"
                )
            trees = summed_in_order(trees, ordered_sum)
        baseline = np.asarray(baseline, dtype=np.float64).ravel()
        float32 = ordered_sum is not None
        found = TreeSet(trees, k, baseline, regression, strict=float32, float32=float32)
        self.trees = LeafMasks(found, "onnx")
        self.columns = sorted(self.trees.columns)
        merged = self.trees.merge(
            [MaskInput(self.trees.columns[c][1], f"column {c}") for c in self.columns]
        )
        self.tables = [table for table, _, _ in merged]
        # a row's index in table t is sum_j bin_j * strides[j, t]: one small matrix product
        # (exact: integers far below 2**53)
        self.strides = np.zeros((len(self.columns), len(merged)), dtype=np.float64)
        for t, (_, members, strides) in enumerate(merged):
            self.strides[members, t] = strides
        # columns split at one threshold (one-hot columns, most of a churn model's) are
        # binned together, with one comparison; the others one by one (`column_bins`)
        single = [j for j, c in enumerate(self.columns) if len(self.trees.columns[c][0]) == 1]
        self.single_at = np.asarray(single, dtype=np.intp)
        self.single_columns = np.asarray([self.columns[j] for j in single], dtype=np.intp)
        self.single_thresholds = np.asarray(
            [self.trees.columns[self.columns[j]][0][0] for j in single],
            dtype=np.float32 if float32 else np.float64,
        )
        self.others = [(j, c) for j, c in enumerate(self.columns) if j not in set(single)]

    def bins(self, x: np.ndarray) -> np.ndarray:
        """Each used column's bin per row (rows x columns, as floats): what
        `LeafMasks.column_bins` gives, column by column."""
        out = np.empty((x.shape[0], len(self.columns)), dtype=np.float64)
        if len(self.single_at):
            block = x[:, self.single_columns]
            if self.trees.float32:  # compared as the library compares: in float32
                block = block.astype(np.float32)
            # bin 1 past the threshold (`strict`: at or above it), NaN its own bin 2
            past = (
                np.greater_equal(block, self.single_thresholds)
                if self.trees.strict
                else np.greater(block, self.single_thresholds)
            )
            out[:, self.single_at] = past + 2.0 * np.isnan(block)
        for j, c in self.others:
            out[:, j] = self.trees.column_bins(c, x[:, c])
        return out

    def __call__(self, x: np.ndarray) -> np.ndarray:
        rows = x.shape[0]
        if not self.columns:  # no split at all: every tree is one leaf
            full = np.full((1, self.trees.n_trees), self.trees.full, self.trees.dtype)
            return self.trees.raw([full], [np.zeros(rows, dtype=np.intp)])
        kernels = numba_trees.ready(numba_trees.MATRIX, *self.dtypes)
        if kernels is not None and self.__dict__.get("_compiled") is not False:
            return self._compiled_raw(kernels, x)
        return self._numpy_raw(x)

    @property
    def dtypes(self) -> tuple[type, type]:
        """The masks' word and sum dtypes (the compiled kernel's specialisation)."""
        return self.trees.dtype, self.trees.sum_dtype

    def start_compiling(self) -> None:
        """Load the compiled kernel for these masks in the background (`numba_trees`)."""
        if self.columns:
            numba_trees.start_warm_up(numba_trees.MATRIX, *self.dtypes)

    def _numpy_raw(self, x: np.ndarray) -> np.ndarray:
        indexes = (self.bins(x) @ self.strides).astype(np.intp).T
        return self.trees.raw(self.tables, list(indexes))

    def answers_small(self, x: np.ndarray, rows: int) -> bool:
        """Whether the numba kernels answer a batch of fewer than `rows` rows (`x`; rows:
        `trees.MASK_ROWS`): what makes the masks worth it there (numpy's masks cost ~0.2 ms
        at one row). The kernels' first batch, checked against the numpy masks bit for
        bit, is `x`'s rows repeated to `rows` rows: under 64 rows numpy reduces a row's
        float32 sums pairwise, not in XGBoost's order, and would refuse the kernels."""
        if self.compiled:
            return True
        if (
            not self.columns
            or self.__dict__.get("_compiled") is False
            or numba_trees.ready(numba_trees.MATRIX, *self.dtypes) is None
        ):
            return False
        self(np.resize(x, (max(rows, 64), x.shape[1])))
        return self.compiled

    @property
    def compiled(self) -> bool:
        """The numba kernels answer (`numba_trees`), not numpy."""
        return isinstance(self.__dict__.get("_compiled"), numba_trees.MatrixSums)

    def _compiled_raw(self, kernels: Any, x: np.ndarray) -> np.ndarray:
        """The raw scores by the compiled kernels; on their first batch checked against
        the numpy masks bit for bit (any difference: numpy from then on, logged)."""
        known = self.__dict__.get("_compiled")
        if known is not None:
            return known(kernels, x)
        expected = self._numpy_raw(x)
        try:
            sums = numba_trees.MatrixSums(self)
            got = sums(kernels, x)
        except Exception as exc:  # a shape the kernels do not take: numpy answers
            log.warning("compiled leaf masks unavailable (%s): numpy", exc)
            self._compiled = False
            return expected
        if got.shape != expected.shape or not np.array_equal(got, expected):
            log.warning("compiled leaf masks differ from numpy's: numpy from now on")
            self._compiled = False
            return expected
        self.__dict__["_compiled"] = sums
        return got
