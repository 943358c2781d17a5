"""The numba-compiled kernels of `numba_trees.py` (imported only through it: it sets the
cache folder before numba is imported, and falls back to numpy when this fails).

Both kernels are the leaf-mask evaluation of `leaf_masks.LeafMasks` (QuickScorer) fused in
one pass per block of `BLOCK` rows: the row's mask words ANDed table after table, the
leaf of each tree its lowest set bit (`cttz`), the leaf values added tree after tree in the
model's order onto the baseline, in the dtype the library sums in (float64; XGBoost
float32): the same floats as `LeafMasks.raw`.

`matrix_sums` finds the rows' bins from a matrix (the model API's `masks.MaskedTrees`;
batch scoring's `MaskPlan` inputs side by side): per used column a branch-free binary
search among its sorted thresholds (as `np.searchsorted`, side "left"; `strict`: "right"),
NaN its own last bin, optionally the value rounded to float32 first (XGBoost); a column
split on categories (LightGBM's and XGBoost's native categorical splits) by its code.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit
from numba.extending import intrinsic

BLOCK = 64


@intrinsic
def _cttz(typingctx, x):
    """Count of trailing zero bits (LLVM `cttz`): the index of the lowest set bit."""

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))

    return x(x), codegen


@njit(nogil=True, cache=True, boundscheck=False)
def _sum_block(alive, n, start, values, class_of, base, acc, out):  # pragma: no cover - jit
    k = base.shape[0]
    for r in range(n):
        for c in range(k):
            acc[r, c] = base[c]
    for t in range(alive.shape[1]):
        c = class_of[t]
        for r in range(n):
            acc[r, c] += values[t, _cttz(alive[r, t])]  # type: ignore[call-arg]
    for r in range(n):
        for c in range(k):
            out[start + r, c] = acc[r, c]


@njit(nogil=True, cache=True, boundscheck=False)
def matrix_sums(
    x,
    columns,
    thresholds,
    threshold_at,
    codes,
    table_of,
    stride,
    tables,
    table_at,
    strict,
    round32,
    values,
    class_of,
    base,
    out,
):  # pragma: no cover - jit
    """out[r] = base + the leaf values of row r, whose masks are the AND over tables i of
    `tables[index_i]`: used column j (matrix column `columns[j]`, thresholds
    `thresholds[threshold_at[j]:threshold_at[j + 1]]`) adds its bin times `stride[j]` to
    the index of table `table_of[j]` (which starts at `table_at[i]`). A column split on
    categories (`codes[j] >= 0`, no thresholds) is binned as `LeafMasks.column_bins` bins
    it: its code (the value truncated) below `codes[j]`, `codes[j]` for any other value,
    `codes[j] + 1` for NaN."""
    rows = x.shape[0]
    n_tables = table_at.shape[0]
    n_trees = tables.shape[1]
    alive = np.empty((BLOCK, n_trees), dtype=tables.dtype)
    acc = np.empty((BLOCK, base.shape[0]), dtype=values.dtype)
    index = np.empty((BLOCK, n_tables), dtype=np.int64)
    value = np.empty(BLOCK, dtype=np.float64)
    lo = np.empty(BLOCK, dtype=np.int64)
    for start in range(0, rows, BLOCK):
        n = min(rows, start + BLOCK) - start
        for r in range(n):
            for i in range(n_tables):
                index[r, i] = table_at[i]
        for j in range(columns.shape[0]):
            first = threshold_at[j]
            count = threshold_at[j + 1] - first
            column = columns[j]
            to = table_of[j]
            step = stride[j]
            if codes[j] >= 0:
                c = codes[j]
                for r in range(n):
                    v = x[start + r, column]
                    if round32:
                        v = np.float64(np.float32(v))
                    if v != v:
                        b = c + 1
                    elif v > -1.0 and v < c:
                        b = np.int64(v)  # truncated toward zero, as np.trunc
                    else:
                        b = c
                    index[r, to] += b * step
                continue
            for r in range(n):
                v = x[start + r, column]
                if round32:
                    v = np.float64(np.float32(v))
                value[r] = v
                lo[r] = first
            # branch-free: the number of thresholds below v (`strict`: at or below), the
            # block's rows in lockstep: independent chains of loads the CPU overlaps
            # (one row's search after the other: 10-15% more CPU for the whole kernel,
            # 1,000 rows of the default LightGBM / XGBoost candidates)
            m = count
            while m > 1:
                half = m >> 1
                for r in range(n):
                    t = thresholds[lo[r] + half - 1]
                    lo[r] += half * ((t <= value[r]) if strict else (t < value[r]))
                m -= half
            for r in range(n):
                v = value[r]
                t = thresholds[lo[r]]
                b = lo[r] - first + ((t <= v) if strict else (t < v))
                if v != v:
                    b = count + 1
                index[r, to] += b * step
        for r in range(n):
            row = tables[index[r, 0]]
            for t in range(n_trees):
                alive[r, t] = row[t]
            for i in range(1, n_tables):
                row = tables[index[r, i]]
                for t in range(n_trees):
                    alive[r, t] &= row[t]
        _sum_block(alive, n, start, values, class_of, base, acc, out)
