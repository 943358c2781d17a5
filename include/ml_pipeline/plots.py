"""Evaluation and monitoring charts as matplotlib Figures (no pyplot, no display).

Every function returns a `matplotlib.figure.Figure` built without `pyplot`, so it needs no
GUI backend, holds no global state and is safe in Airflow workers and threads. Shared by
training (its evaluation plots, logged to MLflow as PNG) and monitoring (the dashboard
embeds them with `figure_to_png_bytes`).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

DEFAULT_SIZE = (6.0, 4.5)
MAX_MATRIX_INCHES = 12.0
MAX_ANNOTATED_CLASSES = 25
#: Regression scatter plots show at most this many points (a seeded sample).
MAX_SCATTER_POINTS = 5000


def _figure(size: tuple[float, float] = DEFAULT_SIZE) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained")


def figure_to_png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    """Render a Figure to PNG bytes with the Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _as_proba(proba: Any, classes: Sequence[Any]) -> Any:
    import numpy as np

    values = np.asarray(proba, dtype=float)
    if values.ndim == 1:  # binary: the probability of classes[1]
        values = np.column_stack([1.0 - values, values])
    if values.shape[1] != len(classes):
        raise ValueError(
            f"proba has {values.shape[1]} columns but {len(classes)} classes were given"
        )
    return values


def _curve_classes(classes: Sequence[Any]) -> list[int]:
    """Binary problems get one curve (the positive class, `classes[1]`); others one each."""
    return [1] if len(classes) == 2 else list(range(len(classes)))


def plot_confusion_matrix(
    y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[Any], normalize: bool = False
) -> Figure:
    """Confusion matrix with counts (and row shares when `normalize`) in each cell. With
    many classes the figure stops growing at `MAX_MATRIX_INCHES`, the font shrinks, and
    past `MAX_ANNOTATED_CLASSES` the cells are colour only (the counts are in the JSON)."""
    import numpy as np
    from sklearn.metrics import confusion_matrix

    labels = list(labels)
    matrix = confusion_matrix(list(y_true), list(y_pred), labels=labels)
    shown = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1) if normalize else matrix
    size = min(MAX_MATRIX_INCHES, max(4.0, 1.0 + 0.8 * len(labels)))
    fontsize = 9 if len(labels) <= 10 else max(5, 9 - (len(labels) - 10) // 3)
    fig = _figure((size + 1.0, size))
    ax = fig.add_subplot()
    image = ax.imshow(shown, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(len(labels)), [str(x) for x in labels], rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), [str(x) for x in labels])
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    ax.set_title("Confusion matrix" + (" (row-normalised)" if normalize else ""))
    threshold = shown.max() / 2.0 if shown.size else 0.0
    if len(labels) > MAX_ANNOTATED_CLASSES:
        return fig
    for i in range(len(labels)):
        for j in range(len(labels)):
            text = f"{matrix[i, j]}" + (f"\n{shown[i, j]:.0%}" if normalize else "")
            color = "white" if shown[i, j] > threshold else "black"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=fontsize)
    return fig


def plot_roc_curves(y_true: Sequence[Any], proba: Any, classes: Sequence[Any]) -> Figure:
    """ROC curve of the positive class (binary) or one-vs-rest per class (multiclass).

    `proba` has one column per class in `classes` order (or, for binary problems, the
    probability of `classes[1]` as a vector).
    """
    import numpy as np
    from sklearn.metrics import auc, roc_curve

    classes = list(classes)
    values = _as_proba(proba, classes)
    truth = np.asarray(list(y_true), dtype=object)
    fig = _figure()
    ax = fig.add_subplot()
    for index in _curve_classes(classes):
        positive = truth == classes[index]
        if positive.all() or not positive.any():
            continue  # a curve needs both outcomes
        fpr, tpr, _ = roc_curve(positive, values[:, index])
        ax.plot(fpr, tpr, label=f"{classes[index]} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("False positive rate")
    ax.set_ylabel("True positive rate")
    ax.set_title("ROC curve" + ("" if len(classes) == 2 else "s (one-vs-rest)"))
    ax.legend(loc="lower right", fontsize=8)
    return fig


def plot_precision_recall(y_true: Sequence[Any], proba: Any, classes: Sequence[Any]) -> Figure:
    """Precision-recall curve(s) with average precision and the prevalence baseline."""
    import numpy as np
    from sklearn.metrics import average_precision_score, precision_recall_curve

    classes = list(classes)
    values = _as_proba(proba, classes)
    truth = np.asarray(list(y_true), dtype=object)
    fig = _figure()
    ax = fig.add_subplot()
    for index in _curve_classes(classes):
        positive = truth == classes[index]
        if not positive.any():
            continue
        precision, recall, _ = precision_recall_curve(positive, values[:, index])
        ap = average_precision_score(positive, values[:, index])
        (line,) = ax.plot(recall, precision, label=f"{classes[index]} (AP {ap:.3f})")
        ax.axhline(positive.mean(), linestyle=":", linewidth=1, color=line.get_color())
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("Recall")
    ax.set_ylabel("Precision")
    ax.set_title("Precision-recall (dotted: prevalence)")
    ax.legend(loc="lower left", fontsize=8)
    return fig


def plot_feature_importances(
    names: Sequence[str], values: Sequence[float], top: int = 20
) -> Figure:
    """Horizontal bars of the `top` features by absolute importance, largest on top."""
    pairs = sorted(zip(names, values, strict=True), key=lambda p: abs(float(p[1])), reverse=True)
    pairs = pairs[:top][::-1]
    fig = _figure((7.0, max(2.5, 0.32 * len(pairs) + 1.2)))
    ax = fig.add_subplot()
    ax.barh([str(n) for n, _ in pairs], [float(v) for _, v in pairs], color="#4472c4")
    ax.set_xlabel("Importance")
    ax.set_title(f"Feature importances (top {len(pairs)})")
    ax.tick_params(axis="y", labelsize=8)
    return fig


def plot_prediction_volume(times: Sequence[Any], counts: Sequence[int], label: str) -> Figure:
    """Predicted records per time bucket."""
    fig = _figure((7.0, 3.2))
    ax = fig.add_subplot()
    ax.plot(list(times), list(counts), marker="o", markersize=3)
    ax.set_ylabel(f"records / {label}")
    ax.set_title("Prediction volume")
    ax.set_ylim(bottom=0)
    fig.autofmt_xdate()
    return fig


def plot_live_metric(
    series: Mapping[str, tuple[Sequence[Any], Sequence[float]]], metric: str, label: str
) -> Figure:
    """A live metric per time bucket, one line per model version (`{version: (times,
    values)}`)."""
    fig = _figure((7.0, 3.2))
    ax = fig.add_subplot()
    for version, (times, values) in series.items():
        ax.plot(list(times), list(values), marker="o", markersize=3, label=f"v{version}")
    ax.set_ylabel(f"live {metric} (per {label})")
    ax.set_title(f"Live {metric} per version")
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    return fig


def plot_latency_histogram(latencies_ms: Sequence[float], percentiles: dict[str, float]) -> Figure:
    """Latency histogram with the percentile lines."""
    import numpy as np

    values = np.asarray(list(latencies_ms), dtype=float)
    fig = _figure((7.0, 3.2))
    ax = fig.add_subplot()
    ax.hist(values[np.isfinite(values)], bins=40, color="#7f7f7f")
    for (name, value), color in zip(
        percentiles.items(), ["#2ca02c", "#ff7f0e", "#d62728"], strict=False
    ):
        ax.axvline(value, color=color, linestyle="--", label=f"{name} {value:.1f} ms")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("records")
    ax.set_title("Latency")
    ax.legend(fontsize=8)
    return fig


def plot_class_distribution(counts: dict[str, int]) -> Figure:
    """Bar chart of predicted classes."""
    fig = _figure((5.0, 3.2))
    ax = fig.add_subplot()
    labels = [str(k) for k in counts]
    ax.bar(labels, list(counts.values()), color="#4472c4")
    ax.set_ylabel("predictions")
    ax.set_title("Predicted class distribution")
    return fig


def _scatter_sample(y_true: Sequence[float], y_pred: Sequence[float]) -> tuple[Any, Any]:
    import numpy as np

    y, p = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    if len(y) > MAX_SCATTER_POINTS:
        keep = np.random.default_rng(0).choice(len(y), MAX_SCATTER_POINTS, replace=False)
        y, p = y[keep], p[keep]
    return y, p


def plot_predicted_vs_actual(y_true: Sequence[float], y_pred: Sequence[float]) -> Figure:
    """Predicted against true values of a regression model, with the y = x line."""
    y, p = _scatter_sample(y_true, y_pred)
    fig = _figure((5.5, 5.0))
    ax = fig.add_subplot()
    ax.scatter(y, p, s=8, alpha=0.4)
    if len(y):
        lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
        ax.plot([lo, hi], [lo, hi], color="black", linewidth=1, label="predicted = actual")
        ax.legend(loc="upper left")
    ax.set_xlabel("Actual")
    ax.set_ylabel("Predicted")
    ax.set_title("Predicted vs actual")
    return fig


def plot_residuals(y_true: Sequence[float], y_pred: Sequence[float]) -> Figure:
    """Residuals (actual - predicted) against the prediction, and their histogram."""
    y, p = _scatter_sample(y_true, y_pred)
    residuals = y - p
    fig = _figure((9.0, 4.0))
    left, right = fig.subplots(1, 2)
    left.scatter(p, residuals, s=8, alpha=0.4)
    left.axhline(0.0, color="black", linewidth=1)
    left.set_xlabel("Predicted")
    left.set_ylabel("Actual - predicted")
    left.set_title("Residuals")
    right.hist(residuals, bins=40)
    right.set_xlabel("Actual - predicted")
    right.set_ylabel("Rows")
    right.set_title("Residual distribution")
    return fig


def plot_value_distribution(values: Sequence[float]) -> Figure:
    """Histogram of a regressor's predicted values (the traffic's predictions)."""
    fig = _figure()
    ax = fig.add_subplot()
    ax.hist(list(values), bins=40)
    ax.set_xlabel("Predicted value")
    ax.set_ylabel("Records")
    ax.set_title("Predicted values")
    return fig
