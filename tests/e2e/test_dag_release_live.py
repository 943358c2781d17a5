"""Release on live evidence through the whole DAG (`release_strategy`, issue 24), with a
client calling the model throughout: a challenger as good as the champion is promoted
through shadow and a canary step with 0 failed requests (the decision on the version, in
the manifest and in the notification); one trained on inverted labels is aborted at the
shadow look, before any canary traffic: the champion's alias untouched, every client
answer the champion's, the run failed at `desplegar_api` with the decision as its
message and `notificar_fallo` saying it."""

from __future__ import annotations

import httpx
import pandas as pd
import pytest
from mlflow import MlflowClient

from include.ml_pipeline import storage
from include.ml_pipeline.config import get_settings
from include.ml_pipeline.data_preparation.sample_data import TARGET, write_dataset
from include.ml_pipeline.deployment.experiment_client import experiment_status
from tests.support.traffic import TrafficClient, sample_records

pytestmark = pytest.mark.e2e

MODEL = "release_live_classifier"
LOGREG = {"name": "logreg_c1", "estimator": "logistic_regression", "params": {"C": 1.0}}
#: a stage looks once the challenger answered 60 requests more; the DAG pokes every second
STAGED = {
    "release_strategy": "canary",
    "canary_steps": [50],
    "release_min_requests": 60,
    "release_poke_seconds": 1,
    "release_max_wait_minutes": 3.0,
}


def _registry() -> MlflowClient:
    uri = get_settings().mlflow_tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _alias(alias: str) -> str:
    return str(_registry().get_model_version_by_alias(MODEL, alias).version)


def _notification(result, task_id: str) -> dict:
    return storage.read_json(result.result(task_id)["outcomes"]["log"]["detail"])


def test_an_equal_challenger_is_promoted_and_a_corrupted_one_aborted_in_shadow(
    run_dag, pipeline_home, api_url
):
    incoming = pipeline_home / "incoming"
    data = write_dataset(incoming / "release_live.csv", rows=1_200, seed=31)
    inverted = incoming / "release_live_inverted.csv"
    frame = pd.read_csv(data)
    frame[TARGET] = frame[TARGET].map({"yes": "no", "no": "yes"})
    frame.to_csv(inverted, index=False)
    conf = {
        "data_uri": str(data),
        "model_name": MODEL,
        "candidates": [LOGREG],
        "latency_p95_budget_ms": 500.0,
        "tolerance": 0.5,  # the deploy gate is not under test here
    }
    first = run_dag(conf)  # a direct release, as before: the champion
    assert first.state == "success", first.log[-3000:]
    v1 = _alias("champion")

    records = sample_records("binary", TARGET, rows=50)
    client = TrafficClient(api_url, records, f"/models/{MODEL}/invocations")
    client.start()
    try:
        second = run_dag({**conf, **STAGED, "seed": 7})
        assert second.state == "success", second.log[-4000:]
        v2 = second.result("entrenamiento_evaluacion.registrar_mlflow")["version"]
        assert (_alias("champion"), _alias("previous_champion")) == (v2, v1)
        assert second.result("despliegue_modelo.desplegar_api")["version"] == v2
        assert second.task_state("despliegue_modelo.pruebas_api") == "success"
        release = second.result("despliegue_modelo.desplegar_api")["release"]["manifest"]
        decided = release["release"]
        assert (decided["outcome"], decided["verdict"]) == ("promoted", "pass")
        assert [look["look"] for look in decided["looks"]] == [1, 2]
        assert decided["stages"] == ["shadow", "canary 50%"]
        assert release["previous_champion"] == v1
        tags = _registry().get_model_version(MODEL, v2).tags
        assert tags["release_verdict"] == "pass"
        assert tags["release_looks"] == "2 of 2"
        said = _notification(second, "notificar_despliegue_exitoso")["reasons"]
        assert any(r.startswith("release (canary): PASS at look 2 of 2") for r in said), said

        # the champion's answers now, then a challenger trained on inverted labels
        champion_answers = [
            httpx.post(
                f"{api_url}/models/{MODEL}/invocations", json={"dataframe_records": [r]}
            ).json()["predictions"][0]
            for r in records
        ]
        start = len(client.outcomes)
        third = run_dag(
            {
                **conf,
                **STAGED,
                "data_uri": str(inverted),
                "release_abort_on_replay_fail": False,  # let the live shadow look decide
            }
        )
        end = len(client.outcomes)
    finally:
        outcomes = client.stop()
    assert third.state == "failed"
    v3 = third.result("entrenamiento_evaluacion.registrar_mlflow")["version"]
    assert third.task_state("despliegue_modelo.generar_artefactos") == "success"
    manifest = third.result("despliegue_modelo.generar_artefactos")["manifest"]
    assert manifest["replay"]["status"] == "fail"  # the replay saw it too
    assert third.task_state("despliegue_modelo.desplegar_api") == "failed"
    assert third.task_state("despliegue_modelo.revertir_despliegue") == "skipped"
    assert "release aborted: FAIL at look 1 of 2" in third.log
    assert _alias("champion") == v2
    assert experiment_status(api_url, MODEL) is None
    written = storage.read_json(manifest["manifest_uri"])["release"]
    assert (written["outcome"], written["verdict"], len(written["looks"])) == (
        "aborted",
        "fail",
        1,
    )  # aborted at the shadow look: the canary step never ran
    assert _registry().get_model_version(MODEL, v3).tags["release_verdict"] == "fail"
    failure = _notification(third, "notificar_fallo")
    assert any("FAIL at look 1 of 2" in r for r in failure["reasons"]), failure

    print(f"client: {len(outcomes)} requests, {end - start} during the aborted release")
    assert client.failures() == []
    assert end - start > 60
    during = [label for _, label in outcomes[start:end]]
    expected = [champion_answers[i % len(records)] for i in range(start, end)]
    assert during == expected  # every client answer the champion's
