"""The feature contract shared by training and serving.

`FeatureSpec` names the model's input columns and their kind (numeric or categorical).
`coerce_features` turns any frame (a training split, a JSON request) into the exact dtypes
the fitted pipeline expects, and `build_preprocessor` is the *fitted* part of the model
(imputation, scaling, one-hot encoding) that lives inside the logged scikit-learn
pipeline, so serving applies exactly the transformation that training fitted.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from sklearn.compose import ColumnTransformer

MISSING_CATEGORY = "__missing__"
NUMERIC = "numeric"
CATEGORICAL = "categorical"


@dataclass(frozen=True)
class FeatureSpec:
    """Input columns of the model, in order, split by kind, plus the target column and
    the problem type (`problem.py`; "" for a model trained before it was recorded: a
    classifier). The problem type travels with the columns into the model's metadata,
    so whoever loads the model knows what it predicts; it does not take part in
    comparing two specs' columns."""

    target: str
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    problem_type: str = field(default="", compare=False)

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def kind_of(self, column: str) -> str:
        if column in self.numeric:
            return NUMERIC
        if column in self.categorical:
            return CATEGORICAL
        raise KeyError(column)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not self.problem_type:
            out.pop("problem_type")
        return out

    @property
    def is_regression(self) -> bool:
        return self.problem_type == "regression"

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        return cls(
            target=data["target"],
            numeric=list(data.get("numeric", [])),
            categorical=list(data.get("categorical", [])),
            problem_type=str(data.get("problem_type") or ""),
        )


def coerce_features(frame: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Return the model's input frame: spec columns in order, numeric as float64,
    categorical as object with strings and `None` for every kind of missing value
    (JSON null, NaN, pandas NA), which is what the fitted imputer recognises.

    Raises `KeyError` naming the missing columns and `ValueError` naming a column whose
    values are not numbers.
    """
    import pandas as pd

    missing = [c for c in spec.columns if c not in frame.columns]
    if missing:
        raise KeyError(f"missing feature columns: {', '.join(missing)}")
    out = {}
    for column in spec.numeric:
        values = frame[column]
        if values.dtype.kind in "biuf":
            out[column] = values.astype("float64")
            continue
        converted = pd.to_numeric(values, errors="coerce")
        bad = converted.isna() & values.notna() & (values.astype(str).str.strip() != "")
        if bad.any():
            example = values[bad].iloc[0]
            raise ValueError(f"column {column!r} must be numeric; got {example!r}")
        out[column] = converted.astype("float64")
    for column in spec.categorical:
        values = frame[column]
        present = values.notna().to_numpy()
        texts = [
            _category_text(v) if ok else None
            for v, ok in zip(values.tolist(), present, strict=True)
        ]
        out[column] = pd.Series(texts, index=frame.index, dtype=object)
    return pd.DataFrame(out, index=frame.index)


def _category_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


#: The code an ordinal encoding gives a category it did not see when fitted (LightGBM
#: sends negative codes down the "other" side of every categorical split).
UNSEEN_CODE = -1


def build_preprocessor(spec: FeatureSpec, *, ordinal: bool = False) -> ColumnTransformer:
    """The fitted preprocessing step: median-impute + scale numerics; one-hot categoricals
    with missing values as their own category and unseen categories ignored. `ordinal`:
    each categorical column as one column of codes instead (its category's index, missing
    values their own category, unseen ones `UNSEEN_CODE`), for a model with its own
    categorical splits (LightGBM's)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    transformers = []
    if spec.numeric:
        transformers.append(
            (
                NUMERIC,
                Pipeline(
                    [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
                ),
                list(spec.numeric),
            )
        )
    if spec.categorical:
        transformers.append(
            (
                CATEGORICAL,
                Pipeline(
                    [
                        # coerce_features turns every missing text into None (JSON null).
                        (
                            "impute",
                            SimpleImputer(
                                missing_values=None,
                                strategy="constant",
                                fill_value=MISSING_CATEGORY,
                            ),
                        ),
                        (
                            (
                                "ordinal",
                                OrdinalEncoder(
                                    handle_unknown="use_encoded_value", unknown_value=UNSEEN_CODE
                                ),
                            )
                            if ordinal
                            else (
                                "onehot",
                                OneHotEncoder(
                                    handle_unknown="ignore",
                                    sparse_output=False,
                                    min_frequency=5,
                                    max_categories=50,
                                ),
                            )
                        ),
                    ]
                ),
                list(spec.categorical),
            )
        )
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
