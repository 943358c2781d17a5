"""LightGBM and XGBoost scikit-learn models read from their own tree dumps into the ONNX
`TreeEnsemble` graph the HistGradientBoosting path already runs (`onnx_graph`, `trees.
OnnxTrees`): the same evaluator, the same serving artifact (`trees.onnx`), no compiler at
load time.

Why this and not Treelite 4.8 + TL2cgen 1.0 or lleaves (measured 2026-12-03 on this 2-core
machine, busy: load average 12-19, so absolute times are inflated and only ratios within
one run count; `benchmarks/bench_compiled_trees.py --treelite`, 100 rounds, 20,000 churn
rows, the training code's pipeline shape):

- TL2cgen writes C and runs gcc when a model is loaded: 93 s for the binary LightGBM model
  and 354 s for the 4-class one (400 trees) here, plus a C compiler in the model-API image
  (neither packages.txt nor the Dockerfile installs one). Its predictions equalled LightGBM's
  exactly; per call it was as fast as ours at 1 row (0.016 vs 0.015 ms binary; 0.014 vs
  0.041 ms multiclass) and, single-threaded, 2.2x slower (binary) / 1.2x faster
  (multiclass, 105 vs 121 ms) at 1,000 rows against our 2 threads. A load that takes
  minutes loses more than those microseconds win: a restart or scale-up must be fast.
- lleaves compiles LightGBM only (XGBoost would need a second path) through LLVM, also at
  load time.
- onnxruntime's `TreeEnsemble` (already locked and loaded for HistGradientBoosting, no
  compiler at load: the graph is built in ~10-50 ms) against the libraries' own predict on
  the same preprocessed matrix, medians: LightGBM binary 9.7x faster at 1 row, 1.2x at
  1,000; multiclass 6.5x / 1.5x; the whole request (preprocessing + trees) against the
  pipeline's predict_proba 210x / 4.0x and 226x / 2.1x. XGBoost (binary / multiclass /
  regression): 5.4x / 3.2x / 7.1x faster at 1 row, but 0.4x / 0.5x / 0.3x of XGBoost's
  own predict at 1,000 rows (wall clock on the busy machine; in CPU time, one thread,
  100-tree regressor: 4.1 ms graph + 0.4 ms float32 sum against XGBoost's 3.1 ms, 0.7x):
  the exact float32 order below needs one graph output per tree (a single summed output
  takes 3.2 ms but rounds differently); the whole request is still 2.3x / 1.0x / 1.9x the
  pipeline's. Since then, batches of `trees.MASK_ROWS` rows or more take the leaf masks
  (`masks.py`, the same bits): 1,000 rows, binary, 4.9 -> 1.1 ms of CPU.

The dumps are the libraries' documented formats (LightGBM `Booster.dump_model`, XGBoost
`save_raw("json")`), read without importing either library in the server.

What each format means, translated exactly (and then checked by `verify.py`):

- LightGBM: numerical splits `x <= threshold` in float64 (dumped with 17 digits); a value
  is missing per the split's `missing_type`: `NaN` -> NaN takes `default_left`; `None` ->
  NaN is read as 0.0 (so it takes the branch 0.0 takes); `Zero` -> NaN and |x| <= 1e-35
  take `default_left` (the near-zeros are set to NaN before the graph, which requires every
  split on that feature to be `Zero`). The init score (boost_from_average) is already in
  the first tree's leaves; `average_output` (random-forest mode) divides by the number of
  iterations; trees of a multiclass model take turns per class (tree i -> class i % k).
  Objectives: `binary` with sigmoid 1 (predict_proba = [1 - p, p]), `multiclass`
  (softmax), identity regression losses. Categorical splits (`decision_type` `==`, the
  dump's threshold "1||4||9" lists the categories that go left) become
  `TreeArrays.is_categorical` + `cat_bitset`: LightGBM's `CategoricalDecision` takes the
  code `int(x)` (truncated), sends NaN, negative codes and codes past the bitset right,
  whatever the split's `missing_type` (measured on LightGBM 4.7: `test_categorical_splits`).
  Linear trees, other objectives: `UnsupportedPipeline` with the reason (the model is then
  served by scikit-learn).
- XGBoost: splits `x < split_condition` on float32 inputs with float32 thresholds and leaf
  values summed in float32, tree after tree, onto the base margin; missing values (NaN)
  take the `default_left` child. The graph is float32 too and gives each tree's leaf value
  (one output per tree, the base margins as leaf-only trees in front); numpy then sums
  them left to right in float32 (`np.add.accumulate`), the order XGBoost's CPU predictor
  uses, so regressor outputs equal XGBoost's float32 values bit for bit (onnxruntime's own
  float32 sum differed by 1-2 ulp on 85% of rows). `base_score` is stored in the objective's
  output space: logit of it for `binary:logistic`, as is for `multi:softprob` (a margin per
  class) and identity regression. Early stopping's `best_iteration` limits the trees as
  `predict` does. `gbtree` only (not `dart`, `gblinear`), single target. Categorical
  splits (`split_type` 1, `feature_types` "c"): the node's `categories` go right, any
  other code (unseen, negative, too large) left, NaN by `default_left`; read as
  `TreeArrays`' "in the set -> left" with the children (and NaN's side) swapped. XGBoost
  takes a negative fraction such as -0.5 as invalid where the leaf masks truncate it to
  0: not a code the compiled encoder writes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from include.ml_pipeline.serving.compiled.onnx_graph import (
    DOUBLE,
    FLOAT,
    LEQ,
    LT,
    TreeArrays,
    categories_bitset,
    tree_ensemble_model,
)
from include.ml_pipeline.serving.compiled.predictor import UnsupportedPipeline
from include.ml_pipeline.serving.compiled.trees import OnnxTrees

#: LightGBM objectives whose prediction is the raw score.
LIGHTGBM_IDENTITY = ("regression", "regression_l1", "huber", "fair", "quantile", "mape")
#: XGBoost objectives whose prediction is the margin.
XGBOOST_IDENTITY = ("reg:squarederror", "reg:absoluteerror", "reg:pseudohubererror")


def library_of(est: Any) -> str | None:
    """'lightgbm' / 'xgboost' for those libraries' scikit-learn estimators and their
    subclasses (training's `LabelledXGBClassifier`), else None (read from the classes'
    modules: neither library is imported here)."""
    for cls in type(est).__mro__:
        root = cls.__module__.split(".", 1)[0]
        if root in ("lightgbm", "xgboost"):
            return root
    return None


@dataclass
class Ensemble:
    """What `OnnxTrees` needs, read from a library's dump."""

    trees: list[TreeArrays]
    k: int
    regression: bool
    mode: int
    float32: bool
    zero_as_missing: tuple[int, ...] = ()
    #: The graph has one output per tree, summed in this order per output (`OnnxTrees`).
    ordered_sum: list[list[int]] | None = None

    def compile(self, n_features: int, name: str) -> OnnxTrees:
        graph = tree_ensemble_model(
            self.trees,
            self.k if self.ordered_sum is None else len(self.trees),
            n_features,
            mode=self.mode,
            elem_type=FLOAT if self.float32 else DOUBLE,
            name=name,
        )
        return OnnxTrees(
            graph,
            self.k,
            np.zeros(self.k),
            self.regression,
            float32=self.float32,
            zero_as_missing=self.zero_as_missing,
            ordered_sum=self.ordered_sum,
        )


def compile_booster(est: Any) -> tuple[str, OnnxTrees]:
    """(estimator path, evaluator) for a fitted LightGBM or XGBoost scikit-learn model.
    Raises `UnsupportedPipeline` naming what is not translated."""
    library = library_of(est)
    if library == "lightgbm":
        ensemble = lightgbm_ensemble(est)
    elif library == "xgboost":
        ensemble = xgboost_ensemble(est)
    else:
        raise UnsupportedPipeline(f"{type(est).__name__} is neither LightGBM nor XGBoost")
    n_features = int(est.n_features_in_)
    try:
        return f"onnx-{library}", ensemble.compile(n_features, library)
    except ImportError as exc:
        raise UnsupportedPipeline(f"onnxruntime is not installed ({exc})") from exc


# LightGBM ------------------------------------------------------------------------------


def lightgbm_ensemble(est: Any) -> Ensemble:
    """The trees of a fitted `LGBMClassifier` / `LGBMRegressor` from `dump_model()`."""
    booster = est.booster_
    iterations = getattr(est, "best_iteration_", None) or None
    dump = booster.dump_model(num_iteration=iterations)
    objective = str(dump.get("objective", "")).split()
    name = objective[0] if objective else ""
    options = dict(o.split(":", 1) for o in objective[1:] if ":" in o)
    per_iteration = int(dump["num_tree_per_iteration"])
    regression = not hasattr(est, "classes_")
    if regression:
        if name not in LIGHTGBM_IDENTITY:
            raise UnsupportedPipeline(f"LightGBM objective {name!r} (not an identity link)")
    elif name == "binary":
        if float(options.get("sigmoid", "1")) != 1.0:
            raise UnsupportedPipeline(f"LightGBM binary sigmoid {options['sigmoid']}")
    elif name != "multiclass":
        raise UnsupportedPipeline(f"LightGBM classifier objective {name!r}")
    if per_iteration != (1 if regression or name == "binary" else len(est.classes_)):
        raise UnsupportedPipeline(f"LightGBM with {per_iteration} trees per iteration")
    infos = dump["tree_info"]
    scale = 1.0
    if dump.get("average_output"):
        scale = 1.0 / max(1, len(infos) // per_iteration)
    missing_types: dict[int, set[str]] = {}
    trees = [
        _lightgbm_tree(info["tree_structure"], i % per_iteration, scale, missing_types)
        for i, info in enumerate(infos)
    ]
    zero = tuple(sorted(f for f, kinds in missing_types.items() if "Zero" in kinds))
    mixed = [f for f in zero if len(missing_types[f]) > 1]
    if mixed:
        raise UnsupportedPipeline(
            f"LightGBM feature(s) {mixed} split with zero-as-missing and other missing types"
        )
    return Ensemble(trees, per_iteration, regression, LEQ, False, zero)


def _lightgbm_tree(
    root: dict[str, Any], target: int, scale: float, missing_types: dict[int, set[str]]
) -> TreeArrays:
    feature: list[int] = []
    threshold: list[float] = []
    missing_left: list[bool] = []
    left: list[int] = []
    right: list[int] = []
    is_leaf: list[bool] = []
    value: list[float] = []
    categories: dict[int, list[int]] = {}  # node -> the codes its categorical split sends left
    stack: list[tuple[dict[str, Any], int, str]] = [(root, -1, "")]
    while stack:
        node, parent, side = stack.pop()
        index = len(feature)
        if parent >= 0:
            (left if side == "left" else right)[parent] = index
        if "split_index" not in node:  # a leaf
            if "leaf_coeff" in node or "leaf_features" in node:
                raise UnsupportedPipeline("LightGBM linear trees (linear_tree=True)")
            feature.append(0)
            threshold.append(0.0)
            missing_left.append(False)
            left.append(-1)
            right.append(-1)
            is_leaf.append(True)
            value.append(float(node["leaf_value"]) * scale)
            continue
        f = int(node["split_feature"])
        if node["decision_type"] == "==":  # category in the set -> left
            categories[index] = [int(c) for c in str(node["threshold"]).split("||")]
            if min(categories[index]) < 0:
                raise UnsupportedPipeline(f"LightGBM categorical split on {categories[index]}")
            t, goes_left = 0.0, False  # NaN: never in the set
        elif node["decision_type"] != "<=":
            raise UnsupportedPipeline(f"LightGBM decision_type {node['decision_type']!r}")
        else:
            t, kind = float(node["threshold"]), node["missing_type"]
            missing_types.setdefault(f, set()).add(kind)
            if kind in ("NaN", "Zero"):
                goes_left = bool(node["default_left"])
            elif kind == "None":
                goes_left = t >= 0.0  # LightGBM reads NaN as 0.0 here
            else:
                raise UnsupportedPipeline(f"LightGBM missing_type {kind!r}")
        feature.append(f)
        threshold.append(t)
        missing_left.append(goes_left)
        left.append(-1)
        right.append(-1)
        is_leaf.append(False)
        value.append(0.0)
        stack.append((node["right_child"], index, "right"))
        stack.append((node["left_child"], index, "left"))
    return TreeArrays(
        target,
        np.asarray(feature, dtype=np.intp),
        np.asarray(threshold, dtype=np.float64),
        np.asarray(missing_left, dtype=bool),
        np.asarray(left, dtype=np.intp),
        np.asarray(right, dtype=np.intp),
        np.asarray(is_leaf, dtype=bool),
        np.asarray(value, dtype=np.float64),
        *_categorical_arrays(categories, len(feature)),
    )


def _categorical_arrays(
    categories: dict[int, list[int]], nodes: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """`TreeArrays.is_categorical` and `cat_bitset` of a tree's categorical splits."""
    if not categories:
        return None, None
    is_categorical = np.zeros(nodes, dtype=bool)
    is_categorical[list(categories)] = True
    return is_categorical, categories_bitset([categories.get(i, []) for i in range(nodes)])


# XGBoost -------------------------------------------------------------------------------


def xgboost_ensemble(est: Any) -> Ensemble:
    """The trees of a fitted `XGBClassifier` / `XGBRegressor` from `save_raw("json")`."""
    booster = est.get_booster()
    model = json.loads(bytes(booster.save_raw(raw_format="json")))
    learner = model["learner"]
    objective = learner["objective"]["name"]
    gbm = learner["gradient_booster"]
    if gbm.get("name") != "gbtree":
        raise UnsupportedPipeline(f"XGBoost booster {gbm.get('name')!r} (gbtree only)")
    params = learner["learner_model_param"]
    if int(params.get("num_target", "1")) != 1:
        raise UnsupportedPipeline("XGBoost with several targets")
    regression = not hasattr(est, "classes_")
    k = 1 if regression else max(1, int(params.get("num_class", "0")))
    if regression:
        if objective not in XGBOOST_IDENTITY:
            raise UnsupportedPipeline(f"XGBoost objective {objective!r} (not an identity link)")
    elif objective == "binary:logistic":
        if len(est.classes_) != 2:
            raise UnsupportedPipeline("binary:logistic with more than two classes")
    elif objective != "multi:softprob" or k != len(est.classes_):
        raise UnsupportedPipeline(f"XGBoost classifier objective {objective!r}")
    base = _xgboost_base_margin(params["base_score"], objective, k)
    trees_json = gbm["model"]["trees"]
    tree_info = gbm["model"]["tree_info"]
    indptr = gbm["model"].get("iteration_indptr")
    best = booster.attr("best_iteration")
    if best is not None and indptr:
        stop = indptr[min(int(best) + 1, len(indptr) - 1)]
        trees_json, tree_info = trees_json[:stop], tree_info[:stop]
    # one graph output per tree, the base margins first: each output's float32 sum runs
    # from its base margin through its trees in order, as XGBoost's does
    trees = [TreeArrays.leaf(target, float(b)) for target, b in enumerate(base)]
    order: list[list[int]] = [[target] for target in range(k)]
    for tree, group in zip(trees_json, tree_info, strict=True):
        if not 0 <= int(group) < k:
            raise UnsupportedPipeline(f"XGBoost tree of output {group} in a {k}-output model")
        order[int(group)].append(len(trees))
        trees.append(_xgboost_tree(tree, len(trees)))
    return Ensemble(trees, k, regression, LT, True, ordered_sum=order)


def _xgboost_base_margin(text: str, objective: str, k: int) -> np.ndarray:
    """`base_score` (e.g. "[4.8E-1]") in margin space, float32 like XGBoost's."""
    values = [float(v) for v in str(text).strip("[]").split(",") if v.strip()]
    if len(values) == 1 and k > 1:
        values = values * k
    if len(values) != k:
        raise UnsupportedPipeline(f"XGBoost base_score {text!r} for {k} output(s)")
    if objective == "binary:logistic":
        p = np.float32(values[0])
        if not 0.0 < p < 1.0:
            raise UnsupportedPipeline(f"XGBoost base_score {text!r} is not a probability")
        values = [-math.log(float(np.float32(np.float32(1.0) / p - np.float32(1.0))))]
    return np.asarray(values, dtype=np.float32)


def _xgboost_tree(tree: dict[str, Any], target: int) -> TreeArrays:
    if int(tree["tree_param"].get("size_leaf_vector", "1")) > 1:
        raise UnsupportedPipeline("XGBoost vector leaves (multi_strategy)")
    left = np.asarray(tree["left_children"], dtype=np.intp)
    right = np.asarray(tree["right_children"], dtype=np.intp)
    is_leaf = left == -1
    default_left = np.asarray(tree["default_left"], dtype=bool)
    # split_conditions holds the threshold at splits and the leaf value at leaves, float32
    conditions = np.asarray(tree["split_conditions"], dtype=np.float64).astype(np.float32)
    threshold = np.where(is_leaf, 0.0, conditions.astype(np.float64))
    # categorical splits send the listed categories right and any other code (unseen,
    # negative, too large) left: as `TreeArrays` ("in the set -> left, others right") the
    # children swap, and so does the side NaN takes
    categories: dict[int, list[int]] = {}
    found = zip(
        tree.get("categories_nodes", []),
        tree.get("categories_segments", []),
        tree.get("categories_sizes", []),
        strict=True,
    )
    for node, start, size in found:
        categories[int(node)] = [int(c) for c in tree["categories"][start : start + size]]
        left[node], right[node] = right[node], left[node]
        default_left[node] = not default_left[node]
        threshold[node] = 0.0
    split_type = np.asarray(tree.get("split_type", []), dtype=np.intp)
    if set(np.flatnonzero(split_type != 0).tolist()) != set(categories):
        raise UnsupportedPipeline("XGBoost categorical splits without their categories")
    return TreeArrays(
        target,
        np.where(is_leaf, 0, np.asarray(tree["split_indices"], dtype=np.intp)),
        threshold,
        default_left,
        left,
        right,
        is_leaf,
        np.where(is_leaf, conditions.astype(np.float64), 0.0),
        *_categorical_arrays(categories, len(left)),
    )
