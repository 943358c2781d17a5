"""Drift and dashboard at deployment (the `visualizacion_monitoreo` steps) against a
throw-away MLflow store: which data is compared, what is written, what reaches the run."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from include.ml_pipeline.data_preparation.sample_data import (
    TARGET,
    churn_spec,
    generate_churn_frame,
)
from include.ml_pipeline.orchestration.steps.deployment_dag import monitoring
from include.ml_pipeline.payloads import Dashboard, DriftResult
from include.ml_pipeline.storage import local_path
from tests.monitoring.conftest import live_deployment, training_run_with_plot, write_splits

PARAMS = {
    "drift_alpha": 0.05,
    "drift_psi_threshold": 0.1,
    "drift_ks_threshold": 0.1,
    "drift_share": 0.3,
    "drift_min_rows": 100,
    "drift_max_rows": 50_000,
    "drift_window_hours": 24,
}


@pytest.fixture
def deployed(tmp_path, monkeypatch):
    """A LiveDeployment dict whose registered version's training run exists in a tmp store
    and has one evaluation plot; settings point at tmp folders."""
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    monkeypatch.setenv("ML_PIPELINE_REPORTS", str(tmp_path / "reports"))
    monkeypatch.setenv("ML_PIPELINE_INFERENCE_LOG", str(tmp_path / "inference_log"))
    client, run_id = training_run_with_plot(
        tracking_uri, (tmp_path / "artifacts").as_uri(), tmp_path
    )
    live = live_deployment(write_splits(tmp_path), run_id, str(tmp_path / "manifest.json"))
    return {"deployment": live, "client": client, "run_id": run_id, "tmp": tmp_path}


def _write_traffic(directory: Path, rows: int) -> None:
    frame = generate_churn_frame(rows, seed=9, drift=True).drop(columns=[TARGET]).astype(object)
    features = {c: [None if v != v else v for v in frame[c]] for c in churn_spec().columns}
    line = {
        "timestamp": datetime.now(UTC).isoformat(),
        "model_version": "3",
        "latency_ms": 2.0,
        "rows": rows,
        "features": features,
        "predictions": ["no"] * rows,
        "classes": ["no", "yes"],
        "probability_columns": [[0.6] * rows, [0.4] * rows],
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "inference-20260101T000000000000-1-000001.jsonl").write_text(json.dumps(line))


def test_without_traffic_the_test_split_is_compared_and_logged_to_the_training_run(deployed):
    result = DriftResult.from_dict(monitoring.check_drift(deployed["deployment"], PARAMS))
    summary = result.summary
    assert summary["status"] == "ok"
    assert summary["n_drifted"] == 0
    assert summary["current_source"].startswith("test split (300 rows")
    assert summary["reference"].endswith("train.parquet")
    assert result.report_uri == (deployed["tmp"] / "reports" / "drift_v3.json").as_uri()
    path = local_path(result.report_uri)
    written = json.loads(path.read_text())
    assert written["version"] == "3"
    assert written["current_source"] == summary["current_source"]
    assert len(written["features"]) == len(churn_spec().columns)
    assert result.report["summary"]["current_rows"] == 300

    client, run_id = deployed["client"], deployed["run_id"]
    run = client.get_run(run_id)
    assert run.data.metrics["drift_share"] == 0.0
    assert run.data.metrics["current_rows"] == 300
    logged = {a.path for a in client.list_artifacts(run_id, "monitoring")}
    assert {
        "monitoring/drift_v3.json",
        "monitoring/drift_report.json",
        "monitoring/drift_table.html",
    } <= logged


def test_enough_drifted_traffic_is_compared_instead(deployed):
    _write_traffic(deployed["tmp"] / "inference_log", 400)
    summary = monitoring.check_drift(deployed["deployment"], PARAMS)["summary"]
    assert summary["current_source"].startswith("inference log, last 24 h")
    assert summary["dataset_drift"] is True
    assert summary["status"] == "drift"


def test_dashboard_shows_plots_traffic_and_drift_and_is_logged(deployed):
    _write_traffic(deployed["tmp"] / "inference_log", 150)
    drift = monitoring.check_drift(deployed["deployment"], PARAMS)
    shown = Dashboard.from_dict(
        monitoring.render_dashboard(
            deployed["deployment"], drift, PARAMS, dag_id="d", run_id="manual__1"
        )
    )
    assert shown.plots == ["roc curve"]
    assert shown.traffic_rows == 150
    assert shown.deployment.rollout.version == "3"
    assert shown.uri.startswith("file://")
    page = local_path(shown.uri)
    assert page.parent == deployed["tmp"] / "reports"
    html = page.read_text()
    assert "roc_auc 0.81 &gt;= 0.75" in html
    assert "tenure_months" in html
    client, run_id = deployed["client"], deployed["run_id"]
    assert [a.path for a in client.list_artifacts(run_id, "dashboard")] == [
        f"dashboard/{page.name}"
    ]
