"""The monitoring DAG's steps that need no store: the branch, the retraining conf, and the
drift notification's wording."""

from __future__ import annotations

from include.ml_pipeline.features import FeatureSpec
from include.ml_pipeline.notifications.events import drifted
from include.ml_pipeline.orchestration.steps import monitoring_dag
from include.ml_pipeline.payloads import Champion, DriftCheck, MonitoringRun

CHAMPION = Champion(
    model_name="m",
    version="3",
    alias="champion",
    run_id="r1",
    model_uri="models:/m/3",
    feature_spec=FeatureSpec(target="y", numeric=["a"]),
    train_path="/data/train.parquet",
)
DRIFT = DriftCheck(
    summary={"share_drifted": 0.5, "n_drifted": 2, "current_rows": 400},
    report_uri="s3://bucket/reports/monitoring/drift.json",
    reason="data drift on m v3: 2 of 4 features drifted (50%)",
)


def _logged(retrain: bool) -> MonitoringRun:
    return MonitoringRun(
        mlflow_run_id="abc",
        dashboard_uri="s3://bucket/reports/monitoring/dashboard_m_v3.html",
        retrain=retrain,
        decision="dataset drift above the threshold; retraining requested",
    )


def test_branch_follows_the_logged_decision():
    paths = {"retrain": ["prepare_retraining", "notify_drift"], "otherwise": "no_drift"}
    assert monitoring_dag.drift_detected(_logged(True).to_dict(), **paths) == paths["retrain"]
    assert monitoring_dag.drift_detected(_logged(False).to_dict(), **paths) == "no_drift"


def test_retraining_conf_says_why_and_which_run():
    conf = monitoring_dag.prepare_retraining(DRIFT.to_dict(), dag_id="mon", run_id="scheduled__1")
    assert conf == {"retrain_reason": f"{DRIFT.reason} (mon run scheduled__1)"}


def test_drift_notification_wording():
    note = drifted(
        CHAMPION,
        DRIFT,
        _logged(True),
        api_url="http://api",
        airflow_run_url=None,
        dag_id="mon",
        run_id="scheduled__1",
    )
    assert note.event == "drift"
    assert note.title == "Data drift on m v3; retraining started"
    assert note.metrics == {"share_drifted": 0.5, "n_drifted": 2, "current_rows": 400}
    assert note.reasons == [DRIFT.reason, _logged(True).decision]
    assert note.dashboard_uri == "s3://bucket/reports/monitoring/dashboard_m_v3.html"
    assert note.details == {"report": DRIFT.report_uri, "mlflow_run_id": "abc"}
