"""Deserialise, compile and verify a downloaded model version; the API runs it as a
short-lived child process, so scikit-learn never enters the server process:

    python -m include.ml_pipeline.serving.loading.compile_worker OUT_PATH MAX_ROWS FORCE_SKLEARN

It imports scikit-learn as soon as it starts (while `fetch` resolves the alias in
parallel), reads `fetch`'s JSON from stdin, and pickles to OUT_PATH the predictor (numpy +
onnxruntime objects only; None when it had to fall back to the scikit-learn pipeline: the
API then serves the pipeline from an isolated worker, `worker.py`), its verification
record, a warm-up batch and, when the version has a serving artifact, whether the
artifact's predictor reproduces the pipeline (`artifact_check`). On failure it prints
`COMPILE_RESULT {"error": ...}` and exits 1.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pickle
import sys
from typing import Any

import numpy as np  # noqa: F401  (imported early on purpose: overlaps with fetch)
import pandas as pd
import sklearn.compose
import sklearn.ensemble
import sklearn.pipeline  # noqa: F401

from include.ml_pipeline.features import FeatureSpec
from include.ml_pipeline.serving.compiled.trees import WIDE_BATCH_ROWS
from include.ml_pipeline.serving.compiled.verify import verification_batch, verify_predictor
from include.ml_pipeline.serving.loading.artifact import read_predictor
from include.ml_pipeline.serving.loading.served import ServedModel, build_served_model

MARKER = "COMPILE_RESULT "


def load_pipeline(info: dict[str, Any]) -> Any:
    """The fitted pipeline from the downloaded model file (as `mlflow.sklearn.load_model`)."""
    allowed = os.environ.get("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true").lower()
    if allowed not in ("true", "1"):
        raise RuntimeError(
            "MLFLOW_ALLOW_PICKLE_DESERIALIZATION is not true: the model file is not deserialised"
        )
    if info.get("code"):
        sys.path.insert(0, os.path.join(info["local_dir"], info["code"]))
    path, fmt = info["model_file"], info["serialization_format"]
    if fmt == "skops":
        import skops.io

        return skops.io.load(path, trusted=info.get("skops_trusted_types"))
    with open(path, "rb") as handle:
        if fmt == "cloudpickle":
            import cloudpickle

            return cloudpickle.load(handle)
        if fmt == "pickle":
            return pickle.load(handle)
    raise RuntimeError(f"unknown serialization format {fmt!r}")


def served_from_fetched(
    info: dict[str, Any], max_rows: int, force_sklearn: bool = False
) -> ServedModel:
    """The `ServedModel` (compiled and verified) for what `fetch.fetch` returned."""
    example = info.get("example")
    frame = pd.DataFrame(example["data"], columns=example["columns"]) if example else None
    return build_served_model(
        load_pipeline(info),
        FeatureSpec.from_dict(info["spec"]),
        name=info["name"],
        version=info["version"],
        alias=info["alias"],
        max_rows=max_rows,
        run_id=info["run_id"],
        source=info["source"],
        metrics=info["metrics"],
        example=frame,
        force_sklearn=force_sklearn,
    )


def compile_model(info: dict[str, Any], max_rows: int, force_sklearn: bool) -> dict[str, Any]:
    served = served_from_fetched(info, max_rows, force_sklearn)
    pipeline, spec = served.reference.pipeline, served.spec
    sample = verification_batch(pipeline, list(spec.numeric), list(spec.categorical))
    return {
        "artifact_check": _check_artifact(info.get("serving_artifact"), pipeline, sample),
        # None on the scikit-learn path: the API serves the pipeline from an isolated
        # worker (`worker.py`) and must not unpickle it, nor import the model's code
        "predictor": None if served.predictor is served.reference else served.predictor,
        "classes": served.classes,
        "predict_path": served.predict_path,
        "fallback_reason": served.fallback_reason,
        "verification": served.verification,
        "compile_seconds": served.load_seconds,
        "warmup": verification_batch(
            pipeline, list(spec.numeric), list(spec.categorical), rows=WIDE_BATCH_ROWS, seed=11
        ),
    }


def _check_artifact(artifact: dict[str, Any] | None, pipeline: Any, sample: Any) -> str | None:
    """None when there is no serving artifact or it reproduces the pipeline, else why not."""
    if not artifact:
        return None
    try:
        return verify_predictor(
            read_predictor(artifact["dir"], artifact["sha256"]), pipeline, sample
        )
    except Exception as exc:
        return f"unreadable: {exc}"


def main(argv: list[str] | None = None) -> int:
    import orjson

    out_path, max_rows, force = (argv if argv is not None else sys.argv[1:])[:3]
    raw = sys.stdin.buffer.read()
    try:
        payload = compile_model(orjson.loads(raw), int(max_rows), force == "1")
        with open(out_path, "wb") as handle:
            pickle.dump(payload, handle, protocol=pickle.HIGHEST_PROTOCOL)
        # the outcome of the artifact check, readable without unpickling anything
        sys.stdout.write(
            MARKER + orjson.dumps({"artifact_check": payload["artifact_check"]}).decode() + "\n"
        )
        sys.stdout.flush()
    except Exception as exc:
        sys.stdout.write(MARKER + orjson.dumps({"error": repr(exc)}).decode() + "\n")
        sys.stdout.flush()
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
