"""What the isolated prediction worker costs per request, and which wire format it uses.

    PYTHONPATH=. nice -n 10 .local/venv/bin/python benchmarks/bench_worker.py [--repeat 300]

1. Wire format: one request (a `Batch` of the churn shape: 5 numeric + 6 text columns)
   and its reply (labels + class probabilities), encoded and decoded, at 1 and 1,000 rows:
   pickle protocol 5 (`loading/wire.py`) against Arrow IPC (a record batch per message,
   `pyarrow.ipc` stream). Median microseconds of `--repeat` round trips.
2. The floor: a 1-row request's round trip to a process that only echoes it.
3. Per-request overhead: the custom-estimator example (`include/custom_models/
   ratio_features.py`, 50 rounds) predicting a batch in this process (`SklearnPredictor`,
   what the API did before) against the same pipeline in an isolated worker
   (`IsolatedPredictor`: send, predict in the child, receive), at 1 and 1,000 rows. Median
   milliseconds of `--repeat` requests (a tenth at 1,000 rows), measured in alternation.
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _batch(rows: int):
    from include.ml_pipeline.data_preparation.sample_data import (
        TARGET,
        churn_spec,
        generate_churn_frame,
    )
    from include.ml_pipeline.features import coerce_features
    from include.ml_pipeline.serving.batch import batch_from_frame

    spec = churn_spec()
    frame = coerce_features(generate_churn_frame(rows, seed=3).drop(columns=[TARGET]), spec)
    return batch_from_frame(frame, spec.numeric, spec.categorical)


def _pickle_round_trip(batch, labels, proba) -> None:
    request = pickle.dumps(("predict", batch.numeric, batch.categorical), protocol=5)
    pickle.loads(request)
    reply = pickle.dumps(("ok", labels, proba), protocol=5)
    pickle.loads(reply)


def _arrow_round_trip(batch, labels, proba) -> None:
    import numpy as np
    import pyarrow as pa

    def encode(arrays, names) -> bytes:
        record = pa.record_batch(arrays, names=names)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, record.schema) as writer:
            writer.write_batch(record)
        return sink.getvalue()

    def decode(data: bytes) -> pa.RecordBatch:
        return pa.ipc.open_stream(data).read_next_batch()

    numeric = [pa.array(batch.numeric[:, j]) for j in range(batch.numeric.shape[1])]
    text = [pa.array(column, type=pa.string()) for column in batch.categorical]
    names = [*batch.numeric_columns, *batch.categorical_columns]
    got = decode(encode(numeric + text, names))
    k = len(batch.numeric_columns)
    np.column_stack([got.column(j).to_numpy() for j in range(k)])
    [got.column(j).to_pylist() for j in range(k, got.num_columns)]
    outputs = [pa.array(labels)] + [pa.array(proba[:, j]) for j in range(proba.shape[1])]
    reply = decode(encode(outputs, ["label"] + [f"p{j}" for j in range(proba.shape[1])]))
    reply.column(0).to_pylist()
    np.column_stack([reply.column(j).to_numpy() for j in range(1, reply.num_columns)])


def _median_us(function, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        function()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1e6


def wire_formats(repeat: int) -> None:
    import numpy as np

    print("wire format: encode + decode of a request and its reply (median us)")
    print(f"{'rows':>6} {'pickle 5':>10} {'arrow ipc':>10} {'arrow/pickle':>13}")
    for rows in (1, 1000):
        batch = _batch(rows)
        labels = ["yes" if i % 3 else "no" for i in range(rows)]
        proba = np.random.default_rng(0).random((rows, 2))
        p = _median_us(lambda b=batch, la=labels, pr=proba: _pickle_round_trip(b, la, pr), repeat)
        a = _median_us(lambda b=batch, la=labels, pr=proba: _arrow_round_trip(b, la, pr), repeat)
        print(f"{rows:>6} {p:>10.1f} {a:>10.1f} {a / p:>12.1f}x")


def ipc_floor(repeat: int) -> None:
    """One request of 1 row sent to a process that only echoes it back (`wire` framing):
    the least a worker can add."""
    import socket

    from include.ml_pipeline.serving.loading.wire import WorkerGone, receive, send

    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the echo process
        ours.close()
        try:
            while True:
                send(theirs, receive(theirs))
        except (WorkerGone, OSError):
            os._exit(0)
    theirs.close()
    batch = _batch(1)
    message = ("predict", batch.numeric, batch.categorical)
    try:
        floor = _median_us(lambda: (send(ours, message), receive(ours)), repeat * 10)
    finally:
        ours.close()
        os.waitpid(pid, 0)
    print(f"socket round trip of a 1-row request to an echoing process: {floor:.1f} us (median)")


def overhead(repeat: int) -> None:
    from include.custom_models.ratio_features import ratio_boosting_classifier
    from include.ml_pipeline.data_preparation.sample_data import churn_spec, generate_churn_frame
    from include.ml_pipeline.features import coerce_features
    from include.ml_pipeline.serving.compiled.predictor import SklearnPredictor
    from include.ml_pipeline.serving.loading.worker import IsolatedPredictor

    spec = churn_spec()
    frame = generate_churn_frame(5000, seed=1)
    pipeline = ratio_boosting_classifier(max_iter=50).fit(
        coerce_features(frame, spec), frame[spec.target]
    )
    folder = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    model_file = folder / "model.pkl"
    model_file.write_bytes(pickle.dumps(pipeline))
    info = {
        "name": "bench_custom",
        "version": "1",
        "model_file": str(model_file),
        "serialization_format": "pickle",
        "spec": spec.to_dict(),
    }
    here = SklearnPredictor(pipeline)
    worker = IsolatedPredictor(info)
    try:
        print("per request: predict in process vs in the isolated worker (median ms)")
        print(f"{'rows':>6} {'in-process':>11} {'worker':>9} {'overhead':>9}")
        for rows in (1, 1000):
            batch = _batch(rows)
            assert worker.predict(batch).labels == here.predict(batch).labels
            n = repeat if rows == 1 else max(30, repeat // 10)
            inside, isolated = [], []
            for _ in range(n):
                for predictor, times in ((here, inside), (worker, isolated)):
                    began = time.perf_counter()
                    predictor.predict(batch)
                    times.append(time.perf_counter() - began)
            a, b = statistics.median(inside) * 1e3, statistics.median(isolated) * 1e3
            print(f"{rows:>6} {a:>11.3f} {b:>9.3f} {b - a:>+9.3f}")
    finally:
        worker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    wire_formats(args.repeat)
    ipc_floor(args.repeat)
    overhead(args.repeat)


if __name__ == "__main__":
    main()
