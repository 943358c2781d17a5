"""`make monitor`: one drift check on the embedded Airflow, and the retraining it asks for.

    python -m devtools.monitor [--send-drifted-traffic N] [--source FILE]

1. With `--send-drifted-traffic N`, sends N drifted rows (`generate_churn_frame(N,
   drift=True)`, labels dropped) to the running model API's `POST /invocations`
   (`settings.api_url`; `make run` starts the API), in requests of `--batch-rows` rows,
   and waits until the API's inference log has them.
2. Runs `ml_model_monitoring` once with `dag.test()` (task logs in `.local/logs/`).
3. Prints the drift summary, where the report, the dashboard and the notification are
   (local paths when the storage root is local, else their URIs), whether retraining was
   triggered.
4. Under `dag.test()` nothing runs a triggered DagRun (there is no scheduler): the
   `TriggerDagRunOperator` only creates a *queued* run of `ml_model_deployment_advanced`.
   So, unless `--no-retrain`, this runs that DAG here with the trigger's conf and logical
   date (`dag.test` replaces the queued run by the one it executes), and prints its outcome.

The same facts go to `.local/monitor_summary.json`. Exit code 0 when the monitoring run
(and the retraining run, if any) succeeded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from devtools import airflow_env
from devtools.run_pipeline import BUSY_EXIT, HomeBusy, collect, home_lock, run_dag, where
from include.ml_pipeline.names import DEPLOYMENT_DAG_ID, MONITORING_DAG_ID

TRIGGER_TASK_ID = "trigger_retraining"


# --------------------------------------------------------------------------- traffic


def send_drifted_traffic(
    api_url: str, rows: int, *, seed: int = 2024, batch_rows: int = 50, drift: bool = True
) -> dict:
    """POST `rows` generated rows (drifted by default) to `<api_url>/invocations`.

    Returns `{"rows_sent", "requests", "seconds", "model_version"}`; raises
    `ModelApiError` naming the URL when the API is not reachable or refuses a request.
    """
    from include.ml_pipeline.data_preparation.sample_data import TARGET, generate_churn_frame
    from include.ml_pipeline.deployment.api_client import predict_labels, served_version

    version = served_version(api_url)
    frame = generate_churn_frame(rows, seed=seed, drift=drift).drop(columns=[TARGET])
    started = time.monotonic()
    requests = 0
    for start in range(0, len(frame), batch_rows):
        predict_labels(api_url, frame.iloc[start : start + batch_rows])
        requests += 1
    return {
        "rows_sent": len(frame),
        "requests": requests,
        "seconds": round(time.monotonic() - started, 2),
        "model_version": version,
    }


def wait_for_log_rows(
    location: str, since, model_version: str | None, rows: int, timeout: float = 15.0
) -> int:
    """Wait until the inference log holds `rows` rows since `since` (it is written by a
    background thread of the API); return how many it holds."""
    from include.ml_pipeline.monitoring.inference_log import read_inference_log

    deadline = time.monotonic() + timeout
    while True:
        found = len(read_inference_log(location, since=since, model_version=model_version))
        if found >= rows or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


# --------------------------------------------------------------------------- Airflow


def triggered_run(dag_run) -> dict | None:
    """The DagRun that `trigger_retraining` created in this monitoring run, if any:
    `{"run_id", "logical_date", "conf", "state"}`."""
    from airflow.models import DagRun

    ti = dag_run.get_task_instance(TRIGGER_TASK_ID)
    if ti is None or str(ti.state) != "success":
        return None
    run_id = ti.xcom_pull(task_ids=TRIGGER_TASK_ID, key="trigger_run_id")
    if not run_id:
        return None
    found = DagRun.find(dag_id=DEPLOYMENT_DAG_ID, run_id=run_id)
    if not found:
        return None
    run = found[0]
    return {
        "run_id": run.run_id,
        "logical_date": run.logical_date,
        "conf": dict(run.conf or {}),
        "state": str(run.state),
    }


# --------------------------------------------------------------------------- main


def summarise(dag_run, tasks: dict, log_path: Path) -> dict:
    def result(task_id):
        return (tasks.get(task_id) or {}).get("result") or {}

    champion = tasks.get("find_champion") or {}
    drift = result("compute_drift")
    logged = result("log_to_mlflow")
    return {
        "dag_id": MONITORING_DAG_ID,
        "run_id": dag_run.run_id,
        "state": str(dag_run.state),
        "champion": (
            f"{champion['result']['model_name']} v{champion['result']['version']}"
            if champion.get("result")
            else None
        ),
        "drift": drift.get("summary"),
        "reason": drift.get("reason"),
        "current_uri": result("load_current").get("uri"),
        "report_uri": drift.get("report_uri"),
        "dashboard_uri": logged.get("dashboard_uri"),
        "mlflow_run_id": logged.get("mlflow_run_id"),
        "decision": logged.get("decision"),
        "retraining_triggered": (tasks.get(TRIGGER_TASK_ID) or {}).get("state") == "success",
        "notification": result("notify_drift").get("outcomes"),
        "task_states": {k: v["state"] for k, v in tasks.items()},
        "log": str(log_path),
    }


def print_summary(summary: dict) -> None:
    print()
    print(f"Monitoring run {summary['run_id']}: {summary['state'].upper()}")
    if not summary["champion"]:
        print("  no champion model registered yet: nothing to monitor (run `make run` first)")
    else:
        print(f"  champion  {summary['champion']}")
    drift = summary["drift"]
    if drift:
        print(
            f"  drift     status={drift['status']} dataset_drift={drift['dataset_drift']} "
            f"drifted {drift['n_drifted']}/{drift['n_features']} "
            f"({drift['share_drifted']:.0%}) prediction_drift={drift['prediction_drift']}"
        )
        if drift["drifted_features"]:
            print(f"  features  {', '.join(drift['drifted_features'])}")
        print(
            f"  rows      current {drift['current_rows']:,}, reference {drift['reference_rows']:,}"
        )
    if summary["decision"]:
        print(f"  decision  {summary['decision']}")
    print(f"  retrain   {'TRIGGERED' if summary['retraining_triggered'] else 'not triggered'}")
    for key, label in (
        ("current_uri", "window"),
        ("report_uri", "report"),
        ("dashboard_uri", "dashboard"),
        ("mlflow_run_id", "mlflow run"),
    ):
        if summary[key]:
            print(f"  {label:<9} {where(summary[key])}")
    if summary["notification"]:
        channels = ", ".join(f"{k}: {v['status']}" for k, v in summary["notification"].items())
        print(f"  notified  {channels}")
        record = summary["notification"].get("log", {}).get("detail")
        if record:
            print(f"  note      {where(record)}")
    failed = {k: v for k, v in summary["task_states"].items() if v in ("failed", "upstream_failed")}
    for task_id, state in failed.items():
        print(f"  FAILED    {task_id}: {state}")
    print(f"  task logs {summary['log']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the drift check once, locally.")
    parser.add_argument(
        "--send-drifted-traffic",
        type=int,
        default=0,
        metavar="N",
        help="first send N drifted rows to the running model API",
    )
    parser.add_argument("--batch-rows", type=int, default=50, help="rows per API request")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument(
        "--source", help='current data: "inference_log" (default) or a CSV/Parquet batch file'
    )
    parser.add_argument("--conf", action="append", help="extra Param, KEY=JSON (repeatable)")
    parser.add_argument(
        "--no-retrain", action="store_true", help="do not run the triggered retraining here"
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="when a `make run` (or another monitor) holds this ML_PIPELINE_HOME, wait up to "
        "SECONDS for it (default: refuse at once)",
    )
    args = parser.parse_args(argv)

    airflow_env.configure()
    from include.ml_pipeline.config import get_settings

    settings = get_settings().ensure_dirs()
    command = " ".join(
        ["python", "-m", "devtools.monitor", *(sys.argv[1:] if argv is None else argv)]
    )
    try:
        # Both DAGs run here, on the home's database, MLflow store and API: one at a time
        # with `make run` (run_pipeline.home_lock).
        with home_lock(
            settings.home,
            wait=args.wait,
            command=command,
            queue_hint="python -m devtools.monitor --wait 600",
        ):
            return _monitor(args, settings)
    except HomeBusy as busy:
        print(busy, file=sys.stderr)
        return BUSY_EXIT


def _monitor(args: argparse.Namespace, settings) -> int:
    """Drifted traffic (optional), one monitoring run and the retraining it triggers, on a
    home this process holds."""
    conf: dict = {}
    if args.source:
        source = args.source
        if source != "inference_log" and "://" not in source:
            source = str(Path(source).expanduser().resolve())
        conf["current_source"] = source
    for item in args.conf or []:
        key, _, value = item.partition("=")
        conf[key] = json.loads(value)

    if args.send_drifted_traffic > 0:
        from datetime import UTC, datetime

        from include.ml_pipeline.deployment.api_client import ModelApiError

        since = datetime.now(UTC)
        print(f"Sending {args.send_drifted_traffic:,} drifted rows to {settings.api_url} ...")
        try:
            sent = send_drifted_traffic(
                settings.api_url,
                args.send_drifted_traffic,
                seed=args.seed,
                batch_rows=args.batch_rows,
            )
        except ModelApiError as exc:
            print(f"The model API did not take the traffic: {exc}")
            print("Start it with `make run` (it deploys the model and starts the API).")
            return 2
        logged = wait_for_log_rows(
            settings.inference_log_uri, since, sent["model_version"], sent["rows_sent"]
        )
        print(
            f"  sent {sent['rows_sent']:,} rows in {sent['requests']} requests "
            f"({sent['seconds']} s) to model v{sent['model_version']}; "
            f"{logged:,} of them in the inference log"
        )

    print("Preparing the embedded Airflow (first time: ~20 s) ...")
    airflow_env.ensure_metadata_db()
    airflow_env.serialize_dags(require=(MONITORING_DAG_ID, DEPLOYMENT_DAG_ID))
    logs = settings.home / "logs"
    stamp = time.strftime("%Y%m%dT%H%M%S")
    log_path = logs / f"monitor-{stamp}.log"
    print(f"Running {MONITORING_DAG_ID} (task logs: {log_path}) ...")
    dag_run = run_dag(conf, log_path, dag_id=MONITORING_DAG_ID)
    summary = summarise(dag_run, collect(dag_run), log_path)
    print_summary(summary)
    ok = summary["state"] == "success"

    retrain = triggered_run(dag_run)
    summary["retraining_run"] = None
    if retrain:
        print(f"\nRetraining requested: {retrain['conf'].get('retrain_reason')}")
        if args.no_retrain:
            print(f"  queued DagRun {retrain['run_id']} left for a scheduler (--no-retrain)")
            summary["retraining_run"] = {**retrain, "executed": False}
        else:
            from devtools.run_pipeline import build_conf

            retrain_log = logs / f"retrain-{stamp}.log"
            # The main DAG's own local defaults (sample data path), then the trigger's conf.
            defaults = build_conf(
                argparse.Namespace(data=None, target=None, rows=20_000, seed=42, conf=None),
                settings,
            )
            run_conf = {**defaults, **retrain["conf"]}
            print(f"Running {DEPLOYMENT_DAG_ID} for it (task logs: {retrain_log}) ...")
            started = time.monotonic()
            retrain_run = run_dag(
                run_conf,
                retrain_log,
                dag_id=DEPLOYMENT_DAG_ID,
                logical_date=retrain["logical_date"],
            )
            seconds = round(time.monotonic() - started, 1)
            states = {k: v["state"] for k, v in collect(retrain_run).items()}
            failed = {k: v for k, v in states.items() if v in ("failed", "upstream_failed")}
            print(
                f"  retraining run {retrain_run.run_id}: {str(retrain_run.state).upper()} "
                f"in {seconds} s"
            )
            for task_id in (
                "decidir_despliegue",
                "notificar_despliegue_exitoso",
                "notificar_modelo_rechazado",
                "fin",
            ):
                if task_id in states:
                    print(f"    {task_id}: {states[task_id]}")
            for task_id, state in failed.items():
                print(f"    FAILED {task_id}: {state}")
            summary["retraining_run"] = {
                "triggered_run_id": retrain["run_id"],
                "executed_run_id": retrain_run.run_id,
                "state": str(retrain_run.state),
                "seconds": seconds,
                "conf": retrain["conf"],
                "task_states": states,
                "log": str(retrain_log),
            }
            ok = ok and str(retrain_run.state) == "success"

    summary_path = settings.home / "monitor_summary.json"
    summary_path.write_text(json.dumps(summary, indent=2, default=str))
    print(f"\n  summary   {summary_path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
