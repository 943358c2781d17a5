"""CPU time of one model-API request in process: parse / preprocess / trees, before and
after a change, for every compiled tree family.

    PYTHONPATH=. nice -n 10 .local/venv/bin/python benchmarks/bench_request_cpu.py
        [--repeat 200] [--before main] [--models hgb_classifier,hgb_regressor,lightgbm,xgboost]

For each model (the HistGradientBoosting churn classifier and `hgb_deep` regressor of
`bench_model_api.py`, and its LightGBM and XGBoost binary classifiers: the candidate kinds
with their defaults, native categorical splits, `bench_compiled_trees.fit`; all fitted on
20,000 sample rows) and each request size
(1 / 100 / 1,000 rows of a `dataframe_split` body), it times, in alternation so that a
busy machine slows both sides alike:

- parse: `FeatureParser.parse_json_body` of this tree against the one at git ref
  `--before` (loaded from `git show`);
- preprocess: the compiled predictor's `transform` (the same code on both sides) of each
  side's batch: the "after" parser is built as the API builds it (`parsing.parser_for`:
  the categories the encoders know decoded to the encoders' own strings);
- trees: the compiled estimator on the preprocessed matrix; "before" is, by
  `--trees-before`, the onnxruntime path alone (`onnx`: `trees.MASK_ROWS` set out of reach,
  the leaf masks off) or the numpy leaf masks (`numpy`: the numba kernel off, what `main`
  ran before 2026-12-04 for LightGBM and XGBoost models with categorical columns, whose
  codes the kernel did not bin); "after" what the predictor does now (the numba kernel
  loaded before timing: `ML_PIPELINE_NUMBA_WAIT=1`);
- render: the `/invocations` answer's body (`routes.render_invocations`) of the prediction;
- request: the whole request as the route runs it, in one timed call: parse, predict
  (preprocess, trees, labels), render. Not the sum of the parts: it also pays what each
  part leaves to the next (caches, freed memory the allocator hands back).

Times are CPU seconds of the whole process (`time.process_time`: onnxruntime's second
thread included), medians of `--repeat` runs (a tenth of them at 1,000 rows, at least 30),
with the garbage collector's thresholds the API sets (`serving/api/__main__.py`), so that
parsing pays the collections it pays there.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import subprocess
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
ROWS = (1, 100, 1000)
PARSING = "include/ml_pipeline/serving/parsing.py"


def parser_module_at(ref: str):
    """`serving/parsing.py` as it is at git `ref`, imported under another name."""
    source = subprocess.run(
        ["git", "show", f"{ref}:{PARSING}"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    folder = Path(tempfile.mkdtemp(prefix="bench-request-cpu-"))
    path = folder / "parsing_before.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("parsing_before", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # msgspec resolves the module's annotations through it
    spec.loader.exec_module(module)
    return module


def models(names: list[str]):
    """(name, pipeline, spec) per requested model."""
    from bench_compiled_trees import fit

    from include.ml_pipeline.serving.compiled.trees import predict_threads
    from tests.support.models import fit_pipeline, regression_pipeline, training_frame

    for name in names:
        if name == "hgb_classifier":
            frame, spec = training_frame(20_000, seed=3)
            yield name, fit_pipeline(frame, spec, "hgb", seed=3), spec
        elif name == "hgb_regressor":
            pipeline, spec = regression_pipeline("hgb_deep", rows=20_000, seed=3)
            yield name, pipeline, spec
        elif name in ("lightgbm", "xgboost"):
            pipeline, spec, _ = fit(name, "binary", None, 20_000, predict_threads())
            yield name, pipeline, spec
        else:
            raise SystemExit(f"unknown model {name!r}")


def _nothing() -> None:
    return None


def cpu_pair(first, second, repeat: int) -> tuple[float, float]:
    """Median process CPU ms of two callables timed in alternation."""
    from bench_compiled_trees import median_pair

    return median_pair(first, second, repeat, clock=time.process_time)


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from include.ml_pipeline.data_preparation.sample_data import generate_churn_frame
    from include.ml_pipeline.deployment.api_client import split_payload
    from include.ml_pipeline.serving import parsing
    from include.ml_pipeline.serving.api.routes import render_invocations
    from include.ml_pipeline.serving.compiled import trees as trees_module
    from include.ml_pipeline.serving.compiled.compiler import compile_pipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--before", default="main", help="git ref of the 'before' parser")
    parser.add_argument("--models", default="hgb_classifier,hgb_regressor,lightgbm,xgboost")
    parser.add_argument(
        "--trees-before",
        choices=("onnx", "numpy"),
        default="onnx",
        help="the 'before' trees: onnxruntime alone, or the numpy leaf masks",
    )
    args = parser.parse_args(argv)
    gc.set_threshold(50_000, 20, 100)  # as the API's process runs
    before = parser_module_at(args.before)
    mask_rows = trees_module.MASK_ROWS
    lines = [
        "| model (path) | rows | parse before | parse after | preprocess before | "
        "preprocess after | trees before | trees after | render | total before | "
        "total after | ratio | request |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, pipeline, spec in models(args.models.split(",")):
        compiled = compile_pipeline(pipeline, spec.numeric, spec.categorical)
        frame = generate_churn_frame(max(ROWS), seed=11)[spec.columns]
        # as the API builds it: with the categories the encoders know (`parser_for`)
        new = parsing.parser_for(compiled, list(spec.numeric), list(spec.categorical), 10_000)
        old = before.FeatureParser(spec.numeric, spec.categorical, 10_000)
        for rows in ROWS:
            body = split_payload(frame.head(rows))
            batch = new.parse_json_body(body)
            old_batch = old.parse_json_body(body)
            assert np.array_equal(batch.numeric, old_batch.numeric, equal_nan=True)
            assert batch.categorical == old_batch.categorical
            x = compiled.transform(batch)
            trees = compiled.proba_fn
            trees(x)  # the leaf masks, where they apply, are built at the first large batch

            def onnx_only(x=x, trees=trees) -> None:
                trees_module.MASK_ROWS = 1 << 62
                try:
                    trees(x)
                finally:
                    trees_module.MASK_ROWS = mask_rows

            def numpy_masks(x=x, trees=trees) -> None:
                masks = trees.masks() if hasattr(trees, "masks") else None
                if masks is None:
                    trees(x)
                    return
                known = masks.__dict__.get("_compiled")
                masks._compiled = False  # the numpy leaf masks answer
                try:
                    trees(x)
                finally:
                    masks.__dict__["_compiled"] = known

            n = args.repeat if rows < 1000 else max(30, args.repeat // 10)
            parse_before, parse_after = cpu_pair(
                partial(old.parse_json_body, body), partial(new.parse_json_body, body), n
            )
            # the same code on both sides, on each parser's batch (the strings it decoded)
            preprocess_before, preprocess = cpu_pair(
                partial(compiled.transform, old_batch), partial(compiled.transform, batch), n
            )
            before_trees = onnx_only if args.trees_before == "onnx" else numpy_masks
            trees_before, trees_after = cpu_pair(before_trees, partial(trees, x), n)
            result = compiled.predict(batch)

            def request(body=body, compiled=compiled, new=new) -> bytes:
                return render_invocations(None, compiled.predict(new.parse_json_body(body)))

            render, whole = cpu_pair(partial(render_invocations, None, result), request, n)
            total_before = parse_before + preprocess_before + trees_before + render
            total_after = parse_after + preprocess + trees_after + render
            lines.append(
                f"| {name} ({compiled.estimator_path}) | {rows:,} | {parse_before:.3f} | "
                f"{parse_after:.3f} | {preprocess_before:.3f} | {preprocess:.3f} | "
                f"{trees_before:.3f} | "
                f"{trees_after:.3f} | {render:.3f} | {total_before:.3f} | {total_after:.3f} | "
                f"{total_before / total_after:.2f}x | {whole:.3f} |"
            )
            print(lines[-1], flush=True)
    before_trees = {"onnx": "onnxruntime", "numpy": "numpy leaf masks"}[args.trees_before]
    print(f"\nprocess CPU ms, medians; before = parser at {args.before}, {before_trees} trees\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
