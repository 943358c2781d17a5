"""The self-contained dashboard: content, escaping, offline-ness, and a real browser."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from include.ml_pipeline.data_preparation.sample_data import churn_spec, generate_churn_frame
from include.ml_pipeline.monitoring.dashboard import (
    DashboardContext,
    EvaluationArrays,
    build_dashboard_html,
    dashboard_filename,
    render_dashboard,
    summarize_traffic,
)
from include.ml_pipeline.monitoring.drift import compute_drift
from include.ml_pipeline.plots import (
    figure_to_png_bytes,
    plot_confusion_matrix,
    plot_feature_importances,
    plot_precision_recall,
    plot_roc_curves,
)
from include.ml_pipeline.storage import local_path

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _evaluation(rows: int = 400, seed: int = 0) -> EvaluationArrays:
    rng = np.random.default_rng(seed)
    y = rng.choice(["no", "yes"], rows, p=[0.7, 0.3])
    score = np.clip(np.where(y == "yes", 0.65, 0.3) + rng.normal(0, 0.2, rows), 0, 1)
    return EvaluationArrays(
        y_true=y, proba=np.column_stack([1 - score, score]), classes=["no", "yes"]
    )


def _inference_log(rows: int = 1_500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = generate_churn_frame(rows, seed=seed + 100, drift=True).drop(columns=["churn"])
    proba_yes = rng.beta(2, 3, rows)
    frame["prediction"] = np.where(proba_yes >= 0.5, "yes", "no")
    frame["proba_no"] = 1 - proba_yes
    frame["proba_yes"] = proba_yes
    frame["model_version"] = np.where(np.arange(rows) < rows // 3, "2", "3")
    frame["latency_ms"] = rng.gamma(2.0, 2.0, rows)
    seconds = np.sort(rng.uniform(0, 3 * 3600, rows))
    frame["timestamp"] = pd.Timestamp("2026-11-01", tz="UTC") + pd.to_timedelta(seconds, unit="s")
    return frame


@pytest.fixture(scope="module")
def full_context() -> DashboardContext:
    reference = generate_churn_frame(2_000, seed=1)
    log = _inference_log()
    drift = compute_drift(
        reference,
        log,
        churn_spec(),
        reference_predictions=pd.Series(np.where(np.arange(2_000) % 3 == 0, "yes", "no")),
    )
    return DashboardContext(
        model_name="tabular_classifier",
        version=7,
        alias="champion",
        run_id="0123abcd<script>alert(1)</script>",
        model_uri="models:/tabular_classifier/7",
        mlflow_run_url="http://127.0.0.1:5000/#/experiments/1/runs/0123abcd",
        airflow_run_url="javascript:alert('x')",
        api_url="http://127.0.0.1:8000",
        metrics={"roc_auc": 0.8612, "accuracy": 0.8033, "f1": 0.6421, "log_loss": 0.4123},
        previous_version=6,
        previous_metrics={"roc_auc": 0.8501, "accuracy": 0.8100, "f1": 0.6421, "log_loss": 0.4301},
        decision="deploy",
        reasons=["roc_auc 0.8612 >= 0.75", "log_loss <b>0.41</b> <= 0.6"],
        evaluation=_evaluation(),
        feature_importances={f"feature_{i}": float(30 - i) for i in range(30)},
        traffic=log,
        drift=drift,
    )


def test_plot_functions_return_figures_that_render_to_png():
    evaluation = _evaluation()
    y_pred = np.where(evaluation.proba[:, 1] >= 0.5, "yes", "no")
    figures = [
        plot_confusion_matrix(evaluation.y_true, y_pred, ["no", "yes"]),
        plot_roc_curves(evaluation.y_true, evaluation.proba, ["no", "yes"]),
        plot_roc_curves(evaluation.y_true, evaluation.proba[:, 1], ["no", "yes"]),
        plot_precision_recall(evaluation.y_true, evaluation.proba, ["no", "yes"]),
        plot_feature_importances(["a", "b", "c"], [0.1, -0.5, 0.3], top=2),
    ]
    for fig in figures:
        assert isinstance(fig, Figure)
        assert figure_to_png_bytes(fig).startswith(PNG_MAGIC)
    # Binary ROC: one curve for the positive class, plus the chance line.
    roc_labels = [line.get_label() for line in figures[1].axes[0].get_lines()]
    assert len(roc_labels) == 2
    assert roc_labels[0].startswith("yes (AUC 0.")
    # Feature importances: the `top` largest by magnitude, largest on top.
    labels = [t.get_text() for t in figures[4].axes[0].get_yticklabels()]
    assert labels == ["c", "b"]


def test_multiclass_curves_have_one_line_per_class():
    rng = np.random.default_rng(1)
    classes = ["a", "b", "c"]
    y = rng.choice(classes, 300)
    proba = rng.dirichlet([1, 1, 1], 300)
    fig = plot_roc_curves(y, proba, classes)
    assert len(fig.axes[0].get_lines()) == 4  # 3 classes + chance
    cm = plot_confusion_matrix(y, rng.choice(classes, 300), classes)
    assert [t.get_text() for t in cm.axes[0].get_xticklabels()] == classes
    with pytest.raises(ValueError, match="columns"):
        plot_roc_curves(y, proba[:, :2], classes)


@pytest.fixture(scope="module")
def rendered(full_context, tmp_path_factory) -> Path:
    """The full dashboard, rendered once for the module (the charts take a second or two),
    as the local file behind the URI `render_dashboard` returns."""
    uri = render_dashboard(full_context, tmp_path_factory.mktemp("dashboard"))
    assert uri.startswith("file://")
    return local_path(uri)


def test_render_writes_named_file_with_all_sections(full_context, rendered):
    path = rendered
    assert path.name == "dashboard_tabular_classifier_v7.html"
    html = path.read_text(encoding="utf-8")
    for section in ("metrics", "evaluation", "traffic", "drift", "decision", "links"):
        assert f'id="{section}"' in html, section
    # Metrics and the comparison with the previous champion.
    assert "0.8612" in html
    assert "0.8501" in html
    assert "+0.0111 (better)" in html  # roc_auc up
    assert "-0.0067 (worse)" in html  # accuracy down
    assert "-0.0178 (better)" in html  # log_loss down is better
    # Traffic: percentiles computed from the log, classes and versions.
    latency = full_context.traffic["latency_ms"]
    assert f"{np.percentile(latency, 95):.2f}" in html
    assert "Versions served: v2 (500), v3 (1,000)" in html
    # Drift table with a flagged feature.
    assert "contract_type" in html
    assert "DRIFT" in html
    # Charts embedded as PNG data URIs: 3 curves + importances + 3 traffic charts.
    assert html.count('src="data:image/png;base64,') == 7
    # No temporary file left behind.
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_dashboard_references_no_external_resources(full_context, rendered):
    html = rendered.read_text(encoding="utf-8")
    # No resource is fetched from anywhere: src/srcset/CSS urls/imports/link tags/scripts.
    assert not re.search(r"""\bsrc(set)?\s*=\s*(?!["']?data:)""", html)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", html, re.IGNORECASE)
    assert "@import" not in html
    assert "<link" not in html.lower()
    assert "<script" not in html.lower()
    # The only http(s) URLs are the navigation links given in the context.
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert hrefs == [full_context.mlflow_run_url, full_context.api_url]


def test_user_values_are_escaped_and_unsafe_links_not_linked(rendered):
    html = rendered.read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in html
    assert "0123abcd&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>0.41</b>" not in html
    assert "&lt;b&gt;0.41&lt;/b&gt;" in html
    assert 'href="javascript' not in html


def test_minimal_context_renders_and_says_what_is_missing(tmp_path):
    context = DashboardContext(model_name="my model/with:odd*chars", version="3")
    path = local_path(render_dashboard(context, tmp_path))
    assert path.name == "dashboard_my_model_with_odd_chars_v3.html"
    html = path.read_text()
    assert "No traffic in the inference log yet." in html
    assert 'id="drift"' not in html
    assert 'id="metrics"' not in html


def test_prerendered_images_are_embedded(tmp_path):
    png = figure_to_png_bytes(plot_feature_importances(["a"], [1.0]))
    image = tmp_path / "roc.png"
    image.write_bytes(png)
    context = DashboardContext(model_name="m", version=1, images={"ROC from training": image})
    html = build_dashboard_html(context)
    assert "ROC from training" in html
    assert html.count("data:image/png;base64,") == 1
    (tmp_path / "not.png").write_text("hello")
    with pytest.raises(ValueError, match="PNG"):
        build_dashboard_html(DashboardContext("m", 1, images={"x": tmp_path / "not.png"}))


def test_render_defaults_to_settings_reports_uri(monkeypatch, tmp_path):
    monkeypatch.setenv("ML_PIPELINE_STORAGE", str(tmp_path / "root"))
    monkeypatch.delenv("ML_PIPELINE_REPORTS", raising=False)
    uri = render_dashboard(DashboardContext(model_name="m", version=2))
    assert uri == (tmp_path / "root" / "reports" / dashboard_filename("m", 2)).as_uri()
    assert local_path(uri).exists()


def test_summarize_traffic_dedupes_batched_requests():
    frame = pd.DataFrame(
        {
            "request_id": ["a"] * 98 + ["b", "c"],
            "latency_ms": [100.0] * 98 + [1.0, 1.0],
            "prediction": ["yes"] * 100,
            "timestamp": pd.Timestamp("2026-11-01", tz="UTC"),
        }
    )
    summary = summarize_traffic(frame)
    assert summary["latency_samples"] == 3  # one per request, not per record
    assert summary["latency"]["p50"] == pytest.approx(1.0)
    assert summary["classes"] == [{"name": "yes", "count": 100, "share": 1.0}]
    # Without request ids, records sharing a timestamp and latency are one request.
    stamps = pd.Timestamp("2026-11-01", tz="UTC") + pd.to_timedelta([0] * 98 + [1, 2], unit="s")
    no_ids = frame.drop(columns=["request_id"]).assign(timestamp=stamps)
    assert summarize_traffic(no_ids)["latency_samples"] == 3


def test_batched_log_frame_feeds_drift_and_dashboard():
    """A `read_inference_log`-shaped frame of 4-record requests: the records share the
    request's timestamp and latency; columns arrive as JSON gives them (object dtype)."""
    batch = generate_churn_frame(400, seed=9, drift=True).drop(columns=["churn"])
    frame = batch.astype(object).where(batch.notna(), None)
    request = np.arange(400) // 4
    frame["prediction"] = np.where(request % 3 == 0, "yes", "no")
    frame["proba_no"] = np.where(request % 3 == 0, 0.4, 0.8)
    frame["proba_yes"] = 1 - frame["proba_no"]
    frame["model_version"] = "3"
    frame["latency_ms"] = 1.0 + request % 7
    frame["timestamp"] = pd.Timestamp("2026-11-01", tz="UTC") + pd.to_timedelta(request, "s")

    report = compute_drift(generate_churn_frame(2_000, seed=1), frame, churn_spec())
    assert report.dataset_drift
    assert report.current_rows == 400

    summary = summarize_traffic(frame)
    assert summary["records"] == 400
    assert summary["requests"] == 100
    assert [c["name"] for c in summary["classes"]] == ["no", "yes"]
    html = build_dashboard_html(DashboardContext("m", 3, traffic=frame, drift=report))
    assert "400 predicted records" in html
    assert "(100 requests)" in html


def test_dashboard_renders_in_headless_chromium(rendered, chromium_loader, tmp_path_factory):
    screenshot = tmp_path_factory.mktemp("screenshots") / "dashboard_screenshot.png"
    report = chromium_loader(rendered, screenshot)
    print(f"dashboard screenshot: {report.screenshot}")
    assert report.errors == [], report.errors
    assert report.title.startswith("tabular_classifier v7")
    assert report.image_count == 7
    assert report.broken_images == 0
    # Nothing but the file itself (and its data: images) was requested.
    assert all(u.startswith(("file://", "data:")) for u in report.requests), report.requests
    shot = Path(report.screenshot).read_bytes()
    assert shot.startswith(PNG_MAGIC)
    assert len(shot) > 20_000  # a real page, not a blank one


def test_browser_check_catches_errors_and_external_requests(chromium_loader, tmp_path):
    """The harness itself must see a script error, a console error and a remote fetch."""
    page = tmp_path / "bad.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>bad</title></head><body>"
        '<img src="http://127.0.0.1:9/missing.png">'
        "<script>console.error('boom'); undefinedFunction();</script></body></html>"
    )
    report = chromium_loader(page, tmp_path / "bad.png")
    assert any("boom" in e for e in report.console_errors), report
    assert any("undefinedFunction" in e for e in report.exceptions), report
    assert any(u.startswith("http://127.0.0.1:9/") for u in report.requests), report
    assert report.broken_images == 1
