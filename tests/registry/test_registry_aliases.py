"""Registry on a tmp SQLite store: idempotent registration, promotion, rollback."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from include.ml_pipeline.registry import registry
from include.ml_pipeline.registry.decision import Decision
from include.ml_pipeline.registry.mlflow_setup import ensure_experiment

MODEL = "alias_model"


@pytest.fixture(scope="module")
def store(tmp_path_factory, small_model_logger):
    root = tmp_path_factory.mktemp("registry-sqlite")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    logged = small_model_logger(root / "data", uri, artifact_location=(root / "art").as_uri())
    return {"uri": uri, "model_uri": logged.model_uri, "run_id": logged.run_id}


def _register(store, airflow_run_id, **extra):
    return registry.register_challenger(
        store["model_uri"],
        MODEL,
        airflow_run_id=airflow_run_id,
        metrics={"roc_auc": 0.5, "accuracy": 0.7},
        data_fingerprint="fp-" + airflow_run_id,
        tracking_uri=store["uri"],
        **extra,
    )


def test_ensure_experiment_is_idempotent(store):
    first = ensure_experiment(store["uri"], "twice")
    assert ensure_experiment(store["uri"], "twice") == first
    client = MlflowClient(store["uri"])
    client.delete_experiment(first)
    assert ensure_experiment(store["uri"], "twice") == first  # restored, not recreated


def test_register_is_idempotent_per_airflow_run(store):
    v1 = _register(store, "a")
    assert _register(store, "a") == v1
    v2 = _register(store, "b", tags={"candidate": "weak_prior"})
    assert int(v2) == int(v1) + 1
    assert registry.find_version_for_run(MODEL, "a", tracking_uri=store["uri"]) == v1
    assert registry.find_version_for_run(MODEL, "zzz", tracking_uri=store["uri"]) is None
    assert registry.get_alias_version(MODEL, "challenger", tracking_uri=store["uri"]) == v2
    # Re-registering an older run moves `challenger` back to its version, still no new one.
    assert _register(store, "a") == v1
    assert registry.get_alias_version(MODEL, "challenger", tracking_uri=store["uri"]) == v1
    tags = registry.describe_version(MODEL, v2, tracking_uri=store["uri"])["tags"]
    assert tags["data_fingerprint"] == "fp-b"
    assert tags["test_roc_auc"] == "0.5"
    assert tags["candidate"] == "weak_prior"
    assert len(MlflowClient(store["uri"]).search_model_versions(f"name = '{MODEL}'")) == 2


def test_promote_and_rollback(store):
    uri = store["uri"]
    versions = [_register(store, f"p{i}") for i in range(3)]
    assert registry.get_alias_version("no_such_model", "champion", tracking_uri=uri) is None
    first = registry.promote_to_champion(MODEL, versions[0], tracking_uri=uri)
    assert first["previous"] is None
    assert first["champion"] == versions[0]
    assert registry.promote_to_champion(MODEL, versions[1], tracking_uri=uri) == {
        "previous": versions[0],
        "champion": versions[1],
    }
    # promoting the champion again changes nothing
    assert registry.promote_to_champion(MODEL, versions[1], tracking_uri=uri) == {
        "previous": versions[0],
        "champion": versions[1],
    }
    assert registry.get_alias_version(MODEL, "previous_champion", tracking_uri=uri) == versions[0]

    assert (
        registry.rollback_champion(MODEL, tracking_uri=uri, reason="api tests failed")
        == (versions[0])
    )
    assert registry.get_alias_version(MODEL, "champion", tracking_uri=uri) == versions[0]
    demoted = registry.describe_version(MODEL, versions[1], tracking_uri=uri)["tags"]
    assert demoted["rollback_reason"] == "api tests failed"
    assert "rolled_back_at" in demoted
    # a second rollback is a no-op
    assert registry.rollback_champion(MODEL, tracking_uri=uri) == versions[0]
    assert registry.get_alias_version(MODEL, "champion", tracking_uri=uri) == versions[0]
    with pytest.raises(MlflowException):
        registry.promote_to_champion(MODEL, "999", tracking_uri=uri)


def test_rollback_without_previous_champion_raises(store):
    uri = store["uri"]
    name = "fresh_model"
    version = registry.register_challenger(
        store["model_uri"], name, airflow_run_id="x", tracking_uri=uri
    )
    registry.promote_to_champion(name, version, tracking_uri=uri)
    with pytest.raises(LookupError, match="previous_champion"):
        registry.rollback_champion(name, tracking_uri=uri)


def test_record_decision_tags_the_version(store):
    uri = store["uri"]
    version = _register(store, "decided")
    decision = Decision(False, ["Reject: the challenger failed at least one check.", "x" * 6000])
    registry.record_decision(MODEL, version, decision, tracking_uri=uri, extra={"gate": "v1"})
    tags = registry.describe_version(MODEL, version, tracking_uri=uri)["tags"]
    assert tags["deployment_decision"] == "reject"
    assert tags["deployment_reasons"].startswith('["Reject')
    assert len(tags["deployment_reasons"]) <= 5000
    assert tags["gate"] == "v1"
    registry.record_decision(MODEL, version, {"deploy": True, "reasons": ["ok."]}, tracking_uri=uri)
    tags = registry.describe_version(MODEL, version, tracking_uri=uri)["tags"]
    assert tags["deployment_decision"] == "deploy"
    assert tags["deployment_reasons"] == '["ok."]'


@pytest.mark.parametrize("found", [False, True], ids=["creates", "finds-a-younger-one"])
def test_a_racing_parent_that_shows_late_still_wins(store, monkeypatch, found):
    """An older racing parent run invisible at the first looks (its commit late on a
    loaded store) is elected once it shows, whether this caller created its own run
    (deleted then) or found a younger racer's (not taken at first sight)."""
    import time

    from include.ml_pipeline.names import AIRFLOW_RUN_TAG, ROLE_TAG
    from include.ml_pipeline.training import train

    uri, run = store["uri"], f"late-{found}"
    client = MlflowClient(uri)
    experiment_id = ensure_experiment(uri, "late")
    tags = {AIRFLOW_RUN_TAG: run, ROLE_TAG: "parent"}
    older = client.create_run(experiment_id, tags=tags).info.run_id
    time.sleep(0.01)  # later start times for the others
    younger = client.create_run(experiment_id, tags=tags).info.run_id if found else None
    real, looks = train._parent_runs, []

    def committed_late(*args):
        runs = real(*args)
        looks.append(len(runs))
        if len(looks) <= 2:  # the look before creating and the first look after it
            return [r for r in runs if r.info.run_id != older]
        return runs

    monkeypatch.setattr(train, "_parent_runs", committed_late)
    monkeypatch.setattr(train, "PARENT_SETTLE_S", 0.01)
    parent = train.start_parent_run(tracking_uri=uri, experiment="late", airflow_run_id=run)
    assert parent == older
    active = client.search_runs(
        [experiment_id],
        filter_string=f"tags.airflow_run_id = '{run}'",
        order_by=["attributes.start_time ASC"],
    )
    # this caller's run deleted; a younger racer's is its caller's to delete
    assert [r.info.run_id for r in active] == [older] + ([younger] if found else [])


def test_concurrent_calls_for_one_airflow_run_agree(store, tmp_path):
    """Task attempts racing each other end with one parent run and one version."""
    from concurrent.futures import ThreadPoolExecutor

    from include.ml_pipeline.training.train import start_parent_run

    uri = store["uri"]
    with ThreadPoolExecutor(4) as pool:
        parents = list(
            pool.map(
                lambda _: start_parent_run(
                    tracking_uri=uri, experiment="race", airflow_run_id="race-1"
                ),
                range(4),
            )
        )
        versions = list(pool.map(lambda _: _register(store, "race-1"), range(4)))
    assert len(set(parents)) == 1
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("race")
    active = client.search_runs(
        [experiment.experiment_id], filter_string="tags.airflow_run_id = 'race-1'"
    )
    assert [r.info.run_id for r in active] == parents[:1]
    assert len(set(versions)) == 1
    assert registry.find_version_for_run(MODEL, "race-1", tracking_uri=uri) == versions[0]


def test_an_alias_insert_lost_to_a_concurrent_writer_is_written_again(store):
    """Two first writers of an alias both insert it; the one the unique key refuses writes
    again (now an update). Any other error is raised at once."""
    client = MlflowClient(store["uri"])
    version = _register(store, "race-1")
    real, calls = client.set_registered_model_alias, []

    def lost_the_insert(name, alias, number):
        calls.append(number)
        if len(calls) == 1:
            real(name, alias, number)  # the concurrent writer's row
            raise MlflowException(
                "(sqlite3.IntegrityError) UNIQUE constraint failed: "
                "registered_model_aliases.workspace, registered_model_aliases.name"
            )
        real(name, alias, number)

    client.set_registered_model_alias = lost_the_insert
    registry._set_alias(client, MODEL, "racy", version)
    assert len(calls) == 2
    assert str(client.get_model_version_by_alias(MODEL, "racy").version) == version

    def refused(name, alias, number):
        calls.append(number)
        raise MlflowException("Registered Model with name=nope not found")

    client.set_registered_model_alias = refused
    with pytest.raises(MlflowException, match="not found"):
        registry._set_alias(client, "nope", "racy", version)
    assert len(calls) == 3
