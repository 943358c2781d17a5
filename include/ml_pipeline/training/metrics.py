"""Metrics: classification from predicted probabilities (binary and multiclass), regression
from predicted values (`regression_metrics`), and `score_predictions` choosing by the
problem type.

`classes` is the model's `classes_` (the column order of `predict_proba`). Labels may be
strings or integers. Binary: the positive class is `classes[1]` (scikit-learn's
convention), ROC AUC is of that column, precision/recall/F1 are of that class.
Multiclass: ROC AUC is the macro average one-vs-rest, precision/recall/F1 are macro
averages. The predicted label is the class with the highest probability (ties go to the
first class, like `predict`).

A metric that is undefined on the given sample (ROC AUC when only one class is present)
is NaN rather than an exception, so one odd split does not crash a run; the deploy gate
treats NaN as failing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _as_array(values: Any) -> np.ndarray:
    if hasattr(values, "to_numpy"):
        return values.to_numpy()
    return np.asarray(values)


def predicted_labels(proba: Any, classes: Sequence[Any]) -> np.ndarray:
    """The label with the highest probability in each row."""
    proba = np.asarray(proba, dtype=float)
    return np.asarray(classes)[np.argmax(proba, axis=1)]


def accuracy(y_true: Any, y_pred: Any) -> float:
    """The share of predicted labels equal to the true ones."""
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(_as_array(y_true), _as_array(y_pred)))


def classification_metrics(y_true: Any, proba: Any, classes: Sequence[Any]) -> dict[str, float]:
    """roc_auc, accuracy, f1, precision, recall, log_loss as plain floats.

    Raises `ValueError` if the shapes disagree or `y_true` holds a label that is not in
    `classes` (the model never saw it, so no probability exists for it).
    """
    from sklearn.metrics import (
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    y = _as_array(y_true)
    classes_arr = np.asarray(classes)
    proba = np.asarray(proba, dtype=float)
    if proba.ndim != 2 or proba.shape != (len(y), len(classes_arr)):
        raise ValueError(
            f"proba must have shape (n_samples={len(y)}, n_classes={len(classes_arr)}); "
            f"got {proba.shape}"
        )
    if len(classes_arr) < 2:
        raise ValueError(f"need at least two classes; got {list(classes_arr)}")
    if len(y) == 0:
        raise ValueError("y_true is empty")
    unknown = sorted({str(v) for v in set(y.tolist()) - set(classes_arr.tolist())})
    if unknown:
        raise ValueError(
            f"y_true has label(s) the model does not know: {', '.join(unknown[:10])}; "
            f"model classes: {', '.join(map(str, classes_arr.tolist()))}"
        )
    y_pred = classes_arr[np.argmax(proba, axis=1)]
    binary = len(classes_arr) == 2
    present = set(y.tolist())

    if binary:
        positive = classes_arr[1]
        if len(present) < 2:
            roc_auc = float("nan")
        else:
            roc_auc = float(roc_auc_score(y == positive, proba[:, 1]))
        pr_kwargs: dict[str, Any] = {"pos_label": positive, "average": "binary"}
    else:
        scores = []
        for index, cls in enumerate(classes_arr):
            truth = y == cls
            if truth.all() or not truth.any():
                continue  # one-vs-rest undefined for a class absent (or alone) in y_true
            scores.append(roc_auc_score(truth, proba[:, index]))
        roc_auc = float(np.mean(scores)) if scores else float("nan")
        pr_kwargs = {"labels": classes_arr, "average": "macro"}

    # Log loss by hand (sklearn's assumes lexicographically sorted classes): rows are
    # renormalised and clipped so a hard 0 for the true class costs -log(1e-15), not inf.
    eps = 1e-15
    clipped = np.clip(proba, eps, 1.0)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    column_of = {label: i for i, label in enumerate(classes_arr.tolist())}
    true_columns = np.array([column_of[label] for label in y.tolist()])
    log_loss = float(-np.mean(np.log(clipped[np.arange(len(y)), true_columns])))
    return {
        "roc_auc": roc_auc,
        "accuracy": accuracy(y, y_pred),
        "f1": float(f1_score(y, y_pred, zero_division=0, **pr_kwargs)),
        "precision": float(precision_score(y, y_pred, zero_division=0, **pr_kwargs)),
        "recall": float(recall_score(y, y_pred, zero_division=0, **pr_kwargs)),
        "log_loss": log_loss,
    }


def per_class_metrics(y_true: Any, proba: Any, classes: Sequence[Any]) -> dict[str, dict]:
    """Per class (by its text): support, precision, recall, F1 and the one-vs-rest ROC AUC
    (NaN when the class is absent or alone in `y_true`): what a macro average hides."""
    from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

    y = _as_array(y_true)
    classes_arr = np.asarray(classes)
    proba = np.asarray(proba, dtype=float)
    y_pred = classes_arr[np.argmax(proba, axis=1)]
    precision, recall, f1, support = precision_recall_fscore_support(
        y, y_pred, labels=classes_arr, zero_division=0
    )
    out = {}
    for index, cls in enumerate(classes_arr.tolist()):
        truth = y == cls
        auc = float("nan")
        if truth.any() and not truth.all():
            auc = float(roc_auc_score(truth, proba[:, index]))
        out[str(cls)] = {
            "support": int(support[index]),
            "precision": float(precision[index]),
            "recall": float(recall[index]),
            "f1": float(f1[index]),
            "roc_auc_ovr": auc,
        }
    return out


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """rmse, mae, r2 and, when the true values never cross or touch zero (all positive or
    all negative), mape (mean absolute percentage error, as a fraction: 0.1 is 10%).

    R^2 is NaN when the true values are constant (undefined). Raises `ValueError` if the
    lengths differ, the sample is empty or a value is not a finite number."""
    y = np.asarray(_as_array(y_true), dtype=float)
    pred = np.asarray(_as_array(y_pred), dtype=float).reshape(-1)
    if y.shape != pred.shape:
        raise ValueError(f"y_true has {len(y)} values, y_pred {len(pred)}")
    if len(y) == 0:
        raise ValueError("y_true is empty")
    if not (np.isfinite(y).all() and np.isfinite(pred).all()):
        raise ValueError("regression metrics need finite true and predicted values")
    error = pred - y
    total = float(np.sum((y - y.mean()) ** 2))
    out = {
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        "r2": 1.0 - float(np.sum(error**2)) / total if total > 0 else float("nan"),
    }
    if (y > 0).all() or (y < 0).all():
        out["mape"] = float(np.mean(np.abs(error / y)))
    return out


def score_model(model: Any, X: Any, y_true: Any, problem_type: str | None) -> dict[str, float]:
    """The metrics of a fitted model on (X, y_true): regression metrics of `predict` for a
    regression problem, classification metrics of `predict_proba` otherwise."""
    if problem_type == "regression":
        return regression_metrics(y_true, model.predict(X))
    return classification_metrics(y_true, model.predict_proba(X), model.classes_)


def prefixed(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    """`{"roc_auc": x}` -> `{"<prefix>_roc_auc": x}` (the names logged to MLflow)."""
    return {f"{prefix}_{key}": value for key, value in metrics.items()}
