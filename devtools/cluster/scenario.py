"""The proof, step by step, on a running `Cluster`; each step returns what it saw (facts)
and what is wrong with it (problems, empty when the step passed). The test asserts on the
problems; `python -m devtools.cluster` prints both.

1. `deploy`: raw data generated and uploaded to the bucket; `ml_model_deployment_advanced`
   triggered through the scheduler with `data_uri=s3://…`. It must succeed, its task
   instances must have run on both workers, the model API must serve the new champion,
   the split, the reports and the inference log must be objects in the bucket, every
   location in the run's XComs must be a URI of the bucket (or a service), and the workers'
   own folders must hold no data file (nothing a task read came from a worker's disk).
2. `monitor`: live traffic sent to the model API, then `ml_model_monitoring` triggered: it
   must succeed and read the inference log from the bucket.
3. `second model` (issue 23, service mode): another problem (next year's spend) deployed
   under its own `model_name` into the same model API service, which must serve it next
   to the churn model, that one untouched. (The test keeps a client of each model
   sending from here to the end of `kill`.)
4. `kill`: another deployment run; the worker that runs `entrenar_modelo` is SIGKILLed
   (with its whole process tree) in the middle of the fit: the try must be noticed as lost,
   retried on the other worker, and the run must end with exactly one new model version.
   With `roll_back` (the test) that version is deployed and fails its smoke test: the
   run must fail, the churn champion go back to the version before, the API service
   serve every model as before the run.
5. `release` (issue 24, service mode; the test runs it inside step 3's test): a new version
   of the second model released on live evidence (`release_strategy` canary), promoted
   at its last look, with a client of it sending and feeding labels back throughout.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from devtools.cluster.cluster import WORKER_NAMES, Cluster
from devtools.cluster.processes import ClusterError, wait_for
from include.ml_pipeline.names import (
    BATCH_SCORING_DAG_ID,
    DEPLOYMENT_DAG_ID,
    MONITORING_DAG_ID,
    ROLLBACK_XCOM_KEY,
)

TRAIN_TASK = "entrenamiento_evaluacion.entrenar_modelo"
#: A deployment run's bound (it was 600 s): on a shared 2-core machine at load averages of
#: 20-35 the first deployment run took 8.5 min (Airflow 3) and over 10 min (2.11, with a
#: second cluster running beside it).
RUN_TIMEOUT_SECONDS = 900
RAW_KEY = "incoming/cluster/customer_churn.csv"
#: Small and quick, two of them: the mapped fits run side by side on the two workers.
FAST_CANDIDATES = [
    {"name": "logreg_c1", "estimator": "logistic_regression", "params": {"C": 1.0}},
    {
        "name": "hgb_small",
        "estimator": "hist_gradient_boosting",
        "params": {"max_iter": 40, "max_depth": 3},
    },
]
#: One fit that lasts a few seconds: the worker running it is killed in the middle.
SLOW_CANDIDATES = [
    {
        "name": "forest_slow",
        "estimator": "random_forest",
        "params": {"n_estimators": 400, "max_depth": 12},
    },
]
#: What a task would leave on a worker's disk if it kept the pipeline's data there: splits
#: and tables (Parquet), a warehouse file, raw copies, reports and dashboards, the
#: inference log, a local MLflow store. (MLflow's own model downloads in TMPDIR are
#: copies of what the server holds, listed as facts, not judged.)
DATA_SUFFIXES = (".parquet", ".duckdb", ".duckdb.wal", ".csv", ".html", ".jsonl", ".db")


@dataclass
class Step:
    name: str
    run_id: str | None = None
    state: str | None = None
    seconds: float = 0.0
    facts: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        verdict = "ok" if not self.problems else f"{len(self.problems)} problem(s)"
        lines = [
            f"== {self.name}: run {self.run_id} -> {self.state} in {self.seconds:.0f} s: {verdict}"
        ]
        for key in (
            "hostnames",
            "champion",
            "api_version",
            "victim",
            "survivor",
            "killed_after_s",
            "retry_started_after_kill_s",
            "training_tries",
            "new_versions",
            "served",
            "rollback",
            "live_rows_sent",
            "release",
            "release_looks",
            "release_poked_on",
        ):
            if key in self.facts:
                lines.append(f"   {key}: {self.facts[key]}")
        if "bucket" in self.facts:
            counts = {kind: len(keys) for kind, keys in self.facts["bucket"].items()}
            lines.append(f"   objects in the bucket (first 8 of each): {counts}")
        if "task_instances" in self.facts:
            slow = sorted(
                (ti for ti in self.facts["task_instances"] if ti.get("seconds")),
                key=lambda ti: -ti["seconds"],
            )[:4]
            lines.append(
                "   slowest tasks: "
                + ", ".join(
                    f"{ti['task_id'].rsplit('.', 1)[-1]} {ti['seconds']:.0f} s" for ti in slow
                )
            )
        lines += [f"   - {problem}" for problem in self.problems]
        return "\n".join(lines)


# -- data ----------------------------------------------------------------------------------
def upload_raw_data(
    cluster: Cluster,
    rows: int,
    seed: int = 7,
    *,
    shared_file: bool = False,
    problem: str = "binary",
    key: str = RAW_KEY,
) -> str:
    """Generated churn data (the project's generator; `problem="regression"`: next year's
    spend as the label) as a CSV object `pipeline/<key>` in the bucket.

    `shared_file` (a diagnosis, never the proof): a read-only file in the cluster folder
    that every worker can read, to exercise the stages after the raw data's download when
    the remote download itself is what fails."""
    from include.ml_pipeline.data_preparation.sample_data import generate_churn_frame

    body = generate_churn_frame(rows, seed=seed, problem=problem).to_csv(index=False).encode()
    if shared_file:
        path = cluster.root / "shared" / "customer_churn.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        path.chmod(0o444)
        return str(path)
    return cluster.s3.put(f"pipeline/{key}", body)


def deployment_conf(data_uri: str, candidates: list[dict]) -> dict:
    return {
        "data_uri": data_uri,
        "data_conn_id": "ml_pipeline_storage" if data_uri.startswith("s3://") else None,
        "sensor_poke_interval_seconds": 5,
        "candidates": candidates,
        "min_rows": 100,
        # two cores shared by a scheduler, two workers and the services
        "latency_p95_budget_ms": 1000.0,
        "api_timeout_seconds": 120,
    }


# -- judging -------------------------------------------------------------------------------
def _strings(value, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")
    elif isinstance(value, str):
        yield path, value


def local_locations(xcoms: dict[str, object], allowed: frozenset[str] = frozenset()) -> list[str]:
    """XCom values that are local paths or file:// URIs (a task handing the next one its
    own disk); `allowed`: locations the run was given (the diagnosis' shared raw file)."""
    found = []
    for label, value in xcoms.items():
        for path, text in _strings(value):
            if text in allowed:
                continue
            local = text.startswith("file:") or (
                text.startswith("/") and text.strip("/").count("/") >= 1 and " " not in text
            )
            if local:
                found.append(f"{label} {path}={text!r}")
    return found


def s3_locations(xcoms: dict[str, object]) -> list[str]:
    return [
        text for value in xcoms.values() for _, text in _strings(value) if text.startswith("s3://")
    ]


def data_files_on_workers(cluster: Cluster) -> dict[str, list[str]]:
    """Per worker: data files left in its HOME, TMPDIR, working directory or
    ML_PIPELINE_HOME."""
    out = {}
    for name in cluster.workers:
        files = [
            f"{label}/{rel}"
            for label, rels in cluster.worker_files(name).items()
            for rel in rels
            if rel.lower().endswith(DATA_SUFFIXES)
        ]
        if files:
            out[name] = files
    return out


def cross_references(cluster: Cluster) -> dict[str, list[str]]:
    """Per worker: its task log lines that name another worker's folder (a path that
    travelled from one worker to the other)."""
    out = {}
    for name, worker in cluster.workers.items():
        others = [str(w.root) + "/" for other, w in cluster.workers.items() if other != name]
        hits = []
        for log in (worker.airflow_home / "logs").rglob("*.log"):
            for line in log.read_text(errors="replace").splitlines():
                if any(other in line for other in others):
                    hits.append(f"{log.name}: {line.strip()[:200]}")
        if hits:
            out[name] = hits[:5]
    return out


def _bucket_facts(cluster: Cluster) -> dict[str, list[str]]:
    keys = cluster.s3.keys("pipeline/")
    reports = [k for k in keys if k.startswith("pipeline/reports/")]
    log = [k for k in keys if k.startswith("pipeline/inference_log/")]
    splits = [k for k in keys if k.endswith(".parquet") and k not in reports and k not in log]
    return {
        "splits": splits,
        "reports": reports,
        "inference_log": log,
        "mlflow_artifacts": cluster.s3.keys("mlflow/")[:5],
    }


def _failed_tasks(cluster: Cluster, dag_id: str, run_id: str, tis: list[dict]) -> list[str]:
    out = []
    for ti in tis:
        if ti["state"] in ("failed", "upstream_failed"):
            out.append(f"task {ti['task_id']}[{ti['map_index']}] {ti['state']} on {ti['hostname']}")
            if ti["state"] == "failed":
                log = cluster.task_log(dag_id, run_id, ti["task_id"])
                # the error lines, not the stack frames (every log keeps those)
                lines = [line for line in log.splitlines() if line and not line[0].isspace()]
                out.append("log (error lines):\n" + "\n".join(lines[-12:]))
    return out


def _run(
    cluster: Cluster, step: Step, dag_id: str, conf: dict, timeout: float, expect: str = "success"
) -> list[dict]:
    """Trigger the run, wait for its end; a problem when it did not end `expect`."""
    started = time.monotonic()
    cluster.trigger(dag_id, step.run_id, conf)
    step.state = cluster.wait_run(dag_id, step.run_id, timeout=timeout)
    step.seconds = time.monotonic() - started
    tis = cluster.task_instances(dag_id, step.run_id)
    step.facts["task_instances"] = tis
    if step.state != expect:
        step.problems.append(f"{dag_id} run {step.run_id} ended {step.state}, not {expect}")
        step.problems += _failed_tasks(cluster, dag_id, step.run_id, tis)
    return tis


# -- steps ---------------------------------------------------------------------------------
def deploy(cluster: Cluster, data_uri: str, timeout: float = RUN_TIMEOUT_SECONDS) -> Step:
    step = Step("deploy", run_id="cluster_deploy_1")
    versions_before = len(cluster.mlflow.model_versions(cluster.model_name))
    tis = _run(
        cluster, step, DEPLOYMENT_DAG_ID, deployment_conf(data_uri, FAST_CANDIDATES), timeout
    )
    hosts = sorted({ti["hostname"] for ti in tis if ti["hostname"]})
    step.facts["hostnames"] = hosts
    if not set(WORKER_NAMES) <= set(hosts):
        step.problems.append(
            f"the run's task instances ran on {hosts}, not on both {list(WORKER_NAMES)}"
        )
    champion = cluster.mlflow.alias_version(cluster.model_name, "champion")
    step.facts["versions_registered"] = (
        len(cluster.mlflow.model_versions(cluster.model_name)) - versions_before
    )
    step.facts["champion"] = champion
    try:
        served = cluster.api.get("/version")
    except OSError as exc:
        served = {"error": repr(exc)}
    step.facts["api_version"] = served
    if champion is None:
        step.problems.append("no version has the alias champion after the run")
    elif str(served.get("model_version")) != str(champion):
        step.problems.append(f"the model API serves {served}, not the champion v{champion}")
    _judge_storage(cluster, step, DEPLOYMENT_DAG_ID, need=("splits", "reports"), data_uri=data_uri)
    return step


def _judge_storage(
    cluster: Cluster, step: Step, dag_id: str, need: tuple[str, ...], data_uri: str = ""
) -> None:
    bucket = _bucket_facts(cluster)
    step.facts["bucket"] = {
        k: v[:8] + ([f"... {len(v)} in all"] if len(v) > 8 else []) for k, v in bucket.items()
    }
    for kind in need:
        if not bucket[kind]:
            step.problems.append(f"no {kind} objects in s3://{cluster.bucket}/pipeline/")
    xcoms = cluster.xcoms(dag_id, step.run_id)
    step.facts["xcom_s3_uris"] = sorted(set(s3_locations(xcoms)))[:12]
    local = local_locations(xcoms, frozenset({data_uri}) - {""})
    if local:
        step.problems.append(
            "XComs carry local locations (a worker's disk):\n      " + "\n      ".join(local[:15])
        )
    if dag_id == DEPLOYMENT_DAG_ID and not s3_locations(xcoms):
        step.problems.append("no s3:// URI in the run's XComs (where did the split go?)")
    crossed = cross_references(cluster)
    if crossed:
        step.problems.append(f"task logs name another worker's folders: {crossed}")
    left = data_files_on_workers(cluster)
    step.facts["worker_files"] = {name: cluster.worker_files(name) for name in cluster.workers}
    if left:
        step.problems.append(f"data files on the workers' own disks: {left}")


def send_live_traffic(cluster: Cluster, rows: int = 200, batch: int = 50) -> int:
    """`rows` generated customers (no label) to the model API as live traffic; waits
    until the inference log has a new object in the bucket (the API writes a batch at
    most `MODEL_API_LOG_FLUSH_SECONDS` old)."""
    from include.ml_pipeline.data_preparation.sample_data import TARGET, generate_churn_frame

    prefix = "pipeline/inference_log/"
    before = set(cluster.s3.keys(prefix))
    frame = generate_churn_frame(rows, seed=11).drop(columns=[TARGET])
    for start in range(0, rows, batch):
        chunk = json.loads(frame.iloc[start : start + batch].to_json(orient="split", index=False))
        cluster.api.post("/invocations", {"dataframe_split": chunk})
    with contextlib.suppress(ClusterError):  # judged by the monitoring step
        wait_for(
            lambda: bool(set(cluster.s3.keys(prefix)) - before),
            timeout=90,
            what="the live traffic's inference log object in the bucket",
            interval=1,
        )
    return rows


def monitor(cluster: Cluster, timeout: float = 300) -> Step:
    step = Step("monitor", run_id="cluster_monitor_1")
    step.facts["live_rows_sent"] = send_live_traffic(cluster)
    _run(cluster, step, MONITORING_DAG_ID, {}, timeout)
    _judge_storage(cluster, step, MONITORING_DAG_ID, need=("inference_log", "reports"))
    return step


#: The batch to score: a folder of Parquet files in the bucket, split into mapped parts.
BATCH_PREFIX = "pipeline/batch_scoring/incoming/cluster"
BATCH_PART_ROWS = 1_000


def upload_batch_input(cluster: Cluster, rows: int, files: int = 2, seed: int = 21) -> str:
    """`rows` generated customers (no label, a `customer_id` key) as `files` Parquet
    objects of row groups of `BATCH_PART_ROWS // 2` rows under `BATCH_PREFIX`; returns
    the folder's URI."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from include.ml_pipeline.data_preparation.sample_data import TARGET, generate_churn_frame

    frame = generate_churn_frame(rows, seed=seed).drop(columns=[TARGET])
    frame.insert(0, "customer_id", [f"b{i:07d}" for i in range(rows)])
    size = -(-rows // files)
    for i in range(files):
        body = io.BytesIO()
        table = pa.Table.from_pandas(frame.iloc[i * size : (i + 1) * size], preserve_index=False)
        pq.write_table(table, body, row_group_size=BATCH_PART_ROWS // 2)
        cluster.s3.put(f"{BATCH_PREFIX}/part-{i}.parquet", body.getvalue())
    return f"s3://{cluster.bucket}/{BATCH_PREFIX}"


def batch_score(
    cluster: Cluster, input_uri: str, rows: int, timeout: float = RUN_TIMEOUT_SECONDS
) -> Step:
    """`ml_batch_scoring` on the bucket's folder: it must succeed, its mapped `score_part`
    tasks must have run on both workers, the manifest (in the bucket) must say complete
    with every row scored once, and, as for the deployment, no XCom may carry a worker's
    path and no data file may be left on a worker's disk."""
    step = Step("batch", run_id="cluster_batch_1")
    conf = {
        "model_name": cluster.model_name,
        "input_uri": input_uri,
        "part_rows": BATCH_PART_ROWS,
        "sensor_poke_interval_seconds": 5,
    }
    tis = _run(cluster, step, BATCH_SCORING_DAG_ID, conf, timeout)
    parts = [ti for ti in tis if ti["task_id"] == "score_part"]
    hosts = sorted({ti["hostname"] for ti in parts if ti["hostname"]})
    step.facts["hostnames"] = hosts
    step.facts["parts"] = {ti["map_index"]: ti["hostname"] for ti in parts}
    if not set(WORKER_NAMES) <= set(hosts):
        step.problems.append(
            f"the {len(parts)} mapped score_part tasks ran on {hosts}, not on both "
            f"{list(WORKER_NAMES)}"
        )
    output = cluster.xcoms(BATCH_SCORING_DAG_ID, step.run_id).get("finalize_output:return_value")
    if not isinstance(output, dict):
        step.problems.append(f"finalize_output returned no output: {output!r}")
    else:
        step.facts["output"] = output
        if not str(output.get("manifest_uri", "")).startswith(f"s3://{cluster.bucket}/"):
            step.problems.append(f"the manifest is not in the bucket: {output}")
        if output.get("status") != "complete" or output.get("rows_out") != rows:
            step.problems.append(f"the output is not complete with {rows} rows: {output}")
    _judge_storage(cluster, step, BATCH_SCORING_DAG_ID, need=(), data_uri=input_uri)
    return step


# -- two models in one API service (issue 23) -----------------------------------------------
#: The second problem deployed next to the churn model, into the same model API service:
#: next year's spend (a regressor), small and one quick candidate.
SECOND_MODEL = "cluster_spend"
SECOND_KEY = "incoming/cluster/customer_spend.csv"
SECOND_ROWS = 600
SECOND_CANDIDATES = [{"name": "ridge_a1", "estimator": "ridge", "params": {"alpha": 1.0}}]
REGISTER_TASK = "entrenamiento_evaluacion.registrar_mlflow"
SMOKE_TASK = "despliegue_modelo.pruebas_api"
ROLLBACK_TASK = "despliegue_modelo.revertir_despliegue"


def served_models(cluster: Cluster) -> dict[str, str | None]:
    """The model API service's models and the version each serves (`GET /models`)."""
    return {
        m["name"]: None if m["model_version"] is None else str(m["model_version"])
        for m in cluster.api.get("/models")["models"]
    }


def deploy_second_model(
    cluster: Cluster, data_uri: str, timeout: float = RUN_TIMEOUT_SECONDS
) -> Step:
    """A deployment run of another problem under its own `model_name` (`SECOND_MODEL`):
    it must succeed, and the API service must then serve it next to what it served
    before, each of those on the version it had."""
    from include.ml_pipeline.data_preparation.sample_data import REGRESSION_TARGET

    step = Step("second model", run_id="cluster_deploy_second_model")
    before = served_models(cluster)
    conf = {
        **deployment_conf(data_uri, SECOND_CANDIDATES),
        "target": REGRESSION_TARGET,
        "model_name": SECOND_MODEL,
    }
    _run(cluster, step, DEPLOYMENT_DAG_ID, conf, timeout)
    champion = cluster.mlflow.alias_version(SECOND_MODEL, "champion")
    served = served_models(cluster)
    step.facts.update(served_before=before, champion=champion, served=served)
    if champion is None:
        step.problems.append(f"no version of {SECOND_MODEL} has the alias champion")
    expected = {**before, SECOND_MODEL: None if champion is None else str(champion)}
    if served != expected:
        step.problems.append(
            f"the model API serves {served}, not {expected}: the models it served before "
            f"must stay as they were and {SECOND_MODEL} must serve its champion"
        )
    _judge_storage(cluster, step, DEPLOYMENT_DAG_ID, need=("splits",), data_uri=data_uri)
    return step


#: A release on live evidence (issue 24): shadow, then a 50% canary; each stage looks once
#: the challenger answered 120 requests more (the last look has the 200 labelled rows the
#: paired test needs when a client feeds its labels back).
RELEASE_CONF = {
    "release_strategy": "canary",
    "canary_steps": [50],
    "release_min_requests": 120,
    "release_poke_seconds": 5,
    "release_max_wait_minutes": 10.0,
    "release_abort_on_replay_fail": False,  # judged on live traffic, not on the replay
}
RELEASE_TASK = "despliegue_modelo.desplegar_api"


def release_second_model(
    cluster: Cluster, data_uri: str, timeout: float = RUN_TIMEOUT_SECONDS
) -> Step:
    """Issue 24 in service mode: a new version of `SECOND_MODEL` (`data_uri`: its
    champion's data, so as good as it) released by the DAG on live evidence
    (`RELEASE_CONF`): the
    sensor's pokes, on either worker, carry the release's state in the bucket and drive
    the API service's experiment through its admin API. It must be promoted at the last
    look (the aliases moved, the previous champion kept, the decision tagged on the
    version and in the state object), the API service serve it next to the churn model
    (that one untouched) with no experiment left running. The test keeps a client of the
    model sending, and feeding its labels back, throughout."""
    from include.ml_pipeline.data_preparation.sample_data import REGRESSION_TARGET

    step = Step("release", run_id="cluster_release_second_model")
    before = served_models(cluster)
    champion_before = cluster.mlflow.alias_version(SECOND_MODEL, "champion")
    conf = {
        **deployment_conf(data_uri, SECOND_CANDIDATES),
        "target": REGRESSION_TARGET,
        "model_name": SECOND_MODEL,
        "tolerance": 0.5,  # the offline gate is not under test here: the live release is
        **RELEASE_CONF,
    }
    tis = _run(cluster, step, DEPLOYMENT_DAG_ID, conf, timeout)
    xcoms = cluster.xcoms(DEPLOYMENT_DAG_ID, step.run_id)
    version = str((xcoms.get(f"{REGISTER_TASK}:return_value") or {}).get("version"))
    champion = cluster.mlflow.alias_version(SECOND_MODEL, "champion")
    previous = cluster.mlflow.alias_version(SECOND_MODEL, "previous_champion")
    tags = next(
        (
            {t["key"]: t["value"] for t in v.get("tags", [])}
            for v in cluster.mlflow.model_versions(SECOND_MODEL)
            if str(v["version"]) == version
        ),
        {},
    )
    key = f"pipeline/releases/{SECOND_MODEL}-v{version}.json"
    state = json.loads(cluster.s3.get(key)) if key in cluster.s3.keys(key) else {}
    served = served_models(cluster)
    poked_on = sorted(
        name
        for name, worker in cluster.workers.items()
        if any(
            (worker.airflow_home / "logs" / f"dag_id={DEPLOYMENT_DAG_ID}").glob(
                f"run_id={step.run_id}/task_id={RELEASE_TASK}*/**/*.log"
            )
        )
    )
    step.facts.update(
        champion_before=champion_before,
        champion=champion,
        served=served,
        release={k: v for k, v in tags.items() if k.startswith("release_")},
        release_state=key if state else None,
        release_looks=[
            {
                "look": look["look"],
                "verdict": look["verdict"],
                "requests": look["requests"],
                "labelled": look["labelled"],
                "checks": {c["name"]: c["status"] for c in look["checks"]},
            }
            for look in state.get("looks", [])
        ],
        release_poked_on=poked_on,
        hostnames=sorted({ti["hostname"] for ti in tis if ti["hostname"]}),
    )
    if (champion, previous) != (version, champion_before):
        step.problems.append(
            f"{SECOND_MODEL}: champion v{champion}, previous_champion v{previous} after the "
            f"release of v{version}; expected v{version} and v{champion_before}"
        )
    if (tags.get("release_outcome"), tags.get("release_looks")) != ("promoted", "2 of 2"):
        step.problems.append(f"v{version} not promoted at look 2 of 2: {tags}")
    if state.get("outcome") != "promoted":
        step.problems.append(f"no promoted release state at s3://{cluster.bucket}/{key}")
    expected = {**before, SECOND_MODEL: version}
    if served != expected:
        step.problems.append(f"the model API serves {served}, not {expected}")
    try:
        running = cluster.api.get(f"/models/{SECOND_MODEL}/experiment")["experiment"]
    except OSError as exc:
        running = repr(exc)
    if running is not None:
        step.problems.append(f"an experiment still runs after the release: {running}")
    _judge_storage(cluster, step, DEPLOYMENT_DAG_ID, need=("splits",), data_uri=data_uri)
    return step


#: A deployment run's Params that make it pass its gate and be deployed, then fail its
#: smoke test (a p95 budget nobody meets): `revertir_despliegue` rolls it back.
ROLLBACK_CONF = {"latency_p95_budget_ms": 0.0001, "tolerance": 0.5}


def _judge_rollback(
    cluster: Cluster, step: Step, champion_before: str | None, served_before: dict
) -> None:
    """The run with `ROLLBACK_CONF` failed its smoke test and was rolled back: the
    champion is the version before the run again, and the API service serves every model
    as before the run (another model untouched)."""
    name = cluster.model_name
    states = {ti["task_id"]: ti["state"] for ti in step.facts["task_instances"]}
    xcoms = cluster.xcoms(DEPLOYMENT_DAG_ID, step.run_id)
    registered = xcoms.get(f"{REGISTER_TASK}:return_value") or {}
    rollback = xcoms.get(f"{ROLLBACK_TASK}:{ROLLBACK_XCOM_KEY}")
    champion = cluster.mlflow.alias_version(name, "champion")
    served = served_models(cluster)
    step.facts.update(
        champion_before=champion_before,
        rolled_back_version=registered.get("version"),
        champion=champion,
        rollback=rollback,
        served_before=served_before,
        served=served,
    )
    for task_id in (SMOKE_TASK, ROLLBACK_TASK):
        if states.get(task_id) != "failed":
            step.problems.append(f"{task_id} ended {states.get(task_id)}, not failed")
    if not isinstance(rollback, dict) or not rollback.get("rolled_back"):
        step.problems.append(f"{ROLLBACK_TASK} rolled nothing back: {rollback!r}")
    if str(champion) != str(champion_before) or str(registered.get("version")) == str(champion):
        step.problems.append(
            f"{name}'s champion is v{champion} after the rollback of "
            f"v{registered.get('version')}, not v{champion_before} as before the run"
        )
    if served != served_before:
        step.problems.append(
            f"the model API serves {served} after the rollback, not {served_before}"
        )


def kill_during_training(
    cluster: Cluster,
    data_uri: str,
    timeout: float = RUN_TIMEOUT_SECONDS,
    *,
    roll_back: bool = False,
) -> Step:
    """`roll_back`: the run also fails its smoke test once deployed (`ROLLBACK_CONF`) and
    must be rolled back (`_judge_rollback`): the run that proves a lost worker's retry also
    proves the rollback of one model in the API service, no extra run."""
    step = Step("kill", run_id="cluster_deploy_kill")
    versions_before = {v["version"] for v in cluster.mlflow.model_versions(cluster.model_name)}
    champion_before = cluster.mlflow.alias_version(cluster.model_name, "champion")
    served_before = served_models(cluster) if roll_back else {}
    conf = deployment_conf(data_uri, SLOW_CANDIDATES) | (ROLLBACK_CONF if roll_back else {})
    expect = "failed" if roll_back else "success"
    started = time.monotonic()
    cluster.trigger(DEPLOYMENT_DAG_ID, step.run_id, conf)
    seen: dict = {}

    def training_running() -> bool:
        rows = cluster.postgres.query(
            "SELECT hostname, try_number FROM task_instance WHERE dag_id = %s AND run_id = %s "
            "AND task_id = %s AND state = 'running'",
            (DEPLOYMENT_DAG_ID, step.run_id, TRAIN_TASK),
        )
        if rows and rows[0][0] in cluster.workers:
            seen["victim"], seen["try"] = rows[0]
            return True
        state = cluster.run_state(DEPLOYMENT_DAG_ID, step.run_id)
        if state in ("success", "failed"):
            raise ClusterError(f"the run ended {state} before {TRAIN_TASK} was seen running")
        return False

    wait_for(training_running, timeout=timeout, what=f"{TRAIN_TASK} running", interval=0.2)
    time.sleep(2.0)  # well inside the fit: the task process has parsed, imported, started
    victim = seen["victim"]
    survivor = next(name for name in cluster.workers if name != victim)
    killed = cluster.kill_worker(victim)
    killed_at = time.time()
    step.facts.update(
        victim=victim,
        survivor=survivor,
        killed_pids=len(killed),
        killed_try=seen["try"],
        killed_after_s=round(time.monotonic() - started),
    )
    step.state = cluster.wait_run(DEPLOYMENT_DAG_ID, step.run_id, timeout=timeout)
    step.seconds = time.monotonic() - started
    tis = cluster.task_instances(DEPLOYMENT_DAG_ID, step.run_id)
    step.facts["task_instances"] = tis
    if step.state != expect:
        step.problems.append(
            f"{DEPLOYMENT_DAG_ID} run {step.run_id} ended {step.state}, not {expect}"
        )
        step.problems += _failed_tasks(cluster, DEPLOYMENT_DAG_ID, step.run_id, tis)
    train = [ti for ti in tis if ti["task_id"] == TRAIN_TASK]
    history = [
        h
        for h in cluster.task_history(DEPLOYMENT_DAG_ID, step.run_id)
        if h["task_id"] == TRAIN_TASK
    ]
    step.facts["training_tries"] = [*history, *train]
    retry_start = cluster.postgres.query(
        "SELECT extract(epoch FROM start_date)::float FROM task_instance WHERE dag_id = %s "
        "AND run_id = %s AND task_id = %s",
        (DEPLOYMENT_DAG_ID, step.run_id, TRAIN_TASK),
    )
    if retry_start and retry_start[0][0]:
        step.facts["retry_started_after_kill_s"] = round(retry_start[0][0] - killed_at, 1)
    if not train or train[0]["state"] != "success" or train[0]["hostname"] != survivor:
        step.problems.append(
            f"{TRAIN_TASK} did not succeed on {survivor} after {victim} was killed: {train}"
        )
    if not any(h["hostname"] == victim for h in history):
        step.problems.append(
            f"no earlier try of {TRAIN_TASK} on {victim} in task_instance_history: {history}"
        )
    after = cluster.mlflow.model_versions(cluster.model_name)
    new = [v for v in after if v["version"] not in versions_before]
    step.facts["new_versions"] = [
        {"version": v["version"], "tags": {t["key"]: t["value"] for t in v.get("tags", [])}}
        for v in new
    ]
    if len(new) != 1:
        step.problems.append(
            f"{len(new)} new model versions after the run, not exactly one: "
            f"{[v['version'] for v in new]}"
        )
    if roll_back:
        _judge_rollback(cluster, step, champion_before, served_before)
    _judge_storage(cluster, step, DEPLOYMENT_DAG_ID, need=("splits",), data_uri=data_uri)
    return step


def run_all(
    cluster: Cluster, rows: int, *, stop_on_failure: bool = False, shared_file: bool = False
) -> list[Step]:
    """The whole proof on a started cluster; later steps build on earlier ones (monitoring
    needs the served model, the kill run a champion to compare with): `stop_on_failure`
    stops after a deployment run that did not succeed."""
    data_uri = upload_raw_data(cluster, rows, shared_file=shared_file)
    steps = [deploy(cluster, data_uri)]
    if stop_on_failure and steps[-1].state != "success":
        return steps
    steps.append(monitor(cluster))
    steps.append(kill_during_training(cluster, data_uri))
    return steps
