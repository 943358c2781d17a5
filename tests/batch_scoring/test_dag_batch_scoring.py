"""`ml_batch_scoring` run with `dag.test()` (as `make score` runs it) on generated tables,
against a throw-away registry whose champions are a binary, a multiclass and a regression
model: the predictions equal the registered model's `predict` / `predict_proba` row for
row, scored in mapped parts; a contract-breaking input is refused before any part runs;
a drifted batch notifies like online drift."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow.parquet as pq
import pytest

from include.ml_pipeline import storage
from include.ml_pipeline.names import BATCH_SCORING_DAG_ID
from tests.batch_scoring.conftest import write_table

pytestmark = pytest.mark.e2e
_counter = itertools.count()


@pytest.fixture(scope="module")
def score(champions, airflow_db, pipeline_home):
    """Run the DAG once with a conf; returns (dag_run, tasks, log text)."""
    from devtools.run_pipeline import collect, run_dag

    def _run(conf: dict):
        log_path = pipeline_home / "logs" / f"batch-{next(_counter)}.log"
        dag_run = run_dag(conf, log_path, dag_id=BATCH_SCORING_DAG_ID)
        return dag_run, collect(dag_run), log_path.read_text()

    return _run


def _states(tasks: dict) -> dict:
    return {k: v["state"] for k, v in tasks.items()}


@pytest.mark.parametrize("problem", ["binary", "multiclass", "regression"])
def test_the_dag_scores_a_table_as_the_registered_model_does(
    champions, score, tmp_path, problem, monkeypatch
):
    from include.ml_pipeline.batch_scoring import model as models
    from include.ml_pipeline.features import coerce_features
    from include.ml_pipeline.registry.mlflow_setup import load_sklearn_model

    loaded = []  # (name, version) per MLflow download + compile + verify of the version
    original = models.load_batch_model
    monkeypatch.setattr(
        models, "load_batch_model", lambda uri, *at: loaded.append(at) or original(uri, *at)
    )
    champion = champions[problem]
    frame = write_table(tmp_path / "table", 3_000, seed=31, files=2, row_group=500)
    dag_run, tasks, log = score(
        {"model_name": champion["name"], "input_uri": str(tmp_path / "table"), "part_rows": 1000}
    )
    states = _states(tasks)
    assert str(dag_run.state) == "success", (states, log[-3000:])
    mapped = [k for k in states if k.startswith("score_part[")]
    assert len(mapped) == 4  # 1,500 rows per file, parts of <= 1,000 rows at row groups
    # verified once, by plan_parts, and shared with the four parts
    assert loaded == [(champion["name"], champion["version"])]
    planned = tasks["plan_parts"]["result"]
    assert {p["verified_model"]["version"] for p in planned} == {champion["version"]}
    output = tasks["finalize_output"]["result"]
    assert output["status"] == "complete"
    assert (output["rows_in"], output["rows_out"]) == (3_000, 3_000)
    manifest = storage.read_json(output["manifest_uri"])
    assert manifest["model_version"] == champion["version"]
    assert manifest["input"]["fingerprint"] == storage.fingerprint(str(tmp_path / "table"))

    got = pq.read_table(storage.local_path(output["predictions_uri"])).to_pandas()
    got = got.set_index("customer_id").loc[frame["customer_id"]]
    assert set(got["model_version"]) == {champion["version"]}
    pipeline = load_sklearn_model(f"models:/{champion['name']}/{champion['version']}")
    X = coerce_features(frame, champion["spec"])
    if problem == "regression":
        # the same pipeline on chunks: equal up to floating-point summation order
        np.testing.assert_allclose(got["prediction"], pipeline.predict(X), rtol=1e-12)
    else:
        assert got["prediction"].tolist() == pipeline.predict(X).tolist()
        columns = [f"proba_{c}" for c in pipeline.classes_]
        np.testing.assert_allclose(
            got[columns].to_numpy(), pipeline.predict_proba(X), rtol=0, atol=1e-6
        )
    drift = tasks["compute_drift"]["result"]
    # an undrifted table: no feature drifted (the multiclass champion's in-sample
    # probabilities on its training split may still differ from fresh rows': prediction
    # drift, which the online check reports the same way)
    assert drift["summary"]["dataset_drift"] is False
    assert drift["summary"]["n_drifted"] == 0
    drifted = drift["summary"]["status"] == "drift"
    assert states["notify_drift" if drifted else "no_drift"] == "success"
    assert states["no_drift" if drifted else "notify_drift"] == "skipped"
    if problem == "binary":
        assert not drifted
    assert storage.read_json(drift["report_uri"])["scoring_run_id"] == manifest["scoring_run_id"]


def test_a_contract_breaking_input_is_refused_before_scoring(champions, score, tmp_path):
    champion = champions["binary"]
    frame = write_table(tmp_path / "ok.parquet", 300, seed=3)
    broken = tmp_path / "broken.parquet"
    frame.drop(columns=["region"]).to_parquet(broken, index=False)
    dag_run, tasks, log = score({"model_name": champion["name"], "input_uri": str(broken)})
    states = _states(tasks)
    assert str(dag_run.state) == "failed"
    assert states["check_input"] == "failed"
    assert states["plan_parts"] == "upstream_failed"
    assert not any(k.startswith("score_part[") and v == "success" for k, v in states.items())
    assert "column 'region' (categorical) is missing" in log
    assert "nothing was scored" in log
    # no plan, so nothing to finalize: failed at once, not after its retries
    assert states["finalize_output"] == "failed"
    assert tasks["finalize_output"]["tries"] == 1
    assert "nothing to finalize: no part was planned" in log


def test_a_drifted_batch_notifies_like_online_drift(champions, score, tmp_path):
    from include.ml_pipeline.data_preparation.sample_data import generate_churn_frame
    from include.ml_pipeline.notifications import read_log

    champion = champions["binary"]
    drifted = generate_churn_frame(2_000, seed=77, drift=True)
    drifted.to_parquet(tmp_path / "drifted.parquet", index=False)
    dag_run, tasks, log = score(
        {"model_name": champion["name"], "input_uri": str(tmp_path / "drifted.parquet")}
    )
    states = _states(tasks)
    assert str(dag_run.state) == "success", (states, log[-3000:])
    assert states["notify_drift"] == "success"
    assert states["no_drift"] == "skipped"
    note = tasks["notify_drift"]["result"]
    assert note["event"] == "drift"
    assert f"scored by {champion['name']} v{champion['version']}" in note["title"]
    records = [r for r in read_log() if r.get("dag_id") == BATCH_SCORING_DAG_ID]
    assert records
    assert records[-1]["details"]["predictions"].endswith("/predictions")
    drift = tasks["compute_drift"]["result"]["summary"]
    assert drift["status"] == "drift"
    assert drift["prediction_drift"] is not None  # the batch's own predictions compared
    _the_dashboard_lists_the_run(champion, tasks["finalize_output"]["result"])


def _the_dashboard_lists_the_run(champion: dict, output: dict) -> None:
    """The model's dashboard lists its batch runs: this one with its rows, version, drift
    verdict and manifest; no other model's run."""
    from include.ml_pipeline.batch_scoring.manifest import list_runs
    from include.ml_pipeline.config import get_settings
    from include.ml_pipeline.monitoring.dashboard import DashboardContext, build_dashboard_html
    from include.ml_pipeline.runs import batch_runs_uri

    runs = list_runs(batch_runs_uri(get_settings()), champion["name"])
    assert {r["model_name"] for r in runs} == {champion["name"]}
    this = next(r for r in runs if r["manifest_uri"] == output["manifest_uri"])
    assert (this["rows_in"], this["rows_out"], this["rows_rejected"]) == (2_000, 2_000, 0)
    assert (this["model_version"], this["drift"], this["status"]) == (
        champion["version"],
        "drift",
        "complete",
    )
    html = build_dashboard_html(
        DashboardContext(champion["name"], champion["version"], batch_runs=runs)
    )
    section = html[html.index('id="batch-runs"') :]
    assert output["manifest_uri"] in section
    assert f"v{champion['version']}" in section
    assert "2,000" in section
    assert '<span class="badge drift">drift</span>' in section
