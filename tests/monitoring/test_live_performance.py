"""Live performance from returned labels (`monitoring/live_performance.py`): answers in the
inference log joined to label files by request id and row, measured per version and per
time bucket (multiclass with a shadow challenger; regression with multi-row requests),
the retrain rule that reads it (too few labels: not judged, said so), and the dashboard's
section (with labels: the table and chart; without: a line saying none arrived)."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from include.ml_pipeline.features import FeatureSpec
from include.ml_pipeline.monitoring.dashboard import DashboardContext, build_dashboard_html
from include.ml_pipeline.monitoring.live_performance import read_live_performance
from include.ml_pipeline.monitoring.retrain_policy import LiveRule, live_verdict, retrain_decision
from include.ml_pipeline.payloads import Champion
from include.ml_pipeline.release.feedback import LabelTarget
from tests.support.answers import Answer, write_answers, write_labels

MODEL = "live_perf_test"
START = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
CLASSES = ["a", "b", "c"]


def _champion(version: str, metrics: dict, regression: bool = False) -> Champion:
    spec = FeatureSpec("y", ["x"], [], problem_type="regression" if regression else None)
    return Champion(
        model_name=MODEL,
        version=version,
        alias="champion",
        run_id=None,
        model_uri=f"models:/{MODEL}/{version}",
        feature_spec=spec,
        train_path=None,
        metrics=metrics,
    )


def _accuracy(pairs) -> float:
    return sum(p == t for p, t in pairs) / len(pairs)


@pytest.fixture
def roots(tmp_path):
    return (tmp_path / "log").as_uri(), (tmp_path / "data").as_uri()


def test_multiclass_per_version_over_time_with_a_shadow_challenger(roots):
    log_uri, storage_uri = roots
    rng = random.Random(3)
    answers, truth = [], {}
    for i in range(60):  # every 15 minutes over ~15 h: hourly buckets
        rid, at = f"req-{i}", START + timedelta(minutes=15 * i)
        truth[rid] = rng.choice(CLASSES)
        good = truth[rid] if rng.random() < 0.8 else rng.choice(CLASSES)
        poor = truth[rid] if rng.random() < 0.4 else rng.choice(CLASSES)
        answers.append(Answer(rid, "3", [good], at, experiment="shadow"))
        answers.append(Answer(rid, "4", [poor], at, "challenger", False, "shadow"))
    write_answers(log_uri, MODEL, answers)
    labelled = [f"req-{i}" for i in range(0, 60, 3)] + [f"req-{i}" for i in range(1, 60, 6)]
    write_labels(
        storage_uri,
        MODEL,
        "batch-1.csv",
        [(rid, 0, truth[rid]) for rid in labelled] + [("not-logged", 0, "a")],
    )
    flipped = {"req-0": "b" if truth["req-0"] != "b" else "c"}  # a later correction
    write_labels(storage_uri, MODEL, "batch-2.csv", [(r, 0, v) for r, v in flipped.items()])
    label_of = {rid: flipped.get(rid, truth[rid]) for rid in labelled}
    target = LabelTarget(False, "string", tuple(CLASSES))

    live = read_live_performance(log_uri, storage_uri, MODEL, target)

    predicted = {(a.version, a.request_id): a.predictions[0] for a in answers}
    assert [s.version for s in live.versions] == ["3", "4"]
    for window in live.versions:
        expected = _accuracy([(predicted[(window.version, r)], label_of[r]) for r in labelled])
        assert window.answers == 60
        assert window.labelled == len(labelled) == 30
        assert window.label_share == pytest.approx(0.5)
        assert window.metrics == {"accuracy": pytest.approx(expected)}
    assert live.versions[0].metrics["accuracy"] > live.versions[1].metrics["accuracy"]
    assert (live.labels, live.unknown_labels, live.corrections) == (31, 1, 1)
    assert live.bucket == "hour"
    first = live.history("3")[0]  # 00:00-01:00: req-0..3
    assert first.start == START.isoformat()
    assert (first.answers, first.labelled) == (4, 3)  # req-0, 1 and 3 are labelled
    in_hour = ["req-0", "req-1", "req-3"]
    assert first.metrics["accuracy"] == pytest.approx(
        _accuracy([(predicted[("3", r)], label_of[r]) for r in in_hour])
    )
    for version in ("3", "4"):
        history = live.history(version)
        assert sum(s.answers for s in history) == 60
        assert sum(s.labelled for s in history) == 30
    assert live.mlflow_metrics("3")["live_label_share"] == pytest.approx(0.5)

    # the retrain rule on the champion's window
    champion = _champion("3", {"accuracy": 0.9})
    check = live.check("3")
    value = check.metrics["accuracy"]
    retrain, said = live_verdict(
        check, champion, LiveRule(min_accuracy=value + 0.01, min_labels=10)
    )
    assert retrain is True
    assert f"below min_live_accuracy {value + 0.01:g}" in said
    assert "30 labelled answers (50% of 60), test accuracy 0.9" in said
    few, said = live_verdict(check, champion, LiveRule(min_accuracy=0.99, min_labels=31))
    assert few is False
    assert "too few labels to judge (min_live_labels 31)" in said
    summary = {"dataset_drift": False, "status": "ok"}
    assert retrain_decision(summary, None, (False, said)) == (
        False,
        f"no dataset drift; no retraining; {said}",
    )
    asked = retrain_decision(summary, None, (True, "live accuracy low"))
    assert asked == (
        True,
        "no dataset drift, but live performance is below the rule; retraining requested; "
        "live accuracy low",
    )
    earlier = {"start_time": "2026-12-01T00:00:00+00:00", "airflow_run_id": "r1"}
    assert "within the cool-down" in retrain_decision(summary, earlier, (True, "low"))[1]

    page = build_dashboard_html(DashboardContext(MODEL, "3", live=live))
    section = page.split('id="live-performance"')[1].split("</section>")[0]
    assert "Live accuracy" in section  # the chart
    assert "<img" in section
    assert f"{live.versions[1].metrics['accuracy']:.4f}" in section
    assert "v4" in section
    assert "Per hour" in section


def test_regression_rmse_and_mae_per_version_and_no_labels_said_so(roots):
    import numpy as np

    log_uri, storage_uri = roots
    rng = random.Random(5)
    answers, values = [], {}
    for i in range(30):  # two rows per request
        rid, at = f"r{i}", START + timedelta(minutes=i)
        values[rid] = [rng.uniform(50, 150), rng.uniform(50, 150)]
        guess = [v + rng.gauss(0, 10) for v in values[rid]]
        answers.append(Answer(rid, "7", guess, at))
    write_answers(log_uri, MODEL, answers)
    target = LabelTarget(True, "number")
    empty = read_live_performance(log_uri, storage_uri, MODEL, target)
    assert (empty.versions[0].answers, empty.versions[0].labelled) == (60, 0)
    assert empty.buckets == []
    retrain, said = live_verdict(
        empty.check("7"), _champion("7", {"rmse": 5.0}, True), LiveRule(max_rmse_ratio=1.5)
    )
    assert retrain is False
    assert said == "no true labels came back for v7's 60 live answers: live performance unknown"
    page = build_dashboard_html(DashboardContext(MODEL, "7", live=empty))
    assert "No true labels have arrived yet for the 60 live answers logged" in page

    rows = [(f"r{i}", row, values[f"r{i}"][row]) for i in range(20) for row in (0, 1)]
    write_labels(storage_uri, MODEL, "labels.csv", rows)
    live = read_live_performance(log_uri, storage_uri, MODEL, target)
    predicted = {(a.request_id, row): p for a in answers for row, p in enumerate(a.predictions)}
    errors = np.array([predicted[(r, row)] - value for r, row, value in rows])
    window = live.of("7")
    assert (window.answers, window.labelled) == (60, 40)
    assert window.metrics["rmse"] == pytest.approx(math.sqrt(np.mean(errors**2)))
    assert window.metrics["mae"] == pytest.approx(np.mean(np.abs(errors)))
    assert live.metric == "rmse"
    tested = window.metrics["rmse"] / 2  # live is twice the test rmse
    champion = _champion("7", {"rmse": tested}, True)
    retrain, said = live_verdict(
        live.check("7"), champion, LiveRule(max_rmse_ratio=1.5, min_labels=40)
    )
    assert retrain is True
    assert "2.00x the test rmse, above max_live_rmse_ratio 1.5" in said
    assert (
        live_verdict(live.check("7"), champion, LiveRule(max_rmse_ratio=2.5, min_labels=40))[0]
        is False
    )
    page = build_dashboard_html(DashboardContext(MODEL, "7", live=live))
    section = page.split('id="live-performance"')[1].split("</section>")[0]
    assert "live rmse" in section
    assert "live mae" in section
    assert f"{window.metrics['mae']:.4f}" in section
