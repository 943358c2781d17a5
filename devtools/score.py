"""`make score DATA=file_or_folder`: score a table with the champion locally, then say where
the predictions are.

Runs the DAG `ml_batch_scoring` once with `dag.test()` on the embedded Airflow of `make run`
(the same home, metadata database, MLflow store and storage root; `run_pipeline.run_dag`,
one run per home at a time: `run_pipeline.home_lock`), with `input_uri` = DATA (a Parquet
or CSV file, a folder of them, or any storage URI), then prints the run's facts: the input,
the pinned model version and its predict path, rows in / scored / rejected (and why), the
output and manifest, rows per second, the batch's drift. The same facts go to
`<home>/score_summary.json`. Exit code 0 when the run succeeded.

    python -m devtools.score --data table.parquet [--conf key_columns='["id"]' ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from devtools import airflow_env
from devtools.run_pipeline import (
    BUSY_EXIT,
    EPILOG,
    HomeBusy,
    _failures,
    check_params,
    home_lock,
    param_overrides,
    run_and_report,
    where,
)
from include.ml_pipeline.names import BATCH_SCORING_DAG_ID

QUEUE_HINT = "make score WAIT=600 (--wait 600)"


def build_conf(args: argparse.Namespace) -> dict:
    """The run's conf: `input_uri` from --data (a local path made absolute), then the
    Params given on the command line, checked against the DAG's."""
    from include.ml_pipeline.orchestration.params import batch_scoring_params

    conf: dict = {}
    if args.data:
        if "://" in args.data:
            conf["input_uri"] = args.data
        else:
            data = Path(args.data).expanduser().resolve()
            if not data.exists():
                raise SystemExit(
                    f"DATA={args.data}: no such file or folder ({data}); give a Parquet or "
                    "CSV file or a folder of them, e.g. make score DATA=path/to/table.parquet"
                )
            conf["input_uri"] = str(data)
    conf.update(check_params(param_overrides(args), batch_scoring_params(), BATCH_SCORING_DAG_ID))
    return conf


def summarise(dag_run, tasks: dict, conf: dict, log_path: Path, seconds: float) -> dict:
    def result(task_id):
        return (tasks.get(task_id) or {}).get("result") or {}

    from include.ml_pipeline import storage

    output = result("finalize_output")
    manifest = {}
    if output.get("manifest_uri") and storage.exists(output["manifest_uri"]):
        manifest = storage.read_json(output["manifest_uri"])
    champion = result("pin_champion")
    drift = result("compute_drift")
    failed = {
        k: v["state"] for k, v in tasks.items() if v["state"] in ("failed", "upstream_failed")
    }
    return {
        "dag_id": BATCH_SCORING_DAG_ID,
        "run_id": dag_run.run_id,
        "state": str(dag_run.state),
        "seconds": round(seconds, 1),
        "conf": conf,
        "input": manifest.get("input") or result("wait_for_input"),
        "model": {
            "name": champion.get("model_name"),
            "version": champion.get("version"),
            "predict_path": manifest.get("predict_path"),
        },
        "output": {
            "status": manifest.get("status"),
            "rows_in": manifest.get("rows_in"),
            "rows_out": manifest.get("rows_out"),
            "rows_rejected": manifest.get("rows_rejected"),
            "reject_reasons": manifest.get("reject_reasons") or {},
            "parts": manifest.get("parts_done"),
            "scoring_seconds": manifest.get("scoring_seconds"),
            "key_columns": manifest.get("key_columns"),
            "predictions": where(manifest.get("predictions")),
            "rejects": where(manifest.get("rejects")),
            "manifest": where(output.get("manifest_uri")),
        },
        "drift": {**(drift.get("summary") or {}), "report": where(drift.get("report_uri"))},
        "mlflow_run_id": result("log_to_mlflow").get("mlflow_run_id"),
        "notified": result("notify_drift") or None,
        "failed_tasks": failed,
        "failures": _failures(dag_run, failed),
        "task_states": {k: v["state"] for k, v in tasks.items()},
        "log": str(log_path),
    }


def print_summary(summary: dict) -> None:
    print()
    print(f"Run {summary['run_id']}: {summary['state'].upper()} in {summary['seconds']} s")
    source = summary["input"] or {}
    if source:
        size = (source.get("bytes") or 0) / 1e6
        print(
            f"  input     {where(source.get('uri'))} ({source.get('format')}, "
            f"{source.get('files')} file(s), {size:,.1f} MB"
            + (f", sha256 {source['fingerprint'][:12]}" if source.get("fingerprint") else "")
            + ")"
        )
    model = summary["model"]
    if model["version"]:
        paths = ", ".join(model["predict_path"] or []) or "-"
        print(f"  model     {model['name']} v{model['version']} (pinned champion; {paths} path)")
    out = summary["output"]
    if out["status"]:
        keys = ", ".join(out["key_columns"] or []) or "row_number"
        print(
            f"  rows      {out['rows_in']:,} in, {out['rows_out']:,} scored, "
            f"{out['rows_rejected']:,} rejected, in {out['parts']} part(s); keys: {keys}"
        )
        for reason, count in out["reject_reasons"].items():
            print(f"  rejected  {count:,} x {reason}")
        seconds = out["scoring_seconds"] or 0
        if seconds:
            print(
                f"  speed     {out['rows_out'] / seconds:,.0f} rows/s "
                f"({seconds:.2f} s scoring, all parts)"
            )
        print(f"  output    {out['predictions']} ({out['status'].upper()})")
        if out["rejects"]:
            print(f"  rejects   {out['rejects']}")
        print(f"  manifest  {out['manifest']}")
    drift = summary["drift"]
    if drift.get("status"):
        print(
            f"  drift     {drift['status']}: {drift.get('n_drifted')} of "
            f"{drift.get('n_features')} features drifted vs the training split "
            f"({drift.get('current_rows'):,} sampled rows); {drift['report']}"
        )
    if summary["mlflow_run_id"]:
        print(f"  mlflow    run {summary['mlflow_run_id']} in experiment ml_batch_scoring")
    if summary["notified"]:
        print(f"  notified  {summary['notified']['title']}")
    errors = {f["task_id"]: f["error"] for f in summary["failures"]}
    for task_id, state in summary["failed_tasks"].items():
        if state != "upstream_failed":
            print(f"  FAILED    {task_id}: {errors.get(task_id.split('[', 1)[0], state)}")
    blocked = [t for t, state in summary["failed_tasks"].items() if state == "upstream_failed"]
    if blocked:
        print(f"  not run   {len(blocked)} task(s) after the failure (upstream_failed)")
    print(f"  task logs {summary['log']}")
    print(f"  summary   {summary['summary_path']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Score a table with the champion locally (the ml_batch_scoring DAG).",
        epilog=EPILOG.replace("make run", "make score"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data", help="Parquet or CSV file, or a folder of them (default: the input_uri Param)"
    )
    parser.add_argument(
        "--conf", action="append", metavar="KEY=VALUE", help="one Param (repeatable)"
    )
    parser.add_argument("--conf-string", action="append", metavar="'KEY=VALUE ...'")
    parser.add_argument("--params-file", action="append", metavar="FILE.json")
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="when another run holds this ML_PIPELINE_HOME, wait up to SECONDS for it",
    )
    args = parser.parse_args(argv)
    param_overrides(args)  # a malformed file or string stops here, before Airflow starts

    airflow_env.configure()
    from include.ml_pipeline.config import get_settings

    settings = get_settings().ensure_dirs()
    command = " ".join(
        ["python", "-m", "devtools.score", *(sys.argv[1:] if argv is None else argv)]
    )
    try:
        with home_lock(settings.home, wait=args.wait, command=command, queue_hint=QUEUE_HINT):
            return _score(args, settings)
    except HomeBusy as busy:
        print(busy, file=sys.stderr)
        return BUSY_EXIT


def _score(args: argparse.Namespace, settings) -> int:
    return run_and_report(
        build_conf(args),
        settings,
        dag_id=BATCH_SCORING_DAG_ID,
        log_prefix="score",
        summary_name="score_summary.json",
        summarise=summarise,
        print_summary=print_summary,
    )


if __name__ == "__main__":
    sys.exit(main())
