"""The four data stages (load, validate, preprocess, split) without Airflow's scheduling:
wall time and peak memory of each, each stage in its own fresh process as a worker would
run it, on the generated churn data (or a given file) and the storage root of the
environment (`ML_PIPELINE_STORAGE`: the embedded `file://` root, or `s3://...`).

    PYTHONPATH=. .local/venv/bin/python benchmarks/bench_data_stages.py --rows 1000000
    PYTHONPATH=. .local/venv/bin/python benchmarks/bench_data_stages.py --rows 1000000 --moto

`--moto` puts the storage root and the raw file in a bucket of moto's S3 server on
loopback (`devtools/s3_server.py`); any other root comes from the environment.

Each stage's process imports what the task would (its import time is included in its
wall time, shown separately) and returns its payload as JSON, which the next stage reads,
as XCom would hand it on. CPU seconds (user + system, all threads) are shown beside the
wall time: on a shared machine they vary less. Peak memory is the process's maximum
resident set size.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("load", "validate", "preprocess", "split")

_STAGE = """
import json, resource, sys, time
started = time.perf_counter()
from devtools import airflow_env
airflow_env.configure()
from include.ml_pipeline.orchestration.params import deployment_params
from include.ml_pipeline.orchestration.steps.deployment_dag import data_preparation as steps
params = {{k: p.value for k, p in deployment_params().items()}}
params.update(json.loads({conf!r}))
payloads = json.load(open({state!r}))
imported = time.perf_counter()
usage = resource.getrusage(resource.RUSAGE_SELF)
stage, run_id = {stage!r}, {run_id!r}
if stage == "load":
    out = steps.load_raw_data(params["data_uri"], params, run_id)
elif stage == "validate":
    out = steps.validate_raw_data(payloads["load"], params)
elif stage == "preprocess":
    out = steps.preprocess(payloads["validate"], params, run_id)
else:
    out = steps.split(payloads["preprocess"], payloads["load"], params, run_id)
done = time.perf_counter()
after = resource.getrusage(resource.RUSAGE_SELF)
cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
payloads[stage] = out
json.dump(payloads, open({state!r}, "w"))
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"seconds": done - imported, "cpu_seconds": cpu,
                  "import_seconds": imported - started, "peak_mb": peak_kb / 1024}}))
"""


def run_stages(
    data_uri: str, run_id: str, conf: dict, env: dict[str, str] | None = None
) -> dict[str, dict]:
    """Run the four stages one after another, each in a fresh interpreter (`env`: extra
    environment variables)."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_data_stages_") as tmp:
        state = Path(tmp) / "payloads.json"
        state.write_text("{}")
        conf = {"data_uri": data_uri, **conf}
        for stage in STAGES:
            code = _STAGE.format(
                conf=json.dumps(conf), state=str(state), stage=stage, run_id=run_id
            )
            done = subprocess.run(
                [sys.executable, "-c", code],
                cwd=tmp,  # nothing a stage writes may land in the working directory
                env={**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)},
                capture_output=True,
                text=True,
            )
            if done.returncode:
                raise SystemExit(f"stage {stage} failed:\n{done.stderr[-4000:]}")
            results[stage] = json.loads(done.stdout.strip().splitlines()[-1])
            leftovers = [p.name for p in Path(tmp).iterdir() if p.name != state.name]
            results[stage]["left_in_cwd"] = leftovers
        results["payloads"] = json.loads(state.read_text())
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--data", help="a CSV or Parquet file or URI (default: generated)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--moto", action="store_true", help="storage root on moto's S3 server")
    args = parser.parse_args(argv)

    from devtools import airflow_env

    airflow_env.configure()
    with contextlib.ExitStack() as stack:
        env = {}
        if args.moto:
            from devtools.s3_server import S3Server

            server = stack.enter_context(S3Server(bucket="bench"))
            env = server.env("root")
            os.environ.update(env)
        return measure(args, env)


def measure(args: argparse.Namespace, env: dict[str, str]) -> int:
    from include.ml_pipeline import storage
    from include.ml_pipeline.config import get_settings

    settings = get_settings()
    data = args.data
    if not data:
        from include.ml_pipeline.data_preparation.sample_data import write_dataset

        data = str(Path(tempfile.gettempdir()) / f"bench_churn_{args.rows}_{args.seed}.csv")
        if not Path(data).exists():
            print(f"generating {args.rows:,} rows at {data}")
            write_dataset(Path(data), rows=args.rows, seed=args.seed)
    if storage.is_remote(settings.storage_uri) and not storage.is_remote(data):
        data = storage.upload(data, storage.join(settings.storage_uri, "incoming", "bench.csv"))
    run_id = f"bench__{time.strftime('%Y%m%dT%H%M%S')}"
    print(f"storage root {settings.storage_uri}; data {data}; run {run_id}")
    results = run_stages(data, run_id, {}, env)
    total = sum(results[s]["seconds"] for s in STAGES)
    cpu = sum(results[s]["cpu_seconds"] for s in STAGES)
    print(f"{'stage':<12}{'seconds':>9}{'cpu s':>8}{'import s':>10}{'peak MB':>9}")
    for stage in STAGES:
        r = results[stage]
        print(
            f"{stage:<12}{r['seconds']:>9.2f}{r['cpu_seconds']:>8.2f}{r['import_seconds']:>10.2f}"
            f"{r['peak_mb']:>9.0f}"
        )
        if r["left_in_cwd"]:
            print(f"  left in the working directory: {r['left_in_cwd']}")
    peak = max(results[s]["peak_mb"] for s in STAGES)
    print(f"{'total':<12}{total:>9.2f}{cpu:>8.2f}   peak {peak:.0f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
