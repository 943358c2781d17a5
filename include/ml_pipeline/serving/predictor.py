"""Predictors: turn a validated `Batch` into labels and class probabilities.

The registered model is a scikit-learn `Pipeline([("preprocess", ColumnTransformer),
("model", estimator)])`. Calling it costs ~4 ms per request, almost all of it pandas
handling inside the ColumnTransformer. `compile_pipeline` reads the *fitted* parameters of
the preprocessing steps (SimpleImputer statistics, StandardScaler mean/scale, OneHotEncoder
categories with infrequent grouping) and of the estimator, and evaluates them with numpy
only:

* LogisticRegression: `X @ coef_.T + intercept_`, then the logistic / softmax link.
* HistGradientBoostingClassifier: the trees become one onnxruntime `TreeEnsemble` node
  (float64, exact up to summation order); without onnxruntime, small batches walk all
  trees at once with vectorised numpy and larger ones call the fitted tree predictors.
* any other estimator with `predict_proba` (e.g. RandomForest): called on the numpy matrix.

`verify_predictor` compares a compiled predictor with `pipeline.predict` /
`pipeline.predict_proba` (labels exactly, probabilities within `PROBA_TOLERANCE`). The
loader uses the compiled predictor only when that check passes and falls back to
`SklearnPredictor` (the pipeline itself) otherwise, or when a step is of a kind this module
does not know.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import numpy as np

from include.ml_pipeline.serving.batch import Batch

PROBA_TOLERANCE = 1e-6
SMALL_BATCH_ROWS = 24  # below this, HGB trees are walked in numpy, above in Cython
WIDE_BATCH_ROWS = 64  # from this size on, onnxruntime trees use predict_threads() threads
PATTERN_MIN_ROWS = 16  # from this size on, categorical rows are encoded as whole patterns
MAX_PATTERNS = 4096  # distinct categorical rows remembered per predictor


class UnsupportedPipeline(Exception):
    """The pipeline has a step or setting the compiler does not translate."""


@dataclass
class Prediction:
    """Labels (JSON-ready Python values) and probabilities (rows x classes) or None."""

    labels: list[Any]
    proba: np.ndarray | None
    label_index: np.ndarray | None = None


class SklearnPredictor:
    """The reference path: build the coerced frame and call the fitted pipeline."""

    path = "sklearn"

    def __init__(self, pipeline: Any, reason: str = ""):
        self.pipeline = pipeline
        self.reason = reason
        self.classes = list(np.asarray(pipeline.classes_).tolist())
        self.has_proba = hasattr(pipeline, "predict_proba")

    def predict(self, batch: Batch) -> Prediction:
        frame = batch.to_frame()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            labels = np.asarray(self.pipeline.predict(frame))
            proba = self.pipeline.predict_proba(frame) if self.has_proba else None
        return Prediction(labels=labels.tolist(), proba=proba)


# --------------------------------------------------------------------------- transforms


@dataclass
class _NumericBlock:
    positions: np.ndarray  # indices into batch.numeric
    fill: np.ndarray | None  # imputer statistics per column
    mean: np.ndarray | None
    scale: np.ndarray | None

    @property
    def width(self) -> int:
        return len(self.positions)

    def apply(self, batch: Batch, out: np.ndarray, offset: int) -> None:
        block = batch.numeric[:, self.positions]  # fancy indexing copies
        if self.fill is not None:
            missing = np.isnan(block)
            if missing.any():
                block = np.where(missing, self.fill, block)
        if self.mean is not None:
            block -= self.mean
        if self.scale is not None:
            block /= self.scale
        out[:, offset : offset + self.width] = block


@dataclass
class _CategoricalBlock:
    positions: list[int]  # indices into batch.categorical
    fill: list[Any]  # value that replaces None, per column (None: not imputed)
    # category -> output column within this feature; None -> the fill's column
    lookups: list[dict[str | None, int]]
    widths: list[int]
    unknown: list[int]  # output column for unseen categories, -1 for all zeros

    # Rows seen before, as whole one-hot patterns: a batch is encoded with one dict lookup
    # per row (a tuple of its categories) and one gather, instead of one lookup per value.
    # Bounded: past MAX_PATTERNS distinct rows, new ones take the per-column path.
    _pattern_ids: dict[tuple, int] = field(default_factory=dict, repr=False)
    _patterns: np.ndarray | None = field(default=None, repr=False)

    @property
    def width(self) -> int:
        return sum(self.widths)

    def apply(self, batch: Batch, out: np.ndarray, offset: int) -> None:
        columns = [batch.categorical[pos] for pos in self.positions]
        if batch.rows >= PATTERN_MIN_ROWS and len(columns) > 1:
            keys = list(zip(*columns, strict=True))
            ids = list(map(self._pattern_ids.get, keys))
            if None in ids and self._learn(keys):
                ids = list(map(self._pattern_ids.__getitem__, keys))
            if None not in ids:
                out[:, offset:offset + self.width] = self._patterns[ids]
                return
        self._encode(columns, out, offset)

    def _encode(self, columns: list[list[Any]], out: np.ndarray, offset: int) -> None:
        rows = out.shape[0]
        for values, lookup, width, unknown in zip(
            columns, self.lookups, self.widths, self.unknown, strict=False
        ):
            # `lookup` maps None (missing) to the imputed category's column, so one C-level
            # `map(dict.get, ...)` encodes the whole column.
            if rows == 1:
                index = lookup.get(values[0], unknown)
                if index >= 0:
                    out[0, offset + index] = 1.0
            else:
                index = np.fromiter(map(lookup.get, values, repeat(unknown, rows)),
                                    dtype=np.intp, count=rows)
                hit = index >= 0
                if hit.all():
                    out[np.arange(rows), offset + index] = 1.0
                else:
                    out[np.nonzero(hit)[0], offset + index[hit]] = 1.0
            offset += width

    def _learn(self, keys: list[tuple]) -> bool:
        """Add the unseen rows of `keys` to the pattern table; False when it is full."""
        new = list(dict.fromkeys(k for k in keys if k not in self._pattern_ids))
        known = len(self._pattern_ids)
        if known + len(new) > MAX_PATTERNS:
            return False
        encoded = np.zeros((len(new), self.width), dtype=np.float64)
        self._encode([list(column) for column in zip(*new, strict=True)], encoded, 0)
        patterns = encoded if self._patterns is None else np.vstack([self._patterns, encoded])
        ids = dict(self._pattern_ids)
        ids.update(zip(new, range(known, known + len(new)), strict=True))
        # patterns before ids: a reader that finds an id always finds its row
        self._patterns = patterns
        self._pattern_ids = ids
        return True


def _steps(transformer: Any) -> list[Any]:
    from sklearn.pipeline import Pipeline

    if isinstance(transformer, Pipeline):
        return [step for _, step in transformer.steps if step not in (None, "passthrough")]
    return [transformer]


def _is_nan_marker(value: Any) -> bool:
    return isinstance(value, float) and value != value


def _compile_numeric(steps: list[Any], positions: list[int]) -> _NumericBlock:
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import StandardScaler

    block = _NumericBlock(np.asarray(positions, dtype=np.intp), None, None, None)
    for step in steps:
        if step == "passthrough":
            continue
        if isinstance(step, SimpleImputer) and block.mean is None and block.fill is None:
            if not _is_nan_marker(step.missing_values) or step.add_indicator:
                raise UnsupportedPipeline("numeric SimpleImputer with non-NaN marker/indicator")
            stats = np.asarray(step.statistics_, dtype=np.float64)
            if len(stats) != len(positions) or np.isnan(stats).any():
                raise UnsupportedPipeline("numeric SimpleImputer drops empty columns")
            block.fill = stats
        elif isinstance(step, StandardScaler) and block.mean is None and block.scale is None:
            if step.mean_ is not None:
                block.mean = np.asarray(step.mean_, dtype=np.float64)
            if step.scale_ is not None:
                block.scale = np.asarray(step.scale_, dtype=np.float64)
        else:
            raise UnsupportedPipeline(f"numeric step {type(step).__name__}")
    return block


def _compile_categorical(steps: list[Any], positions: list[int]) -> _CategoricalBlock:
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    fill: list[Any] = [None] * len(positions)
    encoder = None
    for step in steps:
        if isinstance(step, SimpleImputer) and encoder is None:
            if step.missing_values is not None or step.add_indicator:
                raise UnsupportedPipeline("categorical SimpleImputer must impute None")
            stats = list(step.statistics_)
            if len(stats) != len(positions):
                raise UnsupportedPipeline("categorical SimpleImputer drops columns")
            fill = [str(s) for s in stats]
        elif isinstance(step, OneHotEncoder) and encoder is None:
            encoder = step
        else:
            raise UnsupportedPipeline(f"categorical step {type(step).__name__}")
    if encoder is None:
        raise UnsupportedPipeline("categorical block without OneHotEncoder")
    if encoder.handle_unknown not in ("ignore", "infrequent_if_exist"):
        raise UnsupportedPipeline(f"OneHotEncoder handle_unknown={encoder.handle_unknown!r}")
    drop_idx = getattr(encoder, "drop_idx_", None)
    if drop_idx is not None and any(d is not None for d in drop_idx):
        raise UnsupportedPipeline("OneHotEncoder with drop")
    infrequent_all = getattr(encoder, "infrequent_categories_", None) or [None] * len(positions)
    lookups, widths, unknown = [], [], []
    for categories, infrequent, imputed in zip(encoder.categories_, infrequent_all, fill,
                                               strict=False):
        if categories.dtype.kind not in "OU":
            raise UnsupportedPipeline("OneHotEncoder with non-string categories")
        if any(not isinstance(c, str) for c in categories.tolist()):
            raise UnsupportedPipeline("OneHotEncoder categories include non-strings (NaN)")
        rare = set(infrequent.tolist()) if infrequent is not None else set()
        frequent = [c for c in categories.tolist() if c not in rare]
        lookup = {c: i for i, c in enumerate(frequent)}
        width = len(frequent)
        rare_column = -1
        if rare:
            rare_column = width
            lookup.update({c: rare_column for c in rare})
            width += 1
        unseen = rare_column if encoder.handle_unknown == "infrequent_if_exist" else -1
        # A missing value (None) is encoded as its imputed category, else as unseen.
        lookup[None] = unseen if imputed is None else lookup.get(imputed, unseen)
        lookups.append(lookup)
        widths.append(width)
        unknown.append(unseen)
    return _CategoricalBlock(list(positions), fill, lookups, widths, unknown)


def _compile_transformer(preprocess: Any, numeric: list[str], categorical: list[str]):
    from sklearn.compose import ColumnTransformer

    if not isinstance(preprocess, ColumnTransformer):
        raise UnsupportedPipeline(f"preprocess step is {type(preprocess).__name__}")
    if getattr(preprocess, "sparse_output_", False):
        raise UnsupportedPipeline("sparse ColumnTransformer output")
    blocks = []
    for name, transformer, columns in preprocess.transformers_:
        if transformer == "drop" or (name == "remainder" and transformer == "drop"):
            continue
        if isinstance(columns, slice) or len(columns) == 0:
            if name == "remainder":
                continue
            raise UnsupportedPipeline("column selection by slice")
        names = list(columns)
        if any(not isinstance(c, str) for c in names):
            raise UnsupportedPipeline("columns selected by position")
        steps = [] if transformer == "passthrough" else _steps(transformer)
        if all(c in numeric for c in names):
            blocks.append(_compile_numeric(steps, [numeric.index(c) for c in names]))
        elif all(c in categorical for c in names):
            blocks.append(_compile_categorical(steps, [categorical.index(c) for c in names]))
        else:
            raise UnsupportedPipeline(f"transformer {name!r} mixes column kinds")
    width = sum(b.width for b in blocks)
    return blocks, width


# --------------------------------------------------------------------------- estimators


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def _binary(p1: np.ndarray) -> np.ndarray:
    return np.column_stack([1.0 - p1, p1])


def _expit(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class _Logistic:
    """LogisticRegression's `predict_proba` in numpy (binary: logistic, else softmax)."""

    def __init__(self, est: Any):
        self.coef = np.ascontiguousarray(np.asarray(est.coef_, dtype=np.float64).T)
        self.intercept = np.asarray(est.intercept_, dtype=np.float64)
        self.binary = len(est.classes_) == 2
        if not self.binary and getattr(est, "multi_class", "auto") == "ovr":
            raise UnsupportedPipeline("one-vs-rest LogisticRegression")

    @classmethod
    def from_parameters(cls, coef: np.ndarray, intercept: np.ndarray, binary: bool):
        """Rebuild from stored parameters (`coef` already features x outputs)."""
        link = cls.__new__(cls)
        link.coef = np.ascontiguousarray(coef, dtype=np.float64)
        link.intercept = np.asarray(intercept, dtype=np.float64)
        link.binary = binary
        return link

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = x @ self.coef + self.intercept
        return _binary(_expit(z[:, 0])) if self.binary else _softmax(z)


def _compile_logistic(est: Any) -> Callable[[np.ndarray], np.ndarray]:
    return _Logistic(est)


class _EstimatorProba:
    """Any other fitted estimator's `predict_proba` on the numpy matrix."""

    def __init__(self, est: Any):
        self.est = est

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.est.predict_proba(x)


class _HGBTrees:
    """All trees of a fitted HistGradientBoostingClassifier, flattened for numpy."""

    def __init__(self, est: Any):
        if getattr(est, "_preprocessor", None) is not None:
            raise UnsupportedPipeline("HistGradientBoosting with its own categorical encoder")
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
        if self.k == 1:
            return _binary(_expit(raw[:, 0]))
        return _softmax(raw)


class _OnnxTrees:
    """The same trees as `_HGBTrees`, evaluated by onnxruntime's `TreeEnsemble` operator
    (ai.onnx.ml opset 5) in float64: splits `x <= threshold` with NaN following
    `missing_go_to_left`, leaf values summed per class, so the raw scores equal
    scikit-learn's up to summation order (~1e-15). About 2x faster than scikit-learn's
    predictor on 1,000 rows and 20x faster on one row. Holds only the serialised graph
    (no scikit-learn objects), so a pickled predictor loads with numpy + onnxruntime.

    Two sessions over the same graph: a single-threaded one for small batches (a thread
    hand-off costs more than it saves there) and, for batches of `WIDE_BATCH_ROWS` or
    more, one with `predict_threads()` threads (1,000 rows: 3.3 -> 1.9 ms on 2 cores)."""

    def __init__(self, trees: _HGBTrees, n_features: int):
        self.k = trees.k
        self.baseline = trees.baseline
        self.model_bytes = _tree_ensemble_onnx(trees, n_features)
        self._open_sessions()

    @classmethod
    def from_graph(cls, model_bytes: bytes, k: int, baseline: np.ndarray):
        """Rebuild from a stored graph (see `artifact.py`)."""
        trees = cls.__new__(cls)
        trees.__setstate__({"k": k, "baseline": baseline, "model_bytes": model_bytes})
        return trees

    def __getstate__(self) -> dict[str, Any]:
        return {"k": self.k, "baseline": self.baseline, "model_bytes": self.model_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._open_sessions()

    def _open_sessions(self) -> None:
        self._session = _onnx_session(self.model_bytes, 1)
        threads = predict_threads()
        self._wide = _onnx_session(self.model_bytes, threads) if threads > 1 else self._session

    def __call__(self, x: np.ndarray) -> np.ndarray:
        session = self._wide if x.shape[0] >= WIDE_BATCH_ROWS else self._session
        raw = session.run(None, {"X": x})[0]
        raw += self.baseline
        if self.k == 1:
            return _binary(_expit(raw[:, 0]))
        return _softmax(raw)


def predict_threads() -> int:
    """Threads for one large batch: env `MODEL_API_PREDICT_THREADS`, else the usable cores
    (at most 2: the gain flattens while the event loop and the log writer need a core)."""
    value = os.environ.get("MODEL_API_PREDICT_THREADS", "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            raise ValueError(f"MODEL_API_PREDICT_THREADS must be an integer; got {value!r}"
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


# A minimal protobuf writer for the one ONNX graph built here (field numbers from
# onnx/onnx.proto), so serving needs onnxruntime only, not the `onnx` package.


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _pb_int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _pb_bytes(field: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _attr_int(name: str, value: int) -> bytes:  # AttributeProto type INT = 2
    return _pb_bytes(5, _pb_bytes(1, name) + _pb_int(3, value) + _pb_int(20, 2))


def _attr_ints(name: str, values: list[int]) -> bytes:  # INTS = 7
    body = _pb_bytes(1, name) + b"".join(_pb_int(8, v) for v in values) + _pb_int(20, 7)
    return _pb_bytes(5, body)


def _attr_tensor(name: str, array: np.ndarray, data_type: int) -> bytes:  # TENSOR = 4
    tensor = (_pb_int(1, len(array)) + _pb_int(2, data_type)
              + _pb_bytes(9, np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"))
                          .tobytes()))
    return _pb_bytes(5, _pb_bytes(1, name) + _pb_bytes(5, tensor) + _pb_int(20, 4))


def _value_info(name: str, width: int) -> bytes:
    dims = _pb_bytes(1, _pb_bytes(2, "rows")) + _pb_bytes(1, _pb_int(1, width))
    tensor_type = _pb_int(1, 11) + _pb_bytes(2, dims)  # elem_type DOUBLE = 11
    return _pb_bytes(1, name) + _pb_bytes(2, _pb_bytes(1, tensor_type))


def _tree_ensemble_onnx(trees: _HGBTrees, n_features: int) -> bytes:
    """An ONNX model X (float64, rows x n_features) -> raw scores without the baseline,
    one `ai.onnx.ml.TreeEnsemble` (opset 5) node."""
    roots, feature, split, missing_true = [], [], [], []
    true_id, true_leaf, false_id, false_leaf = [], [], [], []
    leaf_weight, leaf_target = [], []
    for k, predictor in trees.predictors:
        nodes = predictor.nodes
        is_leaf = nodes["is_leaf"].astype(bool)
        leaf_id: dict[int, int] = {}
        for i in np.nonzero(is_leaf)[0].tolist():
            leaf_id[i] = len(leaf_weight)
            leaf_weight.append(float(nodes["value"][i]))
            leaf_target.append(k)
        base = len(feature)
        roots.append(base)
        if is_leaf[0]:  # a tree without splits: one node whose branches both reach the leaf
            feature.append(0)
            split.append(0.0)
            missing_true.append(0)
            true_id.append(leaf_id[0])
            true_leaf.append(1)
            false_id.append(leaf_id[0])
            false_leaf.append(1)
            continue
        inner = np.nonzero(~is_leaf)[0].tolist()
        inner_id = {i: base + j for j, i in enumerate(inner)}
        for i in inner:
            left, right = int(nodes["left"][i]), int(nodes["right"][i])
            feature.append(int(nodes["feature_idx"][i]))
            split.append(float(nodes["num_threshold"][i]))
            missing_true.append(int(bool(nodes["missing_go_to_left"][i])))
            true_id.append(leaf_id[left] if is_leaf[left] else inner_id[left])
            true_leaf.append(int(is_leaf[left]))
            false_id.append(leaf_id[right] if is_leaf[right] else inner_id[right])
            false_leaf.append(int(is_leaf[right]))
    attributes = b"".join([
        _attr_int("aggregate_function", 1),  # SUM
        _attr_int("post_transform", 0),  # NONE: the link is applied in numpy
        _attr_int("n_targets", trees.k),
        _attr_ints("tree_roots", roots),
        _attr_ints("nodes_featureids", feature),
        _attr_tensor("nodes_splits", np.asarray(split, dtype=np.float64), 11),
        _attr_tensor("nodes_modes", np.zeros(len(feature), dtype=np.uint8), 2),  # LEQ
        _attr_ints("nodes_missing_value_tracks_true", missing_true),
        _attr_ints("nodes_truenodeids", true_id),
        _attr_ints("nodes_trueleafs", true_leaf),
        _attr_ints("nodes_falsenodeids", false_id),
        _attr_ints("nodes_falseleafs", false_leaf),
        _attr_ints("leaf_targetids", leaf_target),
        _attr_tensor("leaf_weights", np.asarray(leaf_weight, dtype=np.float64), 11),
    ])
    node = (_pb_bytes(1, "X") + _pb_bytes(2, "Y") + _pb_bytes(3, "trees")
            + _pb_bytes(4, "TreeEnsemble") + attributes + _pb_bytes(7, "ai.onnx.ml"))
    graph = (_pb_bytes(1, node) + _pb_bytes(2, "hist_gradient_boosting")
             + _pb_bytes(11, _value_info("X", n_features))
             + _pb_bytes(12, _value_info("Y", trees.k)))
    opsets = (_pb_bytes(8, _pb_bytes(1, "") + _pb_int(2, 21))
              + _pb_bytes(8, _pb_bytes(1, "ai.onnx.ml") + _pb_int(2, 5)))
    return _pb_int(1, 10) + _pb_bytes(2, "ml_pipeline") + _pb_bytes(7, graph) + opsets


def _compile_estimator(est: Any) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    if isinstance(est, LogisticRegression):
        return "numpy-logistic", _compile_logistic(est)
    if isinstance(est, HistGradientBoostingClassifier):
        try:
            trees = _HGBTrees(est)
        except UnsupportedPipeline:
            raise
        except Exception as exc:  # private attributes moved in another scikit-learn
            raise UnsupportedPipeline(f"HistGradientBoosting internals: {exc!r}") from exc
        try:
            return "onnx-hgb", _OnnxTrees(trees, int(est.n_features_in_))
        except ImportError:
            return "numpy-hgb", trees
        except Exception as exc:
            warnings.warn(f"onnxruntime tree path unavailable ({exc!r}); using numpy",
                          stacklevel=2)
            return "numpy-hgb", trees
    if hasattr(est, "predict_proba"):
        if getattr(est, "feature_names_in_", None) is not None:
            raise UnsupportedPipeline("estimator was fitted on named columns")
        return f"numpy-{type(est).__name__}", _EstimatorProba(est)
    raise UnsupportedPipeline(f"estimator {type(est).__name__} has no predict_proba")


@dataclass
class CompiledPredictor:
    """Numpy-only evaluation of a fitted preprocess + estimator pipeline."""

    blocks: list[Any]
    width: int
    proba_fn: Callable[[np.ndarray], np.ndarray]
    classes: list[Any]
    path: str = "compiled"
    estimator_path: str = field(default="")

    def transform(self, batch: Batch) -> np.ndarray:
        out = np.zeros((batch.rows, self.width), dtype=np.float64)
        offset = 0
        for block in self.blocks:
            block.apply(batch, out, offset)
            offset += block.width
        return out

    def predict(self, batch: Batch) -> Prediction:
        proba = self.proba_fn(self.transform(batch))
        index = proba.argmax(axis=1)
        classes = self.classes
        return Prediction(labels=[classes[i] for i in index.tolist()], proba=proba,
                          label_index=index)


def compile_pipeline(pipeline: Any, numeric: list[str], categorical: list[str]):
    """Translate a fitted `Pipeline([preprocess, estimator])` into a `CompiledPredictor`.

    Raises `UnsupportedPipeline` when a step is not one this module knows.
    """
    from sklearn.pipeline import Pipeline

    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
        raise UnsupportedPipeline("model is not a two-step scikit-learn Pipeline")
    preprocess, estimator = pipeline.steps[0][1], pipeline.steps[1][1]
    blocks, width = _compile_transformer(preprocess, list(numeric), list(categorical))
    n_features = getattr(estimator, "n_features_in_", width)
    if n_features != width:
        raise UnsupportedPipeline(f"estimator expects {n_features} features, compiled {width}")
    estimator_path, proba_fn = _compile_estimator(estimator)
    classes = np.asarray(estimator.classes_).tolist()
    return CompiledPredictor(blocks, width, proba_fn, classes, estimator_path=estimator_path)


def verify_predictor(predictor: Any, pipeline: Any, batch: Batch) -> str | None:
    """Return None when `predictor` reproduces the pipeline on `batch` (labels equal,
    probabilities within PROBA_TOLERANCE), else a sentence describing the first mismatch.
    The batch is scored whole and row by row (both tree paths get exercised)."""
    frame = batch.to_frame()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected_labels = np.asarray(pipeline.predict(frame)).tolist()
        expected_proba = pipeline.predict_proba(frame)
    got = predictor.predict(batch)
    if got.labels != expected_labels:
        pairs = zip(got.labels, expected_labels, strict=False)
        bad = next(i for i, (a, b) in enumerate(pairs) if a != b)
        return f"label mismatch at row {bad}: {got.labels[bad]!r} != {expected_labels[bad]!r}"
    error = float(np.max(np.abs(got.proba - expected_proba))) if batch.rows else 0.0
    if error > PROBA_TOLERANCE:
        return f"probabilities differ by {error:.3g} (> {PROBA_TOLERANCE})"
    for i in range(min(batch.rows, 40)):
        one = Batch(
            batch.numeric_columns,
            batch.categorical_columns,
            batch.numeric[i : i + 1],
            tuple([column[i]] for column in batch.categorical),
        )
        row = predictor.predict(one)
        if row.labels[0] != expected_labels[i]:
            return f"single-row label mismatch at row {i}"
        if float(np.max(np.abs(row.proba[0] - expected_proba[i]))) > PROBA_TOLERANCE:
            return f"single-row probabilities differ at row {i}"
    return None


def verification_batch(pipeline: Any, numeric: list[str], categorical: list[str],
                       rows: int = 300, seed: int = 7) -> Batch:
    """A synthetic batch covering the fitted ranges: numeric values around the scaler's
    mean (5% missing), every known category (rare ones included), unseen categories and
    missing values."""
    rng = np.random.default_rng(seed)
    mean = np.zeros(len(numeric))
    scale = np.ones(len(numeric))
    categories: dict[str, list[str]] = {}
    try:
        preprocess = pipeline.steps[0][1]
        for _, transformer, columns in preprocess.transformers_:
            for step in _steps(transformer) if not isinstance(transformer, str) else []:
                for j, column in enumerate(columns):
                    if hasattr(step, "mean_") and step.mean_ is not None and column in numeric:
                        mean[numeric.index(column)] = step.mean_[j]
                        if step.scale_ is not None:
                            scale[numeric.index(column)] = step.scale_[j]
                    if hasattr(step, "categories_") and column in categorical:
                        categories[column] = [str(c) for c in step.categories_[j]]
    except Exception:
        pass
    matrix = mean + scale * rng.normal(size=(rows, len(numeric))) * 1.5
    matrix[rng.random(matrix.shape) < 0.05] = np.nan
    cats = []
    for column in categorical:
        known = categories.get(column) or ["a", "b"]
        values: list[Any] = list(rng.choice(known, rows))
        for i in range(rows):
            r = rng.random()
            if r < 0.05:
                values[i] = None
            elif r < 0.08:
                values[i] = "never_seen_before"
        cats.append([None if v is None else str(v) for v in values])
    return Batch(tuple(numeric), tuple(categorical), matrix, tuple(cats))


def concat_batches(a: Batch, b: Batch) -> Batch:
    return Batch(
        a.numeric_columns,
        a.categorical_columns,
        np.vstack([a.numeric, b.numeric]),
        tuple(x + y for x, y in zip(a.categorical, b.categorical, strict=False)),
    )
