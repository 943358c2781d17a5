"""Check a compiled predictor against the scikit-learn pipeline it was compiled from:
labels equal and probabilities within `PROBA_TOLERANCE`, on the input example plus a
synthetic batch that covers the fitted ranges. Only a predictor that passes is served.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from include.ml_pipeline.serving.batch import Batch
from include.ml_pipeline.serving.compiled.compiler import transformer_steps

PROBA_TOLERANCE = 1e-6
#: A regressor's compiled values must equal the pipeline's within this relative error
#: (of the largest predicted magnitude, at least 1).
VALUE_RTOL = 1e-9


def values_differ(got: Any, expected: Any) -> str | None:
    """None when two lists of predicted values agree within `VALUE_RTOL`, else where not."""
    a, b = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if a.shape != b.shape:
        return f"{a.size} values for {b.size} rows"
    scale = max(1.0, float(np.max(np.abs(b)))) if b.size else 1.0
    error = np.abs(a - b)
    bad = np.nonzero(error > VALUE_RTOL * scale)[0]
    if bad.size:
        i = int(bad[0])
        return (
            f"{bad.size} value(s) differ by more than {VALUE_RTOL:g} relative; first at row "
            f"{i}: {a[i]!r} != {b[i]!r}"
        )
    return None


def verify_predictor(predictor: Any, pipeline: Any, batch: Batch) -> str | None:
    """Return None when `predictor` reproduces the pipeline on `batch` (labels equal,
    probabilities within PROBA_TOLERANCE), else a sentence describing the first mismatch.
    The batch is scored whole and row by row (both tree paths get exercised)."""
    frame = batch.to_frame()
    if not hasattr(pipeline, "classes_"):  # a regressor: values, whole and row by row
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = np.asarray(pipeline.predict(frame), dtype=np.float64).reshape(-1)
        why = values_differ(predictor.predict(batch).labels, expected)
        if why:
            return why
        for i in range(min(batch.rows, 40)):
            if values_differ(predictor.predict(batch.slice(i, i + 1)).labels, expected[i : i + 1]):
                return f"single-row value mismatch at row {i}"
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected_labels = np.asarray(pipeline.predict(frame)).tolist()
        expected_proba = pipeline.predict_proba(frame)
    got = predictor.predict(batch)
    if got.labels != expected_labels:
        pairs = zip(got.labels, expected_labels, strict=False)
        bad = next(i for i, (a, b) in enumerate(pairs) if a != b)
        return f"label mismatch at row {bad}: {got.labels[bad]!r} != {expected_labels[bad]!r}"
    error = float(np.max(np.abs(got.proba - expected_proba))) if batch.rows else 0.0
    if error > PROBA_TOLERANCE:
        return f"probabilities differ by {error:.3g} (> {PROBA_TOLERANCE})"
    for i in range(min(batch.rows, 40)):
        row = predictor.predict(batch.slice(i, i + 1))
        if row.labels[0] != expected_labels[i]:
            return f"single-row label mismatch at row {i}"
        if float(np.max(np.abs(row.proba[0] - expected_proba[i]))) > PROBA_TOLERANCE:
            return f"single-row probabilities differ at row {i}"
    return None


def verification_batch(
    pipeline: Any, numeric: list[str], categorical: list[str], rows: int = 300, seed: int = 7
) -> Batch:
    """A synthetic batch covering the fitted ranges: numeric values around the scaler's
    mean (5% missing), every known category (rare ones included), unseen categories and
    missing values."""
    rng = np.random.default_rng(seed)
    mean = np.zeros(len(numeric))
    scale = np.ones(len(numeric))
    categories: dict[str, list[str]] = {}
    try:
        preprocess = pipeline.steps[0][1]
        for _, transformer, columns in preprocess.transformers_:
            for step in transformer_steps(transformer) if not isinstance(transformer, str) else []:
                for j, column in enumerate(columns):
                    if hasattr(step, "mean_") and step.mean_ is not None and column in numeric:
                        mean[numeric.index(column)] = step.mean_[j]
                        if step.scale_ is not None:
                            scale[numeric.index(column)] = step.scale_[j]
                    if hasattr(step, "categories_") and column in categorical:
                        categories[column] = [str(c) for c in step.categories_[j]]
    except Exception:
        pass
    matrix = mean + scale * rng.normal(size=(rows, len(numeric))) * 1.5
    matrix[rng.random(matrix.shape) < 0.05] = np.nan
    cats = []
    for column in categorical:
        known = categories.get(column) or ["a", "b"]
        values: list[Any] = list(rng.choice(known, rows))
        for i in range(rows):
            r = rng.random()
            if r < 0.05:
                values[i] = None
            elif r < 0.08:
                values[i] = "never_seen_before"
        cats.append([None if v is None else str(v) for v in values])
    return Batch(tuple(numeric), tuple(categorical), matrix, tuple(cats))
