"""Estimators of the third-party model families, as the model step of the pipeline.

The model step of every LightGBM and XGBoost candidate is the library's own scikit-learn
estimator (`lightgbm.LGBMClassifier` / `LGBMRegressor`, `xgboost.XGBRegressor`) or, for
XGBoost classification, `LabelledXGBClassifier` below: a subclass of
`xgboost.XGBClassifier` (so `isinstance(model, XGBClassifier)` holds, `get_booster()` is
the library's booster) that accepts any labels. `XGBClassifier` itself only accepts the
labels 0..k-1; this subclass encodes the labels with scikit-learn's `LabelEncoder` before
fitting and decodes `predict`'s output, and `classes_` are the original labels in the
order of `predict_proba`'s columns (sorted, as scikit-learn's classifiers order them).

What the model step receives: the numeric matrix of `features.build_preprocessor` (the
numeric columns median-imputed and standardised, then the categorical columns one-hot
encoded with infrequent categories grouped), as every built-in estimator does; except
LightGBM and XGBoost, which get each categorical column as one column of codes and split
them with their own categorical splits (`train.build_pipeline`; better than one-hot on
high-cardinality columns: `benchmarks/bench_lightgbm_categoricals.py`). The compiled
serving path reads both (`serving/compiled/boosters.py`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from xgboost import XGBClassifier


class LabelledXGBClassifier(XGBClassifier):
    """`XGBClassifier` for any class labels (strings, booleans, integers not 0..k-1)."""

    def fit(self, X: Any, y: Any, **kwargs: Any) -> LabelledXGBClassifier:
        from sklearn.preprocessing import LabelEncoder

        encoder = LabelEncoder().fit(np.asarray(y))
        self.labels_ = None  # XGBClassifier.fit checks the codes against `classes_`
        super().fit(X, encoder.transform(np.asarray(y)), **kwargs)
        self.labels_ = encoder.classes_
        return self

    @property
    def classes_(self) -> np.ndarray:  # type: ignore[override]
        labels = getattr(self, "labels_", None)
        return labels if labels is not None else super().classes_

    def predict(self, X: Any, **kwargs: Any) -> np.ndarray:
        codes = np.asarray(super().predict(X, **kwargs)).astype(np.intp)
        return np.asarray(self.labels_)[codes]
