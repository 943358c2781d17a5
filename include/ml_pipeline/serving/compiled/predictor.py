"""Predictors: what the server calls per request to turn a validated `Batch` into labels
and class probabilities, or, for a regressor, into numbers (`Prediction.labels` holds the
predicted values as floats and `proba` is None, as `mlflow models serve` answers).

A `CompiledPredictor` holds the fitted parameters of a scikit-learn pipeline as plain
arrays (built by `compiler.py`, or read from a serving artifact by `artifact.py`) and
evaluates them with numpy, plus onnxruntime for tree ensembles (`trees.py`).
`SklearnPredictor` calls the pipeline itself: the reference, and the fallback.
A pipeline the compiler cannot translate raises `UnsupportedPipeline`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import numpy as np

from include.ml_pipeline.serving.batch import Batch

PATTERN_MIN_ROWS = 16  # from this size on, categorical rows are encoded as whole patterns
# Up to this many rows (a micro-batch of 8 connections' 1-row requests) a categorical
# column is encoded value by value: numpy's per-array overhead (fromiter, the hit mask,
# the fancy assignment: ~4.5 us a one-hot column, ~1.3 us an ordinal one) costs more than
# ~0.13 us a value (issue 22: an 8-row one-hot block 31 -> 6 us; the same floats).
LOOP_ROWS = 8
MAX_PATTERNS = 4096  # distinct categorical rows remembered per predictor


class UnsupportedPipeline(Exception):
    """The pipeline has a step or setting the compiler does not translate."""


@dataclass
class Prediction:
    """Labels (JSON-ready Python values) and probabilities (rows x classes) or None."""

    labels: list[Any]
    proba: np.ndarray | None
    label_index: np.ndarray | None = None
    #: `labels` as a JSON array, once an answer has encoded them (`render_invocations`):
    #: the inference log's line embeds these bytes instead of encoding the labels again
    labels_json: bytes | None = None


class SklearnPredictor:
    """The reference path: build the coerced frame and call the fitted pipeline."""

    path = "sklearn"

    def __init__(self, pipeline: Any, reason: str = ""):
        self.pipeline = pipeline
        self.reason = reason
        self.regression = not hasattr(pipeline, "classes_")
        self.classes = [] if self.regression else list(np.asarray(pipeline.classes_).tolist())
        self.has_proba = hasattr(pipeline, "predict_proba")

    def predict(self, batch: Batch) -> Prediction:
        frame = batch.to_frame()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            labels = np.asarray(self.pipeline.predict(frame))
            proba = self.pipeline.predict_proba(frame) if self.has_proba else None
        if self.regression:
            labels = labels.astype(np.float64).reshape(-1)
        return Prediction(labels=labels.tolist(), proba=proba)


@dataclass
class NumericBlock:
    """Imputation and standard scaling of some numeric columns."""

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

    def apply_column(self, j: int, values: np.ndarray, out: np.ndarray) -> None:
        """`apply` for this block's column `j` alone: `values` (its raw floats, NaN for
        missing; not changed) imputed and scaled into `out` by the same operations, so the
        same floats (batch scoring builds its kernel's inputs column by column)."""
        if self.fill is not None:
            missing = np.isnan(values)
            if missing.any():
                values = np.where(missing, self.fill[j], values)
        if self.mean is not None:
            values = values - self.mean[j]
        if self.scale is not None:
            np.divide(values, self.scale[j], out=out)
        else:
            out[:] = values


@dataclass
class CategoricalBlock:
    """Imputation and one-hot encoding (infrequent categories grouped) of some categorical
    columns; or, `ordinal`, each column as one output column holding its category's code
    (scikit-learn's `OrdinalEncoder`: what LightGBM's and XGBoost's categorical splits read)."""

    positions: list[int]  # indices into batch.categorical
    fill: list[Any]  # value that replaces None, per column (None: not imputed)
    # category -> output column within this feature (ordinal: the code); None -> the fill's
    lookups: list[dict[str | None, int]]
    widths: list[int]  # ordinal: 1 each
    unknown: list[int]  # output column for unseen categories, -1 for all zeros (ordinal: code)
    ordinal: bool = False

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
        rows = batch.rows
        if rows >= PATTERN_MIN_ROWS and len(columns) > 1:
            keys = list(zip(*columns, strict=True))
            # the ids straight into an array (-1: a row not seen before), no list between
            ids = np.fromiter(
                map(self._pattern_ids.get, keys, repeat(-1, rows)), dtype=np.intp, count=rows
            )
            known = ids.min() >= 0
            if not known and self._learn(keys):
                ids = np.fromiter(map(self._pattern_ids.__getitem__, keys), np.intp, count=rows)
                known = True
            if known and self._patterns is not None:
                out[:, offset : offset + self.width] = self._patterns[ids]
                return
        self._encode(columns, out, offset)

    def _encode(self, columns: list[list[Any]], out: np.ndarray, offset: int) -> None:
        rows = out.shape[0]
        if self.ordinal:
            for j, (values, lookup, unknown) in enumerate(
                zip(columns, self.lookups, self.unknown, strict=True)
            ):
                if rows <= LOOP_ROWS:  # a micro-batch: no array per column
                    for row, value in enumerate(values):
                        out[row, offset + j] = lookup.get(value, unknown)
                    continue
                out[:, offset + j] = np.fromiter(
                    map(lookup.get, values, repeat(unknown, rows)), dtype=np.float64, count=rows
                )
            return
        for values, lookup, width, unknown in zip(
            columns, self.lookups, self.widths, self.unknown, strict=False
        ):
            # `lookup` maps None (missing) to the imputed category's column, so one C-level
            # `map(dict.get, ...)` encodes the whole column.
            if rows < PATTERN_MIN_ROWS:  # one request or a micro-batch: no array per column
                for row, value in enumerate(values):
                    column = lookup.get(value, unknown)
                    if column >= 0:
                        out[row, offset + column] = 1.0
            else:
                index = np.fromiter(
                    map(lookup.get, values, repeat(unknown, rows)), dtype=np.intp, count=rows
                )
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


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def binary_proba(p1: np.ndarray) -> np.ndarray:
    """Both columns of a binary classifier's probabilities from the positive one."""
    return np.column_stack([1.0 - p1, p1])


def expit(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class LogisticLink:
    """LogisticRegression's `predict_proba` in numpy (binary: logistic, else softmax)."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray, binary: bool):
        self.coef = np.ascontiguousarray(coef, dtype=np.float64)  # features x outputs
        self.intercept = np.asarray(intercept, dtype=np.float64)
        self.binary = binary

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = x @ self.coef + self.intercept
        return binary_proba(expit(z[:, 0])) if self.binary else softmax(z)


class LinearValue:
    """A linear regressor's `predict` (Ridge, LinearRegression, Lasso, ...) in numpy."""

    def __init__(self, coef: np.ndarray, intercept: float):
        self.coef = np.ascontiguousarray(coef, dtype=np.float64).reshape(-1)
        self.intercept = float(intercept)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x @ self.coef + self.intercept


class EstimatorValue:
    """Any other fitted regressor's `predict` on the numpy matrix."""

    def __init__(self, est: Any):
        self.est = est

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.est.predict(x), dtype=np.float64).reshape(-1)


class EstimatorProba:
    """Any other fitted estimator's `predict_proba` on the numpy matrix."""

    def __init__(self, est: Any):
        self.est = est

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.est.predict_proba(x)


@dataclass
class CompiledPredictor:
    """Numpy-only evaluation of a fitted preprocess + estimator pipeline."""

    blocks: list[Any]
    width: int
    proba_fn: Callable[[np.ndarray], np.ndarray]
    classes: list[Any]
    path: str = "compiled"
    estimator_path: str = field(default="")
    #: A regressor: `proba_fn` returns the predicted values (one per row), no classes.
    regression: bool = False

    def categories(self, categorical: Sequence[str]) -> dict[str, list[str]]:
        """The categories the encoders know, per categorical column (`categorical`: the
        batch's categorical columns, in order): the parser decodes them to these very
        strings (`FeatureParser`'s `categories`), so the lookups hash nothing new."""
        known: dict[str, list[str]] = {}
        for block in self.blocks:
            if isinstance(block, CategoricalBlock):
                for position, lookup in zip(block.positions, block.lookups, strict=True):
                    values = known.setdefault(categorical[position], [])
                    values.extend(k for k in lookup if type(k) is str)
        return known

    def transform(self, batch: Batch) -> np.ndarray:
        out = np.zeros((batch.rows, self.width), dtype=np.float64)
        offset = 0
        for block in self.blocks:
            block.apply(batch, out, offset)
            offset += block.width
        return out

    def predict(self, batch: Batch) -> Prediction:
        if self.regression:
            values = self.proba_fn(self.transform(batch))
            return Prediction(labels=values.tolist(), proba=None)
        proba = self.proba_fn(self.transform(batch))
        index = proba.argmax(axis=1)
        classes = self.classes
        return Prediction(
            labels=[classes[i] for i in index.tolist()], proba=proba, label_index=index
        )
