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
from itertools import pairwise
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
#: LightGBM) and BRANCH_LT (`x < t`: XGBoost); BRANCH_MEMBER (`x` is one of the node's
#: `membership_values`: LightGBM's and XGBoost's categorical splits).
LEQ, LT, MEMBER = 0, 1, 6


#: LightGBM's kZeroThreshold: |x| <= this is zero (a missing value under zero_as_missing).
LIGHTGBM_ZERO = float(np.float32(1e-35))


@dataclass
class TreeArrays:
    """One tree as per-node arrays (node-local indices): `feature`, `threshold`,
    `missing_left` (NaN takes the true branch), `left` / `right` children (the true / false
    branch), `is_leaf` and `value` (read at leaves only); `target` is the output it adds to.
    Node 0 is the root.

    Categorical splits (LightGBM's `decision_type` "==", XGBoost's `split_type` 1 with
    its children swapped, `boosters.py`): `is_categorical` (bool per node,
    None: no categorical split in the tree) and `cat_bitset` (uint32, nodes x words; zero
    rows at other nodes): at such a node the value's category code is `trunc(x)`, and it
    goes left when 0 <= code < 32 * words and bit `code % 32` of word `code // 32` is set;
    any other code (negative, too large, infinite) goes right; NaN follows `missing_left`.
    `threshold` is unused there. This is LightGBM's own rule (`Tree::CategoricalDecision`),
    checked against its predict (`tests/serving/compiled/test_categorical_splits.py`)."""

    target: int
    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    left: np.ndarray
    right: np.ndarray
    is_leaf: np.ndarray
    value: np.ndarray
    is_categorical: np.ndarray | None = None
    cat_bitset: np.ndarray | None = None

    def categorical_at(self, node: int) -> bool:
        """Whether `node` splits on a category set."""
        return self.is_categorical is not None and bool(self.is_categorical[node])

    def left_categories(self, node: int) -> np.ndarray:
        """The category codes a categorical split at `node` sends left, ascending."""
        assert self.cat_bitset is not None
        return bitset_categories(self.cat_bitset[node])

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


def categories_bitset(categories: list[list[int]]) -> np.ndarray:
    """Per node, the bitset (uint32 words, bit c: category c) of its categories; nodes x
    the widest node's words."""
    words = max((max(c) // 32 + 1 for c in categories if c), default=1)
    out = np.zeros((len(categories), words), dtype=np.uint32)
    for node, codes in enumerate(categories):
        for code in codes:
            out[node, code // 32] |= np.uint32(1 << (code % 32))
    return out


def bitset_categories(words: np.ndarray) -> np.ndarray:
    """The codes whose bits are set in one node's bitset words, ascending."""
    bits = np.unpackbits(np.asarray(words, dtype="<u4").view(np.uint8), bitorder="little")
    return np.flatnonzero(bits)


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
    every split of the one `mode` but categorical ones (`TreeArrays.is_categorical`), which
    are BRANCH_MEMBER nodes over their codes (exact: integer codes compare equal as floats;
    a fractional code, which LightGBM truncates, is not one the compiled encoders write);
    inputs, thresholds, leaf values and sums in `elem_type` (DOUBLE, or FLOAT for a model
    trained in float32 such as XGBoost's)."""
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
    modes: list[int] = []
    members: list[float] = []  # each categorical split's codes, then NaN, in node order
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
            modes.append(mode)
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
            if tree.categorical_at(i):
                split.append(0.0)
                modes.append(MEMBER)
                members.extend([*tree.left_categories(i).astype(float).tolist(), np.nan])
            else:
                split.append(float(thresholds[i]))
                modes.append(mode)
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
            _attr_tensor("nodes_modes", np.asarray(modes, dtype=np.uint8), 2),
            _attr_ints("nodes_missing_value_tracks_true", missing_true),
            _attr_ints("nodes_truenodeids", true_id),
            _attr_ints("nodes_trueleafs", true_leaf),
            _attr_ints("nodes_falsenodeids", false_id),
            _attr_ints("nodes_falseleafs", false_leaf),
            _attr_ints("leaf_targetids", leaf_target),
            _attr_tensor("leaf_weights", np.asarray(leaf_weight, dtype=dtype), elem_type),
        ]
        + (
            [_attr_tensor("membership_values", np.asarray(members, dtype=dtype), elem_type)]
            if members
            else []
        )
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


# Reading a graph back ------------------------------------------------------------------


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """The (field number, value) pairs of one protobuf message: varints as ints,
    length-delimited fields as bytes (the only wire types `tree_ensemble_model` writes)."""
    out: list[tuple[int, int | bytes]] = []
    i, end = 0, len(data)

    def varint() -> int:
        nonlocal i
        value, shift = 0, 0
        while True:
            byte = data[i]
            i += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    while i < end:
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            out.append((field, varint()))
        elif wire == 2:
            size = varint()
            out.append((field, data[i : i + size]))
            i += size
        else:
            raise ValueError(f"protobuf wire type {wire} is not one this reader knows")
    return out


def _one(fields: list[tuple[int, int | bytes]], number: int) -> bytes:
    found = [v for f, v in fields if f == number and isinstance(v, bytes)]
    if len(found) != 1:
        raise ValueError(f"expected one length-delimited field {number}, found {len(found)}")
    return found[0]


def _attribute_values(node: list[tuple[int, int | bytes]]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field, raw in node:
        if field != 5 or not isinstance(raw, bytes):
            continue
        attribute = _fields(raw)
        name = _one(attribute, 1).decode()
        kind = next(v for f, v in attribute if f == 20)
        if kind == 2:  # INT
            values[name] = next(v for f, v in attribute if f == 3)
        elif kind == 7:  # INTS, written one varint each
            values[name] = [v for f, v in attribute if f == 8]
        elif kind == 4:  # TENSOR
            tensor = _fields(_one(attribute, 5))
            data_type = next(v for f, v in tensor if f == 2)
            dtype = {FLOAT: "<f4", DOUBLE: "<f8", 2: "u1"}[int(data_type)]  # type: ignore[index]
            values[name] = np.frombuffer(_one(tensor, 9), dtype=dtype)
        else:
            raise ValueError(f"attribute {name!r} of type {kind!r} is not one this reader knows")
    return values


@dataclass
class ReadEnsemble:
    """What `read_tree_ensemble` finds in a graph written by `tree_ensemble_model`."""

    trees: list[TreeArrays]
    n_targets: int
    modes: frozenset[int]
    elem_type: int


def read_tree_ensemble(model_bytes: bytes) -> ReadEnsemble:
    """The trees of a graph written by `tree_ensemble_model`, in their order, each as
    `TreeArrays` (inner nodes first in the written order, then the leaves; thresholds and
    leaf values as float64). The inverse of `tree_ensemble_model`, so that an evaluator
    other than onnxruntime can be built from a serving artifact, which holds the graph
    only. Raises `ValueError` for bytes it did not write."""
    graph = _fields(_one(_fields(model_bytes), 7))
    nodes = [_fields(v) for f, v in graph if f == 1 and isinstance(v, bytes)]
    if len(nodes) != 1 or _one(nodes[0], 4) != b"TreeEnsemble":
        raise ValueError("the graph is not one TreeEnsemble node")
    a = _attribute_values(nodes[0])
    roots = [*a["tree_roots"], len(a["nodes_featureids"])]
    splits = np.asarray(a["nodes_splits"], dtype=np.float64)
    weights = np.asarray(a["leaf_weights"], dtype=np.float64)
    targets = a["leaf_targetids"]
    modes = np.asarray(a["nodes_modes"], dtype=np.intp)
    sets = iter(_member_sets(a.get("membership_values")))
    node_sets = {int(i): next(sets) for i in np.flatnonzero(modes == MEMBER)}
    trees = []
    for base, stop in pairwise(roots):
        inner = stop - base
        ids = [(a["nodes_truenodeids"][i], a["nodes_trueleafs"][i]) for i in range(base, stop)]
        ids += [(a["nodes_falsenodeids"][i], a["nodes_falseleafs"][i]) for i in range(base, stop)]
        leaves = sorted({node for node, leaf in ids if leaf})
        if inner == 1 and ids[0] == ids[1] and ids[0][1]:  # a tree without splits
            trees.append(TreeArrays.leaf(targets[ids[0][0]], float(weights[ids[0][0]])))
            continue
        local = {leaf: inner + j for j, leaf in enumerate(leaves)}

        def child(node: int, leaf: int, base: int = base, local: dict = local) -> int:
            return local[node] if leaf else node - base

        n = inner + len(leaves)
        is_leaf = np.zeros(n, dtype=bool)
        is_leaf[inner:] = True
        value = np.zeros(n)
        value[inner:] = weights[leaves]
        tree_targets = {targets[leaf] for leaf in leaves}
        if len(tree_targets) != 1:
            raise ValueError("a tree adds to several outputs")
        pad = [0] * len(leaves)
        categorical = [base + i in node_sets for i in range(inner)] + [False] * len(leaves)
        if any(categorical):
            is_categorical: np.ndarray | None = np.asarray(categorical, dtype=bool)
            bitset: np.ndarray | None = categories_bitset(
                [node_sets.get(base + i, []) for i in range(inner)] + [[]] * len(leaves)
            )
        else:
            is_categorical = bitset = None
        trees.append(
            TreeArrays(
                tree_targets.pop(),
                np.asarray(list(a["nodes_featureids"][base:stop]) + pad, dtype=np.intp),
                np.concatenate([splits[base:stop], np.zeros(len(leaves))]),
                np.asarray(list(a["nodes_missing_value_tracks_true"][base:stop]) + pad, dtype=bool),
                np.asarray([child(*ids[i]) for i in range(inner)] + [-1] * len(leaves)),
                np.asarray([child(*ids[inner + i]) for i in range(inner)] + [-1] * len(leaves)),
                is_leaf,
                value,
                is_categorical,
                bitset,
            )
        )
    return ReadEnsemble(
        trees, int(a["n_targets"]), frozenset(a["nodes_modes"].tolist()), int(_elem_type(a))
    )


def _member_sets(values: np.ndarray | None) -> list[list[int]]:
    """`membership_values` (each set's codes, then NaN) as one list of codes per set."""
    sets: list[list[int]] = [[]]
    for value in [] if values is None else values.tolist():
        if value != value:
            sets.append([])
        else:
            sets[-1].append(int(value))
    return sets[:-1]


def _elem_type(attributes: dict[str, Any]) -> int:
    return FLOAT if attributes["leaf_weights"].dtype == np.float32 else DOUBLE
