"""The compiled tree predictor against LightGBM's and XGBoost's own `predict`, in process.

    PYTHONPATH=. nice -n 10 .local/venv/bin/python benchmarks/bench_compiled_trees.py
        [--trees N] [--train-rows 20000] [--repeat 300]
        [--problems binary,multiclass,regression] [--rows 1,100,1000,100000]

For each library and problem type it fits the candidate as a user gets it: the `lightgbm` /
`xgboost` kind with its defaults (`training/candidates.py`: 200 rounds; `--trees` changes
only that) in the training's own pipeline (`train.build_pipeline`: the categorical columns
as codes, split by the library's native categorical splits), on the sample churn data;
compiles it (`serving/compiled/`), checks the answers equal (`verify.py`) and times, per
`--rows`, medians of `--repeat` runs (a tenth from 1,000 rows on, a hundredth from 100,000)
taken in alternation (so a busy machine slows both sides alike):

- trees: the library's `predict_proba` (`predict` for a regressor) on the preprocessed
  matrix against the compiled trees (`OnnxTrees`) on the same matrix;
- whole: the pipeline's `predict_proba` / `predict` on the frame against the compiled
  predictor on the parsed batch (preprocessing + trees), what a request costs.

The libraries run at their better of 1 thread and the threads our wide session uses
(`trees.predict_threads()`, at most 2). With `--treelite` and `treelite` + `tl2cgen` importable
(not locked: `uv pip install --target DIR treelite tl2cgen`, then PYTHONPATH), it also
times TL2cgen: C generation + gcc at load, and its predictor at 1 and 1,000 rows.
Prints a markdown table; ratio = library / compiled (> 1: compiled is faster).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("OMP_NUM_THREADS", "2")
# the compiled kernels loaded before the first timed call (the API loads them in the
# background and answers on numpy meanwhile: its steady state is what is timed here)
os.environ.setdefault("ML_PIPELINE_NUMBA_WAIT", "1")
ROWS = (1, 100, 1000, 100_000)


def fit(
    library: str,
    problem: str,
    trees: int | None,
    train_rows: int,
    threads: int,
    test_rows: int = 1000,
):
    """(pipeline, spec, test frame of `test_rows` rows) for `library` and `problem` on the
    churn sample: the `library` candidate kind with its defaults (`trees`: its
    `n_estimators`, None: the kind's own), fitted as the training fits it."""
    from threadpoolctl import threadpool_limits

    from include.ml_pipeline.data_preparation.sample_data import (
        CATEGORICAL_COLUMNS,
        NUMERIC_COLUMNS,
        REGRESSION_TARGET,
        churn_spec,
        generate_churn_frame,
    )
    from include.ml_pipeline.features import FeatureSpec, coerce_features
    from include.ml_pipeline.training.candidates import make_estimator
    from include.ml_pipeline.training.train import build_pipeline

    regression = problem == "regression"
    frame = generate_churn_frame(
        train_rows + test_rows, seed=3, problem="regression" if regression else "binary"
    )
    spec = churn_spec()
    if regression:
        spec = FeatureSpec(
            REGRESSION_TARGET, list(NUMERIC_COLUMNS), list(CATEGORICAL_COLUMNS), "regression"
        )
    elif problem == "multiclass":  # predict the region from the rest
        frame[spec.target] = frame["region"]
        spec = FeatureSpec(
            spec.target, spec.numeric, [c for c in spec.categorical if c != "region"]
        )
    target = frame[spec.target].head(train_rows)
    # the candidate as a user gets it: the kind's defaults (`candidates.make_estimator`)
    # in the training's own pipeline (`build_pipeline`: native categorical splits)
    estimator = make_estimator(
        {
            "name": library,
            "estimator": library,
            "params": {} if trees is None else {"n_estimators": trees},
        },
        3,
        "regression" if regression else problem,
    )
    pipeline = build_pipeline(spec, estimator)
    with threadpool_limits(limits=threads):
        pipeline.fit(coerce_features(frame.head(train_rows), spec), target)
    estimator.set_params(n_jobs=threads)
    return pipeline, spec, coerce_features(frame.tail(test_rows), spec)


def median_pair(first, second, repeat: int, clock=time.perf_counter) -> tuple[float, float]:
    """Medians (ms of `clock`: wall time, or e.g. `time.process_time`) of two callables
    timed in alternation."""
    a, b = [], []
    for _ in range(repeat):
        started = clock()
        first()
        a.append(clock() - started)
        started = clock()
        second()
        b.append(clock() - started)
    return statistics.median(a) * 1000, statistics.median(b) * 1000


def _nothing() -> None:
    return None


def time_cells(pipeline, compiled, x, frame, batch, repeat: int, threads: int):
    """(library, compiled trees, whole pipeline, compiled predictor) medians in ms; the
    library at its better of 1 and `threads` threads (OpenMP wake-ups cost a 1-row call
    more than they save)."""
    est = pipeline.steps[1][1]
    regression = not hasattr(est, "classes_")
    own = est.predict if regression else est.predict_proba
    whole = pipeline.predict if regression else pipeline.predict_proba
    best_lib, best_pipe = float("inf"), float("inf")
    ours = comp = float("inf")
    for n_jobs in sorted({1, threads}):
        est.set_params(n_jobs=n_jobs)
        lib_ms, ours_ms = median_pair(partial(own, x), partial(compiled.proba_fn, x), repeat)
        pipe_ms, comp_ms = median_pair(
            partial(whole, frame), partial(compiled.predict, batch), repeat
        )
        best_lib, best_pipe = min(best_lib, lib_ms), min(best_pipe, pipe_ms)
        ours, comp = min(ours, ours_ms), min(comp, comp_ms)
    est.set_params(n_jobs=threads)
    return best_lib, ours, best_pipe, comp


def treelite_cells(est, library: str, x, repeat: int, reference) -> dict:
    """TL2cgen: seconds to generate C and compile it, and its predict medians (ms)."""
    import tl2cgen
    import treelite

    if library == "lightgbm":
        model = treelite.frontend.from_lightgbm(est.booster_)
    else:
        model = treelite.frontend.from_xgboost(est.get_booster())
    with tempfile.TemporaryDirectory(prefix="bench-tl2cgen-") as tmp:
        started = time.perf_counter()
        lib = str(Path(tmp) / "model.so")
        tl2cgen.export_lib(model, toolchain="gcc", libpath=lib, params={"parallel_comp": 1})
        predictor = tl2cgen.Predictor(lib, nthread=1)
        compile_s = time.perf_counter() - started
        out = {"compile_s": compile_s}
        for rows in (1, 1000):
            matrix = tl2cgen.DMatrix(x[:rows])
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                predictor.predict(matrix)
                times.append(time.perf_counter() - started)
            out[rows] = statistics.median(times) * 1000
        got = predictor.predict(tl2cgen.DMatrix(x)).reshape(len(x), -1)
        if got.shape[1] == 1 and reference.shape[1] == 2:  # binary: P(class 1) only
            reference = reference[:, 1:]
        out["max_diff"] = float(abs(got - reference).max())
    return out


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from include.ml_pipeline.serving.batch import batch_from_frame
    from include.ml_pipeline.serving.compiled.compiler import compile_pipeline
    from include.ml_pipeline.serving.compiled.trees import predict_threads
    from include.ml_pipeline.serving.compiled.verify import verification_batch, verify_predictor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--trees", type=int, default=None, help="boosting rounds (default: the kind's, 200)"
    )
    parser.add_argument("--train-rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=300, help="timed runs per cell")
    parser.add_argument("--libraries", default="lightgbm,xgboost")
    parser.add_argument("--problems", default="binary,multiclass,regression")
    parser.add_argument("--treelite", action="store_true", help="also time TL2cgen")
    parser.add_argument("--rows", default=",".join(str(r) for r in ROWS), help="rows per call")
    args = parser.parse_args(argv)
    sizes = [int(r) for r in args.rows.split(",")]
    threads = predict_threads()
    lines = [
        "| model | rows | library ms | compiled ms | ratio | whole: pipeline ms | "
        "whole: compiled ms | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    extra = []
    for library in args.libraries.split(","):
        for problem in args.problems.split(","):
            pipeline, spec, test = fit(
                library, problem, args.trees, args.train_rows, threads, max(sizes)
            )
            est = pipeline.steps[1][1]
            compiled = compile_pipeline(pipeline, spec.numeric, spec.categorical)
            batch = batch_from_frame(test, spec.numeric, spec.categorical)
            problem_found = verify_predictor(
                compiled, pipeline, verification_batch(pipeline, spec.numeric, spec.categorical)
            )
            if problem_found:
                raise SystemExit(f"{library} {problem}: compiled != library: {problem_found}")
            x = np.ascontiguousarray(pipeline.steps[0][1].transform(test), dtype=np.float64)
            trees_fn = compiled.proba_fn
            for rows in sizes:
                n = args.repeat if rows < 1000 else max(20, args.repeat // 10)
                if rows >= 100_000:
                    n = max(5, args.repeat // 100)
                lib_ms, ours_ms, pipe_ms, comp_ms = time_cells(
                    pipeline, compiled, x[:rows], test.head(rows), batch.slice(0, rows), n, threads
                )
                lines.append(
                    f"| {library} {problem} ({compiled.estimator_path}) | {rows:,} | "
                    f"{lib_ms:.3f} | {ours_ms:.3f} | {lib_ms / ours_ms:.1f}x | "
                    f"{pipe_ms:.3f} | {comp_ms:.3f} | {pipe_ms / comp_ms:.1f}x |"
                )
                print(lines[-1], flush=True)
            if args.treelite:
                own = est.predict if problem == "regression" else est.predict_proba
                reference = np.asarray(own(x), dtype=np.float64).reshape(len(x), -1)
                try:
                    tl = treelite_cells(est, library, x, args.repeat, reference)
                except ImportError as exc:
                    extra.append(f"TL2cgen not importable ({exc})")
                    continue
                ours_1 = median_pair(partial(trees_fn, x[:1]), _nothing, args.repeat)[0]
                ours_1000 = median_pair(partial(trees_fn, x), _nothing, 30)[0]
                extra.append(
                    f"| {library} {problem} | {tl['compile_s']:.2f} s | {tl[1]:.3f} | "
                    f"{ours_1:.3f} | {tl[1000]:.3f} | {ours_1000:.3f} | {tl['max_diff']:.2g} |"
                )
                print(extra[-1], flush=True)
    rounds = args.trees or "the kind's default"
    print(f"\n{rounds} rounds, {threads} thread(s); medians; ratio = library / compiled\n")
    print("\n".join(lines))
    if extra:
        print("\nTL2cgen (gcc at load) against the compiled trees, ms:\n")
        print(
            "| model | C + gcc at load | TL2cgen 1 row | ours 1 row | TL2cgen 1,000 | "
            "ours 1,000 | max diff vs library |"
        )
        print("|---|---|---|---|---|---|---|")
        print("\n".join(extra))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
