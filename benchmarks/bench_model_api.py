"""Benchmark our model API against `mlflow models serve` on the same registered model.

    PYTHONPATH=. .local/venv/bin/python benchmarks/bench_model_api.py [--duration 10]

One run, same machine, same model, same load generator (`wrk` with `benchmarks/post.lua`,
`apt-get install wrk`): registers a HistGradientBoosting churn pipeline (one-hot +
scaling, the shape of the DESIGN.md anchor) with its serving artifact, as the DAG's
release step does (`serving/loading/artifact.py`), in a temporary MLflow store unless
`--tracking-uri/--model-name` point at an existing one, starts both servers on loopback
(MLflow with one worker), and for 1-, 100- and 1,000-row `dataframe_split` requests (marked
`X-Traffic-Kind: benchmark`, so monitoring leaves them out) at 1
and 8 connections reports requests/s, p50 and p99, plus the in-process predict time of
our fast path (the floor), time from process start to the first healthy `/ping`, resident
memory (whole process tree) and the ratios ours/MLflow. Prints a markdown table.
`--problem regression` benchmarks a *regressor* of the same shape instead (the sample
customers' next-year spend; both servers answer numbers): the default regression candidate
`--candidate` (`hgb_deep`, `ridge_a1`, `hgb_shallow` or `random_forest`). The in-process
floor is also split into CPU time for parsing the body and for predicting, the two costs
our API adds to HTTP.

Load is measured in steady state: after the first healthy answer, our API re-checks its
serving artifact in a low-priority child for a few seconds; the runs start once that is
over (`settle_s` in the JSON). Each server starts after `os.sync()`, so the previous
phase's inference log is not being written back meanwhile. The temporary directory is
removed at the end (`--keep` keeps it). `--log-ab` adds our API with the inference log off
(`MODEL_API_LOG_SAMPLE_RATE=0`) to each comparison and prints what logging costs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devtools.ports import free_port  # noqa: E402

LUA = Path(__file__).with_name("post.lua")
ROWS = (1, 100, 1000)
CONNECTIONS = (1, 8)


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants, MiB."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs) / 2**20
    except psutil.NoSuchProcess:
        return float("nan")


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 300.0) -> float:
    from include.ml_pipeline.service_probe import Unreachable, wait_until_up

    def running() -> None:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")

    try:
        return wait_until_up(
            url + "/ping", timeout=timeout, check=running, interval=0.05, request_timeout=1.0
        )
    except Unreachable:
        raise RuntimeError(f"{url} not healthy after {timeout}s") from None


def wait_settled(url: str, timeout: float = 120.0) -> float:
    """Seconds until our API's background check of a serving artifact is over (it runs in
    a low-priority child after the first healthy answer); 0 for a server without one.
    Throughput and latency are measured from then on: steady state, not start-up."""
    import httpx

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        answer = httpx.get(url + "/model", timeout=5.0)
        if answer.status_code != 200:
            return 0.0
        if answer.json().get("verification", {}).get("load_check") != "running":
            return time.monotonic() - started
        time.sleep(0.1)
    raise RuntimeError(f"{url}: background check still running after {timeout}s")


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = open(log, "wb")  # noqa: SIM115 - lives as long as the server
    return subprocess.Popen(
        cmd, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True, cwd=str(ROOT)
    )


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def run_wrk(url: str, body_file: Path, connections: int, duration: int) -> dict:
    env = dict(os.environ, WRK_BODY_FILE=str(body_file))
    threads = min(connections, 2)
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    match = re.search(r"WRKJSON (\{.*\})", out)
    if not match:
        raise RuntimeError(f"wrk output not understood:\n{out}")
    data = json.loads(match.group(1))
    data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
    data["errors"] = sum(
        data[k]
        for k in ("connect_errors", "read_errors", "write_errors", "timeouts", "status_errors")
    )
    return data


def make_bodies(folder: Path, spec, seed: int = 11) -> dict[int, Path]:
    from include.ml_pipeline.data_preparation.sample_data import generate_churn_frame
    from include.ml_pipeline.deployment.api_client import split_payload

    frame = generate_churn_frame(max(ROWS), seed)[spec.columns]
    bodies = {}
    for rows in ROWS:
        path = folder / f"body_{rows}.json"
        path.write_bytes(split_payload(frame.head(rows)))
        bodies[rows] = path
    return bodies


def in_process_floor(tracking_uri: str, name: str, bodies: dict) -> dict:
    """Median in-process time of parse + predict (our fast path), per request size, and
    the median CPU time (all threads of this process: steady on a busy machine, where
    wall time is not) of each: `<rows>_parse_cpu`, `<rows>_predict_cpu`."""
    from statistics import median

    from include.ml_pipeline.serving.loading.load import load_served_model

    served = load_served_model(tracking_uri, name, "champion")
    floor = {"predict_path": served.predict_path}
    for rows, path in bodies.items():
        body = path.read_bytes()
        wall, parse, predict = [], [], []
        for _ in range(200 if rows < 1000 else 50):
            started, cpu = time.perf_counter(), time.process_time()
            batch = served.parser.parse_json_body(body)
            parsed = time.process_time()
            served.predictor.predict(batch)
            predict.append(time.process_time() - parsed)
            parse.append(parsed - cpu)
            wall.append(time.perf_counter() - started)
        floor[rows] = median(wall) * 1000
        floor[f"{rows}_parse_cpu"] = median(parse) * 1000
        floor[f"{rows}_predict_cpu"] = median(predict) * 1000
    return floor


def fmt(value: float, digits: int = 1) -> str:
    return "n/a" if value != value else f"{value:,.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--model-name", default=None)
    parser.add_argument("--json", default=None, help="also write the raw results here")
    parser.add_argument(
        "--problem",
        choices=("binary", "regression"),
        default="binary",
        help="the registered model: the churn classifier, or a regressor of the same shape",
    )
    parser.add_argument(
        "--candidate",
        default="hgb_deep",
        help="with --problem regression: the default regression candidate to register "
        "(hgb_deep, hgb_shallow, ridge_a1, random_forest)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary store, logs and inference log"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="whole comparisons to run; the last table has the medians",
    )
    parser.add_argument(
        "--log-ab",
        action="store_true",
        help="also run our API with the inference log off (MODEL_API_LOG_SAMPLE_RATE=0) "
        "and print what logging every request costs (ours / ours without the log)",
    )
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print("wrk not found: apt-get update && apt-get install -y wrk", file=sys.stderr)
        return 2
    os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    work = Path(tempfile.mkdtemp(prefix="bench-model-api-"))
    try:
        tracking_uri = args.tracking_uri or f"sqlite:///{work / 'mlflow.db'}"
        regression = args.problem == "regression"
        name = args.model_name or ("bench_spend" if regression else "bench_churn")
        from include.ml_pipeline.data_preparation.sample_data import churn_spec
        from tests.support.models import register_model_version, regression_pipeline

        if args.tracking_uri is None:
            kind = (
                f"{args.candidate} regressor" if regression else "HistGradientBoosting churn model"
            )
            print(f"registering a {kind} ...", flush=True)
            pipeline, spec = (
                regression_pipeline(args.candidate, rows=20_000, seed=3)
                if regression
                else (None, None)
            )
            register_model_version(
                tracking_uri,
                name,
                kind="hgb",
                rows=20_000,
                seed=3,
                artifact_location=(work / "artifacts").as_uri(),
                serving_artifact=True,  # as the DAG's release step stores it
                pipeline=pipeline,
                spec=spec,
            )
        from mlflow import MlflowClient

        version = (
            MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
            .get_model_version_by_alias(name, "champion")
            .version
        )
        bodies = make_bodies(work, churn_spec())
        bin_dir = Path(sys.executable).parent
        base_env = dict(
            os.environ,
            MLFLOW_TRACKING_URI=tracking_uri,
            PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            PYTHONPATH=str(ROOT),
        )
        servers = {
            "ours": (
                [sys.executable, "-m", "include.ml_pipeline.serving.api"],
                {
                    "ML_PIPELINE_MODEL_NAME": name,
                    "ML_PIPELINE_INFERENCE_LOG": str(work / "inference_log"),
                    "MODEL_API_ADMIN_TOKEN": secrets.token_urlsafe(32),
                },
            ),
            **(
                {
                    "ours-nolog": (
                        [sys.executable, "-m", "include.ml_pipeline.serving.api"],
                        {
                            "ML_PIPELINE_MODEL_NAME": name,
                            "ML_PIPELINE_INFERENCE_LOG": str(work / "inference_log_off"),
                            "MODEL_API_ADMIN_TOKEN": secrets.token_urlsafe(32),
                            "MODEL_API_LOG_SAMPLE_RATE": "0",
                        },
                    )
                }
                if args.log_ab
                else {}
            ),
            "mlflow": (
                [
                    str(bin_dir / "mlflow"),
                    "models",
                    "serve",
                    "-m",
                    f"models:/{name}@champion",
                    "--env-manager",
                    "local",
                    "-w",
                    "1",
                ],
                {},
            ),
        }
        repeats = []
        for attempt in range(1, args.repeat + 1):
            print(f"comparison {attempt} of {args.repeat}", flush=True)
            results: dict = {"model": f"models:/{name}/{version}", "runs": {}}
            for label, (cmd, extra) in servers.items():
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                env = dict(base_env, **extra)
                if label.startswith("ours"):
                    env.update(MODEL_API_HOST="127.0.0.1", MODEL_API_PORT=str(port))
                else:
                    cmd = [*cmd, "-h", "127.0.0.1", "-p", str(port)]
                # Start from a quiet disk: the previous phase's inference log (up to ~200 MB
                # per 1,000-row cell) must not be written back while this server imports.
                os.sync()
                time.sleep(1.0)
                print(f"starting {label} ...", flush=True)
                proc = start(cmd, env, work / f"{label}.log")
                try:
                    startup = wait_healthy(url, proc)
                    run = {"startup_s": startup, "settle_s": wait_settled(url)}
                    for rows in ROWS:
                        for conns in CONNECTIONS:
                            # a short warm-up, then the measured run
                            run_wrk(url, bodies[rows], conns, 2)
                            r = run_wrk(url, bodies[rows], conns, args.duration)
                            run[f"{rows}x{conns}"] = r
                            print(
                                f"  {label} rows={rows} conns={conns}: {r['rps']:.1f} req/s "
                                f"p50 {r['p50_us'] / 1000:.2f} ms p99 {r['p99_us'] / 1000:.2f} ms "
                                f"errors {r['errors']}",
                                flush=True,
                            )
                    run["rss_mib"] = tree_rss_mib(proc.pid)
                    results["runs"][label] = run
                finally:
                    stop(proc)
            repeats.append(results)
        floor = in_process_floor(tracking_uri, name, bodies)
        for results in repeats:
            results["floor_ms"] = floor
            results["estimator"] = args.candidate if regression else "HistGradientBoosting"
        if args.json:
            Path(args.json).write_text(json.dumps(repeats, indent=2))
        for attempt, results in enumerate(repeats, 1):
            print(f"\n### Comparison {attempt}\n")
            print(render(results))
        print(f"\n### Medians of {len(repeats)} comparisons (ratios taken within each run)\n")
        print(render_medians(repeats))
        if args.log_ab:
            print(f"\n### What logging every request costs (medians of {len(repeats)})\n")
            print(render_log_cost(repeats))
        return 0
    finally:
        if args.keep:
            print(f"kept {work}")
        else:  # the inference log alone reaches hundreds of MB
            shutil.rmtree(work, ignore_errors=True)


def render(results: dict) -> str:
    ours, theirs = results["runs"]["ours"], results["runs"]["mlflow"]
    floor = results["floor_ms"]
    lines = [
        f"Model `{results['model']}` ({results.get('estimator', 'HistGradientBoosting')}, "
        f"one-hot + scaling); our path: `{floor['predict_path']}`.",
        "",
        "| rows | conns | ours req/s | mlflow req/s | ratio | ours p50 ms | mlflow p50 ms "
        "| ours p99 ms | mlflow p99 ms | p99 ratio (ours/mlflow) | errors ours/mlflow "
        "| in-process parse+predict ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rows in ROWS:
        for conns in CONNECTIONS:
            a, b = ours[f"{rows}x{conns}"], theirs[f"{rows}x{conns}"]
            lines.append(
                f"| {rows} | {conns} | {fmt(a['rps'])} | {fmt(b['rps'])} | "
                f"{a['rps'] / b['rps']:.1f}x | {a['p50_us'] / 1000:.2f} | "
                f"{b['p50_us'] / 1000:.2f} | {a['p99_us'] / 1000:.2f} | "
                f"{b['p99_us'] / 1000:.2f} | {a['p99_us'] / b['p99_us']:.3f} | "
                f"{a['errors']}/{b['errors']} | {floor[rows]:.3f} |"
            )
    lines += [
        "",
        "| | ours | mlflow | ratio (ours/mlflow) |",
        "|---|---:|---:|---:|",
        f"| startup to first healthy /ping (s) | {ours['startup_s']:.1f} | "
        f"{theirs['startup_s']:.1f} | {ours['startup_s'] / theirs['startup_s']:.2f} |",
        f"| resident memory, process tree (MiB) | {ours['rss_mib']:.0f} | "
        f"{theirs['rss_mib']:.0f} | {ours['rss_mib'] / theirs['rss_mib']:.2f} |",
    ]
    return "\n".join(lines)


def render_medians(repeats: list[dict]) -> str:
    """Per cell: the median over comparisons of each side and of the within-run ratio."""
    from statistics import median

    def med(side: str, key: str, field: str) -> float:
        return median(r["runs"][side][key][field] for r in repeats)

    def ratio(key: str, field: str) -> float:
        return median(
            r["runs"]["ours"][key][field] / r["runs"]["mlflow"][key][field] for r in repeats
        )

    lines = [
        "| rows | conns | ours req/s | mlflow req/s | req/s ratio | ours p99 ms "
        "| mlflow p99 ms | p99 ratio (ours/mlflow) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rows in ROWS:
        for conns in CONNECTIONS:
            key = f"{rows}x{conns}"
            lines.append(
                f"| {rows} | {conns} | {fmt(med('ours', key, 'rps'))} | "
                f"{fmt(med('mlflow', key, 'rps'))} | {ratio(key, 'rps'):.1f}x | "
                f"{med('ours', key, 'p99_us') / 1000:.2f} | "
                f"{med('mlflow', key, 'p99_us') / 1000:.2f} | {ratio(key, 'p99_us'):.3f} |"
            )

    def whole(field: str) -> tuple[float, float, float]:
        values = [(r["runs"]["ours"][field], r["runs"]["mlflow"][field]) for r in repeats]
        return (
            median(a for a, _ in values),
            median(b for _, b in values),
            median(a / b for a, b in values),
        )

    startup, rss = whole("startup_s"), whole("rss_mib")
    lines += [
        "",
        "| | ours | mlflow | ratio (ours/mlflow) |",
        "|---|---:|---:|---:|",
        f"| startup to first healthy /ping (s) | {startup[0]:.1f} | {startup[1]:.1f} | "
        f"{startup[2]:.2f} |",
        f"| resident memory, process tree (MiB) | {rss[0]:.0f} | {rss[1]:.0f} | {rss[2]:.2f} |",
    ]
    floor = repeats[0]["floor_ms"]
    if f"{ROWS[0]}_parse_cpu" in floor:
        lines += [
            "",
            f"Our API in process (`{floor['predict_path']}`), medians:",
            "",
            "| rows | parse + predict, wall ms | parse, CPU ms | predict, CPU ms |",
            "|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {rows} | {floor[rows]:.3f} | {floor[f'{rows}_parse_cpu']:.3f} | "
            f"{floor[f'{rows}_predict_cpu']:.3f} |"
            for rows in ROWS
        ]
    return "\n".join(lines)


def render_log_cost(repeats: list[dict]) -> str:
    """Per cell: our API with the inference log on against the same API with it off
    (`MODEL_API_LOG_SAMPLE_RATE=0`), ratios taken within each comparison."""
    from statistics import median

    lines = [
        "| rows | conns | log on req/s | log off req/s | on/off req/s | on/off p99 |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for rows in ROWS:
        for conns in CONNECTIONS:
            key = f"{rows}x{conns}"
            on = [r["runs"]["ours"][key] for r in repeats]
            off = [r["runs"]["ours-nolog"][key] for r in repeats]
            lines.append(
                f"| {rows} | {conns} | {fmt(median(a['rps'] for a in on))} | "
                f"{fmt(median(b['rps'] for b in off))} | "
                f"{median(a['rps'] / b['rps'] for a, b in zip(on, off, strict=True)):.2f} | "
                f"{median(a['p99_us'] / b['p99_us'] for a, b in zip(on, off, strict=True)):.2f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
