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
    # no dataset drift: the live performance asked for it, the logged decision says why
    calm = DriftCheck({"dataset_drift": False}, DRIFT.report_uri, "no drift on m v3")
    live = MonitoringRun("abc", None, True, "live accuracy of v3 0.61 ...; retraining requested")
    conf = monitoring_dag.prepare_retraining(
        calm.to_dict(), dag_id="mon", run_id="s__2", logged=live.to_dict()
    )
    assert conf == {"retrain_reason": f"{live.decision} (mon run s__2)"}


def test_a_refused_label_file_is_said_and_does_not_stop_the_check(tmp_path, monkeypatch):
    """A label file outside the contract: the task names it in its result (the decision
    says live performance was not measured) instead of failing the monitoring run."""
    from include.ml_pipeline.config import get_settings
    from include.ml_pipeline.monitoring.retrain_policy import LiveRule, live_verdict
    from include.ml_pipeline.payloads import LiveCheck
    from tests.support.answers import write_labels

    monkeypatch.setenv("ML_PIPELINE_STORAGE", (tmp_path / "data").as_uri())
    monkeypatch.setenv("ML_PIPELINE_INFERENCE_LOG", (tmp_path / "log").as_uri())
    monkeypatch.setenv("ML_PIPELINE_REPORTS", (tmp_path / "reports").as_uri())
    monkeypatch.setattr(
        "include.ml_pipeline.registry.contract.load_contract",
        lambda *a: {"target": {"type": "string", "labels": ["no", "yes"]}},
    )
    uri = write_labels(get_settings().storage_uri, "m", "bad.csv", [("r1", 0, "maybe")])
    result = monitoring_dag.live_performance(
        CHAMPION.to_dict(),
        {"live_window_hours": 24},
        run_id="manual__1",
        logical_date="2026-12-01T00:00:00+00:00",
    )
    check = LiveCheck.from_dict(result)
    assert "bad.csv" in check.problem
    assert "outside the contract's label set" in check.problem
    retrain, said = live_verdict(check, CHAMPION, LiveRule(min_accuracy=0.9))
    assert retrain is False
    assert said.startswith("live performance of v3 not measured: ")
    assert uri.endswith("bad.csv")


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
    calm = DriftCheck({**DRIFT.summary, "dataset_drift": False}, DRIFT.report_uri, "no drift")
    live = drifted(
        CHAMPION, calm, _logged(True), api_url=None, airflow_run_url=None, dag_id="m", run_id="1"
    )
    assert live.title == "Live performance of m v3; retraining started"
    assert note.dashboard_uri == "s3://bucket/reports/monitoring/dashboard_m_v3.html"
    assert note.details == {"report": DRIFT.report_uri, "mlflow_run_id": "abc"}
