"""One self-contained HTML dashboard per deployed model version.

The page is one object under the reports URI (a local file or an S3 object alike) and
needs nothing beside it, so it opens offline from disk or from a download: charts are
base64 PNGs drawn with matplotlib's Agg canvas, styles are inline, there is no script,
font or stylesheet from anywhere else (the only external URLs are plain links to the
MLflow run, the Airflow run and the API). Every value from the
context is HTML-escaped by Jinja2's autoescape, and only http(s) links become `href`s.

Sections, each shown only when its data is given (`DashboardContext`):

* model name, version, alias, run links, the deployment decision's reasons;
* test metrics, and the comparison with the previous champion (delta, better/worse);
* evaluation curves: ROC, precision-recall, confusion matrix (rendered from arrays in
  `evaluation`, or pre-rendered PNG files/bytes in `images`), feature importances;
* traffic from the inference log (`read_inference_log` frame): prediction volume over time,
  latency p50/p95/p99, predicted class distribution, versions served;
* live performance (`LivePerformance`): each version's live accuracy (or RMSE and MAE)
  on the answers whose true labels came back, with the counts and the share labelled,
  per time bucket and as a chart; without labels, a line saying none arrived;
* the drift table (`DriftReport` or its `to_dict()`);
* the model's batch-scoring runs (`batch_scoring.manifest.list_runs` rows): rows in, out
  and refused, version, drift verdict, the manifest's URI.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.ml_pipeline import storage
from include.ml_pipeline.monitoring.windows import time_bucket
from include.ml_pipeline.plots import (
    figure_to_png_bytes,
    plot_class_distribution,
    plot_confusion_matrix,
    plot_feature_importances,
    plot_latency_histogram,
    plot_live_metric,
    plot_precision_recall,
    plot_prediction_volume,
    plot_roc_curves,
    plot_value_distribution,
)

if TYPE_CHECKING:  # pragma: no cover
    import os

    import pandas as pd

    from include.ml_pipeline.monitoring.drift import DriftReport
    from include.ml_pipeline.monitoring.live_performance import LivePerformance

__all__ = [
    "DashboardContext",
    "EvaluationArrays",
    "build_dashboard_html",
    "dashboard_filename",
    "render_dashboard",
    "summarize_traffic",
]

TEMPLATE_DIR = Path(__file__).with_name("templates")
TEMPLATE_NAME = "dashboard.html.j2"
LOWER_IS_BETTER = re.compile(r"(loss|error|mse|mae|rmse|latency|brier)", re.IGNORECASE)
PERCENTILES = {"p50": 50, "p95": 95, "p99": 99}


@dataclass
class EvaluationArrays:
    """Test-split truth and scores, to draw the curves from.

    `proba` has one column per class in `classes` order; `y_pred` defaults to its argmax.
    """

    y_true: Sequence[Any]
    proba: Any
    classes: Sequence[Any]
    y_pred: Sequence[Any] | None = None


@dataclass
class DashboardContext:
    """Everything the dashboard can show; only `model_name` and `version` are required."""

    model_name: str
    version: str | int
    alias: str | None = None
    run_id: str | None = None
    model_uri: str | None = None
    mlflow_run_url: str | None = None
    airflow_run_url: str | None = None
    api_url: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    previous_version: str | int | None = None
    previous_metrics: dict[str, float] | None = None
    decision: str | None = None
    reasons: list[str] = field(default_factory=list)
    evaluation: EvaluationArrays | None = None
    #: Pre-rendered PNGs: bytes, or the URI / path of a PNG object.
    images: dict[str, str | Path | bytes] = field(default_factory=dict)
    feature_importances: dict[str, float] | None = None
    traffic: pd.DataFrame | None = None
    drift: DriftReport | dict[str, Any] | None = None
    generated_at: datetime | None = None
    top_features: int = 20
    #: Batch-scoring runs, newest first (`batch_scoring.manifest.list_runs` rows).
    batch_runs: list[dict[str, Any]] | None = None
    #: Live performance from returned labels (monitoring); None: the section is left out.
    live: LivePerformance | None = None


def dashboard_filename(model_name: str, version: str | int) -> str:
    """`dashboard_<model>_v<version>.html`, with unsafe filename characters replaced."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(model_name)).strip("._") or "model"
    safe_version = re.sub(r"[^A-Za-z0-9._-]+", "_", str(version))
    return f"dashboard_{safe}_v{safe_version}.html"


def render_dashboard(context: DashboardContext, out: str | os.PathLike | None = None) -> str:
    """Write the dashboard under `out` (a folder URI or path; default: the settings'
    `reports_uri`); return its URI.

    The object is written whole (locally through a temporary name), so a reader never
    sees half a page.
    """
    if out is None:
        from include.ml_pipeline.config import get_settings

        out = get_settings().reports_uri
    uri = storage.join(out, dashboard_filename(context.model_name, context.version))
    return storage.write_text(uri, build_dashboard_html(context))


def build_dashboard_html(context: DashboardContext) -> str:
    """The dashboard as one HTML string (e.g. for `mlflow.log_text`)."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _format_number
    env.filters["pct"] = _format_percent
    env.filters["link"] = _safe_url
    generated = context.generated_at or datetime.now(UTC)
    return env.get_template(TEMPLATE_NAME).render(
        ctx=context,
        generated_at=generated.isoformat(timespec="seconds"),
        links=_links(context),
        metrics=_metric_rows(context.metrics, context.previous_metrics),
        charts=_evaluation_charts(context),
        traffic=summarize_traffic(context.traffic) if _has_rows(context.traffic) else None,
        drift=_drift_view(context.drift),
        live=_live_view(context.live),
        batch_runs=context.batch_runs or [],
    )


# --------------------------------------------------------------------------- sections


def _links(context: DashboardContext) -> list[tuple[str, str]]:
    pairs = [
        ("MLflow run", context.mlflow_run_url),
        ("Airflow run", context.airflow_run_url),
        ("Model API", context.api_url),
    ]
    return [(name, url) for name, url in pairs if url]


def _metric_rows(
    metrics: dict[str, float], previous: dict[str, float] | None
) -> list[dict[str, Any]]:
    rows = []
    names = list(metrics) + [k for k in (previous or {}) if k not in metrics]
    for name in names:
        value = _float(metrics.get(name))
        before = _float((previous or {}).get(name))
        delta = value - before if value is not None and before is not None else None
        verdict = ""
        if delta is not None and abs(delta) > 1e-12:
            improved = delta > 0 if _greater_is_better(name) else delta < 0
            verdict = "better" if improved else "worse"
        rows.append(
            {"name": name, "value": value, "previous": before, "delta": delta, "verdict": verdict}
        )
    return rows


def _greater_is_better(name: str) -> bool:
    """The metric's direction: `names.GREATER_IS_BETTER` (also for `test_rmse`-style
    prefixed names), else lower is better for losses, errors and latencies."""
    from include.ml_pipeline.names import GREATER_IS_BETTER

    for metric, greater in GREATER_IS_BETTER.items():
        if name == metric or name.endswith(f"_{metric}"):
            return greater
    return not LOWER_IS_BETTER.search(name)


def _evaluation_charts(context: DashboardContext) -> list[dict[str, str]]:
    charts: list[dict[str, str]] = []
    evaluation = context.evaluation
    if evaluation is not None:
        import numpy as np

        classes = list(evaluation.classes)
        proba = np.asarray(evaluation.proba, dtype=float)
        y_pred = evaluation.y_pred
        if y_pred is None:
            if proba.ndim == 1:
                y_pred = [classes[int(p >= 0.5)] for p in proba]
            else:
                y_pred = [classes[i] for i in proba.argmax(axis=1)]
        charts.append(_chart("ROC curve", plot_roc_curves(evaluation.y_true, proba, classes)))
        charts.append(
            _chart("Precision-recall", plot_precision_recall(evaluation.y_true, proba, classes))
        )
        charts.append(
            _chart("Confusion matrix", plot_confusion_matrix(evaluation.y_true, y_pred, classes))
        )
    for title, image in context.images.items():
        data = image if isinstance(image, bytes) else storage.read_bytes(image)
        charts.append({"title": str(title), "src": _png_src(data)})
    if context.feature_importances:
        names = list(context.feature_importances)
        values = [float(v) for v in context.feature_importances.values()]
        charts.append(
            _chart(
                "Feature importances",
                plot_feature_importances(names, values, top=context.top_features),
            )
        )
    return charts


def summarize_traffic(frame: pd.DataFrame) -> dict[str, Any]:
    """Volume over time, latency percentiles, class and version counts of an inference log.

    Latency percentiles are per request, not per record: a batch request's records share
    one latency, so records are deduplicated by `request_id` when the log has one, else by
    (`timestamp`, `latency_ms`), which the inference log writes once per request.
    """
    import numpy as np
    import pandas as pd

    summary: dict[str, Any] = {"records": len(frame), "charts": []}
    if "timestamp" in frame.columns:
        times = pd.to_datetime(frame["timestamp"], utc=True, errors="coerce").dropna()
        if len(times):
            first, last = times.min(), times.max()
            freq, label = time_bucket(last - first)
            counts = times.dt.floor(freq).value_counts().sort_index()
            full = pd.date_range(counts.index.min(), counts.index.max(), freq=freq)
            counts = counts.reindex(full, fill_value=0)
            summary.update(
                first=first.isoformat(timespec="seconds"),
                last=last.isoformat(timespec="seconds"),
                bucket=label,
            )
            times_naive = [t.tz_convert(None).to_pydatetime() for t in counts.index]
            summary["charts"].append(
                _chart(
                    "Prediction volume",
                    plot_prediction_volume(times_naive, counts.tolist(), label),
                )
            )
    if "latency_ms" in frame.columns:
        latency = frame
        if "request_id" in frame.columns:
            latency = frame.drop_duplicates("request_id")
        elif "timestamp" in frame.columns:
            # The inference log stamps every record of a request with the request's time
            # and latency, so one (timestamp, latency) pair is one request.
            latency = frame.drop_duplicates(["timestamp", "latency_ms"])
        values = pd.to_numeric(latency["latency_ms"], errors="coerce").dropna().to_numpy()
        if values.size:
            percentiles = {k: float(np.percentile(values, q)) for k, q in PERCENTILES.items()}
            summary["latency"] = percentiles
            summary["latency_samples"] = int(values.size)
            summary["requests"] = int(values.size)
            summary["charts"].append(_chart("Latency", plot_latency_histogram(values, percentiles)))
    if "prediction" in frame.columns and pd.api.types.is_float_dtype(frame["prediction"]):
        values = frame["prediction"].dropna().to_numpy(dtype=float)  # a regressor's numbers
        if values.size:
            summary["predicted_values"] = {
                k: float(np.percentile(values, q)) for k, q in {"p5": 5, **PERCENTILES}.items()
            }
            summary["predicted_values"]["mean"] = float(values.mean())
            summary["charts"].append(_chart("Predicted values", plot_value_distribution(values)))
    elif "prediction" in frame.columns:
        counts = frame["prediction"].astype(str).value_counts()
        summary["classes"] = [
            {"name": str(k), "count": int(v), "share": float(v) / len(frame)}
            for k, v in counts.items()
        ]
        summary["charts"].append(
            _chart(
                "Predicted classes",
                plot_class_distribution({str(k): int(v) for k, v in counts.items()}),
            )
        )
    if "model_version" in frame.columns:
        versions = frame["model_version"].astype(str).value_counts().sort_index()
        summary["versions"] = [{"name": str(k), "count": int(v)} for k, v in versions.items()]
    return summary


def _live_view(live: LivePerformance | None) -> dict[str, Any] | None:
    """The live performance section: one row per version (window), one per version and
    time bucket, the headline metric's chart; `labelled` False when no label arrived."""
    if live is None:
        return None
    names = ["rmse", "mae"] if live.regression else ["accuracy"]
    view: dict[str, Any] = {
        "live": live,
        "metrics": names,
        "labelled": any(s.labelled for s in live.versions),
        "chart": None,
    }
    series = {}
    for version in {s.version for s in live.buckets}:
        points = [
            (s.start, s.metrics[live.metric])
            for s in live.history(version)
            if s.metrics and s.start is not None
        ]
        if points:
            times = [datetime.fromisoformat(t).replace(tzinfo=None) for t, _ in points]
            series[version] = (times, [v for _, v in points])
    if series:
        ordered = dict(sorted(series.items()))
        view["chart"] = _chart(
            f"Live {live.metric}", plot_live_metric(ordered, live.metric, live.bucket or "")
        )
    return view


def _drift_view(drift: Any) -> dict[str, Any] | None:
    if drift is None:
        return None
    data = drift.to_dict() if hasattr(drift, "to_dict") else dict(drift)
    return {
        "summary": data.get("summary", {}),
        "thresholds": data.get("thresholds", {}),
        "features": data.get("features", []),
        "prediction": data.get("prediction", []),
    }


# --------------------------------------------------------------------------- helpers


def _chart(title: str, fig: Any) -> dict[str, str]:
    return {"title": title, "src": _png_src(figure_to_png_bytes(fig))}


def _png_src(data: bytes) -> str:
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError("dashboard images must be PNG files")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _has_rows(frame: Any) -> bool:
    return frame is not None and len(frame) > 0


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _format_number(value: Any, digits: int = 4) -> str:
    if value is None or isinstance(value, bool):
        return "—" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    number = _float(value)
    if number is None:
        return "—"
    if number != 0 and (abs(number) < 10 ** (-digits) or abs(number) >= 1e6):
        return f"{number:.{digits - 1}e}"
    return f"{number:.{digits}f}"


def _format_percent(value: Any) -> str:
    number = _float(value)
    return "—" if number is None else f"{number:.1%}"


def _safe_url(value: Any) -> str | None:
    """Only http(s) URLs become links (no `javascript:` or `data:` hrefs)."""
    text = str(value or "").strip()
    return text if re.match(r"^https?://", text, re.IGNORECASE) else None
