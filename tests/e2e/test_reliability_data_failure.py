"""A deterministic data failure ends the run at once: the broken rule, column and line in
the failure notification, no retry, no training task and no MLflow run opened for it."""

from __future__ import annotations

import time

from mlflow import MlflowClient

from include.ml_pipeline.config import get_settings
from include.ml_pipeline.data_preparation.sample_data import generate_churn_frame
from include.ml_pipeline.names import AIRFLOW_RUN_TAG


def test_bad_data_fails_at_once_without_opening_an_mlflow_run(run_dag, pipeline_home):
    frame = generate_churn_frame(2_000, seed=9)
    frame["age"] = frame["age"].astype(object)
    frame.loc[frame.index[::100], "age"] = "1e400"
    path = pipeline_home / "incoming" / "overflow_in_age.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)

    started = time.monotonic()
    result = run_dag({"data_uri": str(path)})
    seconds = time.monotonic() - started
    assert result.state == "failed"
    validation = result.dag_run.get_task_instance("preparacion_datos.validar_datos")
    assert (validation.state, validation.try_number) == ("failed", 1)  # no retry
    for task_id in (
        "entrenamiento_evaluacion.iniciar_experimento",
        "entrenamiento_evaluacion.registrar_mlflow",
    ):
        assert result.task_state(task_id) == "upstream_failed", task_id
    uri = get_settings().mlflow_tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, f"tags.{AIRFLOW_RUN_TAG} = '{result.dag_run.run_id}'")
    assert runs == []  # nothing to leave RUNNING, nothing to close

    from include.ml_pipeline.notifications import read_log

    note = read_log()[-1]
    assert note["event"] == "failed"
    assert any(
        "column 'age': rule 'finite_numbers' broken" in r and "'1e400' on line 2" in r
        for r in note["reasons"]
    ), note["reasons"]
    # generous: the data stage takes seconds; a retry would add its delay, a training
    # task its fit (on a busy 2-core machine a whole failed run took 27-36 s)
    assert seconds < 60, seconds
