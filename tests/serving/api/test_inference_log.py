"""Inference log: batched gzip objects on the storage root (local and S3), read back with
filters (model, version, time, traffic kind); bounded queue, pending objects and total
size; a slow or failing store never blocks a request and is retried."""

from __future__ import annotations

import asyncio
import gzip
import os
import re
import socket
import time
import zlib
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pytest

from include.ml_pipeline import inference_records, storage
from include.ml_pipeline.inference_records import log_objects
from include.ml_pipeline.monitoring.inference_log import read_inference_log
from include.ml_pipeline.serving.api import inference_log
from include.ml_pipeline.serving.api.inference_log import InferenceLogger
from include.ml_pipeline.serving.batch import Batch

NAME = re.compile(r"^\d{8}T\d{12}Z-[A-Za-z0-9._-]+-\d+-\d{6}\.jsonl\.gz$")


def _batch(n, offset=0.0):
    numeric = np.arange(n * 2, dtype=float).reshape(n, 2) + offset
    numeric[0, 1] = np.nan
    return Batch(("a", "b"), ("c",), numeric, ([f"v{i}" if i else None for i in range(n)],))


def _objects(root):
    return sorted(p for p in root.rglob("*.jsonl.gz"))


def test_objects_per_model_version_and_day_read_back_with_filters(tmp_path):
    logger = InferenceLogger(tmp_path, model_name="churn", flush_interval=60).start()
    proba = np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    old = time.time() - 3 * 86400
    logger.submit(_batch(3), ["yes", "no", "no"], proba, ["no", "yes"], "1", 1.5, old)
    logger.submit(_batch(2, 100), ["yes", "yes"], proba[:2], ["no", "yes"], "2", 2.5)
    logger.submit(_batch(1, 200), ["no"], proba[:1], ["no", "yes"], "2", 0.5, model_name="other")
    assert logger.flush()
    logger.close()
    objects = _objects(tmp_path)
    assert len(objects) == 3  # one per model and version: the flush wrote each buffer
    for path in objects:
        relative = path.relative_to(tmp_path).parts
        assert relative[0] in ("churn", "other")
        assert relative[1] in ("v1", "v2")
        assert re.fullmatch(r"\d{8}", relative[2])
        assert NAME.match(relative[3]), relative[3]
        host = inference_records.safe_name(socket.gethostname())
        assert f"-{host}-{os.getpid()}-" in relative[3]
    day = datetime.fromtimestamp(old, UTC).strftime("%Y%m%d")
    assert (tmp_path / "churn" / "v1" / day).is_dir()  # the record's day, not today's

    frame = read_inference_log(tmp_path)
    assert list(frame.columns) == [
        "a",
        "b",
        "c",
        "prediction",
        "proba_no",
        "proba_yes",
        "model_version",
        "traffic_kind",
        "latency_ms",
        "timestamp",
    ]
    assert len(frame) == 6
    assert frame["prediction"].tolist()[:3] == ["yes", "no", "no"]  # oldest first
    assert np.isnan(frame.loc[0, "b"])
    assert frame.loc[0, "c"] is None
    assert frame["proba_yes"].tolist()[:3] == [0.8, 0.4, 0.5]
    assert str(frame["timestamp"].dt.tz) == "UTC"
    assert set(frame["traffic_kind"]) == {"live"}
    assert read_inference_log(tmp_path, model_version="2")["a"].tolist() == [100.0, 102.0, 200.0]
    churn_v2 = read_inference_log(tmp_path, model_version="2", model_name="churn")
    assert churn_v2["a"].tolist() == [100.0, 102.0]
    since = datetime.now(UTC) - timedelta(minutes=5)
    assert len(read_inference_log(tmp_path, since=since)) == 3
    # an object whose newest record is older than the window is not even fetched
    assert len(log_objects(tmp_path, since=since)) == 2
    assert read_inference_log(tmp_path, limit=1)["a"].tolist() == [200.0]
    empty = read_inference_log(tmp_path / "nothing")
    assert len(empty) == 0
    assert "prediction" in empty.columns


def test_traffic_kinds_are_recorded_and_only_live_is_read_by_default(tmp_path):
    logger = InferenceLogger(tmp_path, flush_interval=60).start()
    for kind, offset in (("live", 0), ("smoke", 100), ("benchmark", 200)):
        logger.submit(_batch(2, offset), ["no", "no"], None, ["no", "yes"], "1", 1.0, traffic=kind)
    assert logger.flush()
    logger.close()
    assert read_inference_log(tmp_path)["a"].tolist() == [0.0, 2.0]
    every = read_inference_log(tmp_path, kinds=None)
    assert every["traffic_kind"].tolist() == ["live"] * 2 + ["smoke"] * 2 + ["benchmark"] * 2
    smoke = read_inference_log(tmp_path, kinds=("smoke",))
    assert smoke["a"].tolist() == [100.0, 102.0]


def test_buffers_become_objects_by_age_and_by_size(tmp_path):
    logger = InferenceLogger(tmp_path, flush_interval=0.2, max_object_bytes=4096).start()
    logger.submit(_batch(1), ["no"], None, ["no"], "1", 1.0)
    deadline = time.monotonic() + 5
    while not _objects(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_objects(tmp_path)) == 1  # written without a flush(), once 0.2 s old
    big = InferenceLogger(tmp_path / "big", flush_interval=3600, max_object_bytes=4096).start()
    for _ in range(40):
        big.submit(_batch(20), ["no"] * 20, None, ["no"], "1", 1.0)
    deadline = time.monotonic() + 5
    while len(_objects(tmp_path / "big")) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    sizes = [len(gzip.decompress(p.read_bytes())) for p in _objects(tmp_path / "big")]
    assert len(sizes) >= 3  # sealed at ~4 KiB of lines each, long before the hour
    assert max(sizes) < 4096 + 2000
    big.close()
    logger.close()
    assert len(read_inference_log(tmp_path / "big")) == 40 * 20


def test_total_size_is_bounded_on_the_store(tmp_path):
    # another process's objects count too: they are on the same store
    stranger = tmp_path / "m" / "v9" / "20200101" / "20200101T000000000000Z-h-1-000001.jsonl.gz"
    stranger.parent.mkdir(parents=True)
    stranger.write_bytes(gzip.compress(os.urandom(6000)))
    logger = InferenceLogger(
        tmp_path, model_name="m", flush_interval=3600, max_object_bytes=4096, max_total_bytes=16384
    ).start()
    rng = np.random.default_rng(0)
    for _ in range(60):
        batch = Batch(("a", "b"), (), rng.random((50, 2)), ())
        logger.submit(batch, ["no"] * 50, rng.random((50, 2)), ["no", "yes"], "1", 1.0)
        assert logger.flush()
    logger.close()
    objects = _objects(tmp_path)
    assert len(objects) > 2
    assert not stranger.exists()  # the oldest went first
    assert sum(p.stat().st_size for p in objects) <= 16384
    # what is left is whole: each remaining object (one flushed batch) reads back, 50 rows each
    assert len(read_inference_log(tmp_path)) == 50 * len(objects)


def test_full_queue_drops_the_oldest_without_blocking(tmp_path):
    logger = InferenceLogger(tmp_path, queue_size=2)  # writer not started: queue fills
    started = time.perf_counter()
    for i in range(1000):
        logger.submit(_batch(1, float(i)), ["no"], None, ["no", "yes"], "1", 1.0)
    assert time.perf_counter() - started < 0.5
    assert logger.dropped == 998
    assert not logger.flush()  # nothing is writing yet
    logger.start()
    assert logger.flush()
    logger.close()
    assert read_inference_log(tmp_path)["a"].tolist() == [998.0, 999.0]  # the newest kept


def test_queue_is_bounded_in_bytes_too(tmp_path):
    logger = InferenceLogger(tmp_path, max_queue_bytes=64 * 1024)
    for _ in range(200):
        logger.submit(_batch(100), ["no"] * 100, None, ["no"], "1", 1.0)
    queued = sum(len(item[0]) for item in logger._queue)
    assert queued <= 64 * 1024
    assert logger.dropped == 200 - len(logger._queue)


def test_sample_rate(tmp_path):
    never = InferenceLogger(tmp_path, sample_rate=0.0)
    assert not never.submit(_batch(1), ["no"], None, ["no"], "1", 1.0)
    half = InferenceLogger(tmp_path, sample_rate=0.5, queue_size=10_000)
    kept = sum(half.submit(_batch(1), ["no"], None, ["no"], "1", 1.0) for _ in range(2000))
    assert 800 < kept < 1200


def test_a_store_that_fails_is_retried_and_bounded(tmp_path):
    target = tmp_path / "log"
    target.write_text("x")  # a file where the folder should be: every write fails
    logger = InferenceLogger(
        target, flush_interval=0.0, max_object_bytes=1024, max_pending_bytes=4096
    ).start()
    for _ in range(30):
        logger.submit(_batch(20), ["no"] * 20, None, ["no"], "1", 1.0)
    assert not logger.flush(timeout=5)
    assert logger.write_errors >= 1
    assert logger.pending_objects > 0
    assert sum(len(o.data) for o in logger._pending) <= 4096  # memory stays bounded
    assert logger.dropped > 0  # ... by dropping the oldest objects, counted
    kept = sum(o.records for o in logger._pending)
    target.unlink()  # the store is back: the waiting objects go out
    assert logger.flush(timeout=10)
    logger.close()
    assert len(read_inference_log(target)) == kept
    assert logger.pending_objects == 0


def test_a_slow_store_never_blocks_submit(tmp_path, monkeypatch):
    real = storage.write_bytes

    def slow(uri, data):
        time.sleep(0.5)
        return real(uri, data)

    monkeypatch.setattr(storage, "write_bytes", slow)
    logger = InferenceLogger(tmp_path, flush_interval=0.0, queue_size=50).start()
    worst = 0.0
    for _ in range(300):
        started = time.perf_counter()
        logger.submit(_batch(5), ["no"] * 5, None, ["no"], "1", 1.0)
        worst = max(worst, time.perf_counter() - started)
        time.sleep(0.002)
    assert worst < 0.05, worst
    assert logger.dropped > 0  # the queue overflowed while the writer waited
    assert logger.flush(timeout=20)
    logger.close()
    assert logger.written_records + logger.dropped * 5 == 300 * 5


def test_split_requests_are_logged_as_received_and_read_back(tmp_path):
    from include.ml_pipeline.serving.parsing import FeatureParser

    body = orjson.dumps(
        {
            "dataframe_split": {
                "columns": ["c", "b", "a"],
                "data": [["x", 1.5, 2], [None, None, 3.25]],
            }
        }
    )
    batch = FeatureParser(["a", "b"], ["c"], 10).parse_json_body(body)
    assert batch.raw_split == body
    logger = InferenceLogger(tmp_path).start()
    proba = np.array([[0.25, 0.75], [0.5, 0.5]])
    logger.submit(batch, ["yes", "no"], proba, ["no", "yes"], "4", 1.0)
    assert logger.flush()
    logger.close()
    line = orjson.loads(gzip.decompress(_objects(tmp_path)[0].read_bytes()))
    assert line["request"] == orjson.loads(body)  # embedded, not re-encoded
    assert "features" not in line
    assert line["traffic"] == "live"
    frame = read_inference_log(tmp_path)
    assert frame["a"].tolist() == [2.0, 3.25]
    assert frame.loc[0, "b"] == 1.5
    assert np.isnan(frame.loc[1, "b"])
    assert frame["c"].tolist() == ["x", None]
    assert frame["proba_yes"].tolist() == [0.75, 0.5]
    assert frame["prediction"].tolist() == ["yes", "no"]


def test_multi_line_split_body_is_not_embedded(tmp_path):
    from include.ml_pipeline.serving.parsing import FeatureParser

    body = b'{"dataframe_split":\n {"columns": ["a", "c"], "data": [[1, "x"]]}}'
    batch = FeatureParser(["a"], ["c"], 10).parse_json_body(body)
    assert batch.raw_split is None  # a newline would break the one-line-per-request file


def test_files_and_lines_of_the_earlier_form_are_read(tmp_path):
    line = {
        "timestamp": "2024-05-01T12:00:00+00:00",
        "model_version": "1",
        "latency_ms": 0.5,
        "rows": 2,
        "features": {"a": [1.0, None], "c": ["x", "y"]},
        "predictions": ["no", "yes"],
        "classes": ["no", "yes"],
        "probabilities": [[0.9, 0.1], [0.2, 0.8]],
    }
    (tmp_path / "inference-20240501T120000000000-1-000001.jsonl").write_bytes(
        orjson.dumps(line) + b"\n"
    )
    frame = read_inference_log(tmp_path)
    assert frame["proba_yes"].tolist() == [0.1, 0.8]
    assert frame["c"].tolist() == ["x", "y"]
    assert frame["traffic_kind"].tolist() == ["live", "live"]  # no kind: live
    assert len(read_inference_log(tmp_path, model_version="1", model_name="any")) == 2
    assert storage.as_uri(tmp_path / "inference-20240501T120000000000-1-000001.jsonl") in [
        o.uri for o in log_objects(tmp_path, model_name="any", model_version="1")
    ]


@pytest.fixture(scope="module")
def s3():
    pytest.importorskip("moto", reason="moto[server] (a dev requirement) is not installed")
    from devtools.s3_server import S3Server

    with S3Server(bucket="inference-log-test") as server:
        yield server


@pytest.mark.services  # moto's S3 server
def test_objects_on_s3_are_written_read_and_bounded(s3, monkeypatch):
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    root = "s3://inference-log-test/runs/inference_log"
    logger = InferenceLogger(
        root,
        model_name="churn",
        max_object_bytes=4096,
        max_total_bytes=12 * 1024,
        flush_interval=3600,
    ).start()
    assert logger.flush_interval == 3600
    assert inference_log.default_flush_interval(root) == inference_log.REMOTE_FLUSH_SECONDS
    rng = np.random.default_rng(1)
    for i in range(40):
        batch = Batch(("a", "b"), (), rng.random((40, 2)), ())
        logger.submit(
            batch, ["no"] * 40, None, ["no"], "3", 1.0, traffic="smoke" if i == 0 else "live"
        )
        assert logger.flush()
    logger.close()
    keys = s3.keys("runs/inference_log/")
    assert keys
    assert all(k.startswith("runs/inference_log/churn/v3/") for k in keys)
    assert all(NAME.match(k.rsplit("/", 1)[-1]) for k in keys)
    total = sum(len(s3.get(k)) for k in keys)
    assert total <= 12 * 1024  # the bound holds on the bucket
    frame = read_inference_log(root, model_version="3", model_name="churn")
    assert 0 < len(frame) < 40 * 40  # the oldest objects were pruned
    assert set(frame["traffic_kind"]) == {"live"}
    assert len(read_inference_log(root, model_version="4")) == 0


@pytest.mark.parametrize(
    "labels",
    [[1.5, -0.1, 1e-300, 123456789.123, 0.1 + 0.2], ["yes", "no"], [0, 1, 2], [True, None]],
)
def test_the_answers_encoded_labels_make_the_same_line(labels):
    """`render_invocations` encodes the labels once: its body is what orjson writes of
    `{"predictions": labels}` and the log line that embeds those bytes is the one that
    encodes the labels itself."""
    from include.ml_pipeline.serving.api.routes import render_invocations
    from include.ml_pipeline.serving.compiled.predictor import Prediction

    result = Prediction(labels, None)
    assert render_invocations(None, result) == orjson.dumps({"predictions": labels})
    assert result.labels_json == orjson.dumps(labels)
    batch = _batch(len(labels))
    common = (batch, labels, None, [], "m", "3", "live", 1.0, 1_700_000_000.0, {"arm": "x"})
    assert inference_records.encode_line(
        *common, labels_json=result.labels_json
    ) == inference_records.encode_line(*common)


def test_the_writer_holds_lines_compressed_as_it_takes_them(tmp_path):
    """Each line goes into its buffer's gzip stream when the writer takes it: a buffer
    holds compressed bytes (no copy of the raw lines waits for the object), and the
    object is one gzip stream of every line in order."""
    logger = InferenceLogger(tmp_path, flush_interval=60)  # not started: drained by hand
    batch = _batch(500)
    for i in range(20):
        assert logger.submit(batch, [float(i)] * 500, None, [], "1", 1.0)
    logger._drain()
    (buffer,) = logger._buffers.values()
    held = sum(len(chunk) for chunk in buffer.chunks)
    assert buffer.entries == 20
    assert held < buffer.size / 4
    logger._seal(("model", "1"))
    (item,) = logger._pending
    lines = gzip.decompress(item.data).splitlines()
    assert [orjson.loads(line)["predictions"][0] for line in lines] == [float(i) for i in range(20)]


def test_a_line_submitted_later_is_queued_after_the_turn_the_same_line_in_order(tmp_path):
    """`submit(later=True)` on the event loop: nothing is encoded in the request; once the
    loop has run what it held, the queue holds the very line `submit` would have written
    (its time stamp taken at `submit`), in submit order with the lines submitted at once;
    `flush` from another thread waits for them."""
    logger = InferenceLogger(tmp_path, model_name="churn", flush_interval=60)
    proba = np.array([[0.2, 0.8], [0.6, 0.4]])
    entries = [
        (_batch(2), ["yes", "no"], proba, ["no", "yes"], "1", 1.5, 1_700_000_000.25),
        (_batch(1, 10), ["no"], proba[1:], ["no", "yes"], "1", 0.5, 1_700_000_001.5),
        (_batch(1, 20), ["yes"], proba[:1], ["no", "yes"], "1", 0.7, 1_700_000_002.75),
    ]
    extra = {"request_id": "r1", "arm": "champion"}

    def line(entry):
        batch, labels, p, classes, version, latency, stamp = entry
        return inference_records.encode_line(
            batch, labels, p, classes, "churn", version, "live", latency, stamp, extra
        )

    async def run():
        assert logger.submit(*entries[0], extra=extra, later=True)
        assert not logger._queue  # not encoded in the request
        assert logger.submitted == 0
        assert logger.stats()["queued"] == 1
        assert logger.submit(*entries[1], extra=extra)  # at once: the earlier line first
        assert logger.submit(*entries[2], extra=extra, later=True)
        assert [e[0] for e in logger._queue] == [line(entries[0]), line(entries[1])]
        await asyncio.sleep(0)  # the loop's turn ends
        assert [e[0] for e in logger._queue] == [line(e) for e in entries]
        assert logger.submit(*entries[0], extra=extra, later=True)
        logger.start()
        assert await asyncio.to_thread(logger.flush)  # waits for the loop's line

    asyncio.run(run())
    logger.close()
    assert logger.written_records == 2 + 1 + 1 + 2
    assert logger.submit(*entries[1], extra=extra, later=True)  # no loop: queued at once
    assert [e[0] for e in logger._queue] == [line(entries[1])]


def test_an_answer_goes_out_before_its_log_line_is_encoded(tmp_path):
    """The hot path logs `later`: the answer's bytes are sent, then the loop encodes the
    line (the answers of one micro-batch do not wait for each other's lines)."""
    from dataclasses import replace

    from include.ml_pipeline.data_preparation.sample_data import generate_churn_frame
    from include.ml_pipeline.deployment.api_client import split_payload
    from include.ml_pipeline.serving.api.app import create_app
    from include.ml_pipeline.serving.api.settings import get_serving_settings
    from include.ml_pipeline.serving.loading.served import build_served_model
    from tests.support.models import fit_pipeline, training_frame

    frame, spec = training_frame(600, 5)
    served = build_served_model(
        fit_pipeline(frame, spec, "lr", 5), spec, name="m", version="2", alias="", max_rows=100
    )
    settings = replace(get_serving_settings(), model_name="m", log_uri=str(tmp_path / "log"))
    app = create_app(settings, loader=lambda: served)
    logger = app.state.service.logger
    body = split_payload(generate_churn_frame(3, 3)[list(spec.columns)].head(1))
    body = body.encode() if isinstance(body, str) else body
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/invocations",
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
    }
    seen: list[tuple[bytes, int]] = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        if message["type"] == "http.response.body":
            seen.append((message["body"], logger.submitted))

    async def run():
        async with app.router.lifespan_context(app):
            while app.state.service.model is None:
                await asyncio.sleep(0.02)
            await asyncio.gather(*(app(dict(scope), receive, send) for _ in range(3)))
            assert logger.submitted == 3  # encoded once the turn's answers went out
            assert logger.flush()

    asyncio.run(run())
    assert [submitted for _, submitted in seen] == [0, 0, 0]
    assert all(answer.startswith(b'{"predictions":[') for answer, _ in seen)
    lines = [
        orjson.loads(line)
        for path in _objects(tmp_path / "log")
        for line in gzip.decompress(path.read_bytes()).splitlines()
    ]
    assert len(lines) == 3
    assert all(line["request"] == orjson.loads(body) for line in lines)


def test_the_writer_compresses_a_drains_lines_as_one_piece(tmp_path, monkeypatch):
    """Each `compress` lets the GIL go and takes it back (a hand-off with the event loop):
    the lines one drain takes are joined and compressed in pieces of about
    `COMPRESS_PIECE_BYTES`, not one call per line; the object is every line, in order."""
    calls: list[int] = []
    compressobj = zlib.compressobj

    class Counting:
        def __init__(self, *args):
            self.stream = compressobj(*args)

        def compress(self, data):
            calls.append(len(data))
            return self.stream.compress(data)

        def flush(self):
            return self.stream.flush()

    monkeypatch.setattr(zlib, "compressobj", Counting)
    monkeypatch.setattr(inference_log, "COMPRESS_PIECE_BYTES", 64 * 1024, raising=False)
    logger = InferenceLogger(tmp_path, flush_interval=60)  # not started: drained by hand
    batch = _batch(1)
    for i in range(100):
        assert logger.submit(batch, [float(i)], None, [], "1", 1.0)
    logger._drain()
    (buffer,) = logger._buffers.values()
    assert buffer.size < 64 * 1024
    assert len(calls) == 1  # 100 short lines, one piece
    for i in range(100, 3000):
        assert logger.submit(batch, [float(i)], None, [], "1", 1.0)
    logger._drain()
    (buffer,) = logger._buffers.values()
    assert 1 < len(calls) <= 2 + buffer.size // (64 * 1024)
    assert max(calls) < 64 * 1024 + 1024  # a piece stops at the bound (plus one line)
    logger._seal(("model", "1"))
    (item,) = logger._pending
    lines = gzip.decompress(item.data).splitlines()
    predictions = [orjson.loads(line)["predictions"] for line in lines]
    assert predictions == [[float(i)] for i in range(3000)]
