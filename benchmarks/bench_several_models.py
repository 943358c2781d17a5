"""What a second model loaded in the same model API costs the first: requests/s and p99 on
the first model, and resident memory per loaded model.

    PYTHONPATH=. nice .local/venv/bin/python benchmarks/bench_several_models.py [--repeat 5]

Registers two models with their serving artifacts, as the DAG's release step stores them,
in a temporary MLflow store: the churn classifier of `bench_model_api.py`
(HistGradientBoosting, one-hot + scaling) and a second problem on other columns (four
regions from the churn columns without `region`, a HistGradientBoosting classifier too).
Then, alternating so that drift in the machine's load hits both alike, starts our API
serving the churn model alone (`one`) or next to the region model (`two`:
`MODEL_API_MODELS`), waits until each load's background check is over, and drives the
churn model's bare `/invocations` with `wrk` (`benchmarks/post.lua`) at 1 row over 1 and 8
connections and at 100 rows over 8. Reports per cell the medians of requests/s and p99 and
the median of the within-pair ratio two/one, and the process tree's resident memory with
one and with two models (the difference: what the second model costs).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import bench_model_api as base  # noqa: E402

from devtools.ports import free_port  # noqa: E402

CELLS = ((1, 1), (1, 8), (100, 8))
FIRST, SECOND = "bench_churn", "bench_region"


def measure(work: Path, env: dict[str, str], bodies: dict, duration: int, label: str) -> dict:
    """Start our API with `env`, wait for steady state, run each cell; stop it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(env, MODEL_API_HOST="127.0.0.1", MODEL_API_PORT=str(port))
    os.sync()
    time.sleep(1.0)
    proc = base.start(
        [sys.executable, "-m", "include.ml_pipeline.serving.api"], env, work / f"{label}.log"
    )
    try:
        base.wait_healthy(url, proc)
        if env.get("MODEL_API_MODELS"):
            from include.ml_pipeline.service_probe import wait_until_up

            wait_until_up(f"{url}/models/{SECOND}/ready", timeout=300, interval=0.1)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and any("loading" in c for c in _children(proc.pid)):
            time.sleep(0.2)  # the background artifact checks of every model are over
        base.wait_settled(url)
        run: dict = {}
        for rows, conns in CELLS:
            base.run_wrk(url, bodies[rows], conns, 2)
            result = base.run_wrk(url, bodies[rows], conns, duration)
            run[f"{rows}x{conns}"] = result
            print(
                f"  {label} rows={rows} conns={conns}: {result['rps']:.1f} req/s "
                f"p99 {result['p99_us'] / 1000:.2f} ms errors {result['errors']}",
                flush=True,
            )
        run["rss_mib"] = base.tree_rss_mib(proc.pid)
        return run
    finally:
        base.stop(proc)


def _children(pid: int) -> list[str]:
    import psutil

    try:
        return [" ".join(c.cmdline()) for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--repeat", type=int, default=5, help="pairs (one, two) to run")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print("wrk not found: apt-get update && apt-get install -y wrk", file=sys.stderr)
        return 2
    os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    work = Path(tempfile.mkdtemp(prefix="bench-several-models-"))
    try:
        from include.ml_pipeline.data_preparation.sample_data import churn_spec
        from tests.support.models import register_model_version

        uri = f"sqlite:///{work / 'mlflow.db'}"
        artifacts = (work / "artifacts").as_uri()
        print("registering two HistGradientBoosting models ...", flush=True)
        for name, labels in ((FIRST, "str"), (SECOND, "multi")):
            register_model_version(
                uri,
                name,
                kind="hgb",
                labels=labels,
                rows=20_000,
                seed=3,
                artifact_location=artifacts,
                serving_artifact=True,
            )
        bodies = base.make_bodies(work, churn_spec())
        env = dict(
            os.environ,
            MLFLOW_TRACKING_URI=uri,
            PYTHONPATH=str(ROOT),
            ML_PIPELINE_MODEL_NAME=FIRST,
            ML_PIPELINE_INFERENCE_LOG=str(work / "inference_log"),
            MODEL_API_ADMIN_TOKEN=secrets.token_urlsafe(32),
        )
        env.pop("MODEL_API_MODELS", None)
        pairs = []
        for attempt in range(1, args.repeat + 1):
            print(f"pair {attempt} of {args.repeat}", flush=True)
            order = ("one", "two") if attempt % 2 else ("two", "one")
            pair = {}
            for label in order:
                extra = {"MODEL_API_MODELS": SECOND} if label == "two" else {}
                pair[label] = measure(work, dict(env, **extra), bodies, args.duration, label)
            pairs.append(pair)
        print(render(pairs))
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def render(pairs: list[dict]) -> str:
    lines = [
        f"\n### The churn model alone (one) and next to a second model (two), medians of "
        f"{len(pairs)} pairs\n",
        "| rows | conns | one req/s | two req/s | two/one req/s | one p99 ms | two p99 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rows, conns in CELLS:
        key = f"{rows}x{conns}"
        one = [p["one"][key] for p in pairs]
        two = [p["two"][key] for p in pairs]
        lines.append(
            f"| {rows} | {conns} | {median(r['rps'] for r in one):,.0f} | "
            f"{median(r['rps'] for r in two):,.0f} | "
            f"{median(b['rps'] / a['rps'] for a, b in zip(one, two, strict=True)):.3f} | "
            f"{median(r['p99_us'] for r in one) / 1000:.2f} | "
            f"{median(r['p99_us'] for r in two) / 1000:.2f} |"
        )
    one_mib = median(p["one"]["rss_mib"] for p in pairs)
    two_mib = median(p["two"]["rss_mib"] for p in pairs)
    lines += [
        "",
        f"Resident memory (process tree): one model {one_mib:.0f} MiB, two models "
        f"{two_mib:.0f} MiB: the second model costs {two_mib - one_mib:.0f} MiB "
        f"(median of the pairs' differences: "
        f"{median(p['two']['rss_mib'] - p['one']['rss_mib'] for p in pairs):.0f} MiB).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
