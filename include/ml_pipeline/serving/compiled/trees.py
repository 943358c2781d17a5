"""HistGradientBoosting trees evaluated without the pipeline: by onnxruntime's float64
`TreeEnsemble` operator, or, when onnxruntime is missing, by a vectorised numpy walk
(small batches) and scikit-learn's own tree predictors (large ones).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from include.ml_pipeline.serving.compiled.onnx_graph import LIGHTGBM_ZERO
from include.ml_pipeline.serving.compiled.predictor import (
    UnsupportedPipeline,
    binary_proba,
    expit,
    softmax,
)

SMALL_BATCH_ROWS = 24  # below this, HGB trees are walked in numpy, above in Cython
WIDE_BATCH_ROWS = 64  # from this size on, onnxruntime trees use predict_threads() threads
#: From this size on, float64 graphs are scored as leaf masks (`masks.py`): 1,000 rows of
#: the benchmark regressor take 1.46 ms of CPU there against 3.96 ms on onnxruntime.
MASK_ROWS = 64
#: HistGradientBoostingRegressor losses whose prediction is the raw score itself.
IDENTITY_LINK_LOSSES = ("squared_error", "absolute_error", "quantile")


class HGBTrees:
    """All trees of a fitted HistGradientBoostingClassifier, flattened for numpy."""

    def __init__(self, est: Any):
        if getattr(est, "_preprocessor", None) is not None:
            raise UnsupportedPipeline("HistGradientBoosting with its own categorical encoder")
        #: A regressor: the raw score is the prediction (identity link losses only).
        self.regression = not hasattr(est, "classes_")
        if self.regression and est.loss not in IDENTITY_LINK_LOSSES:
            raise UnsupportedPipeline(f"HistGradientBoostingRegressor loss {est.loss!r}")
        self.k = int(est.n_trees_per_iteration_)
        self.baseline = np.asarray(est._baseline_prediction, dtype=np.float64).ravel()
        self.predictors = [(k, p) for it in est._predictors for k, p in enumerate(it)]
        self.bitsets, self.f_idx_map = est._bin_mapper.make_known_categories_bitsets()
        feat, thr, mgl, left, right, val, roots = [], [], [], [], [], [], []
        offset, depth = 0, 0
        for _, predictor in self.predictors:
            nodes = predictor.nodes
            if nodes["is_categorical"].any():
                raise UnsupportedPipeline("HistGradientBoosting categorical splits")
            n = len(nodes)
            leaf = nodes["is_leaf"].astype(bool)
            here = np.arange(n)
            roots.append(offset)
            feat.append(nodes["feature_idx"].astype(np.intp))
            thr.append(nodes["num_threshold"].astype(np.float64))
            mgl.append(nodes["missing_go_to_left"].astype(bool))
            left.append(np.where(leaf, here, nodes["left"]) + offset)
            right.append(np.where(leaf, here, nodes["right"]) + offset)
            val.append(nodes["value"].astype(np.float64))
            depth = max(depth, int(nodes["depth"].max()))
            offset += n
        self.feature = np.concatenate(feat)
        self.threshold = np.concatenate(thr)
        self.missing_left = np.concatenate(mgl)
        self.child = np.stack([np.concatenate(right), np.concatenate(left)])  # [go_left, node]
        self.value = np.concatenate(val)
        self.roots = np.asarray(roots, dtype=np.intp)
        self.depth = depth
        self.tree_class = np.asarray([k for k, _ in self.predictors], dtype=np.intp)

    def raw_small(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        index = np.tile(self.roots, (n, 1))
        rows = np.arange(n)[:, None]
        for _ in range(self.depth):
            values = x[rows, self.feature[index]]
            go_left = values <= self.threshold[index]
            nan = np.isnan(values)
            if nan.any():
                go_left = np.where(nan, self.missing_left[index], go_left)
            index = self.child[go_left.view(np.int8), index]
        leaf_values = self.value[index]
        if self.k == 1:
            return leaf_values.sum(axis=1, keepdims=True) + self.baseline
        return leaf_values.reshape(n, -1, self.k).sum(axis=1) + self.baseline

    def raw_large(self, x: np.ndarray) -> np.ndarray:
        raw = np.empty((x.shape[0], self.k), dtype=np.float64, order="F")
        raw[:] = self.baseline
        for k, predictor in self.predictors:
            raw[:, k] += predictor.predict(x, self.bitsets, self.f_idx_map, 1)
        return raw

    def __call__(self, x: np.ndarray) -> np.ndarray:
        raw = self.raw_small(x) if x.shape[0] < SMALL_BATCH_ROWS else self.raw_large(x)
        if self.regression:
            return raw[:, 0]
        if self.k == 1:
            return binary_proba(expit(raw[:, 0]))
        return softmax(raw)


class OnnxTrees:
    """A tree ensemble (the same trees as `HGBTrees`, or LightGBM's or XGBoost's, read by
    `boosters.py`) evaluated by onnxruntime's `TreeEnsemble` operator
    (ai.onnx.ml opset 5) in float64: splits `x <= threshold` with NaN following
    `missing_go_to_left`, leaf values summed per class, so the raw scores equal
    scikit-learn's up to summation order (~1e-15). About 2x faster than scikit-learn's
    predictor on 1,000 rows and 20x faster on one row. Holds only the serialised graph
    (no scikit-learn objects), so a pickled predictor loads with numpy + onnxruntime.

    Two sessions over the same graph: a single-threaded one for small batches (a thread
    hand-off costs more than it saves there) and, for batches of `WIDE_BATCH_ROWS` or
    more, one with `predict_threads()` threads (1,000 rows: 3.3 -> 1.9 ms on 2 cores).
    Graphs of HistGradientBoosting, LightGBM and XGBoost score batches of `MASK_ROWS` or
    more as leaf masks instead (`masks.py`: less CPU than both sessions, the libraries' own
    order of the sums); the wide session serves the large batches of the other graphs."""

    def __init__(
        self,
        model_bytes: bytes,
        k: int,
        baseline: np.ndarray,
        regression: bool = False,
        *,
        float32: bool = False,
        zero_as_missing: tuple[int, ...] = (),
        ordered_sum: list[list[int]] | None = None,
    ):
        """`model_bytes`: the serialised graph (`onnx_graph.tree_ensemble_model`), X ->
        raw scores of the `k` outputs without the `baseline`; `regression`: the raw score
        is the predicted value (no link). `float32`: the graph takes and sums float32 (a
        model trained in float32: XGBoost), so X is rounded to float32 first, as the
        library does. `zero_as_missing`: features whose (near) zeros are missing values
        (LightGBM `zero_as_missing`): set to NaN before the graph sees them.
        `ordered_sum`: the graph outputs one column per tree (its leaf value), and output
        j is the float32 sum of the columns `ordered_sum[j]` taken left to right (XGBoost
        sums that way; onnxruntime's own float32 sum rounds differently)."""
        self.k, self.baseline, self.model_bytes = k, baseline, model_bytes
        self.regression = regression
        self.float32 = float32
        self.zero_as_missing = tuple(int(i) for i in zero_as_missing)
        self.ordered_sum = None if ordered_sum is None else [list(c) for c in ordered_sum]
        self._open_sessions()

    def __getstate__(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "baseline": self.baseline,
            "model_bytes": self.model_bytes,
            "regression": self.regression,
            "float32": self.float32,
            "zero_as_missing": self.zero_as_missing,
            "ordered_sum": self.ordered_sum,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(
            {
                "regression": False,
                "float32": False,
                "zero_as_missing": (),
                "ordered_sum": None,
                **state,
            }
        )
        self._open_sessions()

    def _open_sessions(self) -> None:
        self._session = _onnx_session(self.model_bytes, 1)
        threads = predict_threads()
        self._wide = _onnx_session(self.model_bytes, threads) if threads > 1 else self._session
        self._masks: Any = None
        self._masks_built = False
        self._small_masks_apply = self.ordered_sum is not None or not np.any(self.baseline)

    def large_batch_path(self) -> str:
        """How batches of `MASK_ROWS` rows or more are scored now (`GET /model`)."""
        masks = self._masks if self._masks_built else None
        if masks is None:
            return (
                "onnxruntime"
                if self._masks_built
                else "leaf masks (built at the first large batch)"
            )
        return "leaf masks, numba" if masks.compiled else "leaf masks, numpy"

    def masks(self) -> Any:
        """The leaf-mask evaluator of this graph (`masks.py`), or None where it does not
        apply: float32 graphs without an `ordered_sum`, trees of more than 64 leaves.
        Built at the first large batch (~0.1-0.2 s for 100 trees: not paid at start-up)."""
        if not self._masks_built:
            usable = not self.float32 or self.ordered_sum is not None
            self._masks = _leaf_masks(self) if usable else None
            self._masks_built = True
            if self._masks is not None:
                self._masks.start_compiling()  # numba's kernel, off the request path
        return self._masks

    def small_masks(self, x: np.ndarray) -> Any:
        """The leaf masks for `x`, a batch under `MASK_ROWS` rows, or None (onnxruntime).

        Only once the masks exist (the load's 300-row warm-up builds them) and their numba
        kernel answers (`MaskedTrees.answers_small`), and only for the graphs whose masks
        add the same floats in the same order as this graph's onnxruntime path: XGBoost's
        (`ordered_sum`: both sum the trees' float32 leaf values left to right) and those
        without a baseline (LightGBM's: onnxruntime adds the trees in order from zero, the
        masks from the zero baseline). Not HistGradientBoosting's: its baseline is added
        first by the masks and last by onnxruntime, a last-bit difference.
        On the benchmark's XGBoost model, CPU per call at 1 / 8 / 32 rows: onnxruntime 34 /
        89 / 262 us, masks 14 / 17 / 27 us; LightGBM 18 / 47 / 160 against 14 / 16 / 21."""
        if not self._small_masks_apply or not self._masks_built:
            return None
        masks = self._masks
        if masks is None or not masks.answers_small(x, MASK_ROWS):
            return None
        return masks

    def __call__(self, x: np.ndarray) -> np.ndarray:
        rows = x.shape[0]
        session = self._wide if rows >= WIDE_BATCH_ROWS else self._session
        if self.zero_as_missing:
            x = x.copy()
            block = x[:, self.zero_as_missing]
            block[np.abs(block) <= LIGHTGBM_ZERO] = np.nan
            x[:, self.zero_as_missing] = block
        masks = self.masks() if rows >= MASK_ROWS else self.small_masks(x)
        if masks is not None:
            raw = masks(x)  # the baseline included
        elif self.float32:
            raw = session.run(None, {"X": x.astype(np.float32)})[0]
            if self.ordered_sum is not None:
                raw = self._sum_in_order(raw)
            raw = raw.astype(np.float64) + self.baseline
        else:
            raw = session.run(None, {"X": x})[0] + self.baseline
        if self.regression:
            return raw[:, 0]
        if self.k == 1:
            return binary_proba(expit(raw[:, 0]))
        return softmax(raw)

    def _sum_in_order(self, leaves: np.ndarray) -> np.ndarray:
        assert self.ordered_sum is not None  # only called when the graph outputs leaves
        # one row per tree: reducing axis 0 of a C-ordered array adds the rows one after
        # the other (each a contiguous vector add), the sequential float32 order XGBoost
        # uses; half the CPU of accumulating along the rows (1,000 rows x 101 trees:
        # 0.20 against 0.37 ms; x 404 trees, 4 classes: 1.19 against 2.48 ms). Not below
        # WIDE_BATCH_ROWS rows: a single row's (trees x 1) is reduced as one contiguous
        # vector, pairwise (another order)
        if leaves.shape[0] < WIDE_BATCH_ROWS:
            return np.column_stack(
                [np.add.accumulate(leaves[:, c], axis=1)[:, -1] for c in self.ordered_sum]
            )
        by_tree = np.ascontiguousarray(leaves.T)
        return np.column_stack([np.add.reduce(by_tree[c], axis=0) for c in self.ordered_sum])


def _leaf_masks(trees: OnnxTrees):
    """The leaf-mask evaluator of a graph (`masks.py`), or None where it does not
    apply (trees of more than 64 leaves, several outputs out of turn)."""
    from include.ml_pipeline.serving.compiled.masks import MaskedTrees

    try:
        return MaskedTrees(
            trees.model_bytes, trees.k, trees.baseline, trees.regression, trees.ordered_sum
        )
    except (UnsupportedPipeline, ValueError):
        return None


def predict_threads() -> int:
    """Threads for one large batch: env `MODEL_API_PREDICT_THREADS`, else the usable cores
    (at most 2: the gain flattens while the event loop and the log writer need a core)."""
    value = os.environ.get("MODEL_API_PREDICT_THREADS", "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            raise ValueError(
                f"MODEL_API_PREDICT_THREADS must be an integer; got {value!r}"
            ) from None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(2, cores))


def _onnx_session(model_bytes: bytes, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    # No spinning: an idle pool thread sleeps instead of competing with the event loop.
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
