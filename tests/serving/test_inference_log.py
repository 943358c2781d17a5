"""Inference log: writes, reads with filters, rotation bound, sampling, never blocks."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np

from include.ml_pipeline.monitoring.inference_log import InferenceLogger, read_inference_log
from include.ml_pipeline.serving.batch import Batch


def _batch(n, offset=0.0):
    numeric = np.arange(n * 2, dtype=float).reshape(n, 2) + offset
    numeric[0, 1] = np.nan
    return Batch(("a", "b"), ("c",), numeric, ([f"v{i}" if i else None for i in range(n)],))


def test_write_and_read_with_filters(tmp_path):
    logger = InferenceLogger(tmp_path).start()
    proba = np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    old = time.time() - 3600
    logger.submit(_batch(3), ["yes", "no", "no"], proba, ["no", "yes"], "1", 1.5, old)
    logger.submit(_batch(2, 100), ["yes", "yes"], proba[:2], ["no", "yes"], "2", 2.5)
    assert logger.flush()
    logger.close()
    frame = read_inference_log(tmp_path)
    assert list(frame.columns) == ["a", "b", "c", "prediction", "proba_no", "proba_yes",
                                   "model_version", "latency_ms", "timestamp"]
    assert len(frame) == 5
    assert frame["prediction"].tolist() == ["yes", "no", "no", "yes", "yes"]
    assert np.isnan(frame.loc[0, "b"])
    assert frame.loc[0, "c"] is None
    assert frame["proba_yes"].tolist()[:3] == [0.8, 0.4, 0.5]
    assert str(frame["timestamp"].dt.tz) == "UTC"
    assert read_inference_log(tmp_path, model_version="2")["a"].tolist() == [100.0, 102.0]
    since = datetime.now(UTC) - timedelta(minutes=5)
    assert len(read_inference_log(tmp_path, since=since)) == 2
    assert read_inference_log(tmp_path, limit=1)["model_version"].tolist() == ["2"]
    empty = read_inference_log(tmp_path / "nothing")
    assert len(empty) == 0
    assert "prediction" in empty.columns


def test_rotation_keeps_total_size_bounded(tmp_path):
    logger = InferenceLogger(tmp_path, max_file_bytes=4096, max_total_bytes=16384).start()
    proba = np.full((50, 2), 0.5)
    for _ in range(60):
        logger.submit(_batch(50), ["no"] * 50, proba, ["no", "yes"], "1", 1.0)
        logger.flush()
    logger.close()
    files = list(tmp_path.glob("inference-*.jsonl"))
    total = sum(p.stat().st_size for p in files)
    assert len(files) > 1
    assert total <= 16384 + 4096 * 2  # cap plus the file being written
    assert len(read_inference_log(tmp_path)) > 0


def test_full_queue_drops_without_blocking(tmp_path):
    logger = InferenceLogger(tmp_path, queue_size=2)  # writer not started: queue fills
    started = time.perf_counter()
    accepted = [logger.submit(_batch(1), ["no"], None, ["no", "yes"], "1", 1.0)
                for _ in range(1000)]
    assert time.perf_counter() - started < 0.5
    assert sum(accepted) == 2
    assert logger.dropped == 998
    logger.start()
    assert logger.flush()
    logger.close()
    assert len(read_inference_log(tmp_path)) == 2


def test_sample_rate(tmp_path):
    never = InferenceLogger(tmp_path, sample_rate=0.0)
    assert not never.submit(_batch(1), ["no"], None, ["no"], "1", 1.0)
    half = InferenceLogger(tmp_path, sample_rate=0.5, queue_size=10_000)
    kept = sum(half.submit(_batch(1), ["no"], None, ["no"], "1", 1.0) for _ in range(2000))
    assert 800 < kept < 1200


def test_write_errors_are_counted_not_raised(tmp_path):
    target = tmp_path / "file-not-dir"
    target.write_text("x")
    logger = InferenceLogger(target).start()  # cannot create files inside a file
    logger.submit(_batch(1), ["no"], None, ["no"], "1", 1.0)
    logger.flush()
    logger.close()
    assert logger.write_errors == 1


def test_split_requests_are_logged_as_received_and_read_back(tmp_path):
    import orjson

    from include.ml_pipeline.serving.parsing import FeatureParser

    body = orjson.dumps({"dataframe_split": {
        "columns": ["c", "b", "a"], "data": [["x", 1.5, 2], [None, None, 3.25]]}})
    batch = FeatureParser(["a", "b"], ["c"], 10).parse_json_body(body)
    assert batch.raw_split == body
    logger = InferenceLogger(tmp_path).start()
    proba = np.array([[0.25, 0.75], [0.5, 0.5]])
    logger.submit(batch, ["yes", "no"], proba, ["no", "yes"], "4", 1.0)
    assert logger.flush()
    logger.close()
    line = orjson.loads(next(tmp_path.glob("inference-*.jsonl")).read_bytes())
    assert line["request"] == orjson.loads(body)  # embedded, not re-encoded
    assert "features" not in line
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


def test_lines_of_the_earlier_form_are_read(tmp_path):
    import orjson

    line = {"timestamp": "2024-05-01T12:00:00+00:00", "model_version": "1",
            "latency_ms": 0.5, "rows": 2, "features": {"a": [1.0, None], "c": ["x", "y"]},
            "predictions": ["no", "yes"], "classes": ["no", "yes"],
            "probabilities": [[0.9, 0.1], [0.2, 0.8]]}
    (tmp_path / "inference-20240501T120000000000-1-000001.jsonl").write_bytes(
        orjson.dumps(line) + b"\n")
    frame = read_inference_log(tmp_path)
    assert frame["proba_yes"].tolist() == [0.1, 0.8]
    assert frame["c"].tolist() == ["x", "y"]
