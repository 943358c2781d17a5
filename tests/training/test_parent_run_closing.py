"""A run that fails after its MLflow parent run was opened ends that run as FAILED."""

from __future__ import annotations

from mlflow import MlflowClient

from include.ml_pipeline.training.train import (
    close_open_parent_run,
    finish_parent_run,
    start_parent_run,
)


def test_an_open_parent_run_is_ended_failed_once(mlflow_store):
    uri, experiment = mlflow_store["tracking_uri"], mlflow_store["experiment"]
    parent = start_parent_run(
        tracking_uri=uri,
        experiment=experiment,
        artifact_location=mlflow_store["artifact_location"],
        airflow_run_id="failed-run",
    )
    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(parent).info.status == "RUNNING"
    closed = close_open_parent_run(
        tracking_uri=uri, experiment=experiment, airflow_run_id="failed-run"
    )
    assert closed == parent
    assert client.get_run(parent).info.status == "FAILED"
    # Nothing left open: a second call, or one for a run that finished, changes nothing.
    assert (
        close_open_parent_run(tracking_uri=uri, experiment=experiment, airflow_run_id="failed-run")
        is None
    )
    done = start_parent_run(tracking_uri=uri, experiment=experiment, airflow_run_id="ok-run")
    finish_parent_run(tracking_uri=uri, run_id=done)
    assert (
        close_open_parent_run(tracking_uri=uri, experiment=experiment, airflow_run_id="ok-run")
        is None
    )
    assert client.get_run(done).info.status == "FINISHED"
    assert (
        close_open_parent_run(tracking_uri=uri, experiment="no-such-experiment", airflow_run_id="x")
        is None
    )
