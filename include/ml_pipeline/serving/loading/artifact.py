"""The serving artifact: a model version's compiled predictor stored as plain data next to
the version, so the model API can start on numpy + onnxruntime alone instead of first
deserialising and compiling the pipeline (~1.5 s of CPU).

The release step (`publish`, before promotion) writes `predictor.json` (classes, width,
preprocessing blocks, link parameters) and, for tree ensembles (HistGradientBoosting,
LightGBM, XGBoost), `trees.onnx`; checks the
read-back predictor against the pipeline; logs both to the version's run and records
their sha256 in the version's `serving_artifact` tag. Nothing in them is executed or
unpickled, and `read_predictor` refuses files whose digest differs from the tag.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from include.ml_pipeline.serving.compiled.predictor import (
    CategoricalBlock,
    CompiledPredictor,
    LinearValue,
    LogisticLink,
    NumericBlock,
    UnsupportedPipeline,
)
from include.ml_pipeline.serving.compiled.trees import OnnxTrees
from include.ml_pipeline.serving.compiled.verify import verification_batch, verify_predictor

FORMAT = "ml_pipeline.compiled_predictor/1"
TAG = "serving_artifact"
DOCUMENT = "predictor.json"
TREES = "trees.onnx"
#: the model's feature spec (`FeatureSpec.to_dict`), so the API can start from the artifact
#: without reading the MLflow model (`registry_rest.py`); digest-checked like the others
SPEC_FILE = "feature_spec.json"
log = logging.getLogger("ml_pipeline.serving")


class ArtifactError(RuntimeError):
    """The serving artifact is unreadable, altered or of an unknown format."""


def _floats(values: np.ndarray | None) -> list[float] | None:
    return None if values is None else np.asarray(values, dtype=np.float64).tolist()


def _array(values: list | None) -> np.ndarray | None:
    return None if values is None else np.asarray(values, dtype=np.float64)


def _block_document(block: Any) -> dict[str, Any]:
    if isinstance(block, NumericBlock):
        return {
            "kind": "numeric",
            "positions": block.positions.tolist(),
            "fill": _floats(block.fill),
            "mean": _floats(block.mean),
            "scale": _floats(block.scale),
        }
    if isinstance(block, CategoricalBlock):
        return {
            "kind": "categorical",
            "positions": list(block.positions),
            "fill": list(block.fill),
            # JSON keys are strings: the None (missing) entry is kept apart
            "lookups": [
                {k: v for k, v in lookup.items() if k is not None} for lookup in block.lookups
            ],
            "missing": [lookup[None] for lookup in block.lookups],
            "widths": list(block.widths),
            "unknown": list(block.unknown),
            "ordinal": block.ordinal,
        }
    raise UnsupportedPipeline(f"no artifact form for block {type(block).__name__}")


def _block_from(document: dict[str, Any]) -> Any:
    if document["kind"] == "numeric":
        return NumericBlock(
            np.asarray(document["positions"], dtype=np.intp),
            _array(document["fill"]),
            _array(document["mean"]),
            _array(document["scale"]),
        )
    if document["kind"] == "categorical":
        lookups = []
        for lookup, missing in zip(document["lookups"], document["missing"], strict=True):
            lookups.append({**lookup, None: missing})
        return CategoricalBlock(
            list(document["positions"]),
            list(document["fill"]),
            lookups,
            list(document["widths"]),
            list(document["unknown"]),
            bool(document.get("ordinal", False)),
        )
    raise ArtifactError(f"{DOCUMENT}: unknown block kind {document['kind']!r}")


def write_predictor(predictor: Any, folder: str | Path) -> dict[str, str]:
    """Write `predictor` into `folder`; returns the sha256 of each file written.

    Raises `UnsupportedPipeline` for a predictor with no plain-data form (the sklearn
    fallback, or an estimator called through scikit-learn such as a random forest)."""
    if not isinstance(predictor, CompiledPredictor):
        raise UnsupportedPipeline(f"{type(predictor).__name__} has no artifact form")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    link = predictor.proba_fn
    files: dict[str, bytes] = {}
    estimator: dict[str, Any]
    if isinstance(link, LogisticLink):
        estimator = {
            "kind": "logistic",
            "coef": _floats(link.coef),
            "intercept": _floats(link.intercept),
            "binary": link.binary,
        }
    elif isinstance(link, LinearValue):
        estimator = {
            "kind": "linear",
            "coef": _floats(link.coef),
            "intercept": link.intercept,
        }
    elif isinstance(link, OnnxTrees):
        estimator = {
            "kind": "onnx_trees",
            "k": link.k,
            "baseline": _floats(link.baseline),
            "file": TREES,
            "regression": link.regression,
            # LightGBM / XGBoost (`compiled/boosters.py`); absent means the defaults
            "float32": link.float32,
            "zero_as_missing": list(link.zero_as_missing),
            "ordered_sum": link.ordered_sum,
        }
        files[TREES] = link.model_bytes
    else:
        raise UnsupportedPipeline(f"no artifact form for {type(link).__name__}")
    document = {
        "format": FORMAT,
        "classes": predictor.classes,
        "width": predictor.width,
        "estimator_path": predictor.estimator_path,
        "regression": predictor.regression,
        "blocks": [_block_document(b) for b in predictor.blocks],
        "estimator": estimator,
    }
    files[DOCUMENT] = json.dumps(document, allow_nan=False).encode()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def read_predictor(folder: str | Path, sha256: dict[str, str] | None = None) -> CompiledPredictor:
    """The predictor in `folder`; with `sha256`, every listed file must match its digest."""
    folder = Path(folder)

    def read(name: str) -> bytes:
        path = folder / name
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ArtifactError(f"serving artifact file {path} is not readable: {exc}") from exc
        if sha256 is not None:
            expected = sha256.get(name)
            if expected is None or hashlib.sha256(data).hexdigest() != expected:
                raise ArtifactError(
                    f"serving artifact file {path} does not match the "
                    f"sha256 recorded in the version's {TAG!r} tag"
                )
        return data

    try:
        document = json.loads(read(DOCUMENT))
    except ValueError as exc:
        raise ArtifactError(f"{folder / DOCUMENT} is not JSON: {exc}") from exc
    if document.get("format") != FORMAT:
        raise ArtifactError(
            f"{folder / DOCUMENT} has format {document.get('format')!r}; this API reads {FORMAT!r}"
        )
    estimator = document["estimator"]
    if estimator["kind"] == "logistic":
        link: Any = LogisticLink(
            np.asarray(estimator["coef"]),
            np.asarray(estimator["intercept"]),
            bool(estimator["binary"]),
        )
    elif estimator["kind"] == "linear":
        link = LinearValue(np.asarray(estimator["coef"]), float(estimator["intercept"]))
    elif estimator["kind"] == "onnx_trees":
        link = OnnxTrees(
            read(estimator["file"]),
            int(estimator["k"]),
            np.asarray(estimator["baseline"], dtype=np.float64),
            bool(estimator.get("regression", False)),
            float32=bool(estimator.get("float32", False)),
            zero_as_missing=tuple(int(i) for i in estimator.get("zero_as_missing") or ()),
            ordered_sum=estimator.get("ordered_sum"),
        )
    else:
        raise ArtifactError(f"{folder / DOCUMENT}: unknown estimator {estimator['kind']!r}")
    return CompiledPredictor(
        [_block_from(b) for b in document["blocks"]],
        int(document["width"]),
        link,
        list(document["classes"]),
        estimator_path=document["estimator_path"],
        regression=bool(document.get("regression", False)),
    )


def publish(
    client: Any,
    name: str,
    version: str,
    run_id: str | None,
    predictor: Any,
    pipeline: Any,
    sample: Any,
    spec: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Write, read back, verify and log the serving artifact of `name` v`version` (with
    `spec`, the model's feature spec as `SPEC_FILE`), and tag the version with where it
    is. Returns the tag's content, or None (logged) when the predictor has no artifact
    form or the version has no run to hold it. Raises `ArtifactError` when the read-back
    predictor disagrees with the pipeline."""
    if run_id is None:
        log.warning("%s v%s has no run: no serving artifact", name, version)
        return None
    with tempfile.TemporaryDirectory(prefix="serving-artifact-") as tmp:
        try:
            digests = write_predictor(predictor, tmp)
        except UnsupportedPipeline as exc:
            log.warning("%s v%s: no serving artifact (%s)", name, version, exc)
            return None
        problem = verify_predictor(read_predictor(tmp, digests), pipeline, sample)
        if problem is not None:
            raise ArtifactError(
                f"the serving artifact of {name} v{version} does not "
                f"reproduce the pipeline: {problem}"
            )
        if spec is not None:
            data = json.dumps(spec, sort_keys=True).encode()
            (Path(tmp) / SPEC_FILE).write_bytes(data)
            digests[SPEC_FILE] = hashlib.sha256(data).hexdigest()
        path = f"serving/v{version}"
        client.log_artifacts(run_id, tmp, artifact_path=path)
    tag = {"format": FORMAT, "uri": f"runs:/{run_id}/{path}", "sha256": digests}
    client.set_model_version_tag(name, str(version), TAG, json.dumps(tag, sort_keys=True))
    return tag


def publish_served(tracking_uri: str, served: Any) -> dict[str, Any]:
    """`publish` for a `ServedModel` built by `load.load_served_model` (the release
    step). Never blocks a release: without an artifact (no plain-data form, or a failed
    read-back check, logged) the API compiles at load instead; the result says which."""
    from include.ml_pipeline.registry.mlflow_setup import configure_mlflow

    pipeline = served.reference.pipeline
    sample = verification_batch(
        pipeline, list(served.spec.numeric), list(served.spec.categorical), seed=13
    )
    try:
        tag = publish(
            configure_mlflow(tracking_uri),
            served.name,
            served.version,
            served.run_id,
            served.predictor,
            pipeline,
            sample,
            served.spec.to_dict(),
        )
    except ArtifactError as exc:
        log.error("%s", exc)
        return {"published": False, "reason": str(exc)}
    if tag is None:
        return {"published": False, "reason": f"no plain-data form for {served.predict_path}"}
    return {"published": True, **tag}
