"""Two models deployed one after the other into one home and one model API, a client of
each sending throughout: neither client sees a non-2xx, through both deployments and the
rollback of one.

The first run deploys a churn classifier (the API starts for it; its client uses the bare
`/invocations`, as today's clients do). The second run deploys another problem, next year's
spend (a regressor, its own `model_name`): the API loads it next to the first, whose client
keeps its answers; the spend client uses `/models/<name>/invocations`. A third run of the
churn model fails its smoke test (a p95 budget nobody meets) and is rolled back: the churn
champion goes back to v1 and the spend model is untouched. Before issue 23 the second run
replaced the first in the API and the churn client got 422 for every request.
"""

from __future__ import annotations

import httpx
import pytest

from include.ml_pipeline.data_preparation.sample_data import (
    REGRESSION_TARGET,
    TARGET,
    write_dataset,
)
from tests.support.traffic import TrafficClient, sample_records

pytestmark = pytest.mark.e2e

CHURN = "several_churn"
SPEND = "several_spend"
LOGREG = {"name": "logreg_c1", "estimator": "logistic_regression", "params": {"C": 1.0}}
RIDGE = {"name": "ridge_a1", "estimator": "ridge", "params": {"alpha": 1.0}}


def _served(url: str) -> dict[str, str | None]:
    return {m["name"]: m["model_version"] for m in httpx.get(url + "/models").json()["models"]}


def test_two_models_deployed_one_after_the_other_and_a_rollback_of_one(
    run_dag, pipeline_home, api_url
):
    incoming = pipeline_home / "incoming"
    churn_csv = write_dataset(incoming / "several_churn.csv", rows=1_200, seed=21)
    spend_csv = write_dataset(
        incoming / "several_spend.csv", rows=1_200, seed=22, problem="regression"
    )
    churn_conf = {
        "data_uri": str(churn_csv),
        "model_name": CHURN,
        "candidates": [LOGREG],
        "latency_p95_budget_ms": 500.0,
    }
    first = run_dag(churn_conf)
    assert first.state == "success", first.log[-3000:]
    churn_v1 = first.result("entrenamiento_evaluacion.registrar_mlflow")["version"]

    churn_client = TrafficClient(api_url, sample_records("binary", TARGET))
    churn_client.start()
    spend_client = None
    try:
        second = run_dag(
            {
                "data_uri": str(spend_csv),
                "target": REGRESSION_TARGET,
                "model_name": SPEND,
                "candidates": [RIDGE],
                "latency_p95_budget_ms": 500.0,
            }
        )
        assert second.state == "success", second.log[-3000:]
        spend_v1 = second.result("entrenamiento_evaluacion.registrar_mlflow")["version"]
        assert _served(api_url) == {CHURN: churn_v1, SPEND: spend_v1}
        assert httpx.get(api_url + "/version").json()["model_name"] == CHURN  # the default

        spend_client = TrafficClient(
            api_url, sample_records("regression", REGRESSION_TARGET), f"/models/{SPEND}/invocations"
        )
        spend_client.start()
        third = run_dag({**churn_conf, "latency_p95_budget_ms": 0.0001, "seed": 7})
        assert third.state == "failed"
        assert third.task_state("despliegue_modelo.revertir_despliegue") == "failed"
        assert f"rollback: API serves v{churn_v1}" in third.log
        # before v2 met a client it was replayed on v1's logged live requests (issue 24)
        replay = third.result("despliegue_modelo.generar_artefactos")["manifest"]["replay"]
        assert replay["champion_version"] == churn_v1, replay
        assert replay["rows"] > 20, replay
        assert replay["agreement"] >= 0.9, replay
        assert replay["status"] in ("pass", "inconclusive"), replay
        assert _served(api_url) == {CHURN: churn_v1, SPEND: spend_v1}
    finally:
        churn = churn_client.stop()
        spend = spend_client.stop() if spend_client else []
    print(f"churn client: {len(churn)} requests; spend client: {len(spend)} requests")
    assert len(churn) > 20
    assert len(spend) > 20
    assert churn_client.failures() == []
    assert spend_client.failures() == []
    assert {label for _, label in churn} <= {"no", "yes"}
    assert all(isinstance(value, float) for _, value in spend)
