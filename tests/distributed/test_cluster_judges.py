"""The distributed proof's judges (devtools/cluster/scenario.py) on planted evidence: each
one must see a worker's disk when a task used it, or the cluster test proves nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.cluster.cluster import Cluster, Worker
from devtools.cluster.scenario import cross_references, data_files_on_workers, local_locations

pytestmark = pytest.mark.quick  # planted evidence, no cluster


def _cluster(root: Path) -> Cluster:
    cluster = Cluster(root=root)
    for name in ("worker-a", "worker-b"):
        cluster.workers[name] = Worker(name, root / name)
        for folder in cluster.workers[name].folders().values():
            folder.mkdir(parents=True)
        (cluster.workers[name].airflow_home / "logs").mkdir()
    return cluster


def test_local_paths_in_xcom_are_found_and_uris_of_services_are_not():
    xcoms = {
        "dividir_datos:return_value": {
            "train_uri": "s3://b/p/train.parquet",
            "test_path": "/tmp/w/pipeline/test.parquet",
            "nested": [{"report": "file:///tmp/r.html"}],
        },
        "desplegar_api:return_value": {
            "url": "http://127.0.0.1:8000",
            "path": "/version",
            "model_uri": "models:/m/3",
        },
        "esperar_datos:return_value": "/shared/raw.csv",
    }
    found = local_locations(xcoms, allowed=frozenset({"/shared/raw.csv"}))
    assert found == [
        "dividir_datos:return_value test_path='/tmp/w/pipeline/test.parquet'",
        "dividir_datos:return_value nested[0].report='file:///tmp/r.html'",
    ]


def test_pipeline_data_left_on_a_worker_is_found(tmp_path):
    cluster = _cluster(tmp_path)
    worker = cluster.workers["worker-b"]
    (worker.pipeline_home / "warehouse").mkdir()
    (worker.pipeline_home / "warehouse" / "pipeline.duckdb").write_bytes(b"x")
    (worker.tmp / "split.parquet").write_bytes(b"x")
    (worker.home / ".cache").mkdir()
    (worker.home / ".cache" / "fontlist.json").write_text("{}")  # a library cache: fine
    (worker.airflow_home / "logs" / "task.log").write_text("log")  # its own logs: fine
    assert data_files_on_workers(cluster) == {
        "worker-b": ["TMPDIR/split.parquet", "ML_PIPELINE_HOME/warehouse/pipeline.duckdb"]
    }


def test_a_task_log_naming_the_other_workers_folder_is_found(tmp_path):
    cluster = _cluster(tmp_path)
    other = cluster.workers["worker-a"].pipeline_home / "runs" / "split.parquet"
    log = cluster.workers["worker-b"].airflow_home / "logs" / "attempt=1.log"
    log.write_text(f"ok\nreading {other}\n")
    own = cluster.workers["worker-a"].airflow_home / "logs" / "attempt=1.log"
    own.write_text(f"writing {other}\n")  # a worker naming its own folder: fine
    assert cross_references(cluster) == {"worker-b": [f"attempt=1.log: reading {other}"]}


def test_a_service_that_fails_to_start_leaves_the_started_ones_to_stop(tmp_path, monkeypatch):
    """PostgreSQL fails: the broker and MLflow, started beside it, are still handed to
    the cluster so that stop() ends them (they were left running)."""
    import pytest

    from devtools.cluster import backends
    from devtools.cluster.cluster import ClusterError

    def refuse(root):
        raise ClusterError("initdb failed")

    monkeypatch.setattr(backends, "missing_binaries", lambda: [])
    monkeypatch.setattr(backends, "start_postgres", refuse)
    monkeypatch.setattr(backends, "start_redis", lambda root: "redis-service")
    monkeypatch.setattr(backends, "start_s3", lambda root, bucket: "s3-service")
    monkeypatch.setattr(backends, "start_mlflow", lambda root, s3: "mlflow-service")
    cluster = Cluster(root=tmp_path)
    with pytest.raises(ClusterError, match="initdb failed"):
        cluster.start()
    assert (cluster.redis, cluster.s3, cluster.mlflow) == (
        "redis-service",
        "s3-service",
        "mlflow-service",
    )
    assert cluster.postgres is None


def test_xcom_values_decode_from_either_lines_column():
    """2.11 keeps an XCom as JSON bytes (`bytea`), 3.x as `jsonb` (psycopg2 hands it over
    parsed): the judges read the same value from both, or a location on a worker's disk
    would hide in undecoded bytes."""
    from devtools.cluster.cluster import _decoded

    payload = {"train_uri": "s3://b/p/train.parquet", "rows": [1, 2], "id": "123"}
    as_211 = memoryview(b'{"train_uri": "s3://b/p/train.parquet", "rows": [1, 2], "id": "123"}')
    assert _decoded(as_211) == _decoded(payload) == payload
    assert _decoded("123") == "123"  # a 3.x string value stays a string
    assert _decoded(memoryview(b"null")) is None
    found = local_locations({"t:return_value": _decoded(b'{"path": "/tmp/w/split.parquet"}')})
    assert found == ["t:return_value path='/tmp/w/split.parquet'"]


def test_stop_ends_airflow_then_its_services_then_the_database_side_by_side(tmp_path):
    """Workers, scheduler, DAG processor and API server stop before the services they use,
    PostgreSQL last; the stops of one stage run side by side (a stop that waits out its
    timeout does not add up)."""
    import threading
    import time
    from types import SimpleNamespace

    stopped: list[tuple[str, float]] = []
    lock = threading.Lock()

    class Slow:
        def __init__(self, name: str) -> None:
            self.name = name

        def alive(self) -> bool:
            return True

        def stop(self) -> None:
            time.sleep(0.4)
            with lock:
                stopped.append((self.name, time.monotonic()))

    cluster = _cluster(tmp_path)
    for name, worker in cluster.workers.items():
        worker.service = Slow(name)
    cluster.scheduler, cluster.dag_processor, cluster.api_server = (
        Slow("scheduler"),
        Slow("dag-processor"),
        Slow("api-server"),
    )
    for name in ("api", "mlflow", "s3", "redis", "postgres"):
        setattr(cluster, name, SimpleNamespace(service=Slow(name)))
    started = time.monotonic()
    cluster.stop()
    took = time.monotonic() - started
    order = [name for name, _ in stopped]
    airflow = {"worker-a", "worker-b", "scheduler", "dag-processor", "api-server"}
    assert set(order[:5]) == airflow
    assert set(order[5:9]) == {"api", "mlflow", "s3", "redis"}
    assert order[9] == "postgres"
    assert took < 2.5, f"10 stops of 0.4 s took {took:.1f} s: not side by side"


def test_a_rollback_that_kept_the_new_version_or_moved_another_model_is_found():
    """Issue 23's rollback judge: the failed version still champion, or another model's
    served version changed by the rollback, is a problem; the rollback done right is not."""
    from types import SimpleNamespace

    from devtools.cluster.scenario import ROLLBACK_TASK, SMOKE_TASK, Step, _judge_rollback

    def judged(champion: str, served: dict[str, str]) -> list[str]:
        cluster = SimpleNamespace(
            model_name="churn",
            xcoms=lambda dag_id, run_id: {
                "entrenamiento_evaluacion.registrar_mlflow:return_value": {"version": "3"},
                f"{ROLLBACK_TASK}:rollback": {"rolled_back": True, "champion": "2"},
            },
            mlflow=SimpleNamespace(alias_version=lambda name, alias: champion),
            api=SimpleNamespace(
                get=lambda path: {
                    "models": [{"name": n, "model_version": v} for n, v in served.items()]
                }
            ),
        )
        tis = [{"task_id": t, "state": "failed"} for t in (SMOKE_TASK, ROLLBACK_TASK)]
        step = Step("kill", run_id="r", facts={"task_instances": tis})
        _judge_rollback(cluster, step, "2", {"churn": "2", "spend": "1"})
        return step.problems

    assert judged("2", {"churn": "2", "spend": "1"}) == []
    kept_new, moved_other = (
        judged("3", {"churn": "3", "spend": "1"}),
        judged("2", {"churn": "2", "spend": None}),
    )
    assert len(kept_new) == 2, kept_new  # the champion, and the API serving v3
    assert "champion is v3 after the rollback of v3, not v2" in kept_new[0]
    assert moved_other == [
        "the model API serves {'churn': '2', 'spend': None} after the rollback, "
        "not {'churn': '2', 'spend': '1'}"
    ]
