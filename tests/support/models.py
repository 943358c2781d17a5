"""Models that follow the training contract, for the tests (and the model API benchmark).

The training code logs `Pipeline([("preprocess", build_preprocessor(spec)),
("model", estimator)])` fitted on `coerce_features(frame, spec)` with
`mlflow.sklearn.log_model(..., serialization_format="skops", metadata={"feature_spec":
...})` and registers it. `register_model_version` does the same on generated churn data
so the serving code can be exercised without the training pipeline.
"""

from __future__ import annotations

import os
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from include.ml_pipeline.data_preparation.sample_data import churn_spec
from include.ml_pipeline.features import FeatureSpec

ESTIMATORS = ("hgb", "lr", "rf")
_MODEL_PACKAGES = ("mlflow", "scikit-learn", "skops", "numpy", "pandas", "scipy")


def make_estimator(kind: str, seed: int = 0):
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    if kind == "hgb":
        return HistGradientBoostingClassifier(max_iter=100, random_state=seed)
    if kind == "lr":
        return LogisticRegression(max_iter=1000)
    if kind == "rf":
        return RandomForestClassifier(n_estimators=30, max_depth=8, random_state=seed)
    raise ValueError(f"estimator must be one of {ESTIMATORS}; got {kind!r}")


def training_frame(rows: int = 4000, seed: int = 0, labels: str = "str"):
    """Generated churn data. `labels`: "str" (yes/no), "int" (0/1), "multi" (region
    names, 4 classes; `region` is then dropped from the features) or "multi_int"."""
    from include.ml_pipeline.data_preparation.sample_data import generate_churn_frame

    frame = generate_churn_frame(rows, seed)
    spec = churn_spec()
    if labels == "int":
        frame[spec.target] = (frame[spec.target] == "yes").astype(int)
    elif labels in ("multi", "multi_int"):
        target = frame["region"]
        if labels == "multi_int":
            target = target.map({"north": 1, "south": 2, "east": 3, "west": 4}).astype(int)
        frame[spec.target] = target
        spec = FeatureSpec(
            spec.target, spec.numeric, [c for c in spec.categorical if c != "region"]
        )
        frame = frame.drop(columns=["region"])
    elif labels != "str":
        raise ValueError(f"unknown labels kind {labels!r}")
    return frame, spec


def fit_pipeline(frame, spec: FeatureSpec, kind: str = "hgb", seed: int = 0):
    from sklearn.pipeline import Pipeline
    from threadpoolctl import threadpool_limits

    from include.ml_pipeline.features import build_preprocessor, coerce_features

    pipeline = Pipeline(
        [("preprocess", build_preprocessor(spec)), ("model", make_estimator(kind, seed))]
    )
    with threadpool_limits(limits=1):  # OpenMP barriers crawl on a busy 2-core box
        pipeline.fit(coerce_features(frame, spec), frame[spec.target])
    return pipeline


def register_model_version(
    tracking_uri: str,
    model_name: str,
    *,
    kind: str = "hgb",
    labels: str = "str",
    rows: int = 4000,
    seed: int = 0,
    aliases: tuple[str, ...] = ("champion",),
    experiment: str = "serving-tests",
    artifact_location: str | None = None,
    pipeline: Any = None,
    spec: FeatureSpec | None = None,
    serving_artifact: bool = False,
) -> str:
    """Fit (or take) a pipeline, log it like the training code does, register it under
    `model_name`, set `aliases` on the new version and return the version string. With
    `serving_artifact`, also store the version's serving artifact as the release step
    (`deployment.prepare_release`) does."""
    os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    import mlflow
    import mlflow.sklearn
    import skops.io
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    from include.ml_pipeline.features import coerce_features

    frame, data_spec = training_frame(rows, seed, labels)
    spec = spec or data_spec
    if pipeline is None:
        pipeline = fit_pipeline(frame, spec, kind, seed)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        if artifact_location and artifact_location.startswith("file:"):
            from urllib.parse import urlparse

            Path(urlparse(artifact_location).path).mkdir(parents=True, exist_ok=True)
        experiment_id = client.create_experiment(experiment, artifact_location=artifact_location)
    else:
        experiment_id = found.experiment_id
    features = coerce_features(frame, spec)
    sample = features.head(500)
    with mlflow.start_run(experiment_id=experiment_id):
        mlflow.log_metric(
            "validation_accuracy",
            float((pipeline.predict(sample) == frame[spec.target].head(500)).mean()),
        )
        dumped = skops.io.dumps(pipeline)
        trusted = skops.io.get_untrusted_types(data=dumped)
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=infer_signature(sample, pipeline.predict(sample)),
            input_example=features.head(5),
            serialization_format="skops",
            skops_trusted_types=trusted,
            metadata={"feature_spec": spec.to_dict()},
            # explicit: MLflow's inference loads the model in a subprocess (~9 s)
            pip_requirements=[f"{p}=={package_version(p)}" for p in _MODEL_PACKAGES],
        )
        model_uri = info.model_uri
    registered = mlflow.register_model(model_uri, model_name)
    for alias in aliases:
        client.set_registered_model_alias(model_name, alias, registered.version)
    if serving_artifact:
        from include.ml_pipeline.serving.loading.artifact import publish_served
        from include.ml_pipeline.serving.loading.served import build_served_model

        served = build_served_model(
            pipeline,
            spec,
            name=model_name,
            version=str(registered.version),
            alias="",
            max_rows=10_000,
            run_id=registered.run_id,
        )
        publish_served(tracking_uri, served)
    return str(registered.version)


def titanic_passengers(age_column: str = "age"):
    """The 1,316 Titanic passengers by class, sex and age group (the classic contingency
    table): three categorical features and 20 distinct rows, so repeated rows are the data
    itself. `age_column` names the age-group column."""
    import pandas as pd

    counts = {
        # (class, sex, age): (died, survived)
        ("1st", "male", "child"): (0, 5),
        ("2nd", "male", "child"): (0, 11),
        ("3rd", "male", "child"): (35, 13),
        ("1st", "female", "child"): (0, 1),
        ("2nd", "female", "child"): (0, 13),
        ("3rd", "female", "child"): (17, 14),
        ("1st", "male", "adult"): (118, 57),
        ("2nd", "male", "adult"): (154, 14),
        ("3rd", "male", "adult"): (387, 75),
        ("1st", "female", "adult"): (4, 140),
        ("2nd", "female", "adult"): (13, 80),
        ("3rd", "female", "adult"): (89, 76),
    }
    rows = []
    for (cls, sex, age), (died, survived) in counts.items():
        rows += [(cls, sex, age, "no")] * died + [(cls, sex, age, "yes")] * survived
    out = pd.DataFrame(rows, columns=["class", "sex", age_column, "survived"])
    return out.sample(frac=1.0, random_state=0).reset_index(drop=True)


def regression_pipeline(
    candidate: str = "hgb_deep", rows: int = 2000, seed: int = 4, params: dict | None = None
):
    """A fitted regressor pipeline of the training code's shape (the default regression
    candidate named `candidate`, its params updated with `params`: e.g. fewer trees for a
    quick test) on the sample customers' next-year spend, and the spec to
    register it with: `register_model_version` scores the label of its own (churn) frame
    for a metric, so the spec names that column; its problem type says the model predicts
    numbers."""
    from include.ml_pipeline.data_preparation.sample_data import (
        CATEGORICAL_COLUMNS,
        NUMERIC_COLUMNS,
        REGRESSION_TARGET,
        generate_churn_frame,
    )
    from include.ml_pipeline.features import coerce_features
    from include.ml_pipeline.training import candidates
    from include.ml_pipeline.training.train import build_pipeline

    spec = FeatureSpec(
        REGRESSION_TARGET, list(NUMERIC_COLUMNS), list(CATEGORICAL_COLUMNS), "regression"
    )
    frame = generate_churn_frame(rows, seed=seed, problem="regression")
    chosen = next(c for c in candidates.default_candidates("regression") if c["name"] == candidate)
    chosen["params"].update(params or {})
    pipeline = build_pipeline(spec, candidates.make_estimator(chosen, seed, "regression"))
    fitted = pipeline.fit(coerce_features(frame, spec), frame[REGRESSION_TARGET])
    return fitted, FeatureSpec("churn", spec.numeric, spec.categorical, "regression")
