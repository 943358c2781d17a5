"""A release on live evidence against a real model API (a uvicorn process on loopback) and
a temporary MLflow registry, without Airflow: the plan's stages and looks; an equal
challenger walks shadow -> canary and is promoted (aliases moved, the previous champion
kept, the decision tagged, 0 failed client requests); one trained on inverted labels is
aborted at the shadow look (the champion's alias and every client answer unchanged, the
experiment stopped); no traffic by the time limit keeps the champion ("inconclusive");
a failed replay aborts before any live request."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import pytest

from devtools.ports import free_port
from include.ml_pipeline import storage
from include.ml_pipeline.config import get_settings
from include.ml_pipeline.deployment import api_process
from include.ml_pipeline.deployment.experiment_client import experiment_status, stop_experiment
from include.ml_pipeline.deployment.experiment_run import (
    ABORTED,
    KEPT,
    PROMOTED,
    ReleasePlan,
    begin,
    load_run,
    poke,
    replay_abort,
)
from include.ml_pipeline.deployment.rollout import ModelApiEndpoint
from tests.serving.conftest import ADMIN_TOKEN
from tests.support.traffic import TrafficClient, keyed_arms, sample_records

pytestmark = pytest.mark.services

NAME = "release_run_test"
LABELS = {
    "regression": False,
    "label_target": {"regression": False, "label_type": "string", "labels": ["no", "yes"]},
}


def test_plan_stages_looks_and_refusals():
    plan = ReleasePlan.from_params(
        {"release_strategy": "canary", "canary_steps": [5, 25, 50], "release_min_requests": 100}
    )
    assert [s.describe() for s in plan.stages] == [
        "shadow",
        "canary 5%",
        "canary 25%",
        "canary 50%",
    ]
    policy = plan.policy()
    assert (policy.looks, policy.plan.sample_at(1), policy.plan.sample_at(4)) == (4, 100, 400)
    assert ReleasePlan.from_params({}).staged is False  # the default: direct, as before
    assert len(ReleasePlan(strategy="shadow").stages) == 1
    with pytest.raises(ValueError, match=r"canary_steps must be rising .* got \[25.0, 5.0\]"):
        ReleasePlan(strategy="canary", canary_steps=(25, 5))
    with pytest.raises(ValueError, match="release_strategy must be one of direct, shadow, canary"):
        ReleasePlan(strategy="blue-green")


@pytest.fixture(scope="module")
def release_api(tmp_path_factory):
    """A registry with champion v1, v2 (the same pipeline: an equal challenger) and v3
    (trained on inverted labels), and the model API serving v1; settings pointing at
    the API's inference log and storage root."""
    from tests.support.models import fit_pipeline, register_model_version, training_frame

    root = tmp_path_factory.mktemp("release-run")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    artifacts = (root / "artifacts").as_uri()
    frame, spec = training_frame(rows=600, seed=1)
    good = fit_pipeline(frame, spec, "lr", 1)
    inverted = frame.assign(**{spec.target: frame[spec.target].map({"yes": "no", "no": "yes"})})
    bad = fit_pipeline(inverted, spec, "lr", 1)
    versions = [
        register_model_version(
            uri,
            NAME,
            pipeline=pipeline,
            spec=spec,
            rows=600,
            seed=1,
            aliases=aliases,
            artifact_location=artifacts,
            serving_artifact=True,
        )
        for pipeline, aliases in ((good, ("champion",)), (good, ()), (bad, ()))
    ]
    home = root / "api-home"
    settings = replace(
        get_settings(),
        mlflow_tracking_uri=uri,
        storage_uri=(root / "data").as_uri(),
        inference_log_uri=(root / "log").as_uri(),
    )
    url = f"http://127.0.0.1:{free_port()}"

    def start() -> None:
        api_process.start_api(
            url=url,
            model_name=NAME,
            tracking_uri=uri,
            admin_token=ADMIN_TOKEN,
            home=home,
            timeout=240,
            extra_env={
                "ML_PIPELINE_INFERENCE_LOG": str(root / "log"),
                "ML_PIPELINE_STORAGE": str(root / "data"),
                "MODEL_API_LOG_FLUSH_SECONDS": "0.2",
                "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",
            },
        )

    start()
    process = SimpleNamespace(start=start, stop=lambda: api_process.stop_api(home=home))
    yield settings, ModelApiEndpoint(url, ADMIN_TOKEN), versions, process
    api_process.stop_api(home=home)


def _client(url: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=url, registry_uri=url)


def _alias(settings, alias: str) -> str | None:
    try:
        return str(
            _client(settings.mlflow_tracking_uri).get_model_version_by_alias(NAME, alias).version
        )
    except Exception:
        return None


def _challenger(settings, version: str) -> None:
    _client(settings.mlflow_tracking_uri).set_registered_model_alias(NAME, "challenger", version)


def _until_done(settings, api, run, timeout: float = 90.0, **kwargs):
    deadline = time.monotonic() + timeout
    while True:
        poked = poke(settings, api, run, **kwargs)
        if poked.done:
            return poked
        assert time.monotonic() < deadline, poked.message
        time.sleep(0.5)


def test_equal_challenger_promoted_through_shadow_and_canary(release_api):
    settings, api, (v1, v2, _), _ = release_api
    _challenger(settings, v2)
    plan = ReleasePlan(strategy="canary", canary_steps=(50,), min_requests=40)
    traffic = TrafficClient(api.url, sample_records("binary", "churn", rows=60))
    traffic.start()
    try:
        run = begin(settings, api, NAME, v2, plan, **LABELS)
        assert experiment_status(api.url, NAME)["config"]["mode"] == "shadow"
        assert begin(settings, api, NAME, v2, plan, **LABELS).started_at == run.started_at
        poked = _until_done(settings, api, run)
    finally:
        outcomes = traffic.stop()
    run = poked.run
    assert run.outcome == PROMOTED, run.summary
    assert [(look["look"], look["verdict"]) for look in run.looks][-1] == (2, "pass")
    assert run.summary.startswith("PASS at look 2 of 2")
    assert (_alias(settings, "champion"), _alias(settings, "previous_champion")) == (v2, v1)
    assert experiment_status(api.url, NAME) is None  # stopped: every request to a champion
    assert len(outcomes) > 80
    assert traffic.failures() == []
    tags = _client(settings.mlflow_tracking_uri).get_model_version(NAME, v2).tags
    assert tags["release_verdict"] == "pass"
    assert tags["release_outcome"] == PROMOTED
    assert tags["release_looks"] == "2 of 2"
    assert int(tags["release_requests"]) >= 80
    assert load_run(settings, NAME, v2).outcome == PROMOTED
    # back to v1 as champion for the next tests
    _client(settings.mlflow_tracking_uri).set_registered_model_alias(NAME, "champion", v1)


def test_an_api_restart_between_looks_restores_the_experiment(release_api):
    """The API process is restarted after the shadow look, in the canary step: the pokes
    while it is down, then up but still loading, wait (no look taken, none takes the
    missing experiment for the kill switch); once ready it runs the same canary (restored
    from its experiments file before the champion: the first status read after `/ready`
    already shows it), each key on the arm it had, and the next look promotes. The
    client's only failed requests are those sent between the stop and `/ready`."""
    settings, api, (v1, v2, _), process = release_api
    _challenger(settings, v2)
    records = sample_records("binary", "churn", rows=60)
    # 150 challenger requests a stage: the canary's look waits well past the restart
    plan = ReleasePlan(strategy="canary", canary_steps=(50,), min_requests=150)
    traffic = TrafficClient(api.url, records)
    traffic.start()
    try:
        run = begin(settings, api, NAME, v2, plan, **LABELS)
        deadline = time.monotonic() + 90
        while run.stage == 0:  # until the shadow look moved the release to the canary
            poked = poke(settings, api, run)
            assert not poked.done, poked.message
            assert time.monotonic() < deadline, poked.message
            time.sleep(0.5)
        keys = [f"customer-{i}" for i in range(24)]
        arms = keyed_arms(api.url, "/invocations", records[0], keys)
        assert set(arms) == {"champion", "challenger"}, arms  # a 50% canary by key
        down_from = len(traffic.outcomes)
        process.stop()
        starting = threading.Thread(target=process.start)
        starting.start()
        waiting = []  # pokes while it is down, then listening but loading its models
        while starting.is_alive():
            waiting.append(poke(settings, api, run))
            time.sleep(0.1)
        starting.join()
        up_from = len(traffic.outcomes)
        assert [p.message for p in waiting if p.done] == []  # none took it for the kill switch
        assert "the model API did not answer" in waiting[0].message, waiting[0].message
        restored = experiment_status(api.url, NAME)  # the first read once ready
        assert restored is not None, "the experiment was not restored before /ready"
        assert (restored["config"]["mode"], restored["config"]["share"]) == ("canary", 0.5)
        assert str(restored["challenger_version"]) == v2
        after = keyed_arms(api.url, "/invocations", records[0], keys)
        assert after == arms  # each key keeps its arm
        assert len(run.looks) == 1  # the poke while down took no look
        poked = _until_done(settings, api, run)
    finally:
        outcomes = traffic.stop()
    assert poked.run.outcome == PROMOTED, poked.run.summary
    assert [look["look"] for look in poked.run.looks] == [1, 2]
    assert (_alias(settings, "champion"), _alias(settings, "previous_champion")) == (v2, v1)
    # failed: refused while the process was down, 503 while it loaded (not ready yet)
    failed = [k for k, (status, _) in enumerate(outcomes) if status not in (200,)]
    print(
        f"restart: {len(failed)} of {len(outcomes)} client requests failed, all between the "
        f"stop and /ready ({up_from - down_from} requests sent in that window)"
    )
    assert failed
    assert all(down_from <= k <= up_from for k in failed), (down_from, up_from)
    assert len(outcomes) - up_from > 150  # the client carried on after the restart
    _client(settings.mlflow_tracking_uri).set_registered_model_alias(NAME, "champion", v1)


def test_inverted_challenger_aborted_in_shadow_clients_unchanged(release_api):
    settings, api, (v1, _, v3), _ = release_api
    assert _alias(settings, "champion") == v1
    _challenger(settings, v3)
    records = sample_records("binary", "churn", rows=30)
    before = [
        httpx.post(f"{api.url}/invocations", json={"dataframe_records": [r]}).json()
        for r in records
    ]
    plan = ReleasePlan(strategy="canary", canary_steps=(50,), min_requests=40)
    traffic = TrafficClient(api.url, records)
    traffic.start()
    try:
        run = begin(settings, api, NAME, v3, plan, **LABELS)
        poked = _until_done(settings, api, run)
    finally:
        outcomes = traffic.stop()
    run = poked.run
    assert run.outcome == ABORTED, run.summary
    assert len(run.looks) == 1  # aborted at the shadow look, no canary traffic ever
    assert run.summary.startswith("FAIL at look 1 of 2")
    assert "agreement" in run.summary
    assert _alias(settings, "champion") == v1
    assert experiment_status(api.url, NAME) is None
    assert traffic.failures() == []
    answers = [label for _, label in outcomes]
    expected = [before[i % len(records)]["predictions"][0] for i in range(len(answers))]
    assert answers == expected  # every client answer the champion's
    assert (
        _client(settings.mlflow_tracking_uri).get_model_version(NAME, v3).tags["release_verdict"]
        == "fail"
    )


def test_no_traffic_by_the_time_limit_keeps_the_champion(release_api):
    settings, api, (v1, v2, _), _ = release_api
    _challenger(settings, v2)
    plan = ReleasePlan(strategy="shadow", min_requests=500, max_wait_seconds=60)
    run = begin(settings, api, NAME, v2, plan, **LABELS)
    waiting = poke(settings, api, run)
    assert not waiting.done
    assert "0 of 500 challenger requests in this stage" in waiting.message
    later = datetime.now(UTC) + timedelta(seconds=61)
    poked = poke(settings, api, run, now=later)
    assert poked.done
    assert poked.run.outcome == KEPT
    assert poked.run.summary.startswith("INCONCLUSIVE at look 1 of 1")
    assert "too little traffic" in poked.run.summary
    assert _alias(settings, "champion") == v1
    assert experiment_status(api.url, NAME) is None


def test_the_kill_switch_outside_the_dag_ends_the_release(release_api):
    settings, api, (v1, v2, _), _ = release_api
    _challenger(settings, v2)
    plan = ReleasePlan(strategy="shadow", min_requests=500, max_wait_seconds=120)
    run = begin(settings, api, NAME, v2, plan, **LABELS)
    assert experiment_status(api.url, NAME)["config"]["mode"] == "shadow"
    stop_experiment(api.url, NAME, token=api.token)  # an operator pulls the kill switch
    poked = poke(settings, api, run)
    assert poked.done
    assert poked.run.outcome == ABORTED
    assert "stopped outside the DAG (the kill switch)" in poked.run.summary
    assert _alias(settings, "champion") == v1
    assert poked.run.looks == []  # no look was spent


def test_a_failed_replay_aborts_before_any_live_request(release_api, tmp_path):
    settings, api, (v1, _v2, v3), _ = release_api
    manifest = {
        "model_name": NAME,
        "version": v3,
        "manifest_uri": storage.write_json((tmp_path / "m.json").as_uri(), {}),
        "replay": {"status": "fail", "champion_version": v1, "summary": "12 of 2000 agree"},
        "release": {"strategy": "shadow", **LABELS},
    }
    assert replay_abort(settings, manifest, ReleasePlan(strategy="direct")) is None
    gate_off = ReleasePlan(strategy="shadow", abort_on_replay_fail=False)
    assert replay_abort(settings, manifest, gate_off) is None
    said = replay_abort(settings, manifest, ReleasePlan(strategy="shadow"))
    assert said.startswith("FAIL at the replay, before any live request: 12 of 2000 agree")
    written = storage.read_json(manifest["manifest_uri"])["release"]
    assert (written["outcome"], written["strategy"]) == (ABORTED, "shadow")
    assert experiment_status(api.url, NAME) is None
    assert _alias(settings, "champion") == v1
