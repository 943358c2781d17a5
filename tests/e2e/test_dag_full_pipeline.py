"""End to end: the whole DAG on small data, through deployment, rejection and rollback.

The three runs share one MLflow store and one model API process (on a free loopback
port), in order: a good model is deployed (the session's `deployed_run`); a weak one is
rejected and `champion` does not move; a version that fails the smoke tests is rolled back
and the run fails.
"""

from __future__ import annotations

import json

import httpx
import pytest
from mlflow import MlflowClient

from include.ml_pipeline import storage
from include.ml_pipeline.config import DEFAULT_MODEL_NAME, get_settings
from include.ml_pipeline.training.candidates import WEAK_CANDIDATE
from tests.e2e.conftest import deployment_conf, model_api_url


@pytest.fixture(scope="module")
def api_url(deployed_run):
    """This module's runs use the API the session's good run deployed to; stopped after."""
    from include.ml_pipeline.deployment import api_process

    with model_api_url(deployed_run.api_url) as url:
        yield url
        api_process.stop_api()


def _client():
    uri = get_settings().mlflow_tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _champion(name=DEFAULT_MODEL_NAME):
    try:
        return str(_client().get_model_version_by_alias(name, "champion").version)
    except Exception:
        return None


def test_01_good_model_is_trained_registered_deployed_and_served(deployed_run, api_url):
    result = deployed_run.result
    assert result.state == "success", result.log[-3000:]
    registered = result.result("entrenamiento_evaluacion.registrar_mlflow")
    version = registered["version"]

    # MLflow: a parent run with one nested run per candidate, params/metrics/model/dataset.
    client = _client()
    child = client.get_run(registered["run_id"])
    parent_id = child.data.tags["mlflow.parentRunId"]
    children = client.search_runs(
        [child.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'"
    )
    assert sorted(r.data.tags["mlflow.runName"] for r in children) == ["hgb_small", "logreg_c1"]
    assert {"validation_roc_auc", "fit_seconds"} <= set(child.data.metrics)
    assert child.data.tags["airflow_task_id"] == "entrenamiento_evaluacion.entrenar_modelo"
    assert child.inputs.dataset_inputs, "training dataset not logged"
    plots = [a.path for a in client.list_artifacts(registered["run_id"], "plots")]
    assert any(p.endswith(".png") for p in plots)
    assert registered["metrics"]["roc_auc"] > 0.75

    # Registry: the version is champion (and was challenger), with its decision recorded.
    mv = client.get_model_version(DEFAULT_MODEL_NAME, version)
    assert _champion() == version
    assert mv.tags["deployment_decision"] == "deploy"
    assert mv.tags["airflow_run_id"] == result.dag_run.run_id

    # The live API serves it, with the same labels as the registered model.
    release = result.result("despliegue_modelo.generar_artefactos")
    manifest = release["manifest"]
    assert release["manifest_uri"] == storage.join(
        get_settings().storage_uri, "deployments", f"{DEFAULT_MODEL_NAME}-v{version}.json"
    )
    assert storage.read_json(release["manifest_uri"])["version"] == version
    info = httpx.get(f"{api_url}/version").json()
    assert str(info["model_version"]) == version
    # The release stored the verified predictor as the version's serving artifact, and
    # the API loaded it (scikit-learn only re-checks it, in the background).
    artifact = manifest["serving"]["serving_artifact"]
    assert artifact["published"] is True
    assert json.loads(mv.tags["serving_artifact"])["uri"] == artifact["uri"]
    served = httpx.get(f"{api_url}/model").json()
    assert served["verification"]["source"] == "serving_artifact"
    smoke = result.result("despliegue_modelo.pruebas_api")["smoke"]
    assert smoke["rows_checked"] > 0
    assert 400 <= smoke["bad_payload_status"] < 500

    # Dashboard, drift and notification.
    dashboard = result.result("visualizacion_monitoreo.configurar_dashboards")
    assert storage.read_text(dashboard["uri"]).count("<img") >= 2
    assert result.result("visualizacion_monitoreo.configurar_monitoreo")["summary"]["status"]
    note = result.result("notificar_despliegue_exitoso")
    assert note["outcomes"]["log"]["status"] == "sent"
    assert result.task_state("notificar_modelo_rechazado") == "skipped"
    assert result.task_state("despliegue_modelo.revertir_despliegue") == "skipped"
    assert result.task_state("fin") == "success"


def test_02_rerunning_registration_for_the_same_run_keeps_one_version(deployed_run):
    from include.ml_pipeline.registry.registry import register_challenger

    client = _client()
    latest = max(
        client.search_model_versions(f"name='{DEFAULT_MODEL_NAME}'"), key=lambda v: int(v.version)
    )
    again = register_challenger(
        f"models:/{latest.source.split('/')[-1]}"
        if latest.source.startswith("models:/")
        else latest.source,
        DEFAULT_MODEL_NAME,
        airflow_run_id=latest.tags["airflow_run_id"],
        tracking_uri=get_settings().mlflow_tracking_uri,
    )
    assert str(again) == str(latest.version)
    assert len(client.search_model_versions(f"name='{DEFAULT_MODEL_NAME}'")) == int(latest.version)


def test_03_weak_model_is_rejected_and_champion_stays(run_dag, small_csv, api_url):
    before = _champion()
    result = run_dag(deployment_conf(small_csv, candidates=[WEAK_CANDIDATE]))
    assert result.state == "success"
    assert result.task_state("notificar_modelo_rechazado") == "success"
    assert result.task_state("despliegue_modelo.generar_artefactos") == "skipped"
    version = result.result("entrenamiento_evaluacion.registrar_mlflow")["version"]
    assert _champion() == before != version
    mv = _client().get_model_version(DEFAULT_MODEL_NAME, version)
    assert mv.tags["deployment_decision"] == "reject"
    assert "roc_auc" in mv.tags["deployment_reasons"]
    assert str(httpx.get(f"{api_url}/version").json()["model_version"]) == before


def test_04_failed_smoke_test_rolls_back_and_fails_the_run(run_dag, small_csv, api_url):
    before = _champion()
    # An impossible latency budget makes pruebas_api fail on a perfectly good model.
    result = run_dag(deployment_conf(small_csv, latency_p95_budget_ms=0.0001, seed=7))
    assert result.state == "failed"
    new = result.result("entrenamiento_evaluacion.registrar_mlflow")["version"]
    assert result.task_state("despliegue_modelo.pruebas_api") == "failed"
    assert result.task_state("despliegue_modelo.revertir_despliegue") == "failed"
    assert "p95 latency" in result.log
    assert "rollback: API serves v" + before in result.log
    assert _champion() == before != new
    assert str(httpx.get(f"{api_url}/version").json()["model_version"]) == before
    assert result.task_state("notificar_fallo") == "success"
    assert result.task_state("fin") == "upstream_failed"
