"""`make run`: the whole pipeline on embedded defaults, then a short summary.

Generates the sample data when no file is given (and none is there yet), runs the DAG
`ml_model_deployment_advanced` end to end with `dag.test()` on an embedded Airflow
(SQLite metadata, each task's in-memory DuckDB over Parquet tables under the storage
root, local MLflow store), writes the task logs to
`.local/logs/`, and prints where to look; the same facts go to `.local/run_summary.json`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devtools import airflow_env
from include.ml_pipeline.names import (
    CHAMPION,
    DECISION_TASK_ID,
    DECISION_XCOM_KEY,
    DEPLOYMENT_DAG_ID,
    FAILURE_XCOM_KEY,
    ROLLBACK_TASK_ID,
    ROLLBACK_XCOM_KEY,
)
from include.ml_pipeline.registry.decision import DIFFERENT_PROBLEM

DAG_ID = DEPLOYMENT_DAG_ID
#: In ML_PIPELINE_HOME: held (flock) by the `make run` using that home; names its holder.
LOCK_FILE = "run.lock"
#: Exit status of a `make run` refused because another one holds the home (EX_TEMPFAIL).
BUSY_EXIT = 75


class HomeBusy(RuntimeError):
    """Another `make run` holds this ML_PIPELINE_HOME; the message says who and what to do
    (`main` prints it and exits with BUSY_EXIT)."""


def _holder(lock_path: Path) -> dict:
    """What the holder of `lock_path` wrote about itself (pid, command, start), or {}."""
    try:
        return json.loads(lock_path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


#: How a refused run queues instead (the `make run` form).
QUEUE_HINT = "make run WAIT=600 (--wait 600)"


def _busy_message(
    home: Path, lock_path: Path, holder: dict, waited: float, queue_hint: str = QUEUE_HINT
) -> str:
    pid = holder.get("pid")
    facts = [f"`{holder['command']}`"] if holder.get("command") else []
    facts += [f"started {holder['started_at']}"] if holder.get("started_at") else []
    facts += [f"task log {holder['log']}"] if holder.get("log") else []
    who = f"process {pid}" if pid else "another process"
    stop = f" or stop it (kill {pid})" if pid else ""
    return (
        f"ML_PIPELINE_HOME={home} is in use by {who}"
        + (f" ({', '.join(facts)})" if facts else "")
        + (f"; waited {waited:.0f} s" if waited >= 1 else "")
        + ".\nTwo runs on one home would share its Airflow database, MLflow store, model API "
        f"and run summary (lock file {lock_path}).\n"
        f"Wait until it finishes{stop}; queue behind it: {queue_hint}; or give this run a "
        "home and a port of its own: make run LOCAL=/other/folder API_PORT=8001"
    )


@contextlib.contextmanager
def home_lock(
    home: Path,
    *,
    wait: float = 0.0,
    poll: float = 0.5,
    note=print,
    command: str | None = None,
    queue_hint: str = QUEUE_HINT,
):
    """Hold `<home>/run.lock` (an exclusive `flock`) while the block runs, so one `make
    run` at a time uses a home. Another holder: wait up to `wait` seconds (telling `note`
    once who it waits for), then raise `HomeBusy` naming the holder, the folder and what
    to do. The kernel drops the lock when its holder exits, even when killed, so a crashed
    run never leaves a home locked. Yields the lock file's path; while held it names the
    holder (JSON: pid, `command` (default: this process's), started_at, and `log` once
    set with `note_lock`). `queue_hint` tells a refused caller how to wait instead."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    lock_path = home / LOCK_FILE
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        started = time.monotonic()
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - started
                if waited >= wait:
                    raise HomeBusy(
                        _busy_message(home, lock_path, _holder(lock_path), waited, queue_hint)
                    ) from None
                if not told:
                    holder = _holder(lock_path)
                    note(
                        f"Waiting up to {wait:.0f} s for process {holder.get('pid', '?')}, "
                        f"which is using ML_PIPELINE_HOME={home} ..."
                    )
                    told = True
                time.sleep(min(poll, max(wait - waited, 0.01)))
        _write_holder(
            fd,
            {
                "pid": os.getpid(),
                "command": command
                or " ".join(["python", "-m", "devtools.run_pipeline", *sys.argv[1:]]),
                "started_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            },
        )
        try:
            yield lock_path
        finally:
            os.ftruncate(fd, 0)  # released: nobody to name
    finally:
        os.close(fd)  # drops the lock


def _write_holder(fd: int, holder: dict) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)


def note_lock(lock_path: Path, **facts) -> None:
    """Add `facts` (e.g. the task log) to what the held lock file says about its holder."""
    holder = {**_holder(lock_path), **facts}
    fd = os.open(lock_path, os.O_RDWR)
    try:
        _write_holder(fd, holder)
    finally:
        os.close(fd)


#: `make run PROBLEM=regression`: the sample customers with a numeric target, in a file of
#: their own next to the churn one, registered under a model name of their own.
REGRESSION_SAMPLE = "customer_spend.csv"
REGRESSION_MODEL_NAME = "tabular_regressor"


def sample_data(settings, rows: int, seed: int, problem: str = "binary") -> str:
    """The generated sample data at `default_data_uri` (written the first time: locally,
    or uploaded when the storage root is remote); its local path when it is local. A
    regression sample (`problem`) lives beside it as `REGRESSION_SAMPLE`."""
    import tempfile

    from include.ml_pipeline import storage
    from include.ml_pipeline.data_preparation.sample_data import write_dataset
    from include.ml_pipeline.runs import default_data_uri

    uri = default_data_uri(settings)
    if problem == "regression":
        uri = uri.rsplit("/", 1)[0] + "/" + REGRESSION_SAMPLE
    local = storage.local_path(uri)
    if not storage.exists(uri):
        print(f"Generating {rows:,} rows of {problem} sample data at {where(uri)}")
        if local is not None:
            write_dataset(local, rows=rows, seed=seed, problem=problem)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                written = write_dataset(
                    Path(tmp) / "sample.csv", rows=rows, seed=seed, problem=problem
                )
                storage.upload(written, uri)
    return str(local) if local is not None else uri


def build_conf(args: argparse.Namespace, settings) -> dict:
    conf: dict = {}
    if args.data:
        data = Path(args.data).expanduser().resolve()
        if "://" not in args.data and not data.is_file():
            raise SystemExit(
                f"DATA={args.data}: no such file ({data}); give the path of a CSV or Parquet "
                "file, e.g. make run DATA=path/to/table.csv TARGET=label_column"
            )
        conf["data_uri"] = str(data)
        # The sample data's contract does not apply to the user's file.
        conf.update(required_columns=[], numeric_columns=[], value_ranges={})
        if args.target:
            conf["target"] = args.target
    else:
        regression = args.problem == "regression"
        conf["data_uri"] = sample_data(
            settings, args.rows, args.seed, "regression" if regression else "binary"
        )
        if regression:
            from include.ml_pipeline.data_preparation.sample_data import REGRESSION_TARGET

            conf.update(target=REGRESSION_TARGET, model_name=REGRESSION_MODEL_NAME)
        if args.target:
            conf["target"] = args.target
    if args.problem and (args.data or args.problem != "regression"):
        conf["problem_type"] = args.problem  # the regression sample shows the inference
    conf.update(check_params(param_overrides(args)))
    return conf


# ------------------------------------------------------------------ Params from the command line


def parse_value(text: str):
    """A Param value as typed on a command line: JSON when it parses (`100`, `0.25`,
    `true`, `null`, `["a","b"]`, `{"age": [0, 120]}`, `"text"`), else the text itself
    (`target=label`)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _pair(item: str, where: str) -> tuple[str, object]:
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SystemExit(
            f"{where}: {item!r} is not KEY=VALUE; e.g. {where} 'min_rows=100 test_size=0.25'"
        )
    return key, parse_value(value)


def split_words(text: str) -> list[str]:
    """Split at spaces outside quotes and brackets: `a=1 b=["x", "y"] c='two words'` ->
    three words. Unlike a shell, double quotes are kept (JSON strings need them)."""
    words, word, quote, depth = [], "", None, 0
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char.isspace() and depth <= 0:
            if word:
                words.append(word)
            word = ""
            continue
        word += char
    if quote or depth > 0:
        what = f"a {quote} quote" if quote else "a bracket"
        raise SystemExit(f"--conf-string {text!r}: {what} is not closed (unbalanced quotes?)")
    if word:
        words.append(word)
    return words


def parse_conf_string(text: str) -> dict:
    """`'min_rows=100 test_size=0.25 exclude_columns=["id"]'` -> a dict of Params: words
    KEY=VALUE separated by spaces (a value with spaces in single quotes, JSON in brackets
    or double quotes kept whole); each VALUE as `parse_value` reads it."""
    out = {}
    for word in split_words(text):
        key, value = _pair(word, "--conf-string")
        if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == "'":
            value = parse_value(value[1:-1])
        out[key] = value
    return out


def read_params_file(path: str) -> dict:
    """A JSON object of Params, e.g. `{"min_rows": 100, "allow_contract_change": true}`."""
    file = Path(path).expanduser()
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        raise SystemExit(f"--params-file {path}: no such file ({file.resolve()})") from None
    except ValueError as exc:
        raise SystemExit(f"--params-file {path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise SystemExit(
            f"--params-file {path}: expected a JSON object of Params "
            f'({{"min_rows": 100, ...}}), got {type(data).__name__}'
        )
    return data


def param_overrides(args: argparse.Namespace) -> dict:
    """The Params given on the command line, later sources winning: --params-file, then
    --conf-string, then each --conf in order."""
    out: dict = {}
    for path in getattr(args, "params_file", None) or []:
        out.update(read_params_file(path))
    for text in getattr(args, "conf_string", None) or []:
        out.update(parse_conf_string(text))
    for item in args.conf or []:
        key, value = _pair(item, "--conf")
        out[key] = value
    return out


def check_params(overrides: dict, params: dict | None = None, dag_id: str = DAG_ID) -> dict:
    """Refuse, before the run starts, a Param the DAG does not have (naming the closest
    ones) or a value its Param rejects (`params`: the DAG's, default `dag_id`'s, the
    deployment DAG)."""
    import difflib

    from include.ml_pipeline.orchestration.params import deployment_params

    params = deployment_params() if params is None else params
    for key, value in overrides.items():
        if key not in params:
            close = difflib.get_close_matches(key, list(params), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise SystemExit(
                f"unknown Param {key!r}{hint} (the Params of {dag_id} are listed in "
                "include/ml_pipeline/orchestration/params.py)"
            )
        try:
            params[key].resolve(value=value)
        except Exception as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SystemExit(f"Param {key}={json.dumps(value)}: not accepted ({detail})") from None
    return overrides


def run_dag(conf: dict, log_path: Path, dag_id: str = DAG_ID, logical_date=None):
    """Run `dag_id` once with `conf` (at `logical_date`, default now); task logs go to
    `log_path`. Returns the DagRun."""
    from include.ml_pipeline.config import PROJECT_ROOT
    from include.ml_pipeline.orchestration.compat import dag_bag, run_dag_in_process

    dag_file = PROJECT_ROOT / "dags" / f"{dag_id}.py"  # one file parses faster than dags/
    logging.disable(logging.INFO)  # parsing prints a line per DAG
    try:
        bag = dag_bag(str(dag_file if dag_file.is_file() else PROJECT_ROOT / "dags"))
    finally:
        logging.disable(logging.NOTSET)
    # dag.test() writes runs and task instances but not the DAG itself; without it the
    # Airflow UI (make ui) shows none of these runs.
    airflow_env.serialize_dags(bag, require=(dag_id,))
    dag = bag.dags[dag_id]
    # dag.test() adds one stdout handler to the task logger, bound to the stdout of the
    # first run; drop it so that every run's task logs go to its own file.
    task_logger = logging.getLogger("airflow.task")
    for handler in [h for h in task_logger.handlers if type(h) is logging.StreamHandler]:
        task_logger.removeHandler(handler)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log, contextlib.redirect_stdout(log), _task_logs_to(log):
        return run_dag_in_process(dag, run_conf=conf, logical_date=logical_date)


@contextlib.contextmanager
def _task_logs_to(stream):
    """On Airflow 3 the task code's log records do not go to stdout under `dag.test()`
    (they do on 2.11): send them to the run's log too."""
    from include.ml_pipeline.orchestration.compat import AIRFLOW_3

    if not AIRFLOW_3:
        yield
        return
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


def collect(dag_run) -> dict:
    """Task states and XCom results of a finished run (small facts only)."""
    tasks = {}
    for ti in dag_run.get_task_instances():
        key = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
        tasks[key] = {
            "state": str(ti.state),
            "tries": ti.try_number,
            "result": ti.xcom_pull(task_ids=ti.task_id, map_indexes=ti.map_index),
        }
    return tasks


def where(location: str | None) -> str | None:
    """A stored object or folder as a person opens it: its local path when the storage
    root is local, else its URI (`s3://...`); text that is not a URI as it is."""
    if not location or "://" not in str(location):
        return location
    from include.ml_pipeline.storage import local_path

    return str(local_path(location) or location)


def summarise(dag_run, tasks: dict, conf: dict, log_path: Path, seconds: float, settings) -> dict:
    def result(task_id):
        return (tasks.get(task_id) or {}).get("result") or {}

    loaded = result("preparacion_datos.descargar_datos")
    validated = result("preparacion_datos.validar_datos")
    prepared = result("preparacion_datos.preprocesar_datos")
    split = result("preparacion_datos.dividir_datos")
    registered = result("entrenamiento_evaluacion.registrar_mlflow")
    release = result("despliegue_modelo.generar_artefactos")
    manifest = release.get("manifest") or {}
    rollout = result("despliegue_modelo.desplegar_api")
    smoke = result("despliegue_modelo.pruebas_api").get("smoke") or {}
    drift = result("visualizacion_monitoreo.configurar_monitoreo").get("summary")
    dashboard = result("visualizacion_monitoreo.configurar_dashboards")
    decision = (_xcom(dag_run, DECISION_TASK_ID, DECISION_XCOM_KEY) or {}).get("decision") or {}
    rollback = _xcom(dag_run, ROLLBACK_TASK_ID, ROLLBACK_XCOM_KEY)
    notifications = [
        result(t)
        for t in ("notificar_despliegue_exitoso", "notificar_modelo_rechazado", "notificar_fallo")
        if result(t)
    ]
    champion_after = _champion(settings, registered.get("model_name"))
    failed = {
        k: v["state"] for k, v in tasks.items() if v["state"] in ("failed", "upstream_failed")
    }
    return {
        "dag_id": DAG_ID,
        "run_id": dag_run.run_id,
        "state": str(dag_run.state),
        "seconds": round(seconds, 1),
        "conf": conf,
        "data": {
            "source": loaded.get("source_uri"),
            "fingerprint": loaded.get("fingerprint"),
            "rows_loaded": loaded.get("rows"),
            "rows_valid": validated.get("rows"),
            "rows_clean": prepared.get("rows_out"),
            "rows_split": split.get("rows"),
            "feature_spec": prepared.get("feature_spec"),
            "excluded_columns": prepared.get("excluded_columns"),
            "warnings": validated.get("warnings") or [],
            "problem_type": validated.get("problem_type"),
            "problem_reason": validated.get("problem_reason"),
            "tables": {
                t["table"]: where(t["table_uri"]) for t in (loaded, prepared) if t.get("table")
            },
            "splits": {name: where(uri) for name, uri in (split.get("uris") or {}).items()},
        },
        "model": {
            "name": registered.get("model_name"),
            "version": registered.get("version"),
            "run_id": registered.get("run_id"),
            "candidate": registered.get("candidate"),
            "test_metrics": registered.get("metrics"),
            "champion_before": registered.get("champion_version"),
            "champion_before_metrics": registered.get("champion_metrics"),
            "champion_after": champion_after,
            "mlflow_tracking_uri": settings.mlflow_tracking_uri,
            "baseline_metrics": registered.get("baseline_metrics"),
            "contract": registered.get("contract"),
        },
        "decision": {
            "deploy": decision.get("deploy"),
            "reasons": decision.get("reasons", []),
            "contract_changes": decision.get("contract_changes") or [],
        },
        "deployment": {
            "manifest": release.get("manifest_uri"),
            "api_url": rollout.get("url"),
            "served_version": (rollout.get("version_info") or {}).get("model_version"),
            "predict_path": (manifest.get("serving") or {}).get("predict_path"),
            # why a model is not on a compiled path (an estimator the compiler does not know)
            "fallback_reason": (manifest.get("serving") or {}).get("fallback_reason"),
            # the challenger on the champion's newest live requests (deployment/replay.py)
            "replay": manifest.get("replay"),
            # shadow / canary: the stated decision (deployment/experiment_run.py)
            "release": _release_decision(release, manifest),
            "smoke_latency_ms": smoke.get("latency"),
            "rollback": rollback,
        },
        "monitoring": {
            "drift": drift,
            "dashboard": where(dashboard.get("uri")),
        },
        "notifications": notifications,
        # one JSON object per notification: the folder, or the bucket prefix, holding them
        "notifications_log": where(settings.notifications_uri),
        "failed_tasks": failed,
        "failures": _failures(dag_run, failed),
        "api": _api_status(settings, champion_after, registered.get("model_name")),
        "task_states": {k: v["state"] for k, v in tasks.items()},
        "log": str(log_path),
    }


def _release_decision(release: dict, manifest: dict) -> dict | None:
    """The manifest's `release` as the live decision left it (the task's XCom holds the
    manifest written before the experiment began)."""
    if not manifest.get("release") or not release.get("manifest_uri"):
        return None
    from include.ml_pipeline import storage

    try:
        return storage.read_json(release["manifest_uri"]).get("release")
    except (OSError, ValueError):
        return manifest["release"]


def _failures(dag_run, failed: dict) -> list[dict]:
    """What each failed task recorded about its failure (the rule, column and value for a
    data error), as its failure callback pushed it."""
    out = []
    for key, state in failed.items():
        if state != "failed":
            continue
        task_id = key.split("[", 1)[0]
        record = _xcom(dag_run, task_id, FAILURE_XCOM_KEY)
        records = record if isinstance(record, list) else [record]
        out.extend(r for r in records if r)
    return out


def _api_status(settings, champion: str | None, model_name: str | None = None) -> dict:
    """Whether the model API answers, and which version of `model_name` it serves."""
    from include.ml_pipeline.deployment.rollout import served_model

    logging.getLogger("httpx").setLevel(logging.WARNING)  # no request line in the summary

    info = served_model(settings.api_url, model_name)
    served = (info or {}).get("model_version")
    return {
        "url": settings.api_url,
        "up": info is not None,
        "serves": str(served) if served is not None else None,
        "champion": champion,
    }


def _xcom(dag_run, task_id: str, key: str):
    ti = dag_run.get_task_instance(task_id)
    return ti.xcom_pull(task_ids=task_id, key=key) if ti else None


def _champion(settings, name: str | None) -> str | None:
    if not name:
        return None
    from include.ml_pipeline.registry.registry import get_alias_version

    return get_alias_version(name, CHAMPION, tracking_uri=settings.mlflow_tracking_uri)


def print_summary(summary: dict) -> None:
    data = summary["data"]
    print()
    print(f"Run {summary['run_id']}: {summary['state'].upper()} in {summary['seconds']} s")
    if data["rows_loaded"] is not None:
        print(
            f"  data      {data['source']} ({data['rows_loaded']:,} rows loaded, "
            f"{data['rows_clean'] or 0:,} clean)"
        )
    if data["rows_split"]:
        print("  split     " + ", ".join(f"{k} {v:,}" for k, v in data["rows_split"].items()))
    for table, location in (data.get("tables") or {}).items():
        print(f"  table     {table}: {location}")
    if data.get("splits"):
        train = data["splits"].get("train") or ""
        print(f"  splits    {train.rsplit('/', 1)[0]}/{{train,validation,test}}.parquet")
    for warning in data.get("warnings") or []:
        print(f"  WARNING   {warning}")
    model, decision = summary["model"], summary["decision"]
    if data.get("problem_type"):
        print(f"  problem   {data['problem_type']}: {data['problem_reason']}")
    if model["version"]:
        metrics = model["test_metrics"] or {}
        shown = ", ".join(
            f"{k} {metrics[k]:.4f}"
            for k in ("roc_auc", "accuracy", "f1", "log_loss", "rmse", "mae", "r2", "mape")
            if k in metrics
        )
        print(f"  model     {model['name']} v{model['version']} ({model['candidate']}): {shown}")
        print(
            f"  champion  before v{model['champion_before'] or '-'}, "
            f"after v{model['champion_after'] or '-'}"
        )
        print(f"  mlflow    {model['mlflow_tracking_uri']}  (browse: make mlflow-ui)")
    if model.get("contract"):
        print(f"  contract  {_contract_line(model['contract'])}")
    if decision["deploy"] is not None:
        print(
            f"  decision  {'DEPLOY' if decision['deploy'] else 'REJECT'}: "
            f"{decision['reasons'][0] if decision['reasons'] else ''}"
        )
        for reason in decision["reasons"][1:]:
            print(f"            {reason}")
        verb = "ALLOWED" if decision["deploy"] else "REFUSED"
        changes = decision.get("contract_changes") or []
        if not decision["deploy"] and any(
            reason.startswith(DIFFERENT_PROBLEM) for reason in decision["reasons"]
        ):
            # one sentence in the reasons says it all; the list is in run_summary.json
            print(f"  contract  {len(changes)} differences: run_summary.json, contract_changes")
            changes = []
        for change in changes:
            print(f"  contract  {verb} change: {change}")
    deployment = summary["deployment"]
    if deployment["api_url"]:
        print(
            f"  model API {deployment['api_url']} serves v{deployment['served_version']} "
            f"({deployment['predict_path']} path); docs {deployment['api_url']}/docs; "
            "stop it with: make stop"
        )
        if deployment.get("fallback_reason"):
            print(f"            not compiled: {deployment['fallback_reason']}")
    replay = deployment.get("replay")
    if replay:
        print(f"  replay    {replay['status']}: {replay['summary']}")
    decided = deployment.get("release")
    if decided and decided.get("outcome"):
        print(f"  release   {decided['strategy']} {decided['outcome']}: {decided['summary']}")
    if deployment["rollback"]:
        print(f"  ROLLBACK  {deployment['rollback'].get('detail')}")
    monitoring = summary["monitoring"]
    if monitoring["drift"]:
        drift = monitoring["drift"]
        print(
            f"  drift     {drift.get('status')}: {drift.get('n_drifted')} drifted features "
            f"(share {drift.get('share_drifted')}) vs {drift.get('current_source')}"
        )
    if monitoring["dashboard"]:
        print(f"  dashboard {monitoring['dashboard']}")
    for note in summary["notifications"]:
        channels = ", ".join(f"{k}: {v.get('status')}" for k, v in note["outcomes"].items())
        print(f"  notified  {note['title']} ({channels})")
    print(f"  notes log {summary['notifications_log']}")
    errors = {f["task_id"]: f["error"] for f in summary["failures"]}
    blocked = [t for t, state in summary["failed_tasks"].items() if state == "upstream_failed"]
    for task_id, state in summary["failed_tasks"].items():
        if state != "upstream_failed":
            print(f"  FAILED    {task_id}: {errors.get(task_id.split('[', 1)[0], state)}")
    if blocked:
        print(f"  not run   {len(blocked)} task(s) after the failure (upstream_failed)")
    api = summary["api"]
    if api["champion"] and not api["up"]:
        print(
            f"  model API DOWN at {api['url']}: champion v{api['champion']} is not served; "
            "start it with: make api"
        )
    elif api["champion"] and api["serves"] != api["champion"]:
        print(
            f"  model API {api['url']} serves v{api['serves']}, not champion "
            f"v{api['champion']}; restart it with: make stop && make api"
        )
    print(f"  task logs {summary['log']}")
    print(f"  summary   {summary['summary_path']}")


def _contract_line(contract: dict) -> str:
    """`12 inputs (5 number, 7 string); labels "no", "yes" (string); <artifact uri>`."""
    columns = contract.get("columns") or []
    kinds: dict[str, int] = {}
    for column in columns:
        kinds[column.get("type", "?")] = kinds.get(column.get("type", "?"), 0) + 1
    target = contract.get("target") or {}
    inputs = f"{len(columns)} inputs ({', '.join(f'{n} {k}' for k, n in kinds.items())})"
    if target.get("problem_type") == "regression":
        low, high = target.get("range") or (None, None)
        seen = f"{low:g} to {high:g}" if low is not None else "none"
        return f"{inputs}; predicts a number (trained on {seen}); {contract.get('uri')}"
    labels = ", ".join(json.dumps(v) for v in (target.get("labels") or [])[:6])
    return f"{inputs}; labels {labels} ({target.get('type')}); {contract.get('uri')}"


EPILOG = """\
Params (the DAG's Trigger-form settings; see include/ml_pipeline/orchestration/params.py)
can be given three ways, later ones winning:
  --params-file FILE.json    a JSON object, e.g. {"min_rows": 100, "allow_contract_change": true}
  --conf-string 'K=V K=V'    words KEY=VALUE, e.g. 'min_rows=100 test_size=0.25'
                             (make run CONF='min_rows=100 test_size=0.25')
  --conf KEY=VALUE           one Param (repeatable)
A VALUE is JSON when it parses (100, 0.25, true, null, ["id"], {"age": [0, 120]}), else text
(target=label). An unknown Param, or a value its Param refuses, stops before the run starts.
Handy ones: min_rows, test_size, exclude_columns, leakage_threshold,
min_lift_over_baseline, min_roc_auc, allow_contract_change, candidates, model_name.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run the ML pipeline locally, end to end.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", help="CSV or Parquet file (default: generated sample data)")
    parser.add_argument("--target", help="label column of --data")
    parser.add_argument(
        "--problem",
        choices=("auto", "binary", "multiclass", "regression"),
        help="the problem_type Param; without --data, regression runs the sample data with "
        f"a numeric target (registered as {REGRESSION_MODEL_NAME})",
    )
    parser.add_argument("--rows", type=int, default=20_000, help="rows of sample data")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--conf", action="append", metavar="KEY=VALUE", help="one Param (repeatable)"
    )
    parser.add_argument(
        "--conf-string",
        action="append",
        metavar="'KEY=VALUE ...'",
        help="several Params in one string, e.g. 'min_rows=100 test_size=0.25' (make run CONF=)",
    )
    parser.add_argument(
        "--params-file",
        action="append",
        metavar="FILE.json",
        help="a JSON object of Params",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="when another run holds this ML_PIPELINE_HOME, wait up to SECONDS for it "
        f"(make run WAIT=SECONDS; default: refuse at once, exit status {BUSY_EXIT})",
    )
    args = parser.parse_args(argv)
    param_overrides(args)  # a malformed file or string stops here, before Airflow starts

    airflow_env.configure()
    from include.ml_pipeline.config import get_settings

    settings = get_settings().ensure_dirs()
    try:
        command = None if argv is None else " ".join(["run_pipeline.main", *argv])
        with home_lock(settings.home, wait=args.wait, command=command) as lock:
            return _run(args, settings, lock)
    except HomeBusy as busy:
        print(busy, file=sys.stderr)
        return BUSY_EXIT


def _run(args: argparse.Namespace, settings, lock: Path) -> int:
    """One run on a home this process holds: conf, metadata database, DAG, summary."""
    conf = build_conf(args, settings)  # a bad DATA= stops here, before Airflow's database
    return run_and_report(
        conf,
        settings,
        dag_id=DAG_ID,
        log_prefix="run",
        summary_name="run_summary.json",
        summarise=lambda *facts: summarise(*facts, settings),
        print_summary=print_summary,
        on_log=lambda log_path: note_lock(lock, log=str(log_path)),
    )


def run_and_report(
    conf: dict,
    settings,
    *,
    dag_id: str,
    log_prefix: str,
    summary_name: str,
    summarise: Callable[[Any, dict, dict, Path, float], dict],
    print_summary: Callable[[dict], None],
    on_log: Callable[[Path], None] | None = None,
) -> int:
    """Run `dag_id` once with `conf` on the embedded Airflow of `settings.home`, then
    summarise it (`summarise(dag_run, tasks, conf, log_path, seconds)`), write the summary
    to `<home>/<summary_name>` and print it. Task logs go to
    `<home>/logs/<log_prefix>-<time>.log` (`on_log` is told the path before the run).
    Returns the exit status: 0 when the run succeeded, else 1."""
    print("Preparing the embedded Airflow (first time: ~20 s) ...")
    airflow_env.ensure_metadata_db()
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{log_prefix}-{time.strftime('%Y%m%dT%H%M%S')}.log"
    if on_log is not None:
        on_log(log_path)
    print(f"Running {dag_id} (task logs: {log_path}) ...")
    started = time.monotonic()
    dag_run = run_dag(conf, log_path, dag_id=dag_id)
    summary = summarise(dag_run, collect(dag_run), conf, log_path, time.monotonic() - started)
    summary_path = settings.home / summary_name
    summary["summary_path"] = str(summary_path)
    summary_path.write_text(json.dumps(summary, indent=2, default=str))
    print_summary(summary)
    return 0 if summary["state"] == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
