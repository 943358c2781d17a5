"""The monitoring DAG `ml_model_monitoring`, run with `dag.test()` against a throw-away
MLflow store holding a champion trained here; plus the plain functions it calls.

* a drifted batch: drift detected, `trigger_retraining` ran and created a DagRun of
  `ml_model_deployment_advanced` whose conf carries the reason; report, MLflow run,
  dashboard and notification written;
* an undrifted batch: no drift, the trigger and the notification are skipped;
* no champion: the run stops after `find_champion`, everything else skipped.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from include.ml_pipeline.data_preparation.sample_data import (
    CATEGORICAL_COLUMNS,
    NUMERIC_COLUMNS,
    TARGET,
    generate_churn_frame,
)
from include.ml_pipeline.errors import MonitoringError
from include.ml_pipeline.features import FeatureSpec
from include.ml_pipeline.monitoring import champion as champions
from include.ml_pipeline.monitoring import drift_check, retrain_policy, windows
from include.ml_pipeline.notifications import read_log
from include.ml_pipeline.payloads import Champion
from include.ml_pipeline.storage import local_path
from tests.e2e.conftest import run_logged

MODEL = "monitoring_test_model"
MONITORING_DAG_ID = "ml_model_monitoring"
DEPLOYMENT_DAG_ID = "ml_model_deployment_advanced"
SPEC = FeatureSpec(TARGET, list(NUMERIC_COLUMNS), list(CATEGORICAL_COLUMNS))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A tmp MLflow store (env for the in-process tasks) with a champion version tagged
    with `train_path`, trained on 2,000 generated rows."""
    from include.ml_pipeline.registry import registry
    from include.ml_pipeline.training.train import fit_candidate, start_parent_run

    root = tmp_path_factory.mktemp("monitoring")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    artifacts = (root / "artifacts").as_uri()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", tracking_uri)
        mp.setenv("ML_PIPELINE_MLFLOW_ARTIFACTS", artifacts)
        mp.setenv("ML_PIPELINE_REPORTS", str(root / "reports"))
        mp.setenv("ML_PIPELINE_NOTIFICATIONS", str(root / "notifications"))
        frame = generate_churn_frame(2_000, seed=7)
        splits = root / "splits"
        splits.mkdir()
        paths = {}
        for name, part in (("train", frame[:1400]), ("validation", frame[1400:])):
            paths[name] = str(splits / f"{name}.parquet")
            part.to_parquet(paths[name], index=False)
        parent = start_parent_run(
            tracking_uri=tracking_uri,
            experiment="monitoring-tests",
            airflow_run_id="train-1",
            artifact_location=artifacts,
        )
        result = fit_candidate(
            {"name": "logreg", "estimator": "logistic_regression", "params": {"C": 1.0}},
            paths["train"],
            paths["validation"],
            SPEC,
            tracking_uri=tracking_uri,
            experiment="monitoring-tests",
            parent_run_id=parent,
            artifact_location=artifacts,
        )
        version = registry.register_challenger(
            result.model_uri,
            MODEL,
            airflow_run_id="train-1",
            metrics={"roc_auc": 0.8},
            data_fingerprint="test",
            tags={"train_path": paths["train"], "mlflow_run_id": result.run_id},
            tracking_uri=tracking_uri,
        )
        registry.promote_to_champion(MODEL, version, tracking_uri=tracking_uri)
        batches = root / "batches"
        batches.mkdir()
        drifted = batches / "drifted.csv"
        generate_churn_frame(1_500, seed=99, drift=True).to_csv(drifted, index=False)
        undrifted = batches / "undrifted.csv"
        generate_churn_frame(1_500, seed=98).to_csv(undrifted, index=False)
        yield {
            "root": root,
            "tracking_uri": tracking_uri,
            "version": version,
            "train_path": paths["train"],
            "run_id": result.run_id,
            "drifted": str(drifted),
            "undrifted": str(undrifted),
            "reports": root / "reports",
            "notifications": root / "notifications",
        }


@pytest.fixture(scope="module")
def monitoring(store, airflow_db, pipeline_home):
    """Run `ml_model_monitoring` once with a conf; returns (dag_run, tasks, log text)."""
    from devtools.airflow_env import serialize_dags

    serialize_dags(require=(MONITORING_DAG_ID, DEPLOYMENT_DAG_ID))

    def _run(conf: dict):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MLFLOW_TRACKING_URI", store["tracking_uri"])
            mp.setenv("ML_PIPELINE_REPORTS", str(store["reports"]))
            mp.setenv("ML_PIPELINE_NOTIFICATIONS", str(store["notifications"]))
            result = run_logged(pipeline_home, {"model_name": MODEL, **conf}, MONITORING_DAG_ID)
        return result.dag_run, result.tasks, result.log

    return _run


def _states(tasks: dict) -> dict:
    return {k: v["state"] for k, v in tasks.items()}


# --------------------------------------------------------------------------- DAG runs


def test_drifted_batch_triggers_retraining(store, monitoring):
    from airflow.models import DagRun

    dag_run, tasks, log = monitoring({"current_source": store["drifted"]})
    states = _states(tasks)
    assert str(dag_run.state) == "success", (states, log[-3000:])
    drift = tasks["compute_drift"]["result"]
    assert drift["summary"]["dataset_drift"] is True
    assert drift["summary"]["status"] == "drift"
    assert {"tenure_months", "monthly_charges", "contract_type"} <= set(
        drift["summary"]["drifted_features"]
    )
    assert drift["summary"]["prediction_drift"] is not None  # the champion scored both sides
    assert states["trigger_retraining"] == "success"
    assert states["notify_drift"] == "success"
    assert states["no_drift"] == "skipped"

    # The retraining run exists, queued, with the reason in its conf.
    trigger_run_id = tasks["trigger_retraining"]["result"]
    expected_run_id = f"retrain__{dag_run.run_id}"
    runs = [r for r in DagRun.find(dag_id=DEPLOYMENT_DAG_ID) if r.run_id == expected_run_id]
    assert len(runs) == 1, [r.run_id for r in DagRun.find(dag_id=DEPLOYMENT_DAG_ID)]
    reason = runs[0].conf["retrain_reason"]
    assert reason.startswith(f"data drift on {MODEL} v{store['version']}")
    assert "tenure_months" in reason
    assert dag_run.run_id in reason
    # started by the operator: a manual run on 2.11, an operator-triggered one on 3.x
    assert getattr(runs[0].run_type, "value", runs[0].run_type) in {"manual", "operator_triggered"}
    assert trigger_run_id is None  # the operator returns nothing; the run id is a keyed XCom

    # Report JSON under reports_uri, the MLflow run, the dashboard, the notification.
    report_path = local_path(drift["report_uri"])
    assert report_path.parent == store["reports"] / "monitoring"
    report = json.loads(report_path.read_text())
    assert report["summary"]["dataset_drift"] is True
    assert report["version"] == store["version"]
    assert len(report["features"]) == len(SPEC.columns)
    logged = tasks["log_to_mlflow"]["result"]
    assert logged["retrain"] is True
    assert local_path(logged["dashboard_uri"]).is_file()
    assert "drift" in local_path(logged["dashboard_uri"]).read_text().lower()

    from mlflow import MlflowClient

    client = MlflowClient(store["tracking_uri"])
    run = client.get_run(logged["mlflow_run_id"])
    assert client.get_experiment(run.info.experiment_id).name == "ml_model_monitoring"
    assert run.data.metrics["drift_dataset"] == 1.0
    assert run.data.tags["retrain_requested"] == "true"
    assert run.data.tags["model_version"] == store["version"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "drift")}
    assert {"drift/drift_report.json", "drift/drift_table.html"} <= artifacts
    assert client.list_artifacts(run.info.run_id, "dashboard")

    notes = read_log(store["notifications"])
    assert notes[-1]["event"] == "drift"
    assert notes[-1]["version"] == store["version"]
    assert notes[-1]["channels"]["slack"]["status"] == "skipped"

    # A second drifted check of the same version within the cool-down does not trigger.
    again, tasks2, _ = monitoring({"current_source": store["drifted"]})
    assert str(again.state) == "success"
    assert tasks2["compute_drift"]["result"]["summary"]["dataset_drift"] is True
    assert "cool-down" in tasks2["log_to_mlflow"]["result"]["decision"]
    assert _states(tasks2)["trigger_retraining"] == "skipped"


def test_undrifted_batch_does_not_trigger(store, monitoring):
    """... and the champion's live accuracy from labels that came back is reported (task
    result, decision, MLflow metrics, dashboard) without a rule acting on it."""
    from airflow.models import DagRun

    from include.ml_pipeline.config import get_settings
    from tests.support.answers import Answer, write_answers, write_labels

    settings = get_settings()
    now = datetime.now(UTC)
    version = store["version"]
    answers = [
        Answer(f"mon-{i}", version, ["yes" if i % 3 else "no"], now - timedelta(minutes=i))
        for i in range(40)
    ]
    write_answers(settings.inference_log_uri, MODEL, answers)
    labels = [(f"mon-{i}", 0, "yes") for i in range(20)]  # right when i % 3 != 0
    write_labels(settings.storage_uri, MODEL, "e2e.csv", labels)
    accuracy = sum(i % 3 != 0 for i in range(20)) / 20

    before = {r.run_id for r in DagRun.find(dag_id=DEPLOYMENT_DAG_ID)}
    dag_run, tasks, log = monitoring({"current_source": store["undrifted"]})
    states = _states(tasks)
    assert str(dag_run.state) == "success", (states, log[-3000:])
    live = tasks["live_performance"]["result"]
    assert (live["answers"], live["labelled"]) == (40, 20)
    assert live["metrics"] == {"accuracy": pytest.approx(accuracy)}
    decision = tasks["log_to_mlflow"]["result"]["decision"]
    assert f"live accuracy of v{version} {accuracy:.4g} on 20 labelled answers" in decision
    from mlflow import MlflowClient

    run = MlflowClient(store["tracking_uri"]).get_run(
        tasks["log_to_mlflow"]["result"]["mlflow_run_id"]
    )
    assert run.data.metrics["live_accuracy"] == pytest.approx(accuracy)
    assert run.data.metrics["live_label_share"] == pytest.approx(0.5)
    assert run.data.params["min_live_labels"] == "50"
    page = local_path(tasks["log_to_mlflow"]["result"]["dashboard_uri"]).read_text()
    assert 'id="live-performance"' in page
    summary = tasks["compute_drift"]["result"]["summary"]
    assert summary["dataset_drift"] is False
    assert summary["status"] == "ok"
    assert states["drift_detected"] == "success"
    assert states["no_drift"] == "success"
    assert states["prepare_retraining"] == "skipped"
    assert states["trigger_retraining"] == "skipped"
    assert states["notify_drift"] == "skipped"
    assert {r.run_id for r in DagRun.find(dag_id=DEPLOYMENT_DAG_ID)} == before
    assert local_path(tasks["compute_drift"]["result"]["report_uri"]).is_file()


def test_no_champion_skips_cleanly(store, monitoring):
    dag_run, tasks, log = monitoring({"model_name": "no_such_model"})
    states = _states(tasks)
    assert str(dag_run.state) == "success", states
    assert states["find_champion"] == "success"
    assert {v for k, v in states.items() if k != "find_champion"} == {"skipped"}
    assert "No champion for model 'no_such_model'" in log


# --------------------------------------------------------------------------- functions


def test_find_champion_reads_spec_and_reference(store):
    champion = champions.read_champion(MODEL, tracking_uri=store["tracking_uri"])
    assert champion.version == store["version"]
    assert champion.train_path == store["train_path"]
    assert champion.feature_spec == SPEC
    assert champion.metrics == {"roc_auc": 0.8}
    # Without the tag, the run's `training` dataset input names the same file.
    source = champions.training_input_source(store["run_id"], tracking_uri=store["tracking_uri"])
    assert local_path(source) == Path(store["train_path"])  # a path or a file:// URI
    assert champions.read_champion("nope", tracking_uri=store["tracking_uri"]) is None
    reference = windows.reference_frame(champion.train_path, champion.feature_spec)
    assert len(reference) == 1400
    assert set(SPEC.columns) <= set(reference.columns)
    with pytest.raises(MonitoringError, match="train_path"):
        windows.reference_frame(None, SPEC)


def test_load_current_from_inference_log_and_files(tmp_path):
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    now = datetime.now(UTC)
    frame = generate_churn_frame(6, seed=1)
    head = frame.head(2).astype(object)
    features = {c: [None if v != v else v for v in head[c]] for c in SPEC.columns}  # NaN: null
    lines = []
    for stamp, version in ((now - timedelta(hours=30), "1"), (now, "1"), (now, "2")):
        lines.append(
            json.dumps(
                {
                    "timestamp": stamp.isoformat(),
                    "model_version": version,
                    "latency_ms": 3.0,
                    "rows": 2,
                    "features": features,
                    "predictions": ["no", "yes"],
                    "classes": ["no", "yes"],
                    "probabilities": [[0.7, 0.3], [0.2, 0.8]],
                }
            )
        )
    (log_dir / "inference-20260101T000000000000-1-000001.jsonl").write_text("\n".join(lines))
    since = windows.window_start(now + timedelta(minutes=1), 24)
    current = windows.current_frame(
        "inference_log", SPEC, model_version="1", inference_log_dir=log_dir, since=since
    )
    assert len(current) == 2  # the old record and the other version are left out
    assert list(current["prediction"]) == ["no", "yes"]
    snapshot = windows.snapshot_current(current, tmp_path / "snap" / "current.parquet")
    import pandas as pd

    assert len(pd.read_parquet(snapshot)) == 2
    empty = windows.current_frame("inference_log", SPEC, inference_log_dir=tmp_path / "none")
    assert empty.empty

    csv = tmp_path / "batch.csv"
    frame.to_csv(csv, index=False)
    assert len(windows.current_frame(csv.as_uri(), SPEC)) == 6
    frame.drop(columns=["age"]).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(MonitoringError, match="age"):
        windows.current_frame(str(tmp_path / "bad.parquet"), SPEC)
    with pytest.raises(FileNotFoundError):
        windows.current_frame(str(tmp_path / "missing.csv"), SPEC)


def test_drift_check_reason_and_decision():
    reference = generate_churn_frame(2_000, seed=3)
    drifted = drift_check.check_drift(
        reference, generate_churn_frame(1_500, seed=4, drift=True), SPEC
    )
    summary = drifted.summary()
    assert summary["dataset_drift"] is True
    assert summary["prediction_drift"] is None
    champion = Champion(
        model_name="m",
        version="3",
        alias="champion",
        run_id=None,
        model_uri="models:/m/3",
        feature_spec=SPEC,
        train_path=None,
    )
    reason = drift_check.drift_reason(summary, champion, "batch.csv")
    assert reason.startswith("data drift on m v3: ")
    assert "tenure_months" in reason
    assert "batch.csv" in reason

    assert retrain_policy.retrain_decision(summary, None)[0] is True
    earlier = {"start_time": "2026-01-01T00:00:00+00:00", "airflow_run_id": "r1"}
    retrain, why = retrain_policy.retrain_decision(summary, earlier)
    assert retrain is False
    assert "cool-down" in why
    calm = drift_check.check_drift(reference, generate_churn_frame(1_500, seed=5), SPEC)
    assert retrain_policy.retrain_decision(calm.summary(), None) == (
        False,
        "no dataset drift; no retraining",
    )
    few = drift_check.check_drift(reference, generate_churn_frame(20, seed=6), SPEC)
    retrain, why = retrain_policy.retrain_decision(few.summary(), None)
    assert retrain is False
    assert "not enough" in why
    assert windows.window_start("2026-01-02T00:00:00+00:00", 24) == datetime(2026, 1, 1, tzinfo=UTC)
