"""Training time of the LightGBM and XGBoost candidates against today's `hgb_deep` on the
same data.

    PYTHONPATH=. nice -n 10 .local/venv/bin/python benchmarks/bench_training.py --rows 1000000

Generates the churn sample (`--rows`, binary; `--problem regression` for the numeric
target) once as Parquet, then fits each candidate's whole model in its own fresh process,
so each peak memory (maximum resident set size) is that fit's alone. The models are built
as a user's run builds them (`train.model_for`: the project's preprocessor + the estimator,
the candidates' defaults, one thread):

- `hgb_deep`, the default candidate (the baseline every ratio is to);
- `lightgbm` and `xgboost`, the candidates `{"estimator": "lightgbm"}` / `"xgboost"`: the
  categorical columns as codes and the libraries' own categorical splits
  (`train.build_pipeline`);
- `lightgbm_onehot` and `xgboost_onehot`, for comparison only: the same estimators after
  the one-hot preprocessor (`features.build_preprocessor()`), what those candidates got
  before native categoricals.

Each fit reports its encoding as fitted (the preprocessor's categorical step, the model's
input width, and how many of its splits are categorical), so the table cannot silently
measure one-hot. Prints the fit seconds (wall and CPU; medians with `--repeats`), each
one's ratio to hgb_deep in this run (CPU: also the range of the repeats' own ratios, each
fit against the baseline's fit of the same repeat) and the peaks, and writes them with
the load average around each fit to `--out` (default
`benchmarks/results/bench_training_<rows>_<problem>.json`), after every fit
(`"complete": false` until the last).
The goal (issue 21): LightGBM at most hgb_deep's time, peak memory under 4 GB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "hgb_deep"
CANDIDATES = ("hgb_deep", "lightgbm", "xgboost", "lightgbm_onehot", "xgboost_onehot")

_FIT = """
import json, resource, sys, time, warnings
from sklearn.pipeline import Pipeline
from include.ml_pipeline.data_preparation.sample_data import churn_spec, REGRESSION_TARGET
from include.ml_pipeline.features import CATEGORICAL, FeatureSpec, build_preprocessor
from include.ml_pipeline.features import coerce_features
from include.ml_pipeline.payloads import Candidate
from include.ml_pipeline.training.candidates import default_candidates, make_estimator
from include.ml_pipeline.training.data import limit_threads, read_parquet
from include.ml_pipeline.training.train import model_for

path, name, problem = sys.argv[1], sys.argv[2], sys.argv[3]
spec = churn_spec()
if problem == "regression":
    spec = FeatureSpec(REGRESSION_TARGET, spec.numeric, spec.categorical, problem_type="regression")
frame = read_parquet(path, [*spec.columns, spec.target])[0]
X, y = coerce_features(frame, spec), frame[spec.target]
candidates = {c["name"]: c for c in default_candidates(spec.problem_type)}
kind = name.removesuffix("_onehot")
if kind in ("lightgbm", "xgboost"):
    candidates[name] = {"name": name, "estimator": kind}
candidate = Candidate(**candidates[name])
if name.endswith("_onehot"):  # what these candidates got before native categoricals
    estimator = make_estimator(candidate, 42, spec.problem_type)
    model = Pipeline([("preprocess", build_preprocessor(spec)), ("model", estimator)])
else:  # as a user's run builds it
    model = model_for(candidate, spec, 42)
with limit_threads(1), warnings.catch_warnings():
    warnings.simplefilter("ignore")
    cpu, wall = time.process_time(), time.perf_counter()
    model.fit(X, y)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

# The encoding as fitted: the categorical step's encoder, the model's input width and
# its categorical splits (LightGBM: decision_type "=="; XGBoost: a list of categories as
# the split condition).
steps = model.named_steps["preprocess"].named_transformers_[CATEGORICAL].named_steps
encoder = "ordinal codes" if "ordinal" in steps else "one-hot"
fitted = model.named_steps["model"]
splits = categorical = 0
if kind == "lightgbm":
    def walk(node):
        global splits, categorical
        if "split_index" in node:
            splits += 1
            categorical += node["decision_type"] == "=="
            walk(node["left_child"])
            walk(node["right_child"])
    for tree in fitted.booster_.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
elif kind == "xgboost":
    for tree in fitted.get_booster().get_dump(dump_format="json"):
        def walk(node):
            global splits, categorical
            if "children" in node:
                splits += 1
                categorical += isinstance(node["split_condition"], list)
                for child in node["children"]:
                    walk(child)
        walk(json.loads(tree))
print(json.dumps({
    "name": name, "fit_s": wall, "cpu_s": cpu, "peak_bytes": peak, "encoder": encoder,
    "model_inputs": int(fitted.n_features_in_), "splits": splits,
    "categorical_splits": int(categorical),
}))
"""


def _load() -> float:
    return os.getloadavg()[0]


def _fit(path: Path, name: str, problem: str) -> dict:
    before = _load()
    out = subprocess.run(
        [sys.executable, "-c", _FIT, str(path), name, problem],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["load_before"], result["load_after"] = before, _load()
    return result


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--problem", choices=("binary", "regression"), default="binary")
    parser.add_argument(
        "--candidates",
        default=",".join(CANDIDATES),
        help=f"comma-separated subset of {', '.join(CANDIDATES)} ({BASELINE} always runs)",
    )
    parser.add_argument("--repeats", type=int, default=1, help="fits per candidate (median)")
    parser.add_argument("--out", type=Path, help="JSON results file")
    args = parser.parse_args()
    names = [BASELINE, *(n for n in args.candidates.split(",") if n and n != BASELINE)]
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown:
        parser.error(f"--candidates: unknown {', '.join(unknown)}; use {', '.join(CANDIDATES)}")

    from include.ml_pipeline.data_preparation.sample_data import generate_churn_frame

    started = dt.datetime.now(dt.UTC)
    out = args.out or ROOT / f"benchmarks/results/bench_training_{args.rows}_{args.problem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "command": " ".join(sys.argv[1:]),
        "started": started.isoformat(timespec="seconds"),
        "rows": args.rows,
        "problem": args.problem,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "complete": False,
        "summary": {},
        "runs": {name: [] for name in names},
    }
    runs: dict[str, list[dict]] = record["runs"]
    with tempfile.TemporaryDirectory(prefix="bench_training_") as tmp:
        path = Path(tmp) / "train.parquet"
        generate_churn_frame(args.rows, seed=3, problem=args.problem).to_parquet(path)
        for _ in range(args.repeats):  # interleaved, so load changes hit every candidate
            for name in names:
                runs[name].append(_fit(path, name, args.problem))
                # written after every fit: an interrupted run keeps the fits it made
                out.write_text(json.dumps(record, indent=2) + "\n")

    base_wall, base_cpu = _median(runs[BASELINE], "fit_s"), _median(runs[BASELINE], "cpu_s")
    print(
        f"{args.rows:,} rows ({args.problem}), one thread, whole pipeline fit, "
        f"median of {args.repeats}; load average {_load():.1f} now"
    )
    header = f"{'candidate':<16} {'fit s':>8} {'cpu s':>8} {'wall/hgb':>9} {'cpu/hgb':>8}"
    print(f"{header} {'(repeats)':>11} {'peak RSS':>10}  encoding")
    summary = record["summary"]
    for name, rs in runs.items():
        wall, cpu = _median(rs, "fit_s"), _median(rs, "cpu_s")
        peak = max(r["peak_bytes"] for r in rs)
        last = rs[-1]
        encoding = f"{last['encoder']}, {last['model_inputs']} inputs"
        if last["splits"]:
            encoding += f", {last['categorical_splits']:,} of {last['splits']:,} splits categorical"
        # each repeat's ratio to the baseline's fit of the same repeat (the spread)
        per_repeat = [r["cpu_s"] / b["cpu_s"] for r, b in zip(rs, runs[BASELINE], strict=True)]
        summary[name] = {
            "fit_s": wall,
            "cpu_s": cpu,
            "wall_ratio": wall / base_wall,
            "cpu_ratio": cpu / base_cpu,
            "cpu_ratio_per_repeat": per_repeat,
            "peak_bytes": peak,
        }
        spread = f"({min(per_repeat):.2f}-{max(per_repeat):.2f})" if len(rs) > 1 else ""
        print(
            f"{name:<16} {wall:8.1f} {cpu:8.1f} {wall / base_wall:8.2f}x {cpu / base_cpu:7.2f}x "
            f"{spread:>11} {peak / 2**30:8.2f} GB  {encoding}"
        )
    if "lightgbm" in summary:
        lgbm = summary["lightgbm"]
        print(
            f"lightgbm / {BASELINE} fit time: {lgbm['wall_ratio']:.2f}x wall, "
            f"{lgbm['cpu_ratio']:.2f}x CPU (goal <= 1.0); "
            f"lightgbm peak {lgbm['peak_bytes'] / 2**30:.2f} GB (goal < 4 GB)"
        )
    record["complete"] = True
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
