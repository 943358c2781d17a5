"""Training time of a LightGBM candidate against today's `hgb_deep` on the same data.

    PYTHONPATH=. nice -n 10 .local/venv/bin/python benchmarks/bench_training.py --rows 1000000

Generates the churn sample (`--rows`, binary; `--problem regression` for the numeric
target) once as Parquet, then fits each candidate's whole model (the project's
preprocessor + the estimator, as `entrenar_modelo` builds it, one thread as its default)
in its own fresh process, so each peak memory (maximum resident set size) is that fit's
alone. Prints the fit seconds (wall and CPU), the ratio LightGBM / hgb_deep and the peaks.
The goal (issue 21): LightGBM at most hgb_deep's time, peak memory under 4 GB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_FIT = """
import json, resource, sys, time, warnings
from include.ml_pipeline.data_preparation.sample_data import churn_spec, REGRESSION_TARGET
from include.ml_pipeline.features import FeatureSpec, coerce_features
from include.ml_pipeline.payloads import Candidate
from include.ml_pipeline.training.candidates import default_candidates
from include.ml_pipeline.training.data import limit_threads, read_parquet
from include.ml_pipeline.training.train import model_for

path, name, problem = sys.argv[1], sys.argv[2], sys.argv[3]
spec = churn_spec()
if problem == "regression":
    spec = FeatureSpec(REGRESSION_TARGET, spec.numeric, spec.categorical, problem_type="regression")
frame = read_parquet(path, [*spec.columns, spec.target])[0]
X, y = coerce_features(frame, spec), frame[spec.target]
candidates = {c["name"]: c for c in default_candidates(spec.problem_type)}
candidates["lightgbm"] = {"name": "lightgbm", "estimator": "lightgbm"}
model = model_for(Candidate(**candidates[name]), spec, 42)
with limit_threads(1), warnings.catch_warnings():
    warnings.simplefilter("ignore")
    cpu, wall = time.process_time(), time.perf_counter()
    model.fit(X, y)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"name": name, "fit_s": wall, "cpu_s": cpu, "peak_bytes": peak}))
"""


def _fit(path: Path, name: str, problem: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _FIT, str(path), name, problem],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--problem", choices=("binary", "regression"), default="binary")
    args = parser.parse_args()

    from include.ml_pipeline.data_preparation.sample_data import generate_churn_frame

    with tempfile.TemporaryDirectory(prefix="bench_training_") as tmp:
        path = Path(tmp) / "train.parquet"
        generate_churn_frame(args.rows, seed=3, problem=args.problem).to_parquet(path)
        results = {name: _fit(path, name, args.problem) for name in ("hgb_deep", "lightgbm")}
    print(f"{args.rows:,} rows ({args.problem}), one thread, whole pipeline fit")
    print(f"{'candidate':<10} {'fit s':>8} {'cpu s':>8} {'peak RSS':>10}")
    for name, r in results.items():
        print(f"{name:<10} {r['fit_s']:8.1f} {r['cpu_s']:8.1f} {r['peak_bytes'] / 2**30:8.2f} GB")
    ratio = results["lightgbm"]["fit_s"] / results["hgb_deep"]["fit_s"]
    print(
        f"lightgbm / hgb_deep fit time: {ratio:.2f}x (goal <= 1.0); "
        f"lightgbm peak {results['lightgbm']['peak_bytes'] / 2**30:.2f} GB (goal < 4 GB)"
    )


if __name__ == "__main__":
    main()
