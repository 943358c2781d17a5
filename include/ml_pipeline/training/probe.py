"""Fit every candidate that only a fit can check, on a small sample, before any worker
trains: `iniciar_experimento`'s last check.

The built-in scikit-learn kinds are fully checked by `candidates.validate_candidate`
(their parameters are validated without data). LightGBM and XGBoost take any of their
libraries' parameters and check them only when fitting, and a custom estimator (an
import path) may fail anywhere in its own code: those are fitted on up to
`SAMPLE_ROWS` rows of the validation split (every class present) and asked to predict
(`predict_proba` too for classification). A failure raises `CandidateError` naming the
candidate, its estimator, the reason and the fix.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from include.ml_pipeline.training.candidates import OPEN_PARAMS, CandidateError
from include.ml_pipeline.training.custom import is_import_path

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from include.ml_pipeline.features import FeatureSpec
    from include.ml_pipeline.payloads import Candidate

SAMPLE_ROWS = 200


def needs_probe(candidate: Candidate) -> bool:
    """True for the candidates whose parameters only a fit checks."""
    return candidate.estimator in OPEN_PARAMS or is_import_path(candidate.estimator)


def probe_sample(frame: pd.DataFrame, spec: FeatureSpec, rows: int = SAMPLE_ROWS) -> Any:
    """Up to `rows` rows of `frame` (for classification, every class among them), as
    (X, y) in the model's input form."""
    from include.ml_pipeline.features import coerce_features

    if not spec.is_regression:
        per_class = max(rows // max(frame[spec.target].nunique(), 1), 2)
        frame = frame.groupby(spec.target, sort=False).head(per_class)
    frame = frame.head(rows)
    return coerce_features(frame, spec), frame[spec.target]


def probe_candidates(
    candidates: list[Candidate], frame: pd.DataFrame, spec: FeatureSpec, seed: int
) -> None:
    """Fit and call each candidate that `needs_probe` on a sample of `frame`."""
    from include.ml_pipeline.training.data import limit_threads
    from include.ml_pipeline.training.train import model_for

    picked = [c for c in candidates if needs_probe(c)]
    if not picked:
        return
    X, y = probe_sample(frame, spec)
    for candidate in picked:
        where = f"candidate {candidate.name!r} (estimator {candidate.estimator!r})"
        try:
            with limit_threads(1), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = model_for(candidate, spec, seed).fit(X, y)
                predicted = model.predict(X.head(5))
                if not spec.is_regression:
                    model.predict_proba(X.head(5))
        except CandidateError:
            raise
        except Exception as exc:
            raise CandidateError(
                f"{where}: the fit on a {len(X)}-row sample of the validation split failed "
                f"before any worker trained: {type(exc).__name__}: {exc}; fix the "
                "candidate's params or the estimator's code (or remove the candidate)"
            ) from exc
        if len(predicted) != 5:
            raise CandidateError(
                f"{where}: predict returned {len(predicted)} values for 5 rows; an estimator "
                "must return one prediction per row"
            )
