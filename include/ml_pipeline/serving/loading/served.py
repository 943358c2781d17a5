"""The served model: everything a request needs for one model version (`ServedModel`),
and how it is built from a fitted pipeline (compile, verify against the pipeline, warm up).

A `ServedModel` is built once per (re)load; the app swaps one reference to it, so a
request sees either the old or the new model, never a mix.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from include.ml_pipeline.features import FeatureSpec
from include.ml_pipeline.serving.batch import batch_from_frame, concat_batches
from include.ml_pipeline.serving.compiled.compiler import compile_pipeline
from include.ml_pipeline.serving.compiled.predictor import SklearnPredictor, UnsupportedPipeline
from include.ml_pipeline.serving.compiled.verify import (
    PROBA_TOLERANCE,
    verification_batch,
    verify_predictor,
)
from include.ml_pipeline.serving.parsing import FeatureParser, parser_for

log = logging.getLogger("ml_pipeline.serving")


@dataclass
class ServedModel:
    """Everything a request needs, built once per (re)load."""

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
    #: The version's input contract (`registry.contract`: columns, kinds, categories seen,
    #: label type and set), None when the registry holds none for it.
    contract: dict[str, Any] | None = None

    def info(self) -> dict[str, Any]:
        """The `GET /model` document (with `worker` when an isolated worker predicts)."""
        describe = getattr(self.predictor, "describe", None)
        worker = {"worker": describe()} if describe is not None else {}
        # tree ensembles: how large batches are scored now (numpy or numba leaf masks)
        large = getattr(getattr(self.predictor, "proba_fn", None), "large_batch_path", None)
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
            "contract": self.contract,
            "predict_path": self.predict_path,
            "fallback_reason": self.fallback_reason,
            "large_batch_path": large() if large is not None else None,
            "verification": self.verification,
            "loaded_at": self.loaded_at,
            "load_seconds": round(self.load_seconds, 3),
            **worker,
        }


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
        parser=parser_for(predictor, numeric, categorical, max_rows),
        predictor=predictor,
        predict_path=path,
        fallback_reason=reason,
        loaded_at=datetime.now(UTC).isoformat(),
        load_seconds=time.perf_counter() - started,
        verification={
            "rows": sample.rows,
            "proba_tolerance": PROBA_TOLERANCE,
            "passed": predictor is not fallback,
        },
        reference=fallback,
    )
