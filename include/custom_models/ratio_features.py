"""A worked example of your own estimator: ratio features, then gradient boosting.

Use it as a candidate that takes the raw columns (it does its own preprocessing)::

    {"name": "ratios_hgb",
     "estimator": "include.custom_models.ratio_features:ratio_boosting_classifier",
     "input": "raw",
     "params": {"ratios": [["total_charges", "tenure_months"]], "max_iter": 150}}

(`ratio_boosting_regressor` for a regression problem). The model receives the raw feature
columns as a DataFrame: numeric columns as float64 with NaN for a missing value, text
columns with None. `RatioFeatures` adds `<numerator>_per_<denominator>` for each pair
(NaN where the denominator is zero or missing) — a feature trees cannot build from the
two columns alone — then numerics are median-imputed, text columns one-hot encoded, and a
`HistGradientBoosting` model fits the result.

The model is logged like any other (MLflow's scikit-learn flavour, skops trusting these
types) and served by the scikit-learn path: the compiler knows only the project's own
preprocessor, and the model API says so (`GET /model`: the path and the reason).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

#: The churn sample's ratios: spend per month of tenure, tickets per month of tenure.
DEFAULT_RATIOS = (("total_charges", "tenure_months"), ("support_tickets", "tenure_months"))


class RatioFeatures(TransformerMixin, BaseEstimator):
    """Adds `<a>_per_<b>` = a / b for each (a, b) in `ratios` to a DataFrame."""

    def __init__(self, ratios: Any = DEFAULT_RATIOS) -> None:
        self.ratios = ratios

    def fit(self, X: pd.DataFrame, y: Any = None) -> RatioFeatures:
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"RatioFeatures needs a DataFrame; got {type(X).__name__}")
        missing = sorted({c for pair in self.ratios for c in pair} - set(X.columns))
        if missing:
            raise ValueError(
                f"RatioFeatures: column(s) {', '.join(missing)} not in the input; "
                f"columns are {', '.join(map(str, X.columns))} (set the 'ratios' param)"
            )
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        out = X.copy()
        for numerator, denominator in self.ratios:
            a = pd.to_numeric(X[numerator], errors="coerce").to_numpy(dtype=float)
            b = pd.to_numeric(X[denominator], errors="coerce").to_numpy(dtype=float)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(b != 0, a / b, np.nan)
            out[f"{numerator}_per_{denominator}"] = ratio
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        added = [f"{a}_per_{b}" for a, b in self.ratios]
        return np.asarray([*self.feature_names_in_, *added], dtype=object)


def _preprocess() -> ColumnTransformer:
    text = Pipeline(
        [
            ("impute", SimpleImputer(missing_values=None, strategy="constant", fill_value="")),
            ("onehot", OneHotEncoder(handle_unknown="ignore", min_frequency=5, max_categories=30)),
        ]
    )
    return ColumnTransformer(
        [
            (
                "numeric",
                SimpleImputer(strategy="median"),
                make_column_selector(dtype_include="number"),
            ),
            ("text", text, make_column_selector(dtype_include=object)),
        ],
        sparse_threshold=0.0,
    )


def _pipeline(model: Any, ratios: Any) -> Pipeline:
    pairs = [tuple(pair) for pair in ratios]
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"each ratio is [numerator, denominator]; got {list(pair)}")
    return Pipeline(
        [("ratios", RatioFeatures(pairs)), ("preprocess", _preprocess()), ("model", model)]
    )


def _factory(model_class: type, problem: str) -> Any:
    def factory(
        ratios: Any = DEFAULT_RATIOS,
        learning_rate: float = 0.1,
        max_iter: int = 200,
        max_leaf_nodes: int = 31,
        random_state: int = 0,
    ) -> Pipeline:
        model = model_class(
            learning_rate=learning_rate,
            max_iter=max_iter,
            max_leaf_nodes=max_leaf_nodes,
            random_state=random_state,
        )
        return _pipeline(model, ratios)

    factory.__doc__ = f"The whole model for a {problem} problem (raw columns in)."
    return factory


#: The factories a candidate names (`...ratio_features:ratio_boosting_classifier`).
ratio_boosting_classifier = _factory(HistGradientBoostingClassifier, "classification")
ratio_boosting_regressor = _factory(HistGradientBoostingRegressor, "regression")
