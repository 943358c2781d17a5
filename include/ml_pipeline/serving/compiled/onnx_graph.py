"""The ONNX model of a tree ensemble (HistGradientBoosting, LightGBM, XGBoost), written as
protobuf bytes by a small hand-written encoder (field numbers from onnx/onnx.proto).

Why not the `onnx` package (checked with onnx 1.23.2, and onnxruntime 1.32.0 as locked):
`onnx.helper` builds the same model (the same attributes and values; only their order in
the bytes differs), onnxruntime runs both in float64 with identical outputs, and
`onnx.checker.check_model(full_check=True)` accepts the bytes written here. Building is
faster with it (7 ms against 17 ms for the 79-tree benchmark model), but importing it
costs ~40 ms after scikit-learn (~145 ms cold, ~55 ms of it onnx's own), paid where the
pipeline is compiled (compile child, release step), never by the API process. It is not
used because it is not a dependency: it is in neither requirements*.txt nor
requirements.lock, and adding it puts onnx (31 MB installed) and ml_dtypes (24 MB; 0.7.0
does not import with the locked NumPy 1.26, 0.5.4 does) into the model-API image for one
graph. If the project takes it on, this module is the only thing to replace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


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
    tensor = (
        _pb_int(1, len(array))
        + _pb_int(2, data_type)
        + _pb_bytes(9, np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes())
    )
    return _pb_bytes(5, _pb_bytes(1, name) + _pb_bytes(5, tensor) + _pb_int(20, 4))


def _value_info(name: str, width: int, elem_type: int) -> bytes:
    dims = _pb_bytes(1, _pb_bytes(2, "rows")) + _pb_bytes(1, _pb_int(1, width))
    tensor_type = _pb_int(1, elem_type) + _pb_bytes(2, dims)
    return _pb_bytes(1, name) + _pb_bytes(2, _pb_bytes(1, tensor_type))


#: ONNX element types (onnx.proto TensorProto.DataType) of the two precisions used.
FLOAT, DOUBLE = 1, 11
#: TreeEnsemble `nodes_modes`: BRANCH_LEQ (`x <= t` goes to the true branch: scikit-learn,
#: LightGBM) and BRANCH_LT (`x < t`: XGBoost).
LEQ, LT = 0, 1


@dataclass
class TreeArrays:
    """One tree as per-node arrays (node-local indices): `feature`, `threshold`,
    `missing_left` (NaN takes the true branch), `left` / `right` children (the true / false
    branch), `is_leaf` and `value` (read at leaves only); `target` is the output it adds to.
    Node 0 is the root."""

    target: int
    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    left: np.ndarray
    right: np.ndarray
    is_leaf: np.ndarray
    value: np.ndarray

    @classmethod
    def leaf(cls, target: int, value: float) -> TreeArrays:
        """A tree without splits that adds `value` to `target`."""
        zero = np.zeros(1, dtype=np.intp)
        return cls(
            target,
            zero,
            np.zeros(1),
            np.zeros(1, dtype=bool),
            zero,
            zero,
            np.ones(1, dtype=bool),
            np.asarray([value], dtype=np.float64),
        )


def hgb_tree_arrays(target: int, predictor: Any) -> TreeArrays:
    """A fitted scikit-learn `TreePredictor` as `TreeArrays`."""
    nodes = predictor.nodes
    return TreeArrays(
        target,
        nodes["feature_idx"].astype(np.intp),
        nodes["num_threshold"].astype(np.float64),
        nodes["missing_go_to_left"].astype(bool),
        nodes["left"].astype(np.intp),
        nodes["right"].astype(np.intp),
        nodes["is_leaf"].astype(bool),
        nodes["value"].astype(np.float64),
    )


def tree_ensemble_model(
    trees: list[TreeArrays],
    k: int,
    n_features: int,
    *,
    mode: int = LEQ,
    elem_type: int = DOUBLE,
    name: str = "hist_gradient_boosting",
) -> bytes:
    """The serialised ONNX model X (rows x n_features) -> raw scores (rows x k): one
    `ai.onnx.ml.TreeEnsemble` (opset 5) node summing `trees` per target, in their order,
    every split of the one `mode`; inputs, thresholds, leaf values and sums in `elem_type`
    (DOUBLE, or FLOAT for a model trained in float32 such as XGBoost's)."""
    roots: list[int] = []
    feature: list[int] = []
    split: list[float] = []
    missing_true: list[int] = []
    true_id: list[int] = []
    true_leaf: list[int] = []
    false_id: list[int] = []
    false_leaf: list[int] = []
    leaf_weight: list[float] = []
    leaf_target: list[int] = []
    for tree in trees:
        is_leaf = np.asarray(tree.is_leaf, dtype=bool)
        leaf_id: dict[int, int] = {}
        for i in np.nonzero(is_leaf)[0].tolist():
            leaf_id[i] = len(leaf_weight)
            leaf_weight.append(float(tree.value[i]))
            leaf_target.append(tree.target)
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
        lefts, rights = tree.left.tolist(), tree.right.tolist()
        features, thresholds = tree.feature.tolist(), tree.threshold.tolist()
        missing = tree.missing_left.tolist()
        for i in inner:
            left, right = lefts[i], rights[i]
            feature.append(int(features[i]))
            split.append(float(thresholds[i]))
            missing_true.append(int(bool(missing[i])))
            true_id.append(leaf_id[left] if is_leaf[left] else inner_id[left])
            true_leaf.append(int(is_leaf[left]))
            false_id.append(leaf_id[right] if is_leaf[right] else inner_id[right])
            false_leaf.append(int(is_leaf[right]))
    dtype = np.float32 if elem_type == FLOAT else np.float64
    attributes = b"".join(
        [
            _attr_int("aggregate_function", 1),  # SUM
            _attr_int("post_transform", 0),  # NONE: the link is applied in numpy
            _attr_int("n_targets", k),
            _attr_ints("tree_roots", roots),
            _attr_ints("nodes_featureids", feature),
            _attr_tensor("nodes_splits", np.asarray(split, dtype=dtype), elem_type),
            _attr_tensor("nodes_modes", np.full(len(feature), mode, dtype=np.uint8), 2),
            _attr_ints("nodes_missing_value_tracks_true", missing_true),
            _attr_ints("nodes_truenodeids", true_id),
            _attr_ints("nodes_trueleafs", true_leaf),
            _attr_ints("nodes_falsenodeids", false_id),
            _attr_ints("nodes_falseleafs", false_leaf),
            _attr_ints("leaf_targetids", leaf_target),
            _attr_tensor("leaf_weights", np.asarray(leaf_weight, dtype=dtype), elem_type),
        ]
    )
    node = (
        _pb_bytes(1, "X")
        + _pb_bytes(2, "Y")
        + _pb_bytes(3, "trees")
        + _pb_bytes(4, "TreeEnsemble")
        + attributes
        + _pb_bytes(7, "ai.onnx.ml")
    )
    graph = (
        _pb_bytes(1, node)
        + _pb_bytes(2, name)
        + _pb_bytes(11, _value_info("X", n_features, elem_type))
        + _pb_bytes(12, _value_info("Y", k, elem_type))
    )
    opsets = _pb_bytes(8, _pb_bytes(1, "") + _pb_int(2, 21)) + _pb_bytes(
        8, _pb_bytes(1, "ai.onnx.ml") + _pb_int(2, 5)
    )
    return _pb_int(1, 10) + _pb_bytes(2, "ml_pipeline") + _pb_bytes(7, graph) + opsets
