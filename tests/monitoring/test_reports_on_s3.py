"""The storage root on an S3 server (moto, on loopback): the deployment's drift report and
dashboard, the monitoring run's frozen window, report and dashboard, and the
notifications are objects in the bucket, named by `s3://` URIs in the payloads, read back
from the bucket; nothing is left in the worker's home or temporary folder.

Each step is called as its Airflow task calls it, one after another, with only the
payload dicts between them, as if each ran on another worker."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from include.ml_pipeline import storage
from include.ml_pipeline.data_preparation.sample_data import (
    TARGET,
    churn_spec,
    generate_churn_frame,
)
from include.ml_pipeline.notifications import read_log
from include.ml_pipeline.orchestration.steps import monitoring_dag
from include.ml_pipeline.orchestration.steps.deployment_dag import monitoring, notifications
from include.ml_pipeline.payloads import (
    Champion,
    CurrentWindow,
    Dashboard,
    DriftCheck,
    DriftResult,
    MonitoringRun,
    Notified,
    ReferenceData,
)
from include.ml_pipeline.runs import run_key
from tests.monitoring.conftest import live_deployment, training_run_with_plot, write_splits

RUN_ID = "manual__2026-12-01T12:00:00+00:00"
NAME = re.compile(r"\d{8}T\d{12}Z-(\w+)-[0-9a-f]{8}\.json")


def _params() -> dict:
    from include.ml_pipeline.orchestration.params import monitoring_params

    values = {name: param.value for name, param in monitoring_params().items()}
    return {
        **values,
        "model_name": "m",
        "drift_min_rows": 100,
        "slack_conn_id": None,
        "smtp_conn_id": None,
    }


@pytest.fixture
def trained(storage_on_s3):
    """Splits and a drifted batch in the bucket; a training run with one evaluation plot
    in the MLflow store (the tracking server's side, not the worker's)."""
    from include.ml_pipeline.config import get_settings

    settings = get_settings()
    assert settings.storage_uri == storage_on_s3.root
    client, run_id = training_run_with_plot(
        settings.mlflow_tracking_uri, settings.mlflow_artifact_root, storage_on_s3.services
    )
    runs = storage.join(storage_on_s3.root, "runs", "r1")
    drifted = generate_churn_frame(600, seed=99, drift=True).drop(columns=[TARGET])
    batch = storage.write_text(
        storage.join(storage_on_s3.root, "incoming", "drifted.csv"), drifted.to_csv(index=False)
    )
    splits = write_splits(storage.join(runs, "splits"))
    deployment = live_deployment(splits, run_id, storage.join(runs, "manifest.json"))
    return {
        "client": client,
        "run_id": run_id,
        "paths": splits,
        "batch": batch,
        "deployment": deployment,
    }


def _key(storage_on_s3, uri: str) -> str:
    """The bucket key of an `s3://` URI of this test's root."""
    head = f"s3://{storage_on_s3.server.bucket}/"
    assert uri.startswith(storage_on_s3.root + "/"), uri
    return uri[len(head) :]


def _left_on_disk(*folders) -> list[str]:
    return sorted(str(p) for folder in folders for p in folder.rglob("*"))


def test_deployment_and_monitoring_outputs_are_objects_in_the_bucket(storage_on_s3, trained):
    s3, root, params = storage_on_s3.server, storage_on_s3.root, _params()
    before = set(s3.keys(storage_on_s3.prefix + "/"))

    # configurar_monitoreo -> configurar_dashboards -> notificar_despliegue_exitoso
    deployment = trained["deployment"]
    drift = DriftResult.from_dict(monitoring.check_drift(deployment, params))
    assert drift.report_uri == f"{root}/reports/drift_v3.json"
    written = json.loads(s3.get(_key(storage_on_s3, drift.report_uri)))
    assert written["version"] == "3"
    assert written["reference"] == trained["paths"]["train"]
    assert written["summary"]["current_rows"] == 300  # no traffic: the test split

    shown = Dashboard.from_dict(
        monitoring.render_dashboard(deployment, drift.to_dict(), params, dag_id="d", run_id=RUN_ID)
    )
    assert shown.uri == f"{root}/reports/dashboard_m_v3.html"
    assert shown.plots == ["roc curve"]
    page = s3.get(_key(storage_on_s3, shown.uri)).decode()
    assert "roc_auc 0.81 &gt;= 0.75" in page
    assert page.count('src="data:image/png;base64,') >= 1  # plots inside the one object
    assert not re.search(r"""\bsrc\s*=\s*["'](?!data:)""", page)  # nothing beside it

    deployed = Notified.from_dict(
        notifications.notify_deployed(shown.to_dict(), params, dag_id="d", run_id=RUN_ID)
    )
    record = deployed.outcomes["log"]["detail"]
    assert record.startswith(f"{root}/notifications/")
    assert NAME.fullmatch(record.rsplit("/", 1)[-1]).group(1) == "deployed"
    assert json.loads(s3.get(_key(storage_on_s3, record)))["version"] == "3"

    # ml_model_monitoring: each step gets only the previous steps' payloads.
    champion = Champion(
        model_name="m",
        version="3",
        alias="champion",
        run_id=trained["run_id"],
        model_uri="models:/m/3",  # not registered: no prediction drift, feature drift runs
        feature_spec=churn_spec(),
        train_path=trained["paths"]["train"],
        metrics={"roc_auc": 0.81},
    ).to_dict()
    watch = {**params, "current_source": trained["batch"]}
    now = datetime.now(UTC)
    reference = monitoring_dag.load_reference(champion)
    assert ReferenceData.from_dict(reference).uri == trained["paths"]["train"]
    current = monitoring_dag.load_current(champion, watch, run_id=RUN_ID, logical_date=now)
    window = CurrentWindow.from_dict(current)
    assert window.uri == f"{root}/monitoring/{run_key(RUN_ID)}/current.parquet"
    assert window.rows == 600
    checked = DriftCheck.from_dict(
        monitoring_dag.compute_drift(champion, reference, current, watch, run_id=RUN_ID)
    )
    assert checked.report_uri == (f"{root}/reports/monitoring/drift_m_v3_{run_key(RUN_ID)}.json")
    assert checked.summary["dataset_drift"] is True
    latest = json.loads(s3.get(_key(storage_on_s3, f"{root}/reports/monitoring/drift_latest.json")))
    assert latest == json.loads(s3.get(_key(storage_on_s3, checked.report_uri)))
    decided = monitoring_dag.decide_retraining(
        champion, checked.to_dict(), watch, run_id=RUN_ID, logical_date=now
    )
    logged = MonitoringRun.from_dict(
        monitoring_dag.log_to_mlflow(
            champion, current, checked.to_dict(), decided, watch, dag_id="mon", run_id=RUN_ID
        )
    )
    assert logged.dashboard_uri == f"{root}/reports/monitoring/dashboard_m_v3.html"
    assert "drift" in s3.get(_key(storage_on_s3, logged.dashboard_uri)).decode().lower()
    client = trained["client"]
    artifacts = {a.path for a in client.list_artifacts(logged.mlflow_run_id, "drift")}
    report_name = checked.report_uri.rsplit("/", 1)[-1]
    assert {"drift/drift_report.json", f"drift/{report_name}"} <= artifacts
    assert [a.path for a in client.list_artifacts(logged.mlflow_run_id, "dashboard")] == [
        "dashboard/dashboard_m_v3.html"
    ]
    assert logged.retrain is True
    drifted = Notified.from_dict(
        monitoring_dag.notify_drift(
            champion, checked.to_dict(), logged.to_dict(), watch, dag_id="mon", run_id=RUN_ID
        )
    )

    # What the bucket holds now, besides the inputs put there by the fixture.
    new = sorted(set(s3.keys(storage_on_s3.prefix + "/")) - before)
    notes = [k for k in new if k.startswith(f"{storage_on_s3.prefix}/notifications/")]
    assert [k for k in new if k not in notes] == sorted(
        _key(storage_on_s3, uri)
        for uri in (
            drift.report_uri,
            shown.uri,
            window.uri,
            checked.report_uri,
            f"{root}/reports/monitoring/drift_latest.json",
            logged.dashboard_uri,
        )
    )
    assert [NAME.fullmatch(k.rsplit("/", 1)[-1]).group(1) for k in notes] == [
        "deployed",
        "drift",
    ]
    assert _key(storage_on_s3, drifted.outcomes["log"]["detail"]) == notes[-1]
    records = read_log()
    assert [(r["event"], r["version"]) for r in records] == [("deployed", "3"), ("drift", "3")]
    assert records[-1]["dashboard_uri"] == logged.dashboard_uri
    assert records[-1]["details"]["report"] == checked.report_uri
    assert read_log(limit=1) == records[-1:]

    # Nothing written to the worker's disk: its home and temporary folder are empty.
    assert _left_on_disk(storage_on_s3.home, storage_on_s3.scratch) == []
