"""Replay: the challenger on the champion's logged live requests, before it sees one
(`include/ml_pipeline/deployment/replay.py`), on a real inference log written the way the
model API writes it."""

from __future__ import annotations

import gzip
import time

import pytest

from include.ml_pipeline import storage
from include.ml_pipeline.deployment.replay import replay_live_traffic
from include.ml_pipeline.inference_records import encode_line, object_uri
from include.ml_pipeline.serving.batch import batch_from_frame
from include.ml_pipeline.serving.loading.served import build_served_model
from tests.support.models import fit_pipeline, training_frame

NAME = "churn"


@pytest.fixture(scope="module")
def challenger():
    frame, spec = training_frame(rows=1500, seed=3)
    pipeline = fit_pipeline(frame, spec, kind="lr")
    served = build_served_model(
        pipeline, spec, name=NAME, version="4", alias="challenger", max_rows=10_000
    )
    return served, frame


def write_log(base: str, served, frame, answers, version="3", traffic="live", seq=1) -> None:
    """One log object of champion `version`: `frame`'s rows answered with `answers`."""
    from include.ml_pipeline.features import coerce_features

    spec = served.spec
    batch = batch_from_frame(coerce_features(frame, spec), spec.numeric, spec.categorical)
    stamp = time.time() + seq
    line = encode_line(batch, answers, None, served.classes, NAME, version, traffic, 1.0, stamp)
    uri = object_uri(base, NAME, version, stamp, "host", seq)
    storage.write_bytes(uri, gzip.compress(line))


def own_answers(served, frame) -> list:
    from include.ml_pipeline.features import coerce_features

    spec = served.spec
    batch = batch_from_frame(coerce_features(frame, spec), spec.numeric, spec.categorical)
    return list(served.predictor.predict(batch).labels)


def test_a_challenger_that_answers_like_the_champion_passes(tmp_path, challenger):
    served, frame = challenger
    base = storage.as_uri(tmp_path / "log")
    rows = frame.head(400)
    write_log(base, served, rows, own_answers(served, rows))
    # smoke traffic and another version's rows are not the champion's live traffic
    write_log(base, served, frame.head(50), ["no"] * 50, traffic="smoke", seq=2)
    write_log(base, served, frame.head(50), ["no"] * 50, version="2", seq=3)

    report = replay_live_traffic(base, served, "3")

    assert report.status == "pass", report.summary
    assert report.rows == 400
    assert report.agreement == 1.0
    assert "replayed the newest 400 live rows of champion v3 on v4" in report.summary
    assert next(c.name for c in report.checks) == "agreement"


def test_a_challenger_that_answers_differently_fails_and_only_the_newest_rows_count(
    tmp_path, challenger
):
    served, frame = challenger
    base = storage.as_uri(tmp_path / "log")
    rows = frame.head(400)
    answers = own_answers(served, rows)
    flipped = ["yes" if a == "no" else "no" for a in answers]
    write_log(base, served, rows, answers, seq=1)  # older: agrees
    write_log(base, served, rows, flipped, seq=2)  # newer: disagrees everywhere

    report = replay_live_traffic(base, served, "3", rows=400)

    assert report.status == "fail", report.summary
    assert report.rows == 400
    assert report.agreement == 0.0
    assert next(c for c in report.checks if c.name == "agreement").status == "fail"


def test_no_champion_no_traffic_and_a_changed_contract_are_said_not_guessed(tmp_path, challenger):
    served, frame = challenger
    base = storage.as_uri(tmp_path / "log")

    assert replay_live_traffic(base, served, None).status == "no_champion"
    empty = replay_live_traffic(base, served, "3")
    assert empty.status == "no_traffic"
    assert "no live requests" in empty.summary

    # the champion was trained without tenure_months, so its log has no such column
    spec = served.spec
    narrow_spec = type(spec)(
        spec.target, [c for c in spec.numeric if c != "tenure_months"], list(spec.categorical)
    )
    dropped = frame.drop(columns=["tenure_months"])
    narrower = build_served_model(
        fit_pipeline(dropped, narrow_spec, kind="lr"),
        narrow_spec,
        name=NAME,
        version="3",
        alias="champion",
        max_rows=10_000,
    )
    dropped = dropped.head(100)
    write_log(base, narrower, dropped, own_answers(narrower, dropped))
    changed = replay_live_traffic(base, served, "3")
    assert changed.status == "incomparable"
    assert "lack column(s) tenure_months" in changed.summary
