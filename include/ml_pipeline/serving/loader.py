"""Load the model version an alias points to, fully, before it is served.

`load_served_model` loads in the calling process (deployment checks, benchmarks) with
the very functions the API server runs in child processes (`isolated.py`): `fetch.fetch`
(MLflow) and `compile_worker.served_from_fetched` (scikit-learn). Either runs at startup and on
`/admin/reload`, never per request. It resolves `models:/<name>@<alias>` to a concrete
version, downloads and deserialises the scikit-learn pipeline, reads the feature spec
(model metadata `feature_spec`, else the signature), the run's metrics and the input
example, compiles the numpy fast path and verifies it against the pipeline on the input
example plus a synthetic sample. The result is an immutable `ServedModel`; the app swaps
one reference to it, so a request sees either the old or the new model, never a mix.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from include.ml_pipeline.features import FeatureSpec
from include.ml_pipeline.serving.batch import batch_from_frame, concat_batches
from include.ml_pipeline.serving.compiler import compile_pipeline
from include.ml_pipeline.serving.errors import UnsupportedPipeline
from include.ml_pipeline.serving.parsing import FeatureParser
from include.ml_pipeline.serving.predictor import SklearnPredictor
from include.ml_pipeline.serving.verify import (
    PROBA_TOLERANCE,
    verification_batch,
    verify_predictor,
)

log = logging.getLogger("ml_pipeline.serving")


class ModelLoadError(RuntimeError):
    """The alias does not resolve, or the model cannot be loaded or served."""


@dataclass
class ServedModel:
    """Everything a request needs, built once per (re)load and then only read."""

    name: str
    version: str
    alias: str
    run_id: str | None
    source: str | None
    metrics: dict[str, float]
    spec: FeatureSpec
    classes: list[Any]
    parser: FeatureParser
    predictor: Any
    predict_path: str
    fallback_reason: str | None
    loaded_at: str
    load_seconds: float
    verification: dict[str, Any] = field(default_factory=dict)
    reference: Any = None  # the SklearnPredictor, used if the fast path ever raises

    @property
    def version_number(self) -> float:
        try:
            return float(self.version)
        except ValueError:
            return float("nan")

    def info(self) -> dict[str, Any]:
        """The `GET /model` document."""
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "model_uri": f"models:/{self.name}/{self.version}",
            "run_id": self.run_id,
            "source": self.source,
            "metrics": self.metrics,
            "classes": self.classes,
            "feature_spec": self.spec.to_dict(),
            "predict_path": self.predict_path,
            "fallback_reason": self.fallback_reason,
            "verification": self.verification,
            "loaded_at": self.loaded_at,
            "load_seconds": round(self.load_seconds, 3),
        }


def _spec_from_signature(model_meta: Any) -> FeatureSpec:
    schema = model_meta.get_input_schema() if model_meta is not None else None
    if schema is None:
        raise ModelLoadError("the model has neither a 'feature_spec' metadata nor a signature")
    numeric, categorical = [], []
    for spec in schema.inputs:
        type_name = str(getattr(spec.type, "name", spec.type)).lower()
        if type_name in ("double", "float", "long", "integer"):
            numeric.append(spec.name)
        else:
            categorical.append(spec.name)
    return FeatureSpec(target="", numeric=numeric, categorical=categorical)


def build_served_model(
    pipeline: Any,
    spec: FeatureSpec,
    *,
    name: str,
    version: str,
    alias: str,
    max_rows: int,
    run_id: str | None = None,
    source: str | None = None,
    metrics: dict[str, float] | None = None,
    example: Any = None,
    force_sklearn: bool = False,
) -> ServedModel:
    """Compile + verify the predictor for a fitted pipeline and wrap it as a ServedModel.

    `example` is an optional frame (e.g. the logged input example) added to the
    verification sample. Falls back to the sklearn pipeline when compilation or
    verification fails (the reason is logged and kept in `fallback_reason`).
    """
    from include.ml_pipeline.features import coerce_features

    started = time.perf_counter()
    numeric, categorical = list(spec.numeric), list(spec.categorical)
    sample = verification_batch(pipeline, numeric, categorical)
    if example is not None:
        try:
            coerced = coerce_features(example, spec)
            sample = concat_batches(batch_from_frame(coerced, numeric, categorical), sample)
        except Exception as exc:
            log.warning("input example not usable for verification: %s", exc)
    fallback = SklearnPredictor(pipeline)
    predictor: Any = fallback
    reason = "forced" if force_sklearn else None
    if not force_sklearn:
        try:
            compiled = compile_pipeline(pipeline, numeric, categorical)
            reason = verify_predictor(compiled, pipeline, sample)
            if reason is None:
                predictor = compiled
        except UnsupportedPipeline as exc:
            reason = f"unsupported pipeline: {exc}"
        except Exception as exc:
            reason = f"compilation failed: {exc!r}"
    if reason:
        log.warning("serving %s v%s with the sklearn pipeline: %s", name, version, reason)
    path = "sklearn" if predictor is fallback else f"compiled:{predictor.estimator_path}"
    # Warm up both the 1-row and the batch code paths.
    one = sample.slice(0, 1)
    for _ in range(3):
        predictor.predict(one)
        predictor.predict(sample)
    return ServedModel(
        name=name,
        version=str(version),
        alias=alias,
        run_id=run_id,
        source=source,
        metrics=dict(metrics or {}),
        spec=spec,
        classes=fallback.classes,
        parser=FeatureParser(numeric, categorical, max_rows),
        predictor=predictor,
        predict_path=path,
        fallback_reason=reason,
        loaded_at=datetime.now(UTC).isoformat(),
        load_seconds=time.perf_counter() - started,
        verification={"rows": sample.rows, "proba_tolerance": PROBA_TOLERANCE,
                      "passed": predictor is not fallback},
        reference=fallback,
    )


def load_served_model(
    tracking_uri: str, name: str, alias: str, *, max_rows: int = 10_000,
    force_sklearn: bool = False,
) -> ServedModel:
    """Resolve `models:/<name>@<alias>` now and return the fully built `ServedModel`.

    Raises `ModelLoadError` naming what failed (alias unknown, artifact missing, ...).
    The service trusts its own registry: `MLFLOW_ALLOW_PICKLE_DESERIALIZATION` defaults
    to true in this process (MLflow 3 refuses to deserialise skops/pickle models without it).
    """
    from include.ml_pipeline.serving.compile_worker import served_from_fetched
    from include.ml_pipeline.serving.fetch import fetch

    started = time.perf_counter()
    os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    info = fetch(tracking_uri, name, alias)  # what the API's fetch child runs
    try:
        served = served_from_fetched(info, max_rows, force_sklearn)
    except Exception as exc:
        raise ModelLoadError(f"cannot load models:/{name}@{alias}: {exc!r}") from exc
    served.load_seconds = time.perf_counter() - started
    log.info("loaded %s v%s (%s) in %.2fs", name, served.version, served.predict_path,
             served.load_seconds)
    return served


def labels_equal(a: list[Any], b: list[Any]) -> bool:
    """Label lists equal after JSON round-trips (numpy scalars vs Python values)."""
    return [np.asarray(x).item() for x in a] == [np.asarray(x).item() for x in b]
