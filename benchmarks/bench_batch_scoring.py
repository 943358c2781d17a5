"""Batch scoring against the plain baseline: rows/s and peak memory at 1M and 5M rows.

    python benchmarks/bench_batch_scoring.py [--rows 1000000 5000000] [--model hgb|lr]
        [--pairs 3] [--threads 2] [--numpy-trees]

For each size, a generated churn table (Parquet, row groups of 250,000 rows) is scored by
the champion of a throw-away registry, each way in a fresh process (its peak resident
memory is the process's `ru_maxrss`):

* **baseline**: `mlflow.pyfunc.load_model("models:/<name>/<version>").predict(frame)` on
  the whole frame read with `pandas.read_parquet` (what a user writes without this DAG);
* **ours**: what the DAG's `score_part` tasks do (`batch_scoring.part.score_part`), every
  part in turn in one process: read in chunks (categories as Parquet dictionaries),
  contract row checks, the verified compiled path (for this HistGradientBoosting model:
  its trees as leaf masks, `serving/compiled/leaf_masks.py`, a chunk's halves on two
  threads), Parquet parts written with keys, prediction, probabilities, model version and
  run id, the drift sample kept. The leaf masks are summed by numba-compiled code
  (`serving/compiled/numba_trees.py`); `--numpy-trees` also runs ours with numpy's sums
  (`ML_PIPELINE_NUMBA=0`) in every pair, and prints numba's gain per CPU second. Each
  part's report gives its CPU seconds by stage (read, check, score, output, write,
  sample): printed per row as a second table.

rows/s counts reading and scoring (and, for ours, checking the input against the contract
and writing the output); loading the model (and, for ours, its input contract) is timed
apart. Ours and the baseline run `--pairs` times each, alternating (a pair: one
of each, side by side in time); the table gives medians of rows/s and of the per-pair
ratios, by wall clock and by CPU seconds (the machine is shared: its load moves between
runs, and CPU seconds move less). Both sides get the same thread budget (`--threads`,
default the usable cores, at most 2): `OMP_NUM_THREADS` for the baseline's scikit-learn
trees, `MODEL_API_PREDICT_THREADS` for ours. The goal (issue 25): ours >= 10x the baseline's
rows/s, and ours' peak memory at 5M within 1.2x of its peak at 1M. Prints a Markdown
table, the load average before and after, and writes the numbers as JSON to `--out`.

It also times a part's model load in a fresh process (as on another Celery worker), each
way `--pairs` times: loaded from MLflow, compiled and verified in the part (what every part
did before), against the scorer the planning task verified once and published under the
run (`batch_scoring/shared.py`: read, digest-checked, numba kernels loaded, leaf masks
rechecked), and ours' CPU per row as the DAG spends it: plus one such load per part of the
DAG's default size (`DAG_PART_ROWS`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODEL = "bench_batch_model"
PART_ROWS = 250_000
#: The DAG's default `part_rows` (orchestration/params.py): each part is a mapped task,
#: which on a Celery worker loads the published scorer in a fresh process.
DAG_PART_ROWS = 1_000_000


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    """CPU time of this process (all its threads): steadier than wall time on a shared
    machine, whose load may change between the two children."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_baseline(data: str, tracking_uri: str, version: str) -> dict:
    import mlflow.pyfunc
    import pandas as pd

    started = time.perf_counter()
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}/{version}")
    loaded, cpu = time.perf_counter(), _cpu_seconds()
    frame = pd.read_parquet(data).drop(columns=["churn"])
    predictions = model.predict(frame)
    done = time.perf_counter()
    return {
        "rows": len(predictions),
        "load_seconds": loaded - started,
        "seconds": done - loaded,
        "cpu_seconds": _cpu_seconds() - cpu,
        "peak_mb": _peak_mb(),
    }


def child_ours(data: str, tracking_uri: str, version: str, out: str) -> dict:
    from include.ml_pipeline.batch_scoring.contract_check import check_input
    from include.ml_pipeline.batch_scoring.model import load_batch_model
    from include.ml_pipeline.batch_scoring.part import score_part
    from include.ml_pipeline.batch_scoring.source import file_schema, list_input, plan_parts
    from include.ml_pipeline.registry.contract import load_contract

    started, started_cpu = time.perf_counter(), _cpu_seconds()
    model = load_batch_model(tracking_uri, MODEL, version)
    verified_cpu = _cpu_seconds() - started_cpu
    # the version's input contract is loaded with it (as the baseline's `load_model` reads
    # its signature); checking the input against it is timed
    contract = load_contract(tracking_uri, MODEL, version)
    loaded, cpu = time.perf_counter(), _cpu_seconds()
    listing = list_input(data)
    check = check_input([(f, file_schema(f)) for f in listing.files], contract)
    parts = plan_parts(listing, PART_ROWS)
    rows = 0
    stages: dict[str, float] = {}
    for part in parts:
        report = score_part(
            part,
            model=model,
            check=check,
            run_uri=out,
            scoring_run_id="bench",
            several_files=False,
            sample_rows=50_000 // len(parts) + 1,
        )
        rows += report.rows_out
        for stage, seconds in report.cpu_seconds.items():
            stages[stage] = stages.get(stage, 0.0) + seconds
    done = time.perf_counter()
    return {
        "rows": rows,
        "parts": len(parts),
        "path": model.path,
        "load_seconds": loaded - started,
        "load_cpu_seconds": verified_cpu,
        "seconds": done - loaded,
        "cpu_seconds": _cpu_seconds() - cpu,
        "stage_cpu_seconds": stages,
        "peak_mb": _peak_mb(),
    }


def child_part_load(tracking_uri: str, version: str, record_path: str, mode: str) -> dict:
    """A part's model load in a fresh process (as on another Celery worker), `mode`
    `verify`: the version downloaded, compiled and verified (`load_batch_model`, what every
    part did before); `shared`: the scorer the planning task verified and published, read
    and digest-checked (`shared.load_shared`, what a part does now)."""
    from include.ml_pipeline.batch_scoring import shared
    from include.ml_pipeline.batch_scoring.model import load_batch_model

    record = shared.VerifiedModel.from_dict(json.loads(Path(record_path).read_text()))
    started, cpu = time.perf_counter(), _cpu_seconds()
    if mode == "shared":
        model = shared.load_shared(record, MODEL, version)
    else:
        model = load_batch_model(tracking_uri, MODEL, version)
    return {
        "mode": mode,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": _cpu_seconds() - cpu,
        "path": model.path,
    }


def part_loads(args: argparse.Namespace, tracking_uri: str, version: str, root: Path) -> dict:
    """The planning task's load + publish here, then `--pairs` pairs of fresh-process part
    loads (verify / shared, alternating); medians."""
    from statistics import median

    from include.ml_pipeline.batch_scoring.model import load_batch_model
    from include.ml_pipeline.batch_scoring.shared import publish

    record = publish(load_batch_model(tracking_uri, MODEL, version), str(root / "run"))
    record_path = root / "verified.json"
    record_path.write_text(json.dumps(record.to_dict()))
    runs: dict[str, list[dict]] = {"verify": [], "shared": []}
    for i in range(args.pairs):
        for mode in ("verify", "shared") if i % 2 == 0 else ("shared", "verify"):
            runs[mode].append(
                _run_child("part-load", args.threads, tracking_uri, version, str(record_path), mode)
            )
    from include.ml_pipeline import storage

    published = storage.local_path(record.uri)
    assert published is not None
    out = {"path": record.path, "bytes": published.stat().st_size}
    for mode, results in runs.items():
        assert {r["path"] for r in results} == {record.path}, results
        out[f"{mode}_seconds"] = median(r["seconds"] for r in results)
        out[f"{mode}_cpu_seconds"] = median(r["cpu_seconds"] for r in results)
    return out


def _run_child(kind: str, threads: int, *args: str, numba: bool = True) -> dict:
    """One side in a fresh process, both sides with the same thread budget: `threads` for
    scikit-learn's OpenMP (the baseline's trees) and for ours (`predict_threads`)."""
    budget = str(threads)
    result = subprocess.run(
        [sys.executable, __file__, "--child", kind, *args],
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "OMP_NUM_THREADS": budget,
            "MODEL_API_PREDICT_THREADS": budget,
            **({} if numba else {"ML_PIPELINE_NUMBA": "0"}),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(
            f"{kind} child failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
        )
    return json.loads(lines[-1].removeprefix("RESULT "))


def _pairs(
    args: argparse.Namespace, rows: int, data: Path, tracking_uri: str, version: str, root: Path
) -> dict:
    """`args.pairs` runs of ours and of the baseline, alternating (ours first in even
    pairs, the baseline first in odd ones), each in a fresh process: the machine's load
    drifts, and a ratio of two runs side by side in time drifts less than two medians."""
    ours: list[dict] = []
    baseline: list[dict] = []
    numpy_trees: list[dict] = []
    with_baseline = rows <= args.skip_baseline_above
    for i in range(args.pairs):
        order = ["ours", "baseline"] if i % 2 == 0 else ["baseline", "ours"]
        if args.numpy_trees:
            order.insert(1, "numpy")
        for kind in order:
            if kind == "numpy":  # ours with the numpy leaf masks (numba off)
                out = str(root / f"out_numpy_{rows}_{i}")
                numpy_trees.append(
                    _run_child(
                        "ours", args.threads, str(data), tracking_uri, version, out, numba=False
                    )
                )
            elif kind == "ours":
                out = str(root / f"out_{rows}_{i}")
                ours.append(_run_child("ours", args.threads, str(data), tracking_uri, version, out))
            elif with_baseline:
                baseline.append(
                    _run_child("baseline", args.threads, str(data), tracking_uri, version)
                )
    return {"ours": ours, "baseline": baseline or None, "numpy": numpy_trees or None}


def _summary(runs: dict) -> dict:
    """Medians: rows/s and peak memory of each side, and of the per-pair ratios (wall
    clock and CPU seconds)."""
    from statistics import median

    ours, baseline = runs["ours"], runs["baseline"]
    out = {
        "path": ours[0].get("path"),
        "ours_rows_per_s": median(r["rows"] / r["seconds"] for r in ours),
        "ours_cpu_us_per_row": median(1e6 * r["cpu_seconds"] / r["rows"] for r in ours),
        "ours_peak_mb": median(r["peak_mb"] for r in ours),
        "ours_load_seconds": median(r["load_seconds"] for r in ours),
        "ours_stage_cpu_us_per_row": {
            stage: median(1e6 * r["stage_cpu_seconds"][stage] / r["rows"] for r in ours)
            for stage in ours[0]["stage_cpu_seconds"]
        },
    }
    if runs.get("numpy"):
        with_numpy = list(zip(ours, runs["numpy"], strict=False))
        out |= {
            "numpy_path": runs["numpy"][0].get("path"),
            "numpy_cpu_us_per_row": median(
                1e6 * r["cpu_seconds"] / r["rows"] for r in runs["numpy"]
            ),
            "numba_gains_cpu": [n["cpu_seconds"] / o["cpu_seconds"] for o, n in with_numpy],
            "numba_gains": [n["seconds"] / o["seconds"] for o, n in with_numpy],
        }
    if baseline:
        pairs = list(zip(ours, baseline, strict=False))
        out |= {
            "baseline_rows_per_s": median(r["rows"] / r["seconds"] for r in baseline),
            "baseline_cpu_us_per_row": median(1e6 * r["cpu_seconds"] / r["rows"] for r in baseline),
            "baseline_peak_mb": median(r["peak_mb"] for r in baseline),
            "speedups": [b["seconds"] / o["seconds"] for o, b in pairs],
            "speedups_cpu": [b["cpu_seconds"] / o["cpu_seconds"] for o, b in pairs],
        }
        out["speedup"] = median(out["speedups"])
        out["speedup_cpu"] = median(out["speedups_cpu"])
    return out


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def register(tracking_uri: str, root: Path, kind: str) -> str:
    """A champion fitted on 4,000 generated rows, registered as the pipeline does (input
    contract logged and tagged)."""
    from include.ml_pipeline.names import INPUT_CONTRACT_TAG
    from include.ml_pipeline.registry.contract import build_contract, log_contract
    from include.ml_pipeline.registry.mlflow_setup import configure_mlflow
    from tests.support.models import register_model_version, training_frame

    version = register_model_version(
        tracking_uri, MODEL, kind=kind, artifact_location=(root / "artifacts").as_uri()
    )
    frame, spec = training_frame(4000, 0, "str")
    client = configure_mlflow(tracking_uri)
    run_id = client.get_model_version(MODEL, version).run_id
    uri = log_contract(tracking_uri, run_id, build_contract(frame, spec))
    client.set_model_version_tag(MODEL, version, INPUT_CONTRACT_TAG, uri)
    return version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--model", choices=["hgb", "lr"], default="hgb")
    parser.add_argument("--pairs", type=int, default=3, help="runs of each, alternating")
    parser.add_argument(
        "--threads",
        type=int,
        default=min(2, len(os.sched_getaffinity(0))),
        help="threads each side may use (OpenMP for the baseline, predict threads for ours)",
    )
    parser.add_argument(
        "--numpy-trees",
        action="store_true",
        help="also run ours with the numpy leaf masks (ML_PIPELINE_NUMBA=0) in every pair",
    )
    parser.add_argument("--skip-baseline-above", type=int, default=10_000_000)
    parser.add_argument("--out", default=str(ROOT / ".local" / "bench_batch_scoring.json"))
    parser.add_argument("--child", choices=["baseline", "ours", "part-load"])
    parser.add_argument("child_args", nargs="*")
    args = parser.parse_args(argv)
    if args.child:
        os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
        child: dict[str, Callable[..., dict]] = {
            "baseline": child_baseline,
            "ours": child_ours,
            "part-load": child_part_load,
        }
        result = child[args.child](*args.child_args)
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    from include.ml_pipeline.data_preparation.sample_data import write_dataset

    load_before = os.getloadavg()
    rows_out = []
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        root = Path(tmp)
        tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
        os.environ["ML_PIPELINE_HOME"] = str(root / "home")
        version = register(tracking_uri, root, args.model)
        for rows in args.rows:
            data = write_dataset(root / f"table_{rows}.parquet", rows=rows, seed=5)
            runs = _pairs(args, rows, data, tracking_uri, version, root)
            rows_out.append({"rows": rows, **runs, **_summary(runs)})
            print(f"{rows:,} rows: {_summary(runs)}", flush=True)
        # last: loading the model here grows this process, and on Linux a child's peak
        # resident memory (`ru_maxrss`) starts at its parent's size when it was forked
        loads = part_loads(args, tracking_uri, version, root)
        print(f"a part's model load: {loads}", flush=True)
    load_after = os.getloadavg()

    print(
        f"\nmodel {args.model}; {args.pairs} pair(s) of runs per size, alternating; "
        f"{args.threads} thread(s) per side; ours' path {rows_out[0]['path']}"
    )
    print(f"load average before {load_before}, after {load_after}\n")
    print(
        "| rows | baseline rows/s | ours rows/s | speed-up (median of pairs) "
        "| baseline CPU us/row | ours CPU us/row | speed-up per CPU second (median of pairs) "
        "| baseline peak MB | ours peak MB |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows_out:
        cells = ["-"] * 5
        if row["baseline"]:
            cells = [
                f"{row['baseline_rows_per_s']:,.0f}",
                f"{row['speedup']:.1f}x (pairs: {_list(row['speedups'])})",
                f"{row['baseline_cpu_us_per_row']:.2f}",
                f"{row['speedup_cpu']:.1f}x (pairs: {_list(row['speedups_cpu'])})",
                f"{row['baseline_peak_mb']:,.0f}",
            ]
        print(
            f"| {row['rows']:,} | {cells[0]} | {row['ours_rows_per_s']:,.0f} | {cells[1]} | "
            f"{cells[2]} | {row['ours_cpu_us_per_row']:.2f} | {cells[3]} | {cells[4]} | "
            f"{row['ours_peak_mb']:,.0f} |"
        )
    print("\nours, CPU us per row by stage of `score_part` (median of runs; all threads):\n")
    stages = list(rows_out[0]["ours_stage_cpu_us_per_row"])
    print("| rows | " + " | ".join(stages) + " | model load s (apart) |")
    print("|---:|" + "---:|" * (len(stages) + 1))
    for row in rows_out:
        cells = [f"{row['ours_stage_cpu_us_per_row'].get(s, 0):.3f}" for s in stages]
        print(f"| {row['rows']:,} | " + " | ".join(cells) + f" | {row['ours_load_seconds']:.1f} |")
    for row in rows_out:
        if row.get("numba_gains_cpu"):
            print(
                f"\n{row['rows']:,} rows, ours with numpy sums ({row['numpy_path']}): "
                f"{row['numpy_cpu_us_per_row']:.2f} CPU us/row; numba's gain per CPU second "
                f"(pairs): {_list(row['numba_gains_cpu'])}, wall: {_list(row['numba_gains'])}"
            )
    if len(rows_out) > 1:
        ratio = rows_out[-1]["ours_peak_mb"] / rows_out[0]["ours_peak_mb"]
        print(
            f"\nours' peak memory {rows_out[-1]['rows']:,} vs {rows_out[0]['rows']:,}: {ratio:.2f}x"
        )
    print(
        f"\na part's model load, fresh process, medians of {args.pairs}: loaded and verified "
        f"in the part (before) {loads['verify_seconds']:.2f} s wall / "
        f"{loads['verify_cpu_seconds']:.2f} s CPU; the scorer verified once by the planning "
        f"task, read and digest-checked ({loads['bytes'] / 1e6:.1f} MB) "
        f"{loads['shared_seconds']:.2f} s wall / {loads['shared_cpu_seconds']:.2f} s CPU"
    )
    print(
        f"\nas the DAG runs it (parts of {DAG_PART_ROWS:,} rows, each a mapped task loading "
        "the published scorer in a fresh process; the planning task's load apart, as the "
        "baseline's):"
    )
    for row in rows_out:
        parts = -(-row["rows"] // DAG_PART_ROWS)
        per_row = (
            row["ours_cpu_us_per_row"] + 1e6 * parts * loads["shared_cpu_seconds"] / row["rows"]
        )
        row["dag_cpu_us_per_row"] = per_row
        ratio = (
            f", {row['baseline_cpu_us_per_row'] / per_row:.1f}x the baseline per CPU second"
            if row["baseline"]
            else ""
        )
        print(f"  {row['rows']:,} rows, {parts} part(s): {per_row:.2f} CPU us/row{ratio}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "model": args.model,
                "threads": args.threads,
                "load_before": load_before,
                "load_after": load_after,
                "part_loads": loads,
                "runs": rows_out,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
