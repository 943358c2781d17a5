"""Labels coming back: checked against the contract, kept with their corrections, and
joined to the paired log records by request id, then decided on."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from include.ml_pipeline import storage
from include.ml_pipeline.release.decision import PASS, DecisionPolicy, decide_records
from include.ml_pipeline.release.feedback import (
    Feedback,
    FeedbackError,
    LabelBook,
    LabelTarget,
    join_labels,
    labels_uri,
    pair_answers,
    parse_feedback_body,
    read_label_files,
)
from include.ml_pipeline.release.records import LoggedAnswer

CHURN = LabelTarget.of(
    {
        "target": {
            "name": "churn",
            "type": "string",
            "labels": ["no", "yes"],
            "problem_type": "binary",
        }
    }
)
GRADES = LabelTarget.of({"target": {"name": "grade", "type": "integer", "labels": [1, 2, 3]}})
PRICE = LabelTarget.of(
    {"target": {"name": "price", "type": "number", "problem_type": "regression"}}
)


def test_a_valid_body_gives_typed_labels():
    body = {
        "labels": [
            {"request_id": "r1", "label": "yes"},
            {"request_id": "r2", "label": "no", "row": 1, "timestamp": "2026-12-03T10:00:00Z"},
        ]
    }
    items = parse_feedback_body(body, CHURN)
    assert items == [
        Feedback("r1", "yes", 0, None, "api"),
        Feedback("r2", "no", 1, "2026-12-03T10:00:00Z", "api"),
    ]
    assert parse_feedback_body([{"request_id": "p", "label": 3}], PRICE)[0].label == 3.0


@pytest.mark.parametrize(
    ("target", "items", "problem", "count", "named"),
    [
        (CHURN, [{"request_id": "a", "label": 1}, {"request_id": "b", "label": "no"}],
         "label_type", 1, "item 0 (request a): 1"),
        (CHURN, [{"request_id": "a", "label": "maybe"}, {"request_id": "b", "label": "perhaps"}],
         "label_not_in_set", 2, "'maybe'"),
        (GRADES, [{"request_id": "a", "label": "2"}],
         "label_type", 1, "integer labels in [1, 2, 3]"),
        (GRADES, [{"request_id": "a", "label": 4}], "label_not_in_set", 1, "request a"),
        (PRICE, [{"request_id": "a", "label": math.inf}], "label_not_finite", 1, "finite numbers"),
        (PRICE, [{"request_id": "a", "label": True}], "label_type", 1, "True"),
        (PRICE, [{"label": 1.0}], "request_id_missing", 1, "no request_id"),
        (PRICE, [{"request_id": "a", "label": 1.0, "row": -1}], "row_invalid", 1, "row is not"),
    ],
)  # fmt: skip
def test_invalid_labels_are_a_422_that_names_the_problem(target, items, problem, count, named):
    with pytest.raises(FeedbackError) as caught:
        parse_feedback_body({"labels": items}, target)
    error = caught.value
    assert (error.status, error.problem, error.count) == (422, problem, count)
    assert named in str(error)


def test_an_oversized_or_misshapen_body_is_refused():
    items = [{"request_id": str(i), "label": "no"} for i in range(11)]
    with pytest.raises(FeedbackError) as caught:
        parse_feedback_body({"labels": items}, CHURN, max_items=10)
    assert (caught.value.status, caught.value.problem, caught.value.count) == (
        413,
        "too_many_labels",
        11,
    )
    assert "write them as a file" in str(caught.value)
    with pytest.raises(FeedbackError, match="expected") as caught:
        parse_feedback_body({"label": "yes"}, CHURN)
    assert caught.value.status == 422
    with pytest.raises(FeedbackError, match="not objects"):
        parse_feedback_body({"labels": ["yes"]}, CHURN)


def test_a_second_label_is_a_correction_never_an_overwrite():
    book = LabelBook().add(
        [
            Feedback("r1", "yes", timestamp="2026-12-03T10:00:00Z", source="api"),
            Feedback("r1", "yes", timestamp="2026-12-03T10:01:00Z", source="api"),
            Feedback("r1", "no", timestamp="2026-12-03T11:00:00Z", source="labels.csv"),
            Feedback("r2", "no", timestamp="2026-12-03T12:00:00Z", source="api"),
            Feedback("r2", "yes", timestamp="2026-12-03T09:00:00Z", source="late.csv"),
        ]
    )
    assert book.repeats == 1
    assert book.current[("r1", 0)].label == "no"
    assert [
        (c.request_id, c.previous, c.previous_time, c.label, c.time) for c in book.corrections
    ] == [
        ("r1", "yes", "2026-12-03T10:00:00Z", "no", "2026-12-03T11:00:00Z"),
        ("r2", "yes", "2026-12-03T09:00:00Z", "no", "2026-12-03T12:00:00Z"),  # the newer wins
    ]
    assert book.corrections[0].source == "labels.csv"


def test_label_files_under_the_storage_root(tmp_path):
    root = storage.as_uri(tmp_path)
    folder = labels_uri(root, "grades model")
    assert folder.endswith("/labels/grades_model")
    local = storage.local_path(folder)
    local.mkdir(parents=True)
    pd.DataFrame({"request_id": ["a", "b"], "label": [1, 3], "row": [0, 2]}).to_parquet(
        local / "b.parquet"
    )
    storage.write_text(
        storage.join(folder, "a.csv"), "request_id,label,timestamp\n00123,2,2026-12-03\n"
    )
    items = read_label_files(folder, GRADES)
    assert [(i.request_id, i.label, i.row, i.source.rsplit("/", 1)[-1]) for i in items] == [
        ("00123", 2, 0, "a.csv"),  # a CSV is read as text: the zeros stay
        ("a", 1, 0, "b.parquet"),
        ("b", 3, 2, "b.parquet"),
    ]
    assert items[0].timestamp == "2026-12-03"
    storage.write_text(storage.join(folder, "c.csv"), "request_id,label\nd,2\ne,7\nf,x\ng,\n")
    with pytest.raises(FeedbackError) as caught:
        read_label_files(folder, GRADES)
    message = str(caught.value)
    assert caught.value.count == 3
    assert "c.csv line 3 (request e)" in message
    assert "c.csv line 4" in message
    assert "no label (1): " in message
    assert "c.csv line 5 (request g)" in message
    storage.write_text(storage.join(folder, "c.csv"), "id,label\nd,2\n")
    with pytest.raises(FeedbackError, match=r"c.csv: missing column\(s\) request_id"):
        read_label_files(folder, GRADES)
    assert read_label_files(storage.join(root, "labels", "nothing"), GRADES) == []


def shadow_lines(request_id, champion, challenger, **extra):
    shadow = {"experiment": "shadow"}
    return [
        LoggedAnswer(request_id, "champion", "3", tuple(champion), 1.0, served=True, **shadow),
        LoggedAnswer(
            request_id, "challenger", "4", tuple(challenger), 1.2, served=False, **shadow, **extra
        ),
    ]


def test_answers_are_paired_by_request_and_labels_joined():
    lines = [
        *shadow_lines("r1", ["yes", "no"], ["yes", "yes"]),
        *shadow_lines("r2", [], [], error="shadow queue full"),
        LoggedAnswer("r3", "champion", "3", ("no",), 0.9),
    ]
    lines[2] = LoggedAnswer("r2", "champion", "3", ("no",), 1.0)
    pairing = pair_answers(lines)
    assert (pairing.requests, pairing.champion_only, pairing.challenger_only) == (3, 1, 0)
    by_key = {r.key: r for r in pairing.records}
    assert by_key[("r1", 1)].champion_answer == "no"
    assert by_key[("r1", 1)].challenger_answer == "yes"
    assert by_key[("r1", 1)].served_by == "champion"
    assert by_key[("r1", 1)].challenger_version == "4"
    assert by_key[("r2", 0)].challenger_error == "shadow queue full"
    assert not by_key[("r2", 0)].is_paired
    assert by_key[("r3", 0)].challenger_answer is None
    book = LabelBook().add([Feedback("r1", "yes", 1), Feedback("zz", "no"), Feedback("yy", "no")])
    joined = join_labels(pairing.records, book)
    assert (joined.labelled, joined.unknown, joined.unknown_ids) == (1, 2, ("yy", "zz"))
    assert {r.key: r.label for r in joined.records}[("r1", 1)] == "yes"
    with pytest.raises(FeedbackError) as caught:
        join_labels(pairing.records, book, strict=True)
    assert (caught.value.status, caught.value.problem, caught.value.count) == (
        404,
        "unknown_request_id",
        2,
    )
    assert "yy row 0" in str(caught.value)


def test_log_lines_without_request_ids_are_refused_by_name():
    with pytest.raises(ValueError, match="no request_id"):
        LoggedAnswer.from_line({"model_version": "3", "predictions": ["no"]})
    with pytest.raises(ValueError, match="arm must be one of champion, challenger"):
        LoggedAnswer.from_line({"request_id": "r", "arm": "blue"})
    line = LoggedAnswer.from_line(
        {"request_id": "r", "arm": "challenger", "served": False, "experiment": "shadow",
         "model_version": 4, "predictions": ["no"], "latency_ms": 2, "error": None}
    )  # fmt: skip
    assert (line.model_version, line.predictions, line.latency_ms, line.served) == (
        "4",
        ("no",),
        2.0,
        False,
    )


def test_a_shadow_experiment_from_log_lines_to_verdict():
    """Logged answers -> pairs -> labels -> the decision, on a small plan."""
    lines, labels = [], []
    for i in range(200):
        truth = "yes" if i % 3 == 0 else "no"
        other = "no" if truth == "yes" else "yes"
        champion = other if i % 20 == 0 else truth  # each wrong on 10 other requests
        challenger = other if i % 20 == 10 else truth
        lines += shadow_lines(f"r{i}", [champion], [challenger])
        labels.append(Feedback(f"r{i}", truth))
    joined = join_labels(pair_answers(lines).records, LabelBook().add(labels))
    policy = DecisionPolicy(
        looks=2,
        final_requests=200,
        min_agreement=0.8,
        min_labels=100,
        accuracy_margin=0.1,
        max_share_shift=0.1,
    )
    decision = decide_records(joined.records, regression=False, look=2, policy=policy)
    assert (decision.requests, decision.labelled) == (200, 200)
    assert decision.check("agreement").reason.startswith("180 of 200 paired rows the same label")
    assert decision.check("p95_latency").value == pytest.approx(1.2)
    assert decision.check("non_inferiority").status == PASS
    assert decision.verdict == PASS, decision.summary


def test_an_experiment_is_read_from_the_inference_log(tmp_path):
    import gzip
    import json
    from datetime import UTC, datetime

    from include.ml_pipeline.inference_records import object_uri
    from include.ml_pipeline.release.feedback import read_logged_answers

    base = storage.as_uri(tmp_path / "inference_log")
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)

    def line(version, arm, request_id=None, traffic="live", minutes=0, **extra):
        stamp = now.replace(minute=minutes).isoformat()
        out = {"timestamp": stamp, "model_name": "churn", "model_version": version}
        out |= {"traffic": traffic, "latency_ms": 0.5, "rows": 1, "predictions": ["no"]}
        if request_id:
            out |= {"request_id": request_id, "arm": arm, "served": arm == "champion"}
        return json.dumps(out | extra)

    def write(version, lines, seq):
        newest = now.replace(minute=10).timestamp() + seq  # names carry the newest time
        uri = object_uri(base, "churn", version, newest, "host", seq)
        storage.write_bytes(uri, gzip.compress("\n".join(lines).encode()))

    write("3", [line("3", "champion", "r1", minutes=5), line("3", "champion"), "{broken"], 1)
    write("3", [line("3", "champion", "r2", traffic="smoke", minutes=6)], 2)
    write("4", [line("4", "challenger", "r1", minutes=5), line("4", "challenger", "r0")], 3)
    write("2", [line("2", "champion", "r9", minutes=5)], 4)  # an older champion
    read = read_logged_answers(base, "churn", versions=("3", "4"), since=now.replace(minute=1))
    assert [(a.request_id, a.arm, a.model_version) for a in read.answers] == [
        ("r1", "champion", "3"),
        ("r1", "challenger", "4"),
    ]  # r0 was logged at minute 0, before the window; r2 was smoke traffic
    assert read.without_request_id == 0  # the line without one is also before the window
    everything = read_logged_answers(base, "churn")
    assert {a.request_id for a in everything.answers} == {"r0", "r1", "r9"}
    assert everything.without_request_id == 1
    assert pair_answers(read.answers).records[0].is_paired
