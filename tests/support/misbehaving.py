"""A custom model that misbehaves on purpose, for the isolated worker's tests: the
custom-estimator example (`include/custom_models/ratio_features.py`) behind a step that
hangs when a row's `monthly_charges` is `HANG_MARKER`. The worker imports this module
when it loads the model; the API process never does."""

from __future__ import annotations

import time

import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

HANG_MARKER = -12345.0


class HangOnMarker(TransformerMixin, BaseEstimator):
    """Passes the frame through; sleeps an hour when `monthly_charges` holds the marker."""

    def fit(self, X: pd.DataFrame, y=None) -> HangOnMarker:
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        if (X["monthly_charges"] == HANG_MARKER).any():
            time.sleep(3600)
        return X


def custom_pipeline(frame, spec, hang: bool = False):
    """The example's classifier fitted on `frame` (with `HangOnMarker` first if `hang`)."""
    from include.custom_models.ratio_features import ratio_boosting_classifier
    from include.ml_pipeline.features import coerce_features

    pipeline = ratio_boosting_classifier(max_iter=20)
    if hang:
        pipeline.steps.insert(0, ("hang", HangOnMarker()))
    return pipeline.fit(coerce_features(frame, spec), frame[spec.target])
