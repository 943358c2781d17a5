"""The data stages on the storage root: each task's in-memory warehouse reads its input
tables from, and writes its output to, Parquet objects under `<storage_uri>/runs/<run>/`,
so no task relies on another one's disk, and two runs never share a table.

The steps are called as their Airflow tasks call them, with only the payload dicts
between them (through JSON, as XCom hands them on)."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time

import pandas as pd
import pytest

from include.ml_pipeline import storage
from include.ml_pipeline.config import get_settings
from include.ml_pipeline.data_preparation import ingest, warehouse
from include.ml_pipeline.data_preparation.sample_data import TARGET, generate_churn_frame
from include.ml_pipeline.features import FeatureSpec
from include.ml_pipeline.orchestration.steps.deployment_dag import data_preparation as steps
from include.ml_pipeline.runs import run_key, run_uri
from include.ml_pipeline.training.data import read_split, read_split_with_fingerprint
from tests.data_preparation.conftest import leftovers

RUN_A = "manual__2026-12-01T10:00:00+00:00"
RUN_B = "manual__2026-12-01T10:00:01+00:00"


def _params(**overrides) -> dict:
    from include.ml_pipeline.orchestration.params import deployment_params

    return {**{k: p.value for k, p in deployment_params().items()}, **overrides}


def _xcom(payload: dict) -> dict:
    return json.loads(json.dumps(payload))


def run_data_stages(data_uri: str, run_id: str, params: dict, barrier=None) -> dict:
    """descargar -> validar -> preprocesar -> dividir, as the four tasks run them."""

    def sync():
        if barrier is not None:
            barrier.wait(timeout=120)

    loaded = _xcom(steps.load_raw_data(data_uri, params, run_id))
    sync()
    validated = _xcom(steps.validate_raw_data(loaded, params))
    sync()
    prepared = _xcom(steps.preprocess(validated, params, run_id))
    sync()
    split = _xcom(steps.split(prepared, loaded, params, run_id))
    sync()
    return {"load": loaded, "validate": validated, "preprocess": prepared, "split": split}


def test_the_data_stages_on_s3_leave_tables_and_splits_in_the_bucket_and_nothing_on_the_worker(
    s3_root,
):
    root = s3_root.uri
    assert get_settings().storage_uri == root
    data = storage.write_text(
        storage.join(root, "incoming", "churn.csv"),
        generate_churn_frame(1_200, seed=4).to_csv(index=False),
    )
    out = run_data_stages(data, RUN_A, _params())

    key = run_key(RUN_A)
    run = f"{s3_root.prefix}/runs/{key}"
    assert s3_root.server.keys(s3_root.prefix + "/") == sorted(
        [
            f"{s3_root.prefix}/incoming/churn.csv",
            f"{run}/tables/raw.parquet",
            f"{run}/tables/clean.parquet",
            f"{run}/splits/train.parquet",
            f"{run}/splits/validation.parquet",
            f"{run}/splits/test.parquet",
        ]
    )
    assert out["load"]["table_uri"] == f"{run_uri(get_settings(), RUN_A)}/tables/raw.parquet"
    assert out["load"]["table_uri"].startswith("s3://ml-pipeline/")
    assert out["validate"]["table_uri"] == out["load"]["table_uri"]
    assert out["preprocess"]["table_uri"].endswith("/tables/clean.parquet")
    uris = out["split"]["uris"]
    assert set(uris) == {"train", "validation", "test"}
    assert all(u.startswith(f"s3://ml-pipeline/{run}/splits/") for u in uris.values())
    assert sum(out["split"]["rows"].values()) == out["preprocess"]["rows_out"] == 1_200
    # Nothing was left on the worker: no file in its home, temporary or working folder.
    worker = s3_root.worker
    assert leftovers(worker.home, worker.scratch, worker.cwd) == []

    # Another worker reads the split from the bucket; its fingerprint is the object's bytes.
    spec = FeatureSpec.from_dict(out["split"]["feature_spec"])
    train, digest = read_split_with_fingerprint(uris["train"], spec)
    assert len(train) == out["split"]["rows"]["train"]
    body = s3_root.server.get(f"{run}/splits/train.parquet")
    assert digest == hashlib.sha256(body).hexdigest()[:16]
    assert storage.fingerprint(uris["train"], length=16) == digest
    assert leftovers(worker.home, worker.scratch, worker.cwd) == []


def test_remote_raw_data_is_read_with_the_data_connections_options_alone(s3_root, monkeypatch):
    """The fsspec path (Airflow 3's): the options of the data connection, not the
    environment's credentials or endpoint, reach the object."""
    server = s3_root.server
    data = storage.write_text(
        storage.join(s3_root.uri, "incoming", "other.csv"),
        generate_churn_frame(300, seed=2).to_csv(index=False),
    )
    options = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": server.endpoint_url, "region_name": "us-east-1"},
    }
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    source = ingest.StorageSource(options)
    assert ingest.source_exists(data, source)
    assert not ingest.source_exists(data + ".missing", source)
    with warehouse.task_warehouse() as con:
        loaded = ingest.load_into_table(con, data, "raw__t", source)
    assert loaded.rows == 300
    assert leftovers(s3_root.worker.scratch, s3_root.worker.cwd) == []


def test_the_airflow_line_decides_how_remote_raw_data_is_read(monkeypatch):
    from include.ml_pipeline.orchestration import connections
    from include.ml_pipeline.orchestration.compat import AIRFLOW_3

    asked = []
    monkeypatch.setattr(
        connections, "storage_options_for", lambda conn_id: asked.append(conn_id) or {"k": 1}
    )
    if AIRFLOW_3:  # no astro-sdk on Airflow 3: fsspec, with the connection's options
        assert steps.raw_source(None) == ingest.StorageSource(None)
        assert steps.raw_source("data_s3") == ingest.StorageSource({"k": 1})
        assert asked == ["data_s3"]
    else:  # the Astro SDK's File, whose hooks read the connection themselves
        assert steps.raw_source("data_s3") == ingest.AstroSdkSource("data_s3")
        assert asked == []


def test_two_runs_at_the_same_time_keep_their_own_tables_and_splits(worker):
    """Two runs' data stages, step by step side by side (each waits for the other between
    stages): each run's splits hold its own rows, neither removes the other's tables, and
    both equal what the run gives on its own."""
    root = storage.as_uri(worker.home / "data")
    a = storage.write_text(
        storage.join(root, "in", "a.csv"), generate_churn_frame(1_500, seed=1).to_csv(index=False)
    )
    b = storage.write_text(
        storage.join(root, "in", "b.csv"), generate_churn_frame(900, seed=2).to_csv(index=False)
    )
    params = _params()
    barrier = threading.Barrier(2)
    results, errors = {}, []

    def go(name, uri, run_id):
        try:
            results[name] = run_data_stages(uri, run_id, params, barrier)
        except BaseException as exc:  # reported below
            errors.append(exc)
            barrier.abort()

    threads = [
        threading.Thread(target=go, args=("a", a, RUN_A)),
        threading.Thread(target=go, args=("b", b, RUN_B)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    assert sum(results["a"]["split"]["rows"].values()) == 1_500
    assert sum(results["b"]["split"]["rows"].values()) == 900
    for name, run_id in (("a", RUN_A), ("b", RUN_B)):
        for stage in ("load", "preprocess"):
            assert storage.exists(results[name][stage]["table_uri"])
        assert results[name]["load"]["table_uri"].startswith(run_uri(get_settings(), run_id))

    alone = run_data_stages(a, "manual__alone", params)
    spec = FeatureSpec.from_dict(alone["split"]["feature_spec"])
    for split in ("train", "validation", "test"):
        together = read_split(results["a"]["split"]["uris"][split], spec)
        pd.testing.assert_frame_equal(together, read_split(alone["split"]["uris"][split], spec))
    assert set(read_split(results["b"]["split"]["uris"]["train"], spec)[TARGET]) <= {"yes", "no"}


def test_old_runs_tables_are_pruned_but_never_a_split_or_a_recent_run(tmp_path):
    runs = storage.as_uri(tmp_path / "runs")
    old = time.time() - warehouse.TABLES_MAX_AGE_SECONDS - 3600
    files = {
        "old/tables/raw.parquet": old,
        "old/tables/clean.parquet": old,
        "old/splits/train.parquet": old,
        "recent/tables/raw.parquet": time.time() - 60,
        "recent/tables/clean.parquet": old,  # one recent table keeps the run's tables
        "current/tables/raw.parquet": old,
    }
    for name, stamp in files.items():
        path = tmp_path / "runs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        os.utime(path, (stamp, stamp))

    removed = warehouse.prune_old_tables(runs, keep="current")

    assert removed == [storage.join(runs, "old", "tables")]
    left = sorted(str(p.relative_to(tmp_path / "runs")) for p in (tmp_path / "runs").rglob("*.*"))
    assert left == sorted(name for name in files if not name.startswith("old/tables"))
    assert warehouse.prune_old_tables(storage.as_uri(tmp_path / "none"), keep="x") == []


def test_a_task_warehouse_writes_its_outputs_only_when_it_succeeds(worker):
    out = storage.as_uri(worker.home / "t" / "out.parquet")

    def fails_after_creating_the_table():
        with warehouse.task_warehouse(outputs={"t": out}) as con:
            con.execute("CREATE TABLE t AS SELECT range AS i FROM range(10)")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fails_after_creating_the_table()
    assert not storage.exists(out)

    with warehouse.task_warehouse(outputs={"t": out}) as con:
        con.execute("CREATE TABLE t AS SELECT range AS i FROM range(10)")
    with warehouse.task_warehouse(inputs={"again": out}) as con:
        assert con.execute("SELECT sum(i) FROM again").fetchone()[0] == 45
    assert leftovers(worker.scratch, worker.cwd) == []

    missing = storage.as_uri(worker.home / "t" / "never.parquet")
    opened = warehouse.task_warehouse(inputs={"raw__x": missing})
    with pytest.raises(FileNotFoundError, match=r"never\.parquet.*descargar_datos"):
        opened.__enter__()


def test_pruning_on_s3_removes_old_runs_tables_and_keeps_their_splits(s3_root):
    runs = storage.join(s3_root.uri, "runs")
    for name in ("a/tables/raw.parquet", "a/splits/train.parquet", "b/tables/raw.parquet"):
        storage.write_bytes(storage.join(runs, name), b"x")
    # every object counts as old here (S3 keeps its own modification times)
    assert warehouse.prune_old_tables(runs, keep="b", max_age_seconds=-1) == [
        storage.join(runs, "a", "tables")
    ]
    assert s3_root.server.keys(s3_root.prefix + "/") == [
        f"{s3_root.prefix}/runs/a/splits/train.parquet",
        f"{s3_root.prefix}/runs/b/tables/raw.parquet",
    ]
    assert warehouse.prune_old_tables(runs, keep="other") == []  # b is minutes old


def test_a_split_on_s3_is_read_in_memory_with_the_objects_own_fingerprint(s3_root, monkeypatch):
    """Training reads a remote split without a copy on the worker's disk (a task killed
    mid-read leaves nothing behind), and fingerprints the object's bytes."""
    import io

    import pandas as pd

    from include.ml_pipeline.training import data

    buffer = io.BytesIO()
    pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"], "y": ["no", "yes"]}).to_parquet(buffer)
    uri = storage.join(s3_root.uri, "runs", "r", "splits", "train.parquet")
    storage.write_bytes(uri, buffer.getvalue())

    def no_copy(*args, **kwargs):
        raise AssertionError("a single remote object must not be copied to disk")

    monkeypatch.setattr(storage, "local_copy", no_copy)
    frame, digest = data.read_parquet(uri, ["a", "y"], fingerprint=True)
    assert list(frame.columns) == ["a", "y"]
    assert digest == storage.fingerprint(uri, length=data.DIGEST_LENGTH)
    assert list(s3_root.worker.scratch.iterdir()) == []
    with pytest.raises(KeyError, match="missing column"):
        data.read_parquet(uri, ["a", "nope"])
