"""Data drift and prediction drift between a reference frame and a current frame.

The reference is the data the model was trained on; the current frame is the recent
inference log (`read_inference_log`) or a new data batch. Only scipy and numpy do the
statistics: they are stable, fast and already in the image, whereas drift frameworks
move their APIs between minor releases (Evidently 0.7 removed its test-suite API).

Per feature
-----------
* numeric: two-sample Kolmogorov-Smirnov test (`scipy.stats.ks_2samp`) on the non-missing
  values, and the Population Stability Index over quantile bins of the reference
  (`psi_bins` bins, deduplicated for discrete columns, plus one bin for missing values);
* categorical: chi-square test of homogeneity (`scipy.stats.chi2_contingency`) on the
  category counts of both frames, where missing values and categories never seen in the
  reference are categories of their own, and PSI over the same categories.

PSI = sum((q - p) * ln(q / p)) with the reference share p and current share q of each bin;
shares are clipped at `PSI_EPSILON` (1e-4) so an empty bin adds a finite amount.

Decision rule (all thresholds are arguments, meant to be Airflow Params)
------------------------------------------------------------------------
A feature is **drifted** when its change is both *significant* and *material*:

* significant: its p-value is below `alpha` after a Bonferroni correction across the
  features tested (`alpha / n_features`; `correction="holm"` or `"none"` are available).
  Bonferroni keeps the family-wise false-alarm probability at or below `alpha` whatever the
  dependence between features, which is what an alert that can start a retraining needs.
* material: PSI >= `psi_threshold` (default 0.1, the usual "moderate shift" line), or, for
  numeric features, the KS statistic >= `ks_threshold` (default 0.1, i.e. the two CDFs are
  10 percentage points apart somewhere).

The effect-size half matters because with large samples p-values flag shifts far too small
to matter (at 50,000 rows a 1% change in a category share is "significant"); the
significance half matters because with small samples PSI is noisy. The **dataset** is
drifted when the share of drifted features is >= `drift_share` (default 0.3, i.e. 4 of the
11 churn features) and the current frame has at least `min_rows` rows (otherwise the
status is `insufficient_data` and nothing is flagged).

**Prediction drift** applies the same rule to the predicted class distribution
(chi-square + PSI) and to each `proba_<class>` column (KS + PSI), with the reference being
the model's predictions on the reference frame; Bonferroni runs over those rows only.

Inputs larger than `max_rows` are sub-sampled (without replacement, with `seed`) so a
check on millions of log rows stays fast.

Measured on generated churn data (`devtools/drift_calibration.py`): with the defaults
and 2,000 rows per sample, no false alarm in 200 undrifted draws and the drifted batch
detected in 200 of 200; the tests assert a false-alarm rate <= 5% and a detection rate
>= 95%.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from include.ml_pipeline.features import MISSING_CATEGORY, FeatureSpec, coerce_features

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

PSI_EPSILON = 1e-4
CORRECTIONS = ("bonferroni", "holm", "none")
STATUS_OK = "ok"
STATUS_DRIFT = "drift"
STATUS_INSUFFICIENT = "insufficient_data"
PREDICTION_COLUMN = "prediction"
PROBA_PREFIX = "proba_"


@dataclass(frozen=True)
class DriftThresholds:
    """The knobs of the drift decision; each one maps to an Airflow Param."""

    alpha: float = 0.05
    correction: str = "bonferroni"
    psi_threshold: float = 0.1
    ks_threshold: float = 0.1
    drift_share: float = 0.3
    psi_bins: int = 10
    max_rows: int = 50_000
    min_rows: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1); got {self.alpha}")
        if self.correction not in CORRECTIONS:
            raise ValueError(f"correction must be one of {CORRECTIONS}; got {self.correction!r}")
        if not 0.0 < self.drift_share <= 1.0:
            raise ValueError(f"drift_share must be in (0, 1]; got {self.drift_share}")
        if self.psi_bins < 2:
            raise ValueError(f"psi_bins must be >= 2; got {self.psi_bins}")
        if self.max_rows < 1 or self.min_rows < 1:
            raise ValueError("max_rows and min_rows must be positive")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> DriftThresholds:
        """Build from a dict such as Airflow `params`; unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in names and v is not None})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FeatureDrift:
    """One row of the drift table: a feature (or a prediction output) compared."""

    feature: str
    kind: str  # "numeric" | "categorical" (predicted classes are categorical)
    test: str  # "ks" | "chi2"
    statistic: float
    p_value: float
    psi: float
    reference_rows: int
    current_rows: int
    reference_missing: float
    current_missing: float
    reference_mean: float | None = None
    current_mean: float | None = None
    new_categories: list[str] = field(default_factory=list)
    significant: bool = False
    material: bool = False
    drifted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {k: _json_value(v) for k, v in asdict(self).items()}


@dataclass
class DriftReport:
    """Per-feature rows plus the summary; `to_dict()` is JSON-serialisable."""

    features: list[FeatureDrift]
    thresholds: DriftThresholds
    reference_rows: int
    current_rows: int
    status: str
    n_features: int
    n_drifted: int
    share_drifted: float
    dataset_drift: bool
    drifted_features: list[str]
    prediction: list[FeatureDrift] = field(default_factory=list)
    prediction_drift: bool | None = None
    computed_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def summary(self) -> dict[str, Any]:
        """The small facts worth an XCom, an MLflow metric or a notification; for a
        regressor also `prediction_shift` (`continuous_prediction`)."""
        facts = {
            "status": self.status,
            "dataset_drift": self.dataset_drift,
            "share_drifted": round(self.share_drifted, 4),
            "n_drifted": self.n_drifted,
            "n_features": self.n_features,
            "drifted_features": list(self.drifted_features),
            "prediction_drift": self.prediction_drift,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "computed_at": self.computed_at,
        }
        shift = self.continuous_prediction()
        if shift is not None:
            facts["prediction_shift"] = shift
        return facts

    def continuous_prediction(self) -> dict[str, Any] | None:
        """A regressor's predicted values compared (a continuous output: the `prediction`
        row is numeric): their mean on each side, in the target's units, the KS statistic,
        the PSI and whether they drifted. None for a classifier or without predictions."""
        row = next(
            (r for r in self.prediction if r.feature == PREDICTION_COLUMN and r.kind == "numeric"),
            None,
        )
        if row is None:
            return None
        return {
            "reference_mean": _json_value(row.reference_mean),
            "current_mean": _json_value(row.current_mean),
            "ks": _json_value(row.statistic),
            "psi": _json_value(row.psi),
            "drifted": bool(row.drifted),
        }

    def mlflow_metrics(self, prefix: str = "drift_") -> dict[str, float]:
        """Flat numeric metrics for `mlflow.log_metrics` (NaN statistics are left out)."""
        metrics = {
            f"{prefix}share": float(self.share_drifted),
            f"{prefix}n_drifted": float(self.n_drifted),
            f"{prefix}dataset": float(self.dataset_drift),
        }
        if self.prediction_drift is not None:
            metrics[f"{prefix}prediction"] = float(self.prediction_drift)
        for scope, rows in (("", self.features), ("prediction_", self.prediction)):
            for row in rows:
                name = _metric_name(f"{scope}{row.feature}")
                for stat, value in (("psi", row.psi), ("pvalue", row.p_value)):
                    if value is not None and math.isfinite(value):
                        metrics[f"{prefix}{stat}_{name}"] = float(value)
        return metrics

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "thresholds": self.thresholds.to_dict(),
            "features": [row.to_dict() for row in self.features],
            "prediction": [row.to_dict() for row in self.prediction],
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), allow_nan=False, **kwargs)

    def to_frame(self, include_prediction: bool = True) -> pd.DataFrame:
        """One row per feature (and per prediction output, with `scope="prediction"`)."""
        import pandas as pd

        rows = [{"scope": "feature", **r.to_dict()} for r in self.features]
        if include_prediction:
            rows += [{"scope": "prediction", **r.to_dict()} for r in self.prediction]
        columns = ["scope", *[f.name for f in fields(FeatureDrift)]]
        return pd.DataFrame(rows, columns=columns)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftReport:
        """Inverse of `to_dict` (e.g. a report read back from MLflow or an XCom)."""
        summary = data["summary"]

        def rows(items: list[dict[str, Any]]) -> list[FeatureDrift]:
            return [
                FeatureDrift(**{k: _from_json_value(k, v) for k, v in item.items()})
                for item in items
            ]

        return cls(
            features=rows(data.get("features", [])),
            prediction=rows(data.get("prediction", [])),
            thresholds=DriftThresholds.from_dict(data.get("thresholds")),
            reference_rows=summary["reference_rows"],
            current_rows=summary["current_rows"],
            status=summary["status"],
            n_features=summary["n_features"],
            n_drifted=summary["n_drifted"],
            share_drifted=summary["share_drifted"],
            dataset_drift=summary["dataset_drift"],
            drifted_features=list(summary["drifted_features"]),
            prediction_drift=summary.get("prediction_drift"),
            computed_at=summary.get("computed_at") or datetime.now(UTC).isoformat(),
        )


# --------------------------------------------------------------------------- statistics


def population_stability_index(reference_shares: Any, current_shares: Any) -> float:
    """PSI of two share vectors over the same bins (each summing to 1)."""
    import numpy as np

    p = np.clip(np.asarray(reference_shares, dtype=float), PSI_EPSILON, None)
    q = np.clip(np.asarray(current_shares, dtype=float), PSI_EPSILON, None)
    return float(np.sum((q - p) * np.log(q / p)))


def quantile_bin_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Inner edges of up to `bins` quantile bins of the reference (duplicates removed)."""
    import numpy as np

    values = reference[~np.isnan(reference)]
    if values.size == 0:
        return np.array([], dtype=float)
    inner = np.quantile(values, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    return np.unique(inner)


def _binned_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Shares per bin (-inf, e1], (e1, e2], ..., (ek, inf), then one for missing values."""
    import numpy as np

    missing = np.isnan(values)
    index = np.searchsorted(edges, values[~missing], side="left")
    counts = np.bincount(index, minlength=edges.size + 1).astype(float)
    counts = np.append(counts, float(missing.sum()))
    return counts / max(values.size, 1)


def numeric_drift(name: str, reference: Any, current: Any, bins: int = 10) -> FeatureDrift:
    """KS test and quantile-bin PSI for one numeric column (flags decided later)."""
    import numpy as np
    from scipy.stats import ks_2samp

    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    ref_ok = ref[~np.isnan(ref)]
    cur_ok = cur[~np.isnan(cur)]
    if ref_ok.size and cur_ok.size:
        result = ks_2samp(ref_ok, cur_ok)
        statistic, p_value = float(result.statistic), float(result.pvalue)
    elif ref_ok.size or cur_ok.size:
        statistic, p_value = 1.0, 0.0  # one side has values, the other has none at all
    else:
        statistic, p_value = 0.0, 1.0
    edges = quantile_bin_edges(ref, bins)
    psi = population_stability_index(_binned_shares(ref, edges), _binned_shares(cur, edges))
    return FeatureDrift(
        feature=name,
        kind="numeric",
        test="ks",
        statistic=statistic,
        p_value=p_value,
        psi=psi,
        reference_rows=int(ref.size),
        current_rows=int(cur.size),
        reference_missing=_share(ref.size - ref_ok.size, ref.size),
        current_missing=_share(cur.size - cur_ok.size, cur.size),
        reference_mean=float(ref_ok.mean()) if ref_ok.size else None,
        current_mean=float(cur_ok.mean()) if cur_ok.size else None,
    )


def categorical_drift(name: str, reference: Any, current: Any) -> FeatureDrift:
    """Chi-square test of homogeneity and PSI for one categorical column.

    Missing values count as the category `__missing__`; categories absent from the
    reference are kept as their own categories and listed in `new_categories`.
    """
    import numpy as np
    from scipy.stats import chi2_contingency

    ref = _category_series(reference)
    cur = _category_series(current)
    ref_counts = ref.value_counts()
    cur_counts = cur.value_counts()
    categories = sorted(set(ref_counts.index) | set(cur_counts.index))
    table = np.array(
        [
            [ref_counts.get(c, 0) for c in categories],
            [cur_counts.get(c, 0) for c in categories],
        ],
        dtype=float,
    )
    if len(categories) < 2 or table[0].sum() == 0 or table[1].sum() == 0:
        statistic, p_value = 0.0, 1.0
        if len(categories) >= 2:  # one side is empty: nothing to compare
            statistic, p_value = math.nan, math.nan
    else:
        result = chi2_contingency(table, correction=False)
        statistic, p_value = float(result.statistic), float(result.pvalue)
    ref_shares = table[0] / max(table[0].sum(), 1.0)
    cur_shares = table[1] / max(table[1].sum(), 1.0)
    new = [str(c) for c in categories if c not in ref_counts.index]
    return FeatureDrift(
        feature=name,
        kind="categorical",
        test="chi2",
        statistic=statistic,
        p_value=p_value,
        psi=population_stability_index(ref_shares, cur_shares),
        reference_rows=len(ref),
        current_rows=len(cur),
        reference_missing=_share(int((ref == MISSING_CATEGORY).sum()), len(ref)),
        current_missing=_share(int((cur == MISSING_CATEGORY).sum()), len(cur)),
        new_categories=new,
    )


def significance_flags(p_values: list[float], alpha: float, correction: str) -> list[bool]:
    """Which p-values are significant at family-wise level `alpha` (NaN is never)."""
    n = len(p_values)
    if n == 0:
        return []
    clean = [1.0 if p is None or math.isnan(p) else p for p in p_values]
    if correction == "none":
        return [p < alpha for p in clean]
    if correction == "bonferroni":
        return [p < alpha / n for p in clean]
    if correction == "holm":
        order = sorted(range(n), key=lambda i: clean[i])
        flags = [False] * n
        for rank, i in enumerate(order):
            if clean[i] < alpha / (n - rank):
                flags[i] = True
            else:
                break
        return flags
    raise ValueError(f"correction must be one of {CORRECTIONS}; got {correction!r}")


def _decide(rows: list[FeatureDrift], thresholds: DriftThresholds) -> None:
    """Set `significant`, `material` and `drifted` on the rows, in place."""
    flags = significance_flags([r.p_value for r in rows], thresholds.alpha, thresholds.correction)
    for row, significant in zip(rows, flags, strict=True):
        material = row.psi >= thresholds.psi_threshold
        if row.test == "ks":
            material = material or row.statistic >= thresholds.ks_threshold
        row.significant = bool(significant)
        row.material = bool(material)
        row.drifted = bool(significant and material)


# --------------------------------------------------------------------------- public API


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    spec: FeatureSpec,
    thresholds: DriftThresholds | dict[str, Any] | None = None,
    *,
    reference_predictions: pd.Series | pd.DataFrame | None = None,
    current_predictions: pd.Series | pd.DataFrame | None = None,
) -> DriftReport:
    """Compare `current` with `reference` feature by feature, and their predictions.

    `reference` and `current` need the spec's feature columns (extra columns, such as the
    inference log's `prediction`, `latency_ms`, are ignored). Predictions are a Series of
    predicted classes or a DataFrame with a `prediction` column and optional `proba_<class>`
    columns (the inference log's shape). When `current_predictions` is None and `current`
    has a `prediction` column, that column (and its `proba_*` columns) is used. Prediction
    drift is computed only when both sides are available; otherwise it is None.
    """
    if not isinstance(thresholds, DriftThresholds):
        thresholds = DriftThresholds.from_dict(thresholds)
    reference_rows, current_rows = len(reference), len(current)
    ref = _sample(coerce_features(reference, spec), thresholds.max_rows, thresholds.seed)
    cur = _sample(coerce_features(current, spec), thresholds.max_rows, thresholds.seed + 1)

    rows: list[FeatureDrift] = []
    for column in spec.numeric:
        rows.append(numeric_drift(column, ref[column], cur[column], thresholds.psi_bins))
    for column in spec.categorical:
        rows.append(categorical_drift(column, ref[column], cur[column]))

    enough = current_rows >= thresholds.min_rows and reference_rows >= thresholds.min_rows
    _decide(rows, thresholds)
    if not enough:
        for row in rows:
            row.drifted = False
    drifted = [r.feature for r in rows if r.drifted]
    share = len(drifted) / len(rows) if rows else 0.0
    dataset_drift = bool(enough and rows and share >= thresholds.drift_share)

    if current_predictions is None and PREDICTION_COLUMN in current.columns:
        current_predictions = current[
            [c for c in current.columns if c == PREDICTION_COLUMN or c.startswith(PROBA_PREFIX)]
        ]
    prediction_rows: list[FeatureDrift] = []
    prediction_drift: bool | None = None
    if reference_predictions is not None and current_predictions is not None:
        prediction_rows = prediction_drift_rows(
            reference_predictions, current_predictions, thresholds
        )
        prediction_drift = bool(enough and any(r.drifted for r in prediction_rows))
        if not enough:
            for row in prediction_rows:
                row.drifted = False

    if not enough:
        status = STATUS_INSUFFICIENT
    else:
        status = STATUS_DRIFT if dataset_drift or prediction_drift else STATUS_OK
    return DriftReport(
        features=rows,
        thresholds=thresholds,
        reference_rows=reference_rows,
        current_rows=current_rows,
        status=status,
        n_features=len(rows),
        n_drifted=len(drifted),
        share_drifted=share,
        dataset_drift=dataset_drift,
        drifted_features=drifted,
        prediction=prediction_rows,
        prediction_drift=prediction_drift,
    )


def prediction_drift_rows(
    reference: pd.Series | pd.DataFrame,
    current: pd.Series | pd.DataFrame,
    thresholds: DriftThresholds | None = None,
) -> list[FeatureDrift]:
    """Drift rows for the predicted class and each `proba_<class>` present on both sides;
    a regressor's predictions (floats on both sides) are a continuous output, compared as
    a numeric column (KS and PSI)."""
    import pandas as pd

    thresholds = thresholds or DriftThresholds()
    ref_classes, ref_proba = _split_predictions(reference)
    cur_classes, cur_proba = _split_predictions(current)
    ref_classes = _sample(ref_classes, thresholds.max_rows, thresholds.seed)
    cur_classes = _sample(cur_classes, thresholds.max_rows, thresholds.seed + 1)
    continuous = pd.api.types.is_float_dtype(ref_classes) and pd.api.types.is_float_dtype(
        cur_classes
    )
    if continuous:
        rows = [numeric_drift(PREDICTION_COLUMN, ref_classes, cur_classes, thresholds.psi_bins)]
    else:
        rows = [categorical_drift(PREDICTION_COLUMN, ref_classes, cur_classes)]
    for column in sorted(set(ref_proba.columns) & set(cur_proba.columns)):
        rows.append(
            numeric_drift(
                column,
                _sample(ref_proba[column], thresholds.max_rows, thresholds.seed),
                _sample(cur_proba[column], thresholds.max_rows, thresholds.seed + 1),
                thresholds.psi_bins,
            )
        )
    _decide(rows, thresholds)
    return rows


# --------------------------------------------------------------------------- helpers


def _sample(data: Any, max_rows: int, seed: int) -> Any:
    if len(data) <= max_rows:
        return data
    return data.sample(n=max_rows, random_state=seed)


def _share(part: int, whole: int) -> float:
    return float(part) / whole if whole else 0.0


def _category_series(values: Any) -> pd.Series:
    import pandas as pd

    series = pd.Series(values, dtype=object) if not isinstance(values, pd.Series) else values
    present = series.notna().to_numpy()
    pairs = zip(series.tolist(), present, strict=True)
    texts = [str(v) if ok else MISSING_CATEGORY for v, ok in pairs]
    return pd.Series(texts, dtype=object)


def _split_predictions(data: pd.Series | pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        if PREDICTION_COLUMN not in data.columns:
            raise KeyError(f"predictions frame needs a {PREDICTION_COLUMN!r} column")
        proba = data[[c for c in data.columns if str(c).startswith(PROBA_PREFIX)]]
        return data[PREDICTION_COLUMN].reset_index(drop=True), proba.reset_index(drop=True)
    series = pd.Series(data).reset_index(drop=True)
    return series, pd.DataFrame(index=series.index)


def _metric_name(name: str) -> str:
    """MLflow metric names allow alphanumerics, `_ - . /` and spaces."""
    import re

    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", name)


def _json_value(value: Any) -> Any:
    """NaN/inf become None so the report is strict JSON; numpy scalars become Python."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _from_json_value(key: str, value: Any) -> Any:
    return math.nan if value is None and key in ("statistic", "p_value", "psi") else value
