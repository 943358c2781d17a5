"""Pick the best candidate and evaluate it, and the current champion, on the test split.

`select_best` is pure: it ranks the results `fit_candidate` returned by one validation
metric. `evaluate_on_test` loads the chosen model from MLflow, scores it on the untouched
test split and logs to the candidate's run: `test_*` metrics, a confusion matrix, ROC and
precision-recall curves and feature importances as PNG images under `plots/`, the numbers
as JSON under `evaluation/`, and the test dataset as an input. If the registered model
has a `champion`, that version is scored on the same test rows (with its own feature
spec, so a champion trained on other columns is still measured fairly) and its metrics
are returned beside the challenger's — what the deploy gate compares. The champion is
scored against this split's label column whatever it is called (a champion trained when
the label had another name is still compared). So is the baseline (`baseline_metrics`:
the class prior, scikit-learn's `DummyClassifier(strategy="prior")`, for classification;
the training mean, `DummyRegressor`, for regression), which a challenger must beat to be
deployed. A regression model's plots are predicted vs actual and the residuals.

Feature importances are permutation importances of the raw input columns (the drop in
test ROC AUC when a column is shuffled; up to `importance_rows` test rows, a few
repeats), which works for every estimator and names the columns people know. Where the
estimator has native importances (`feature_importances_`, or `|coef_|` of a linear model)
they are plotted too, per preprocessed feature (names from the preprocessor's
`get_feature_names_out`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from include.ml_pipeline.names import CHAMPION, GREATER_IS_BETTER
from include.ml_pipeline.payloads import CandidateResult, Evaluation
from include.ml_pipeline.registry.mlflow_setup import configure_mlflow, load_sklearn_model
from include.ml_pipeline.training.data import (
    limit_threads,
    read_parquet,
    read_split,
    read_split_with_fingerprint,
)
from include.ml_pipeline.training.metrics import (
    classification_metrics,
    per_class_metrics,
    predicted_labels,
    prefixed,
    regression_metrics,
    score_model,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from include.ml_pipeline.features import FeatureSpec

PLOTS_DIR = "plots"
EVALUATION_DIR = "evaluation"


@dataclasses.dataclass(frozen=True)
class Selection:
    """The winner of `select_best`, and how it won: the metric, its direction and the
    ranking `[[candidate, value], ...]`, best first."""

    best: CandidateResult
    metric: str
    greater_is_better: bool
    ranking: list[list[Any]]

    def to_dict(self) -> dict[str, Any]:
        """The selection without the winner (`Evaluation.selection`)."""
        return {
            "metric": self.metric,
            "greater_is_better": self.greater_is_better,
            "ranking": self.ranking,
        }


def select_best(
    results: Iterable[CandidateResult | None],
    metric: str = "roc_auc",
    greater_is_better: bool | None = None,
) -> Selection:
    """The result with the best validation `metric` (first one wins a tie).

    `greater_is_better=None` takes the metric's natural direction (`log_loss`: lower).
    Results that are `None` or whose metric is missing or NaN are skipped. Raises
    `ValueError` if nothing qualifies.
    """
    if greater_is_better is None:
        if metric not in GREATER_IS_BETTER:
            raise ValueError(
                f"unknown direction for metric {metric!r}; pass greater_is_better "
                f"(known: {', '.join(sorted(GREATER_IS_BETTER))})"
            )
        greater_is_better = GREATER_IS_BETTER[metric]
    scored: list[tuple[float, int, CandidateResult]] = []
    seen_metrics: set[str] = set()
    count = 0
    for index, result in enumerate(results):
        count += 1
        if not result:
            continue
        metrics = result.metrics or {}
        seen_metrics.update(metrics)
        value = metrics.get(metric)
        if value is None or not math.isfinite(float(value)):
            continue
        scored.append((float(value), index, result))
    if not scored:
        raise ValueError(
            f"no candidate result has a finite {metric!r} (results: {count}, "
            f"metrics seen: {', '.join(sorted(seen_metrics)) or 'none'})"
        )
    sign = -1.0 if greater_is_better else 1.0
    ranked = sorted(scored, key=lambda item: (sign * item[0], item[1]))
    return Selection(
        best=ranked[0][2],
        metric=metric,
        greater_is_better=greater_is_better,
        ranking=[[r.candidate or r.run_id, v] for v, _, r in ranked],
    )


def _model_spec(model_uri: str, fallback: FeatureSpec) -> FeatureSpec:
    from mlflow.models import get_model_info

    from include.ml_pipeline.features import FeatureSpec

    metadata = get_model_info(model_uri).metadata or {}
    if "feature_spec" in metadata:
        return FeatureSpec.from_dict(metadata["feature_spec"])
    return fallback


def _score(model: Any, frame: pd.DataFrame, spec: FeatureSpec) -> tuple[Any, Any, dict]:
    """(X, the model's output: probabilities, or values for regression, metrics)."""
    from include.ml_pipeline.features import coerce_features

    X = coerce_features(frame, spec)
    if spec.is_regression:
        predicted = model.predict(X)
        return X, predicted, regression_metrics(frame[spec.target], predicted)
    proba = model.predict_proba(X)
    return X, proba, classification_metrics(frame[spec.target], proba, model.classes_)


def permutation_importances(
    model: Any,
    X: pd.DataFrame,
    y: Any,
    *,
    rows: int = 2000,
    repeats: int = 5,
    seed: int = 0,
    problem_type: str | None = None,
) -> dict[str, float]:
    """Mean drop in ROC AUC (accuracy if AUC is undefined on the sample; R^2 for
    regression) per input column when that column is shuffled, on up to `rows` rows."""
    import numpy as np
    from sklearn.inspection import permutation_importance

    if len(X) > rows:
        picked = np.random.default_rng(seed).choice(len(X), size=rows, replace=False)
        picked.sort()
        X, y = X.iloc[picked], (y.iloc[picked] if hasattr(y, "iloc") else np.asarray(y)[picked])
    if problem_type == "regression":
        key = "r2"
    else:
        baseline = classification_metrics(y, model.predict_proba(X), model.classes_)
        key = "roc_auc" if math.isfinite(baseline["roc_auc"]) else "accuracy"

    def scorer(estimator: Any, X_: Any, y_: Any) -> float:
        value = score_model(estimator, X_, y_, problem_type)[key]
        return value if math.isfinite(value) else 0.0

    result = permutation_importance(
        model, X, y, scoring=scorer, n_repeats=repeats, random_state=seed, n_jobs=1
    )
    return {col: float(v) for col, v in zip(X.columns, result.importances_mean, strict=True)}


def native_importances(pipeline: Any) -> dict[str, float] | None:
    """`feature_importances_` or mean `|coef_|` per preprocessed feature, if the model has
    them (None otherwise, e.g. HistGradientBoosting or a dummy)."""
    import numpy as np

    model = pipeline.named_steps.get("model") if hasattr(pipeline, "named_steps") else None
    preprocess = pipeline.named_steps.get("preprocess") if model is not None else None
    if model is None or preprocess is None:
        return None
    if hasattr(model, "feature_importances_"):
        values = np.asarray(model.feature_importances_, dtype=float)
    elif hasattr(model, "coef_"):
        values = np.abs(np.atleast_2d(np.asarray(model.coef_, dtype=float))).mean(axis=0)
    else:
        return None
    try:
        names = [str(n) for n in preprocess.get_feature_names_out()]
    except Exception:  # a transformer without feature names
        names = [f"feature_{i}" for i in range(len(values))]
    if len(names) != len(values):
        return None
    return dict(zip(names, values.tolist(), strict=True))


def _log_figure(client: Any, run_id: str, fig: Any, path: str) -> str:
    import os
    import tempfile

    from include.ml_pipeline.plots import figure_to_png_bytes

    directory, name = os.path.split(path)
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, name)
        with open(local, "wb") as handle:
            handle.write(figure_to_png_bytes(fig))
        client.log_artifact(run_id, local, artifact_path=directory or None)
    return path


def _champion(
    client: Any, model_name: str, alias: str, test_uri: str, spec: FeatureSpec
) -> dict[str, Any] | None:
    """Score the aliased version on the test split; None if the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        version = client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None  # no such model or no such alias
    uri = f"models:/{model_name}/{version.version}"
    facts: dict[str, Any] = {
        "version": str(version.version),
        "model_uri": uri,
        "run_id": version.run_id,
        "metrics": None,
        "error": None,
    }
    try:
        own = _model_spec(uri, spec)
        if (own.problem_type or "classification") != (spec.problem_type or "classification"):
            raise ValueError(
                f"the champion is a {own.problem_type or 'classification'} model and the "
                f"challenger a {spec.problem_type or 'classification'} model: their metrics "
                "do not compare"
            )
        # The champion's own columns, scored against this split's label column (whatever
        # it is called now: a renamed label column is still the label).
        champion_spec = own.__class__(
            target=spec.target,
            numeric=list(own.numeric),
            categorical=list(own.categorical),
            problem_type=spec.problem_type,
        )
        frame = read_split(test_uri, champion_spec)
        model = load_sklearn_model(uri)
        _, _, facts["metrics"] = _score(model, frame, champion_spec)
    except Exception as exc:  # reported, and the gate sees "no comparable champion"
        facts["error"] = f"{type(exc).__name__}: {exc}"
    return facts


def mean_baseline(train_values: Any, test_values: Any) -> dict[str, float] | None:
    """Regression metrics on the test values of the model that predicts the training mean
    for every row (R^2 about 0): what a regressor that learnt nothing scores."""
    import numpy as np

    train = np.asarray(train_values, dtype=float)
    test = np.asarray(test_values, dtype=float)
    if not len(train) or not len(test):
        return None
    return regression_metrics(test, np.full(len(test), float(train.mean())))


def baseline_metrics(
    train_labels: Any, test_labels: Any, problem_type: str | None
) -> dict[str, float] | None:
    """The baseline of a problem type scored on the test labels: the training mean for
    regression, the training class shares otherwise."""
    if problem_type == "regression":
        return mean_baseline(train_labels, test_labels)
    return class_prior_baseline(train_labels, test_labels)


def class_prior_baseline(train_labels: Any, test_labels: Any) -> dict[str, float] | None:
    """Metrics on the test labels of the model that predicts the training class shares
    for every row (ROC AUC 0.5, accuracy the majority share): what a model that learnt
    nothing from the features scores. None when it cannot be scored (a test label the
    training split does not have)."""
    import numpy as np
    from sklearn.dummy import DummyClassifier

    train = np.asarray(train_labels)
    test = np.asarray(test_labels)
    prior = DummyClassifier(strategy="prior").fit(np.zeros((len(train), 1)), train)
    try:
        return classification_metrics(
            test, prior.predict_proba(np.zeros((len(test), 1))), prior.classes_
        )
    except ValueError:
        return None


def _logged_model_run_id(model_uri: str) -> str | None:
    import mlflow

    if model_uri.startswith("runs:/"):
        return model_uri.removeprefix("runs:/").split("/", 1)[0]
    if model_uri.startswith("models:/m-"):
        return mlflow.get_logged_model(model_uri.removeprefix("models:/")).source_run_id
    return None


def evaluate_on_test(
    model_uri: str,
    test_uri: str,
    spec: FeatureSpec,
    *,
    tracking_uri: str,
    run_id: str | None = None,
    candidate: str = "",
    model_name: str | None = None,
    champion_alias: str = CHAMPION,
    importance_rows: int = 2000,
    importance_repeats: int = 5,
    seed: int = 0,
    threads: int | None = 1,
    train_uri: str | None = None,
) -> Evaluation:
    """Score `model_uri` (the candidate named `candidate`) on the test split, log metrics
    and plots to its run, and score the `champion` of `model_name` (if given and aliased)
    on the same rows; its metrics are None when it could not be scored, and `error` says
    why. `threads` caps BLAS/OpenMP threads while scoring. With `train_uri` (the training
    split), the class-prior baseline is scored on the same test rows too.
    """

    with limit_threads(threads):
        return _evaluate_on_test(
            model_uri,
            test_uri,
            spec,
            tracking_uri=tracking_uri,
            run_id=run_id,
            candidate=candidate,
            model_name=model_name,
            champion_alias=champion_alias,
            importance_rows=importance_rows,
            importance_repeats=importance_repeats,
            seed=seed,
            train_uri=train_uri,
        )


def _evaluate_on_test(
    model_uri: str,
    test_uri: str,
    spec: FeatureSpec,
    *,
    tracking_uri: str,
    run_id: str | None,
    candidate: str,
    model_name: str | None,
    champion_alias: str,
    importance_rows: int,
    importance_repeats: int,
    seed: int,
    train_uri: str | None = None,
) -> Evaluation:

    from include.ml_pipeline import plots

    client = configure_mlflow(tracking_uri)
    run_id = run_id or _logged_model_run_id(model_uri)
    if not run_id:
        raise ValueError(f"cannot tell which run {model_uri} belongs to; pass run_id")

    frame, test_fingerprint = read_split_with_fingerprint(test_uri, spec)
    model = load_sklearn_model(model_uri)
    X, output, metrics = _score(model, frame, spec)
    y = frame[spec.target]
    classes = [] if spec.is_regression else list(model.classes_)

    artifacts = []
    if spec.is_regression:
        figures = {
            "predicted_vs_actual.png": plots.plot_predicted_vs_actual(y.tolist(), output),
            "residuals.png": plots.plot_residuals(y.tolist(), output),
        }
    else:
        figures = {
            "confusion_matrix.png": plots.plot_confusion_matrix(
                y.tolist(), predicted_labels(output, classes).tolist(), classes
            ),
            "roc_curve.png": plots.plot_roc_curves(y.tolist(), output, classes),
            "precision_recall.png": plots.plot_precision_recall(y.tolist(), output, classes),
        }
    permutation = permutation_importances(
        model,
        X,
        y,
        rows=importance_rows,
        repeats=importance_repeats,
        seed=seed,
        problem_type=spec.problem_type,
    )
    figures["feature_importance_permutation.png"] = plots.plot_feature_importances(
        list(permutation), list(permutation.values())
    )
    native = native_importances(model)
    if native:
        figures["feature_importance_native.png"] = plots.plot_feature_importances(
            list(native), list(native.values())
        )
    for name, fig in figures.items():
        artifacts.append(_log_figure(client, run_id, fig, f"{PLOTS_DIR}/{name}"))

    champion = None
    if model_name:
        champion = _champion(client, model_name, champion_alias, test_uri, spec)
    baseline = None
    if train_uri:
        train_labels = read_parquet(train_uri, [spec.target])[0][spec.target]
        baseline = baseline_metrics(train_labels, y, spec.problem_type)

    top = sorted(permutation.items(), key=lambda kv: abs(kv[1]), reverse=True)
    report = {
        "model_uri": model_uri,
        "test_rows": len(frame),
        "test_fingerprint": test_fingerprint,
        "metrics": metrics,
        "problem_type": spec.problem_type or "classification",
        "classes": [str(c) for c in classes],
        "feature_importance": {"permutation": permutation, "native": native},
        "per_class": per_class_metrics(y, output, classes) if len(classes) > 2 else None,
        "champion": champion,
        "baseline": baseline,
    }
    client.log_dict(
        run_id,
        json.loads(json.dumps(report, default=str)),
        f"{EVALUATION_DIR}/test_evaluation.json",
    )
    artifacts.append(f"{EVALUATION_DIR}/test_evaluation.json")

    logged = prefixed(metrics, "test")
    if champion and champion["metrics"]:
        logged.update(prefixed(champion["metrics"], "champion_test"))
    if baseline:
        logged.update(prefixed(baseline, "baseline_test"))
    for key, value in logged.items():
        if math.isfinite(value):
            client.log_metric(run_id, key, value)
    client.set_tag(run_id, "ml_pipeline.evaluated_on", test_fingerprint)
    if champion:
        client.set_tag(run_id, "ml_pipeline.champion_at_evaluation", champion["version"])

    return Evaluation(
        model_uri=model_uri,
        run_id=run_id,
        metrics=metrics,
        classes=[c.item() if hasattr(c, "item") else c for c in classes],
        test_rows=len(frame),
        test_fingerprint=test_fingerprint,
        artifacts=artifacts,
        feature_importance={
            "method": "permutation_r2_drop" if spec.is_regression else "permutation_roc_auc_drop",
            "top": [[name, value] for name, value in top[:10]],
        },
        champion=champion,
        candidate=candidate,
        baseline_metrics=baseline,
    )
