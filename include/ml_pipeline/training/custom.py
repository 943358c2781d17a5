"""Your own estimator in a candidate: `"estimator": "package.module:name"`.

`name` is a class or a factory (any callable) that, called with the candidate's `params`
as keyword arguments, returns an unfitted scikit-learn-compatible estimator: it has `fit`
and `predict`, and `predict_proba` for a classification problem. The module must import
where the DAG runs and where the model is served: on Astro, put it under `include/` (it
ships in the image like the rest of the project) and spell it from the project root,
e.g. `include.custom_models.ratio_features:ratio_boosting_classifier`.

Where it goes in the model depends on the candidate's `input` key:

* `"preprocessed"` (the default): the estimator is the model step after the project's
  preprocessor, `Pipeline([("preprocess", ...), ("model", <yours>)])`; it receives the
  numeric matrix every built-in receives (numerics imputed and standardised, categoricals
  one-hot encoded).
* `"raw"`: the estimator (usually a whole `Pipeline` of your own) *is* the model: it
  receives the raw feature columns as a DataFrame (`features.coerce_features`: numeric
  columns float64 with NaN for missing, categorical columns text with None for missing)
  and does its own preprocessing.

Either way the model is logged like any other (MLflow's scikit-learn flavour, skops with
your types trusted), so `mlflow models serve` serves it, and the model API serves it by
the scikit-learn path (in its isolated worker) when the compiler does not know it.

`resolve` imports the object and `build` calls it; both raise `CustomEstimatorError`
naming the path, the reason and the fix (the caller adds the candidate's name).
"""

from __future__ import annotations

import importlib
import re
from typing import Any

#: `package.module:name` (dotted module, one attribute name).
IMPORT_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")
INPUTS = ("preprocessed", "raw")
_FIX_IMPORT = (
    "put the module under include/ (it ships in the image and is on PYTHONPATH) and spell "
    "it from the project root, e.g. include.custom_models.ratio_features:"
    "ratio_boosting_classifier"
)


class CustomEstimatorError(ValueError):
    """An import path that does not give a usable estimator; the message says why."""


def is_import_path(value: Any) -> bool:
    """True when `value` is spelt `package.module:name` (a built-in kind has no colon)."""
    return isinstance(value, str) and ":" in value


def resolve(path: str) -> Any:
    """The object `path` names (imported)."""
    if not IMPORT_PATH.match(path):
        raise CustomEstimatorError(
            f"estimator {path!r} is not an import path of the form package.module:name; "
            f"{_FIX_IMPORT}"
        )
    module_name, attribute = path.split(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module failing while it imports
        raise CustomEstimatorError(
            f"estimator {path!r} does not import: {type(exc).__name__}: {exc}; {_FIX_IMPORT}"
        ) from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise CustomEstimatorError(
            f"estimator {path!r}: module {module_name!r} has no attribute {attribute!r}; "
            "check the name after the colon"
        ) from None


def build(path: str, params: dict[str, Any], classification: bool) -> Any:
    """A fresh, unfitted estimator from `path` called with `params`, checked to be one."""
    target = resolve(path)
    if not callable(target):
        raise CustomEstimatorError(
            f"estimator {path!r} is a {type(target).__name__}, not a class or a factory; "
            "point it at a class or a function that returns an unfitted estimator"
        )
    try:
        estimator = target(**params)
    except Exception as exc:
        raise CustomEstimatorError(
            f"estimator {path!r} could not be built with params {params!r}: "
            f"{type(exc).__name__}: {exc}; fix the candidate's params or the factory"
        ) from exc
    check_estimator_object(estimator, path, classification)
    return estimator


def check_estimator_object(estimator: Any, path: str, classification: bool) -> None:
    """Refuse an object without `fit`/`predict` (and `predict_proba` for classification)."""
    needed = ["fit", "predict"] + (["predict_proba"] if classification else [])
    missing = [name for name in needed if not callable(getattr(estimator, name, None))]
    if missing:
        what = "a classification" if classification else "a regression"
        raise CustomEstimatorError(
            f"estimator {path!r} gave a {type(estimator).__name__}, which is not a "
            f"scikit-learn estimator for {what} problem: no {', '.join(missing)}; return an "
            "unfitted estimator with fit, predict"
            + (" and predict_proba" if classification else "")
        )
