"""A release experiment in the model API (in-process, two small models): request ids and
arm headers; shadow (both answers logged with one request id, the client sees the
champion's); canary (stable per key, the share respected, the champion's answer computed
off the path); the shadow queue's bound; the kill switch; a restart restores the
experiment; the breaker; `POST /feedback` refusals (named, counted) and corrections."""

from __future__ import annotations

import time
from dataclasses import replace

import orjson
import pytest
from fastapi.testclient import TestClient

from include.ml_pipeline.release.feedback import read_logged_answers
from include.ml_pipeline.serving.api.experiment import choose_arm
from tests.serving.conftest import ADMIN_TOKEN

NAME = "release_api_test"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class Failing:
    """A predictor that always raises (a broken challenger)."""

    def predict(self, batch):
        raise RuntimeError("challenger exploded")


class Slow:
    """A predictor that takes `seconds` per request (a slow challenger)."""

    def __init__(self, inner, seconds: float):
        self.inner, self.seconds = inner, seconds

    def predict(self, batch):
        time.sleep(self.seconds)
        return self.inner.predict(batch)


@pytest.fixture(scope="module")
def versions():
    """Champion v1 and challenger v2: two logistic regressions on 400 churn rows (~1 s)."""
    from include.ml_pipeline.serving.loading.served import build_served_model
    from tests.support.models import fit_pipeline, training_frame

    frame, spec = training_frame(rows=400, seed=1)
    built = {}
    for version, seed in (("1", 1), ("2", 2)):
        pipeline = fit_pipeline(frame.sample(frac=0.7, random_state=seed), spec, "lr", seed)
        alias = "champion" if version == "1" else "challenger"
        built[alias] = build_served_model(
            pipeline, spec, name=NAME, version=version, alias=alias, max_rows=100
        )
    rows = [
        {c: (None if isinstance(v, float) and v != v else v) for c, v in r.items()}
        for r in frame.drop(columns=[spec.target]).head(50).to_dict("records")
    ]
    return built, rows


@pytest.fixture
def api(versions, tmp_path):
    """A factory of in-process apps on one home (call it again: a restart)."""
    from include.ml_pipeline.serving.api.app import create_app
    from include.ml_pipeline.serving.api.settings import get_serving_settings

    built, _ = versions
    models = dict(built)  # a test may replace the challenger
    settings = replace(
        get_serving_settings(),
        model_name=NAME,
        models=(),
        admin_token=ADMIN_TOKEN,
        log_uri=(tmp_path / "log").as_uri(),
        log_flush_seconds=0.05,
        storage_uri=(tmp_path / "data").as_uri(),
        models_file=str(tmp_path / "api" / "served_models.json"),
        experiments_file=str(tmp_path / "api" / "experiments.json"),
        max_body_bytes=32768,
        # every request shadowed, however busy the machine: the sampling under load
        # (MODEL_API_SHADOW_MAX_SHARE) has its own tests, which set it
        shadow_max_share=1.0,
    )
    clients = []

    def start(**changes) -> TestClient:
        app = create_app(replace(settings, **changes), model_loader=lambda n, a: models[a])
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        deadline = time.monotonic() + 30
        while client.get("/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        return client

    start.models = models  # type: ignore[attr-defined]
    start.settings = settings  # type: ignore[attr-defined]
    yield start
    for client in clients:
        client.__exit__(None, None, None)


def _status(client) -> dict:
    return client.get(f"/models/{NAME}/experiment").json()


def _wait(client, predicate, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = _status(client)
        if predicate(status) or time.monotonic() > deadline:
            return status
        time.sleep(0.01)


def _post_each(client, ids: list[str], rows: list[dict]) -> list:
    """One `/invocations` request per row, each with its request id; the answers."""
    return [
        client.post(
            "/invocations", json={"dataframe_records": [row]}, headers={"X-Request-Id": rid}
        )
        for rid, row in zip(ids, rows, strict=True)
    ]


def _logged(client, settings):
    client.app.state.service.logger.flush()
    answers = read_logged_answers(settings.log_uri, NAME).answers
    by_request: dict[str, dict] = {}
    for answer in answers:
        by_request.setdefault(answer.request_id, {})[answer.arm] = answer
    return by_request


def test_headers_and_log_without_experiment(api, versions):
    _, rows = versions
    client = api()
    body = {"dataframe_records": rows[:2]}
    given = client.post("/invocations", json=body, headers={"X-Request-Id": "client-id-1"})
    assert given.headers["x-request-id"] == "client-id-1"
    assert given.headers["x-model-version"] == "1"
    assert given.headers["x-experiment-arm"] == "champion"
    made = client.post(f"/models/{NAME}/predict", json={"records": rows[:1]})
    assert len(made.headers["x-request-id"]) == 32  # generated
    assert made.headers["x-request-id"] != given.headers["x-request-id"]
    bad = client.post("/invocations", json=body, headers={"X-Request-Id": "a b\tc"})
    assert len(bad.headers["x-request-id"]) == 32  # not a usable id: a new one
    assert _status(client)["experiment"] is None
    logged = _logged(client, api.settings)
    line = logged["client-id-1"]["champion"]
    assert line.predictions == tuple(given.json()["predictions"])
    assert line.experiment is None
    assert line.served
    assert made.headers["x-request-id"] in logged
    paths = client.get("/openapi.json").json()["paths"]
    oip_headers = paths[f"/v2/models/{NAME}/infer"]["post"]["responses"]["200"]["headers"]
    assert set(oip_headers) == set(paths["/invocations"]["post"]["responses"]["200"]["headers"])
    assert set(paths["/invocations"]["post"]["responses"]["200"]["headers"]) == {
        "X-Ignored-Columns",
        "X-Request-Id",
        "X-Model-Version",
        "X-Experiment-Arm",
    }
    label = paths["/feedback"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert label["properties"]["labels"]["items"]["properties"]["label"] == {"enum": ["no", "yes"]}
    assert "requestBody" not in paths["/models/{name}/feedback"]["get"]
    assert paths["/admin/models/{name}/experiment"]["put"]["security"] == [{"bearer": []}]
    for path, allowed in (
        (f"/admin/models/{NAME}/experiment", "DELETE, PUT"),
        (f"/models/{NAME}/feedback", "GET, POST"),
    ):
        assert client.options(path).headers["allow"] == allowed  # a 405 lists every method


def test_shadow_logs_both_answers_and_the_client_sees_the_champions(api, versions):
    built, rows = versions
    client = api()
    refused = client.put(f"/admin/models/{NAME}/experiment", json={"mode": "shadow"})
    assert refused.status_code == 401  # admin calls need the token, as before
    assert client.delete(f"/admin/models/{NAME}/experiment").status_code == 401
    before = client.post("/invocations", json={"dataframe_records": rows}).content
    put = client.put(f"/admin/models/{NAME}/experiment", json={"mode": "shadow"}, headers=AUTH)
    assert put.status_code == 200, put.text
    assert put.json()["experiment"]["challenger_version"] == "2"
    ids = [f"shadow-{i}" for i in range(len(rows))]
    for rid, answer in zip(ids, _post_each(client, ids, rows), strict=True):
        assert answer.headers["x-experiment-arm"] == "champion"
        assert answer.headers["x-model-version"] == "1"
        assert answer.json()["predictions"] == [orjson.loads(before)["predictions"][ids.index(rid)]]
    status = _wait(client, lambda s: s["experiment"]["counts"]["off_path"] >= len(rows))
    assert status["experiment"]["counts"]["off_path"] == len(rows)
    assert status["experiment"]["counts"]["served"] == {"champion": len(rows), "challenger": 0}
    logged = _logged(client, api.settings)
    challenger = built["challenger"]
    for rid, row in zip(ids, rows, strict=True):
        arms = logged[rid]
        assert arms["champion"].served
        assert not arms["challenger"].served
        assert arms["champion"].experiment == arms["challenger"].experiment == "shadow"
        assert arms["challenger"].model_version == "2"
        batch = challenger.parser.from_records([row], "records", complete=True)
        assert list(arms["challenger"].predictions) == challenger.predictor.predict(batch).labels
    # monitoring's drift window reads the answers clients got, not the shadow's copies
    from include.ml_pipeline.monitoring.inference_log import read_inference_log

    window = read_inference_log(api.settings.log_uri, model_name=NAME)
    assert len(window) == 2 * len(rows)  # the 50-row request, then 50 one-row requests
    assert set(window["model_version"]) == {"1"}


def test_canary_split_is_stable_per_key_and_respects_the_share(api, versions):
    _, rows = versions
    client = api()
    config = {"mode": "canary", "share": 0.3}
    assert client.put(f"/admin/models/{NAME}/experiment", json=config, headers=AUTH).is_success
    body = {"dataframe_records": rows[:1]}
    arms = {}
    for i in range(200):
        key = f"customer-{i}"
        answer = client.post("/invocations", json=body, headers={"X-Experiment-Key": key})
        arms[key] = answer.headers["x-experiment-arm"]
        assert answer.headers["x-model-version"] == ("2" if arms[key] == "challenger" else "1")
        assert arms[key] == choose_arm(0.3, key)  # the stable hash, not a coin
    share = sum(arm == "challenger" for arm in arms.values()) / len(arms)
    assert 0.2 <= share <= 0.4  # 0.3 +- 3 sd of a binomial(200, 0.3)
    for key in list(arms)[:20]:  # one key always sees one arm
        again = client.post("/invocations", json=body, headers={"X-Experiment-Key": key})
        assert again.headers["x-experiment-arm"] == arms[key]
    keyed = sum(arm == "challenger" for arm in arms.values()) + sum(
        arms[k] == "challenger" for k in list(arms)[:20]
    )
    # without a key: per request, logged so
    unkeyed = client.post("/invocations", json=body, headers={"X-Request-Id": "no-key"})
    status = _wait(client, lambda s: s["experiment"]["counts"]["off_path"] >= keyed)
    counts = status["experiment"]["counts"]
    assert counts["random_split"] == 1
    assert counts["served"]["challenger"] >= keyed
    logged = _logged(client, api.settings)
    if unkeyed.headers["x-experiment-arm"] == "challenger":
        assert logged["no-key"]["challenger"].served
    # the champion answered the challenger's requests too, off the path: they pair
    served_by_challenger = [arms_of for arms_of in logged.values() if "challenger" in arms_of]
    assert len(served_by_challenger) >= keyed
    assert all(
        a["challenger"].served and not a["champion"].served and a["champion"].model_version == "1"
        for a in served_by_challenger
    )


def _oip_body(rows: list[dict], request_id: str) -> dict:
    """An Open Inference Protocol body: one column tensor per feature."""
    columns = list(rows[0])
    return {
        "id": request_id,
        "inputs": [
            {
                "name": c,
                "datatype": "FP64" if isinstance(rows[0][c], float | int) else "BYTES",
                "shape": [len(rows)],
                "data": [r[c] for r in rows],
            }
            for c in columns
        ],
    }


def test_oip_infer_goes_through_the_experiment(api, versions):
    """`/v2/models/{name}/infer` is routed like `/invocations`: a canary answers from both
    arms with the headers and each answer's own version; a shadow logs both answers."""
    built, rows = versions
    client = api()
    path = f"/v2/models/{NAME}/infer"
    config = {"mode": "canary", "share": 0.5}
    assert client.put(f"/admin/models/{NAME}/experiment", json=config, headers=AUTH).is_success
    arms = {}
    for i in range(30):
        key = f"oip-customer-{i}"
        answer = client.post(
            path,
            json=_oip_body(rows[i : i + 1], f"oip-c-{i}"),
            headers={"X-Experiment-Key": key, "X-Request-Id": f"oip-c-{i}"},
        )
        assert answer.status_code == 200, answer.text
        arm = answer.headers["x-experiment-arm"]
        assert arm == choose_arm(0.5, key)
        assert answer.headers["x-request-id"] == f"oip-c-{i}"
        version = answer.headers["x-model-version"]
        assert version == ("2" if arm == "challenger" else "1")
        assert answer.json()["model_version"] == version  # the body says who answered too
        assert answer.json()["id"] == f"oip-c-{i}"
        arms[f"oip-c-{i}"] = arm
    assert set(arms.values()) == {"champion", "challenger"}
    served_by_challenger = sum(arm == "challenger" for arm in arms.values())
    _wait(client, lambda s: s["experiment"]["counts"]["off_path"] >= served_by_challenger)
    logged = _logged(client, api.settings)
    for rid, arm in arms.items():
        assert logged[rid][arm].served
        assert logged[rid][arm].experiment == "canary"
    bad = client.post(path, json={"inputs": "nope"})  # refusals keep the protocol's shape
    assert bad.status_code == 400
    assert "inputs" in bad.json()["error"]

    assert client.put(
        f"/admin/models/{NAME}/experiment", json={"mode": "shadow"}, headers=AUTH
    ).is_success
    ids = [f"oip-s-{i}" for i in range(10)]
    for i, rid in enumerate(ids):
        answer = client.post(
            path, json=_oip_body(rows[i : i + 1], rid), headers={"X-Request-Id": rid}
        )
        assert answer.headers["x-experiment-arm"] == "champion"
        assert answer.headers["x-model-version"] == "1"
    _wait(client, lambda s: s["experiment"]["counts"]["off_path"] >= len(ids))
    logged = _logged(client, api.settings)
    challenger = built["challenger"]
    for i, rid in enumerate(ids):
        both = logged[rid]
        assert both["champion"].served
        assert not both["challenger"].served
        assert both["challenger"].model_version == "2"
        batch = challenger.parser.from_records(rows[i : i + 1], "records", complete=True)
        assert list(both["challenger"].predictions) == challenger.predictor.predict(batch).labels


def test_labels_posted_for_a_canary_give_each_versions_live_accuracy(api, versions):
    """Labels sent back with `POST /feedback` for a canary's answers: the monitoring's
    live performance measures each version on the answers it gave (served or off-path)."""
    import random

    from include.ml_pipeline.monitoring.live_performance import read_live_performance
    from include.ml_pipeline.serving.api.labels import label_target

    built, rows = versions
    client = api()
    config = {"mode": "canary", "share": 0.5}
    assert client.put(f"/admin/models/{NAME}/experiment", json=config, headers=AUTH).is_success
    given = {}
    for i, row in enumerate(rows[:40]):
        answer = client.post(
            "/invocations",
            json={"dataframe_records": [row]},
            headers={"X-Experiment-Key": f"k{i}", "X-Request-Id": f"lab-{i}"},
        )
        given[f"lab-{i}"] = answer.headers["x-model-version"]
    challenged = sum(v == "2" for v in given.values())
    _wait(client, lambda s: s["experiment"]["counts"]["off_path"] >= challenged)
    rng = random.Random(1)
    truth = {rid: rng.choice(["no", "yes"]) for rid in list(given)[:30]}
    posted = client.post(
        "/feedback", json={"labels": [{"request_id": r, "label": v} for r, v in truth.items()]}
    )
    assert posted.status_code == 200, posted.text
    logged = _logged(client, api.settings)
    live = read_live_performance(
        api.settings.log_uri,
        api.settings.storage_uri,
        NAME,
        label_target(built["champion"]),
    )
    arm_version = {"champion": "1", "challenger": "2"}
    for version in ("1", "2"):
        answered = {
            rid: line.predictions[0]
            for rid, arms in logged.items()
            if rid.startswith("lab-")
            for arm, line in arms.items()
            if arm_version[arm] == version
        }
        window = live.of(version)
        assert window.answers == len(answered)
        scored = [rid for rid in truth if rid in answered]
        assert window.labelled == len(scored)
        hits = sum(answered[rid] == truth[rid] for rid in scored)
        assert window.metrics["accuracy"] == pytest.approx(hits / len(scored))
    # the champion answered every request (the challenger's off the path), the challenger its share
    assert live.of("1").answers == 40
    assert live.of("1").labelled == 30
    assert live.of("2").answers == challenged
    assert 0 < challenged < 40


def test_kill_switch_and_restart_restore(api, versions):
    _, rows = versions
    client = api()
    body = {"dataframe_records": rows[:1]}
    config = {"mode": "canary", "share": 1.0}
    assert client.put(f"/admin/models/{NAME}/experiment", json=config, headers=AUTH).is_success
    assert client.post("/invocations", json=body).headers["x-experiment-arm"] == "challenger"
    stopped = client.delete(f"/admin/models/{NAME}/experiment", headers=AUTH)
    assert stopped.json()["stopped"]["counts"]["served"]["challenger"] == 1
    for _ in range(5):  # at once: the very next request
        assert client.post("/invocations", json=body).headers["x-experiment-arm"] == "champion"
    assert _status(client)["experiment"] is None

    assert client.put(f"/admin/models/{NAME}/experiment", json=config, headers=AUTH).is_success
    reloaded = client.post(f"/admin/models/{NAME}/reload", headers=AUTH)
    assert reloaded.status_code == 200  # a reload of the champion keeps the experiment
    assert client.post("/invocations", json=body).headers["x-experiment-arm"] == "challenger"
    restarted = api()  # a new process on the same home
    status = _wait(
        restarted, lambda s: s["experiment"] is not None and s["experiment"]["challenger_ready"]
    )
    assert status["experiment"]["config"]["mode"] == "canary"
    assert status["experiment"]["config"]["share"] == 1.0
    assert restarted.post("/invocations", json=body).headers["x-experiment-arm"] == "challenger"
    restarted.delete(f"/admin/models/{NAME}/experiment", headers=AUTH)
    assert api().get(f"/models/{NAME}/experiment").json()["experiment"] is None


def test_breaker_trips_and_clients_keep_the_champions_answers(api, versions):
    built, rows = versions
    broken = built["challenger"]
    api.models["challenger"] = replace(broken, predictor=Failing(), reference=Failing())
    client = api()
    config = {"mode": "canary", "share": 1.0, "min_requests": 5, "max_error_rate": 0.2}
    assert client.put(f"/admin/models/{NAME}/experiment", json=config, headers=AUTH).is_success
    body = {"dataframe_records": rows[:3]}
    expected = client.post(f"/models/{NAME}/invocations", json=body)
    for _ in range(12):
        answer = client.post("/invocations", json=body)
        assert answer.status_code == 200
        assert answer.headers["x-experiment-arm"] == "champion"
        assert answer.json() == expected.json()
    status = _status(client)["experiment"]
    assert status["breaker"]["open"] is True
    assert "max_error_rate 0.2" in status["breaker"]["reason"]
    assert status["counts"]["challenger_errors"] == 5  # none after the breaker opened
    metrics = client.get("/metrics").text
    assert f'model_api_experiment_breaker_open{{model="{NAME}"}} 1.0' in metrics
    assert f'model_api_challenger_errors_total{{model="{NAME}"}} 5.0' in metrics


def test_full_shadow_queue_drops_and_counts(api, versions):
    built, rows = versions
    challenger = built["challenger"]
    api.models["challenger"] = replace(challenger, predictor=Slow(challenger.predictor, 0.1))
    client = api(shadow_queue=1)
    config = {"mode": "shadow", "timeout_ms": 20, "max_error_rate": 1.0}
    assert client.put(f"/admin/models/{NAME}/experiment", json=config, headers=AUTH).is_success
    for _ in range(20):
        answer = client.post("/invocations", json={"dataframe_records": rows[:1]})
        assert answer.status_code == 200

    def settled(status):
        counts = status["experiment"]["counts"]
        return counts["dropped"] + counts["off_path"] == 20

    counts = _wait(client, settled)["experiment"]["counts"]
    assert settled({"experiment": {"counts": counts}})  # each job done or dropped, none lost
    assert counts["dropped"] >= 1  # the queue holds one job; requests come every few ms
    assert counts["timeouts"] == counts["off_path"]  # 100 ms > the 20 ms timeout: errors
    assert counts["challenger_errors"] == counts["timeouts"]  # logged, fed to the breaker
    metrics = client.get("/metrics").text
    assert f'model_api_shadow_dropped_total{{model="{NAME}"}} {float(counts["dropped"])}' in metrics


def test_a_cheap_shadow_runs_between_requests_on_the_loop_and_still_pairs(api, versions):
    """The challenger's one-row predictions, cheap, run on the event loop once their cost
    is known (`shadow_queue.inline`), after each response; every request is still paired
    and nothing is left counted as in the app after answers, refusals and 404s."""
    built, rows = versions
    # "cheap" here: within 1 s (a busy machine must not move a job to the thread)
    client = api(shadow_inline_us=1_000_000)
    put = client.put(f"/admin/models/{NAME}/experiment", json={"mode": "shadow"}, headers=AUTH)
    assert put.status_code == 200, put.text
    ids = [f"inline-{i}" for i in range(20)]
    for answer in _post_each(client, ids, rows[: len(ids)]):
        assert answer.status_code == 200
    assert client.post("/invocations", content=b"{").status_code == 400
    assert client.get("/no/such/path").status_code == 404
    oip = client.post(f"/models/{NAME}/invocations", json={"dataframe_records": rows[:1]})
    assert oip.status_code == 200
    status = _wait(client, lambda s: s["experiment"]["counts"]["off_path"] >= len(ids) + 1)
    counts = status["experiment"]["counts"]
    assert counts["off_path"] == len(ids) + 1
    assert counts["dropped"] == counts["skipped"] == 0
    assert status["shadow_queue"]["inline"] >= len(ids) - 1  # the first one: the thread
    assert client.app.state.service.shadow.busy == 0
    logged = _logged(client, api.settings)
    challenger = built["challenger"]
    for rid, row in zip(ids, rows[: len(ids)], strict=True):
        assert not logged[rid]["challenger"].served
        batch = challenger.parser.from_records([row], "records", complete=True)
        assert (
            list(logged[rid]["challenger"].predictions)
            == challenger.predictor.predict(batch).labels
        )


def test_requests_the_shadow_skips_under_load_are_counted_and_left_out_of_the_pairing(
    api, versions, monkeypatch
):
    """Past `MODEL_API_SHADOW_MAX_SHARE` of the clock a request is not shadowed: the
    client's answer is the champion's as ever, the skip is counted in the status and the
    metric, and the request has no challenger line, so the comparison leaves it out."""
    from include.ml_pipeline.release.feedback import pair_answers
    from include.ml_pipeline.serving.api.experiment import ShadowRunner

    _, rows = versions
    monkeypatch.setattr(ShadowRunner, "burst", 0.0)  # no head start: share 0 skips all
    client = api(shadow_max_share=0.0)
    put = client.put(f"/admin/models/{NAME}/experiment", json={"mode": "shadow"}, headers=AUTH)
    assert put.status_code == 200, put.text
    ids = [f"skipped-{i}" for i in range(10)]
    for answer in _post_each(client, ids, rows[: len(ids)]):
        assert answer.status_code == 200
        assert answer.headers["x-experiment-arm"] == "champion"
    status = _status(client)
    counts = status["experiment"]["counts"]
    assert counts["skipped"] == counts["dropped"] == len(ids)
    assert counts["off_path"] == 0
    assert counts["served"] == {"champion": len(ids), "challenger": 0}
    assert status["shadow_queue"]["skipped"] == len(ids)
    metrics = client.get("/metrics").text
    assert f'model_api_shadow_dropped_total{{model="{NAME}"}} {float(len(ids))}' in metrics
    client.app.state.service.logger.flush()
    answers = read_logged_answers(api.settings.log_uri, NAME).answers
    pairing = pair_answers(a for a in answers if a.request_id in ids)
    assert len(pairing.records) == len(ids)
    assert not any(record.is_paired for record in pairing.records)  # not compared
    assert pairing.champion_only == len(ids)


def test_feedback_refusals_are_named_and_counted_and_a_second_label_is_a_correction(
    api, versions, tmp_path
):
    _, rows = versions
    client = api()
    answer = client.post(
        "/invocations", json={"dataframe_records": rows[:2]}, headers={"X-Request-Id": "fb-1"}
    )
    assert answer.status_code == 200

    def send(labels):
        return client.post("/feedback", json={"labels": labels})

    unknown = send([{"request_id": "never-seen", "label": "yes"}])
    assert unknown.status_code == 404
    assert "never-seen" in unknown.json()["message"]
    assert unknown.json()["kind"] == "unknown_request_id"
    wrong_type = send([{"request_id": "fb-1", "label": 1}])
    assert wrong_type.status_code == 422
    assert "label of the wrong type" in wrong_type.json()["message"]
    outside = send([{"request_id": "fb-1", "label": "maybe"}])
    assert outside.status_code == 422
    assert "outside the contract's label set" in outside.json()["message"]
    big = client.post(
        f"/models/{NAME}/feedback",
        content=b'{"labels": [' + b" " * 40000 + b"]}",
        headers={"Content-Type": "application/json"},
    )
    assert big.status_code == 413
    assert "MODEL_API_MAX_BODY_BYTES" in big.json()["message"]
    assert send([{"request_id": "fb-1", "row": 5, "label": "yes"}]).status_code == 404
    assert client.post("/feedback", json=[]).json()["kind"] == "body_shape"  # an object

    first = send(
        [{"request_id": "fb-1", "label": "yes"}, {"request_id": "fb-1", "row": 1, "label": "no"}]
    )
    assert first.status_code == 200, first.text
    assert first.json()["accepted"] == 2
    assert first.json()["corrections"] == []
    second = send([{"request_id": "fb-1", "label": "no"}])
    corrections = second.json()["corrections"]
    assert [(c["request_id"], c["row"], c["previous"], c["label"]) for c in corrections] == [
        ("fb-1", 0, "yes", "no")
    ]
    assert send([{"request_id": "fb-1", "label": "no"}]).json()["repeats"] == 1
    metrics = client.get("/metrics").text
    for outcome, value in (
        ("unknown_request_id", 2.0),
        ("label_type", 1.0),
        ("label_not_in_set", 1.0),
        ("body_too_large", 1.0),
        ("accepted", 4.0),
        ("correction", 1.0),
    ):
        assert f'model_api_feedback_total{{model="{NAME}",outcome="{outcome}"}} {value}' in metrics

    # a restarted API reads the labels back from the files and the request ids from the log
    restarted = api()
    again = restarted.post("/feedback", json={"labels": [{"request_id": "fb-1", "label": "yes"}]})
    assert again.status_code == 200, again.text
    assert [(c["previous"], c["label"]) for c in again.json()["corrections"]] == [("no", "yes")]
    folder = tmp_path / "data" / "labels" / NAME
    assert len(list(folder.glob("feedback-*.csv"))) == 4
    # a batch label file dropped under the storage root, joined to the log by request id
    (folder / "batch-1.csv").write_text("request_id,row,label\nfb-1,1,yes\nlost-id,0,no\n")
    summary = restarted.get(f"/models/{NAME}/feedback").json()
    assert summary["labels"] == 3  # fb-1 rows 0 and 1, lost-id
    # row 1: yes (the batch file sorts first) -> no; row 0: yes -> no -> yes
    assert summary["corrections"] == 3
    assert summary["joined"] == 2
    assert (summary["unknown"], summary["unknown_ids"]) == (1, ["lost-id"])
    (folder / "batch-2.csv").write_text("request_id,label\nfb-1,perhaps\n")
    broken = restarted.get(f"/models/{NAME}/feedback")
    assert broken.status_code == 422
    assert "batch-2.csv" in broken.json()["message"]
    assert "outside the contract's label set" in broken.json()["message"]


def test_experiment_client_sets_reads_and_stops(api, versions, monkeypatch):
    """The DAG's client (`deployment/experiment_client.py`) on the same calls."""
    from contextlib import nullcontext

    from include.ml_pipeline.deployment import api_client, experiment_client

    _, rows = versions
    client = api()
    monkeypatch.setattr(api_client, "_client", lambda timeout: nullcontext(client))
    url = "http://testserver"
    with pytest.raises(api_client.ModelApiError, match="401"):
        experiment_client.start_experiment(url, NAME, "shadow", token="wrong-token-0123456789")
    with pytest.raises(api_client.ModelApiError, match="a canary needs share"):
        experiment_client.start_experiment(url, NAME, "canary", token=ADMIN_TOKEN)
    started = experiment_client.start_experiment(
        url, NAME, "canary", share=1.0, token=ADMIN_TOKEN, min_requests=50
    )
    assert started["experiment"]["config"]["min_requests"] == 50
    client.post("/invocations", json={"dataframe_records": rows[:1]})
    status = experiment_client.experiment_status(url, NAME)
    assert status["counts"]["served"]["challenger"] == 1
    stopped = experiment_client.stop_experiment(url, NAME, token=ADMIN_TOKEN)
    assert stopped["counts"]["served"]["challenger"] == 1
    assert experiment_client.experiment_status(url, NAME) is None
    assert experiment_client.stop_experiment(url, NAME, token=ADMIN_TOKEN) is None
