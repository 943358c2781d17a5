"""One drift check of a model: feature drift (`drift.compute_drift`) plus prediction drift
when the model is at hand, and the sentence that says what drifted. The report is written
with `drift_report.write_drift_report`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from include.ml_pipeline.features import FeatureSpec
    from include.ml_pipeline.monitoring.drift import DriftReport, DriftThresholds
    from include.ml_pipeline.payloads import Champion

log = logging.getLogger(__name__)


def model_predictions(model: Any, frame: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """`prediction` and `proba_<class>` columns for `frame` (the inference log's shape); a
    regressor's `prediction` is its predicted numbers (floats)."""
    import pandas as pd

    from include.ml_pipeline.features import coerce_features

    X = coerce_features(frame, spec)
    out = {}
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(X)
        classes = [str(c) for c in model.classes_]
        out["prediction"] = [classes[i] for i in proba.argmax(axis=1)]
        for j, name in enumerate(classes):
            out[f"proba_{name}"] = proba[:, j]
    elif not hasattr(model, "classes_"):  # a regressor
        out["prediction"] = model.predict(X).astype("float64")
    else:
        out["prediction"] = [str(v) for v in model.predict(X)]
    return pd.DataFrame(out, index=frame.index)


def check_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    spec: FeatureSpec,
    thresholds: DriftThresholds | dict[str, Any] | None = None,
    *,
    model: Any = None,
) -> DriftReport:
    """Feature drift, and prediction drift when `model` is given.

    The reference is sub-sampled to `thresholds.max_rows` before scoring it. The current
    frame's own `prediction` / `proba_*` columns (inference log) are used when present;
    otherwise the model scores it too. A model that fails to score is logged and the
    report has `prediction_drift = None`, never a failed check. Without a model this is
    `compute_drift` on the features alone.
    """
    from include.ml_pipeline.monitoring.drift import DriftThresholds, compute_drift

    if not isinstance(thresholds, DriftThresholds):
        thresholds = DriftThresholds.from_dict(thresholds)
    reference_predictions = current_predictions = None
    if model is not None and len(current):
        try:
            sample = reference
            if len(reference) > thresholds.max_rows:
                sample = reference.sample(thresholds.max_rows, random_state=thresholds.seed)
            reference_predictions = model_predictions(model, sample, spec)
            reference = sample
            if "prediction" not in current.columns:
                current_predictions = model_predictions(model, current, spec)
        except Exception as exc:
            log.warning("prediction drift skipped, the model could not score: %r", exc)
            reference_predictions = current_predictions = None
    return compute_drift(
        reference,
        current,
        spec,
        thresholds,
        reference_predictions=reference_predictions,
        current_predictions=current_predictions,
    )


def drift_reason(summary: dict[str, Any], champion: Champion, source: str) -> str:
    """One sentence for the retraining run's `retrain_reason` and the notification."""
    share = float(summary.get("share_drifted") or 0.0)
    drifted = summary.get("drifted_features") or []
    text = (
        f"data drift on {champion.model_name} v{champion.version}: "
        f"{summary.get('n_drifted', 0)} of {summary.get('n_features', 0)} features drifted "
        f"({share:.0%})"
    )
    if drifted:
        text += f" [{', '.join(drifted)}]"
    shift = prediction_shift_text(summary, champion.feature_spec.target)
    if shift:
        text += f"; {shift}"
    elif summary.get("prediction_drift"):
        text += "; prediction drift"
    text += (
        f"; {summary.get('current_rows', 0)} current rows from {source} vs "
        f"{summary.get('reference_rows', 0)} reference rows"
    )
    return text


def prediction_shift_text(summary: dict[str, Any], target: str) -> str | None:
    """For a regressor (the summary's `prediction_shift`): how its predicted values moved,
    in the target's units, e.g. "predicted price: mean 3,932.80 -> 4,410.12 (+12.1%), KS
    0.214, PSI 0.180: drifted". None for a classifier or without predictions."""
    shift = summary.get("prediction_shift")
    if not shift or shift.get("reference_mean") is None or shift.get("current_mean") is None:
        return None
    before, after = shift["reference_mean"], shift["current_mean"]
    change = f" ({(after - before) / abs(before):+.1%})" if before else ""
    statistics = ", ".join(
        f"{name} {shift[key]:.3f}"
        for name, key in (("KS", "ks"), ("PSI", "psi"))
        if shift[key] is not None
    )
    verdict = "drifted" if shift["drifted"] else "within the drift thresholds"
    return (
        f"predicted {target}: mean {before:,.2f} -> {after:,.2f}{change}, {statistics}: {verdict}"
    )
