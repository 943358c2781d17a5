"""Compile a fitted scikit-learn pipeline into a `CompiledPredictor`.

The registered model is `Pipeline([("preprocess", ColumnTransformer), ("model",
estimator)])`; calling it costs ~4 ms per request, almost all of it pandas inside the
ColumnTransformer. The compiler reads the fitted parameters instead (SimpleImputer
statistics, StandardScaler mean/scale, OneHotEncoder categories with infrequent grouping,
the estimator's coefficients or trees: HistGradientBoosting's here, LightGBM's and
XGBoost's in `boosters.py`) and raises `UnsupportedPipeline` for any step, estimator or
setting it does not translate; such a model is served by its scikit-learn pipeline, and
the reason is kept (`GET /model`: `predict_path`, `fallback_reason`). The result is only
served once `verify.py` found it equal to the pipeline.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from include.ml_pipeline.serving.compiled.boosters import compile_booster, library_of
from include.ml_pipeline.serving.compiled.forest import forest_trees
from include.ml_pipeline.serving.compiled.onnx_graph import hgb_tree_arrays, tree_ensemble_model
from include.ml_pipeline.serving.compiled.predictor import (
    CategoricalBlock,
    CompiledPredictor,
    EstimatorProba,
    EstimatorValue,
    LinearValue,
    LogisticLink,
    NumericBlock,
    UnsupportedPipeline,
)
from include.ml_pipeline.serving.compiled.trees import HGBTrees, OnnxTrees


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
    regression = not hasattr(estimator, "classes_")
    classes = [] if regression else np.asarray(estimator.classes_).tolist()
    return CompiledPredictor(
        blocks, width, proba_fn, classes, estimator_path=estimator_path, regression=regression
    )


def transformer_steps(transformer: Any) -> list[Any]:
    """The steps of a ColumnTransformer entry: a Pipeline's steps, else the transformer."""
    from sklearn.pipeline import Pipeline

    if isinstance(transformer, Pipeline):
        return [step for _, step in transformer.steps if step not in (None, "passthrough")]
    return [transformer]


def _is_nan_marker(value: Any) -> bool:
    return isinstance(value, float) and value != value


def _compile_numeric(steps: list[Any], positions: list[int]) -> NumericBlock:
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import StandardScaler

    block = NumericBlock(np.asarray(positions, dtype=np.intp), None, None, None)
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


def _compile_categorical(steps: list[Any], positions: list[int]) -> CategoricalBlock:
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

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
        elif isinstance(step, OneHotEncoder | OrdinalEncoder) and encoder is None:
            encoder = step
        else:
            raise UnsupportedPipeline(f"categorical step {type(step).__name__}")
    if isinstance(encoder, OrdinalEncoder):
        return _compile_ordinal(encoder, positions, fill)
    if encoder is None:
        raise UnsupportedPipeline("categorical block without OneHotEncoder")
    if encoder.handle_unknown not in ("ignore", "infrequent_if_exist"):
        raise UnsupportedPipeline(f"OneHotEncoder handle_unknown={encoder.handle_unknown!r}")
    drop_idx = getattr(encoder, "drop_idx_", None)
    if drop_idx is not None and any(d is not None for d in drop_idx):
        raise UnsupportedPipeline("OneHotEncoder with drop")
    infrequent_all = getattr(encoder, "infrequent_categories_", None) or [None] * len(positions)
    lookups, widths, unknown = [], [], []
    for categories, infrequent, imputed in zip(
        encoder.categories_, infrequent_all, fill, strict=False
    ):
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
    return CategoricalBlock(list(positions), fill, lookups, widths, unknown)


def _compile_ordinal(encoder: Any, positions: list[int], fill: list[Any]) -> CategoricalBlock:
    """An `OrdinalEncoder` after the None imputer: each column's code (its category's
    index), unseen categories `unknown_value` (LightGBM sends negative codes to the
    "other" side of its categorical splits)."""
    if encoder.handle_unknown != "use_encoded_value" or not isinstance(encoder.unknown_value, int):
        raise UnsupportedPipeline("OrdinalEncoder without an integer unknown_value")
    if getattr(encoder, "infrequent_categories_", None) is not None:
        raise UnsupportedPipeline("OrdinalEncoder with infrequent categories")
    lookups, unknown = [], []
    for categories, imputed in zip(encoder.categories_, fill, strict=True):
        if imputed is None or any(not isinstance(c, str) for c in categories.tolist()):
            raise UnsupportedPipeline("OrdinalEncoder on non-imputed or non-string categories")
        lookup: dict[str | None, int] = {c: i for i, c in enumerate(categories.tolist())}
        lookup[None] = lookup.get(imputed, encoder.unknown_value)
        lookups.append(lookup)
        unknown.append(int(encoder.unknown_value))
    return CategoricalBlock(list(positions), fill, lookups, [1] * len(positions), unknown, True)


def _compile_transformer(preprocess: Any, numeric: list[str], categorical: list[str]):
    from sklearn.compose import ColumnTransformer

    if not isinstance(preprocess, ColumnTransformer):
        raise UnsupportedPipeline(f"preprocess step is {type(preprocess).__name__}")
    if getattr(preprocess, "sparse_output_", False):
        raise UnsupportedPipeline("sparse ColumnTransformer output")
    blocks: list[NumericBlock | CategoricalBlock] = []
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
        steps = [] if transformer == "passthrough" else transformer_steps(transformer)
        if all(c in numeric for c in names):
            blocks.append(_compile_numeric(steps, [numeric.index(c) for c in names]))
        elif all(c in categorical for c in names):
            blocks.append(_compile_categorical(steps, [categorical.index(c) for c in names]))
        else:
            raise UnsupportedPipeline(f"transformer {name!r} mixes column kinds")
    width = sum(b.width for b in blocks)
    return blocks, width


def _compile_logistic(est: Any) -> LogisticLink:
    if len(est.classes_) != 2 and getattr(est, "multi_class", "auto") == "ovr":
        raise UnsupportedPipeline("one-vs-rest LogisticRegression")
    return LogisticLink(
        np.asarray(est.coef_, dtype=np.float64).T, est.intercept_, binary=len(est.classes_) == 2
    )


def _compile_linear_regressor(est: Any) -> LinearValue:
    coef = np.asarray(est.coef_, dtype=np.float64)
    intercept = np.asarray(est.intercept_, dtype=np.float64)
    if coef.ndim != 1 or intercept.size != 1:
        raise UnsupportedPipeline("linear regressor with several outputs")
    return LinearValue(coef, float(intercept.reshape(-1)[0]))


def _compile_estimator(est: Any) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    from sklearn.base import is_regressor
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LogisticRegression
    from sklearn.linear_model._base import LinearModel

    if isinstance(est, LogisticRegression):
        return "numpy-logistic", _compile_logistic(est)
    if is_regressor(est) and isinstance(est, LinearModel):
        return "numpy-linear", _compile_linear_regressor(est)
    if isinstance(est, HistGradientBoostingClassifier | HistGradientBoostingRegressor):
        try:
            trees = HGBTrees(est)
        except UnsupportedPipeline:
            raise
        except Exception as exc:  # private attributes moved in another scikit-learn
            raise UnsupportedPipeline(f"HistGradientBoosting internals: {exc!r}") from exc
        try:
            arrays = [hgb_tree_arrays(k, predictor) for k, predictor in trees.predictors]
            graph = tree_ensemble_model(arrays, trees.k, int(est.n_features_in_))
            return "onnx-hgb", OnnxTrees(graph, trees.k, trees.baseline, trees.regression)
        except ImportError:
            return "numpy-hgb", trees
        except Exception as exc:
            warnings.warn(f"onnxruntime tree path unavailable ({exc!r}); using numpy", stacklevel=2)
            return "numpy-hgb", trees
    if library_of(est) is not None:
        return compile_booster(est)
    module = type(est).__module__
    if not module.startswith("sklearn."):
        raise UnsupportedPipeline(
            f"estimator {module}.{type(est).__name__} is not one the compiler knows "
            "(scikit-learn's own, LightGBM, XGBoost)"
        )
    if isinstance(est, RandomForestRegressor):
        return _compile_forest_regressor(est)
    if hasattr(est, "predict_proba"):
        if getattr(est, "feature_names_in_", None) is not None:
            raise UnsupportedPipeline("estimator was fitted on named columns")
        return f"numpy-{type(est).__name__}", EstimatorProba(est)
    if is_regressor(est):
        if getattr(est, "feature_names_in_", None) is not None:
            raise UnsupportedPipeline("estimator was fitted on named columns")
        return f"numpy-{type(est).__name__}", EstimatorValue(est)
    raise UnsupportedPipeline(f"estimator {type(est).__name__} has no predict_proba")


def _compile_forest_regressor(est: Any) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """A RandomForestRegressor: its averaged trees on onnxruntime (`forest.py`), else,
    without onnxruntime, scikit-learn's own `predict` on the compiled matrix."""
    graph = tree_ensemble_model(forest_trees(est), 1, int(est.n_features_in_), name="random_forest")
    try:
        return "onnx-rf", OnnxTrees(graph, 1, np.zeros(1), regression=True)
    except ImportError:
        return f"numpy-{type(est).__name__}", EstimatorValue(est)
