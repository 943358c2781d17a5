"""The DAG end to end on generated regression data: the problem type inferred and stated,
a regressor trained, gated against the mean baseline, registered with a numeric contract,
served (numbers), smoke-tested and monitored; rejected against a better champion (whose
label column was called something else); the mean predictor rejected by the baseline
gate; a failed deployment rolled back; the monitoring DAG on the regression champion."""

from __future__ import annotations

import json

import httpx
import pandas as pd
import pytest
from mlflow import MlflowClient

from include.ml_pipeline.config import get_settings
from include.ml_pipeline.data_preparation.sample_data import REGRESSION_TARGET, write_dataset
from include.ml_pipeline.storage import local_path
from include.ml_pipeline.training.candidates import WEAK_REGRESSION_CANDIDATE

pytestmark = pytest.mark.e2e

MODEL = "regression_e2e"
RIDGE = {"name": "ridge_a1", "estimator": "ridge", "params": {"alpha": 1.0}}
HGB = {
    "name": "hgb_small",
    "estimator": "hist_gradient_boosting",
    "params": {"max_iter": 80, "max_depth": 4},
}


@pytest.fixture(scope="module")
def spend_csv(pipeline_home):
    return write_dataset(
        pipeline_home / "incoming" / "spend.csv", rows=1_500, seed=5, problem="regression"
    )


def _client():
    uri = get_settings().mlflow_tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _champion():
    try:
        return str(_client().get_model_version_by_alias(MODEL, "champion").version)
    except Exception:
        return None


def _conf(data, **extra):
    return {
        "data_uri": str(data),
        "target": REGRESSION_TARGET,
        "model_name": MODEL,
        "candidates": [RIDGE, HGB],
        "latency_p95_budget_ms": 500.0,
        **extra,
    }


def test_01_a_regressor_is_trained_gated_registered_served_and_monitored(
    run_dag, spend_csv, api_url
):
    result = run_dag(_conf(spend_csv))
    assert result.state == "success", result.log[-3000:]
    report = result.result("preparacion_datos.validar_datos")
    assert report["problem_type"] == "regression"
    assert "fractional parts" in report["problem_reason"]
    registered = result.result("entrenamiento_evaluacion.registrar_mlflow")
    assert registered["split"]["feature_spec"]["problem_type"] == "regression"
    assert set(registered["metrics"]) >= {"rmse", "mae", "r2"}
    assert registered["metrics"]["r2"] > 0.4
    assert registered["baseline_metrics"]["r2"] < 0.01
    assert registered["contract"]["target"]["problem_type"] == "regression"
    low, high = registered["contract"]["target"]["range"]
    assert 0 <= low < high

    client = _client()
    run = client.get_run(registered["run_id"])
    assert run.data.tags["problem_type"] == "regression"
    assert "validation_rmse" in run.data.metrics
    assert "test_rmse" in run.data.metrics
    assert "baseline_test_rmse" in run.data.metrics
    plots = {a.path for a in client.list_artifacts(registered["run_id"], "plots")}
    assert {"plots/predicted_vs_actual.png", "plots/residuals.png"} <= plots
    mv = client.get_model_version(MODEL, registered["version"])
    assert mv.tags["problem_type"] == "regression"
    assert mv.tags["deployment_decision"] == "deploy"
    decision = result.result("entrenamiento_evaluacion.registrar_mlflow")
    assert decision["version"] == _champion()

    # The API answers numbers, as `mlflow models serve` does for a regressor.
    rows = pd.read_csv(spend_csv).drop(columns=[REGRESSION_TARGET]).head(3)
    records = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
    answer = httpx.post(f"{api_url}/invocations", json={"dataframe_records": records}).json()
    assert len(answer["predictions"]) == 3
    assert all(isinstance(v, float) for v in answer["predictions"])
    typed = httpx.post(f"{api_url}/predict", json={"records": records}).json()
    assert [p["value"] for p in typed["predictions"]] == answer["predictions"]
    served = httpx.get(f"{api_url}/model").json()
    assert served["predict_path"].startswith("compiled:")
    assert served["classes"] == []

    drift = result.result("visualizacion_monitoreo.configurar_monitoreo")
    prediction = drift["report"].get("prediction") or []
    assert all(row["kind"] == "numeric" for row in prediction)
    assert result.task_state("notificar_despliegue_exitoso") == "success"


def test_02_the_mean_predictor_is_rejected_by_the_baseline_gate(run_dag, spend_csv, api_url):
    before = _champion()
    result = run_dag(_conf(spend_csv, candidates=[WEAK_REGRESSION_CANDIDATE]))
    assert result.state == "success", result.log[-3000:]
    assert result.task_state("notificar_modelo_rechazado") == "success"
    version = result.result("entrenamiento_evaluacion.registrar_mlflow")["version"]
    reasons = _client().get_model_version(MODEL, version).tags["deployment_reasons"]
    assert "mean baseline" in reasons
    assert "min_lift_over_baseline" in reasons
    assert _champion() == before != version


def test_03_rejected_against_a_better_champion_whatever_the_label_is_called(
    run_dag, spend_csv, api_url, pipeline_home
):
    before = _champion()
    renamed = pipeline_home / "incoming" / "spend_renamed.csv"
    pd.read_csv(spend_csv).rename(columns={REGRESSION_TARGET: "spend"}).to_csv(renamed, index=False)
    # A ridge that barely learns: beats the mean, loses to the champion on the same rows.
    weak_ridge = {"name": "ridge_stiff", "estimator": "ridge", "params": {"alpha": 3000.0}}
    result = run_dag(_conf(renamed, target="spend", candidates=[weak_ridge]))
    assert result.state == "success", result.log[-3000:]
    registered = result.result("entrenamiento_evaluacion.registrar_mlflow")
    assert registered["champion_error"] is None
    assert registered["champion_metrics"]["rmse"] < registered["metrics"]["rmse"]
    reasons = _client().get_model_version(MODEL, registered["version"]).tags["deployment_reasons"]
    assert "worse than the champion's" in reasons
    assert _champion() == before != registered["version"]


def test_04_a_failed_deployment_rolls_back(run_dag, spend_csv, api_url):
    before = _champion()
    result = run_dag(_conf(spend_csv, latency_p95_budget_ms=0.0001, seed=7))
    assert result.state == "failed"
    assert result.task_state("despliegue_modelo.revertir_despliegue") == "failed"
    assert "rollback: API serves v" + before in result.log
    assert _champion() == before
    assert str(httpx.get(f"{api_url}/version").json()["model_version"]) == before


def test_05_monitoring_the_regression_champion(run_monitoring, spend_csv, pipeline_home):
    """`ml_model_monitoring` on the regression champion: the predicted numbers compared as
    a continuous output, the decision in the target's units; drifted data -> retraining,
    undrifted data -> none."""
    from airflow.models import DagRun

    from include.ml_pipeline.names import DEPLOYMENT_DAG_ID

    champion = _champion()
    target = pd.read_csv(spend_csv)[REGRESSION_TARGET]
    incoming = pipeline_home / "incoming"
    batches = {
        drift: write_dataset(
            incoming / f"spend_drift_{drift}.csv",
            rows=1_500,
            seed=99 if drift else 98,
            drift=drift,
            problem="regression",
        )
        for drift in (True, False)
    }
    shown = f"predicted {REGRESSION_TARGET}: mean "
    for drift, batch in batches.items():
        result = run_monitoring({"model_name": MODEL, "current_source": str(batch)})
        assert result.state == "success", result.log[-3000:]
        checked = result.result("compute_drift")
        summary = checked["summary"]
        assert summary["dataset_drift"] is drift
        report = json.loads(local_path(checked["report_uri"]).read_text())
        assert report["version"] == champion
        (row,) = report["prediction"]  # one continuous output, no class or probability rows
        assert (row["feature"], row["kind"], row["test"]) == ("prediction", "numeric", "ks")
        shift = summary["prediction_shift"]
        assert shift["reference_mean"] == pytest.approx(row["reference_mean"])
        assert shift["current_mean"] == pytest.approx(row["current_mean"])
        assert target.min() < shift["reference_mean"] < target.max()  # in the target's units
        assert shift["drifted"] is row["drifted"] is summary["prediction_drift"]
        decision = result.result("log_to_mlflow")
        assert decision["retrain"] is drift
        assert shown in decision["decision"]
        assert shown in checked["reason"]
        retraining = f"retrain__{result.dag_run.run_id}"
        runs = [r for r in DagRun.find(dag_id=DEPLOYMENT_DAG_ID) if r.run_id == retraining]
        if drift:
            assert decision["decision"].startswith("dataset drift above the threshold")
            assert result.task_state("trigger_retraining") == "success"
            assert shown in runs[0].conf["retrain_reason"]
        else:
            assert decision["decision"].startswith("no dataset drift; no retraining")
            assert result.task_state("no_drift") == "success"
            assert result.task_state("trigger_retraining") == "skipped"
            assert runs == []
