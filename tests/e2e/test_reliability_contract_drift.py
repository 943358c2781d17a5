"""A client of the champion's input contract keeps calling the model API while the DAG is
run on files whose contract changed; none of its requests may fail.

The API serves a champion trained on the sample data. A client thread sends one row of
that original contract every ~20 ms (as a real client would: `live` traffic) while the DAG
runs, in turn, on a file with a renamed, a removed and a retyped column, and on a file with
another label set. Each run must be rejected at the gate naming the differences, `champion`
must not move, and the API must keep serving the old version: the client sees only 2xx.
Without the contract gate both challengers deploy (they beat the baseline) and the client
gets 422 for every row from then on.
"""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from include.ml_pipeline.config import get_settings
from include.ml_pipeline.data_preparation.sample_data import TARGET, generate_churn_frame
from include.ml_pipeline.names import (
    CONTRACT_CHANGES_TAG,
    DECISION_TASK_ID,
    DECISION_XCOM_KEY,
)
from tests.e2e.conftest import FAST_CANDIDATES
from tests.support.traffic import TrafficClient

MODEL = "contract_drift_classifier"
#: Between two requests of the client.
INTERVAL_S = 0.02


def _conf(path, **extra) -> dict:
    """What `make run DATA=path TARGET=churn` passes (the sample's column rules off)."""
    return {
        "data_uri": str(path),
        "target": TARGET,
        "model_name": MODEL,
        "candidates": FAST_CANDIDATES,
        "latency_p95_budget_ms": 500.0,
        "required_columns": [],
        "numeric_columns": [],
        "value_ranges": {},
        **extra,
    }


def _write(path, frame: pd.DataFrame):
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def _columns_changed(frame: pd.DataFrame) -> pd.DataFrame:
    """`tenure_months` renamed `tenure_in_months`, `region` dropped, `support_tickets`
    written as text."""
    frame = frame.rename(columns={"tenure_months": "tenure_in_months"}).drop(columns=["region"])
    frame["support_tickets"] = np.where(frame["support_tickets"] > 1, "many", "few")
    return frame


def _labels_changed(frame: pd.DataFrame) -> pd.DataFrame:
    """The same columns; the labels `no`/`yes` become `stays`/`leaves`."""
    return frame.assign(**{TARGET: frame[TARGET].map({"no": "stays", "yes": "leaves"})})


class ContractClient(TrafficClient):
    """Sends one record of the original contract to `/invocations` every INTERVAL_S and
    keeps every outcome: (status or the transport error, the predicted label)."""

    def __init__(self, url: str, records: list[dict]):
        super().__init__(url, records, "/invocations", INTERVAL_S)


def _registry():
    uri = get_settings().mlflow_tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _champion() -> str:
    return str(_registry().get_model_version_by_alias(MODEL, "champion").version)


def _decision(result) -> dict:
    ti = result.dag_run.get_task_instance(DECISION_TASK_ID)
    return ti.xcom_pull(task_ids=DECISION_TASK_ID, key=DECISION_XCOM_KEY)["decision"]


CHANGES = [
    (
        "columns",
        _columns_changed,
        [
            "column 'tenure_months' is gone and 'tenure_in_months' (numeric) is new: renamed?",
            "column 'region' (categorical) is no longer an input",
            "column 'support_tickets' changes from numeric to categorical",
        ],
    ),
    (
        "labels",
        _labels_changed,
        [
            'the label set changes: new label(s) "leaves", "stays"; label(s) "no", "yes" no '
            "longer predicted",
        ],
    ),
]


def test_a_client_of_the_old_contract_sees_no_error_while_changed_files_are_trained(
    run_dag, pipeline_home, api_url
):
    incoming = pipeline_home / "incoming" / "contract_drift"
    original = generate_churn_frame(1_500, seed=41)
    first = run_dag(_conf(_write(incoming / "original.csv", original)))
    assert first.state == "success", first.log[-3000:]
    champion = _champion()
    assert str(httpx.get(f"{api_url}/version").json()["model_version"]) == champion

    records = original.drop(columns=[TARGET]).head(200)
    client = ContractClient(
        api_url,
        [
            {k: (None if pd.isna(v) else v) for k, v in row.items()}
            for row in records.to_dict("records")
        ],
    )
    client.start()
    started = time.monotonic()
    rejected = []
    try:
        for seed, (name, change, expected) in enumerate(CHANGES, start=42):
            changed = change(generate_churn_frame(1_500, seed=seed))
            result = run_dag(_conf(_write(incoming / f"changed_{name}.csv", changed)))
            assert result.state == "success", result.log[-3000:]  # a rejection is no failure
            # read now: on Airflow 3 the next dag.test() leaves no task instances of this run
            rejected.append((name, result, expected, _decision(result)))
    finally:
        outcomes = client.stop()
    seconds = time.monotonic() - started

    for name, result, expected, decision in rejected:
        assert decision["deploy"] is False, (name, decision["reasons"])
        assert result.task_state("notificar_modelo_rechazado") == "success"
        assert result.task_state("despliegue_modelo.generar_artefactos") == "skipped"
        text = " ".join(decision["reasons"])
        if name == "labels":
            # no label in common: a different problem, said in one sentence naming the two
            # ways forward; the per-difference list goes to the report (contract_changes)
            assert f"This is a different problem, not a new version of champion v{champion}" in (
                text
            ), text
            assert "model_name" in text, text
            assert "allow_contract_change" in text, text
        else:
            assert f"The input contract differs from champion v{champion}'s" in text, text
        for difference in expected:
            if name != "labels":
                assert difference in text, (name, text)
            assert any(difference in c for c in decision["contract_changes"]), name
        version = result.result("entrenamiento_evaluacion.registrar_mlflow")["version"]
        tags = _registry().get_model_version(MODEL, version).tags
        assert tags["deployment_decision"] == "reject"
        assert any(expected[0] in c for c in json.loads(tags[CONTRACT_CHANGES_TAG]))

    assert _champion() == champion  # did not move
    assert str(httpx.get(f"{api_url}/version").json()["model_version"]) == champion
    failed = [o for o in outcomes if not (isinstance(o[0], int) and 200 <= o[0] < 300)]
    assert not failed, f"{len(failed)} of {len(outcomes)} requests failed: {failed[:5]}"
    # it kept sending through both runs (at least 10 requests a second: one per 20 ms
    # plus the answer's time on a busy machine), and got the old contract's answers
    assert len(outcomes) >= 10 * seconds, (len(outcomes), seconds)
    assert {label for _, label in outcomes} <= {"no", "yes"}
