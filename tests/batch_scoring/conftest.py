"""A throw-away MLflow registry holding three champions (binary, multiclass, regression),
each registered as the training pipeline registers versions (the fitted pipeline with its
feature spec, the input contract logged and tagged, the training split's URI tagged), and
generated tables to score."""

from __future__ import annotations

from pathlib import Path

import pytest

from include.ml_pipeline.features import FeatureSpec

#: Registered model name per problem type.
MODELS = {
    "binary": "batch_binary",
    "multiclass": "batch_multiclass",
    "regression": "batch_regression",
}


def regression_spec() -> FeatureSpec:
    """`total_charges` predicted from the other churn columns."""
    from include.ml_pipeline.data_preparation.sample_data import (
        CATEGORICAL_COLUMNS,
        NUMERIC_COLUMNS,
    )

    numeric = [c for c in NUMERIC_COLUMNS if c != "total_charges"]
    return FeatureSpec("total_charges", numeric, list(CATEGORICAL_COLUMNS))


def register_champion(tracking_uri: str, root: Path, problem: str) -> dict:
    """Fit and register the `problem` champion (`binary`: logistic regression on churn;
    `multiclass`: gradient boosting on region; `regression`: ridge on total_charges), with
    its input contract and training split; return its facts."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline

    from include.ml_pipeline.features import build_preprocessor, coerce_features
    from include.ml_pipeline.names import INPUT_CONTRACT_TAG, TRAIN_PATH_TAG
    from include.ml_pipeline.registry.contract import build_contract, log_contract
    from include.ml_pipeline.registry.mlflow_setup import configure_mlflow
    from tests.support.models import fit_pipeline, register_model_version, training_frame

    name = MODELS[problem]
    if problem == "regression":
        frame, _ = training_frame(3000, seed=3)
        spec = regression_spec()
        frame = frame[frame[spec.target].notna()].reset_index(drop=True)
        pipeline = Pipeline([("preprocess", build_preprocessor(spec)), ("model", Ridge())])
        pipeline.fit(coerce_features(frame, spec), frame[spec.target])
        labels = "str"
    else:
        labels = "str" if problem == "binary" else "multi"
        frame, spec = training_frame(3000, seed=3, labels=labels)
        pipeline = fit_pipeline(frame, spec, "lr" if problem == "binary" else "hgb")
    version = register_model_version(
        tracking_uri,
        name,
        pipeline=pipeline,
        spec=spec,
        labels=labels,
        rows=3000,
        seed=3,
        experiment="batch-scoring-tests",
        artifact_location=(root / "artifacts").as_uri(),
    )
    train_path = root / f"{name}_train.parquet"
    frame.to_parquet(train_path, index=False)
    client = configure_mlflow(tracking_uri)
    run_id = client.get_model_version(name, version).run_id
    contract_uri = log_contract(tracking_uri, run_id, build_contract(frame, spec))
    client.set_model_version_tag(name, version, INPUT_CONTRACT_TAG, contract_uri)
    client.set_model_version_tag(name, version, TRAIN_PATH_TAG, str(train_path))
    return {"name": name, "version": version, "spec": spec, "pipeline": pipeline}


@pytest.fixture(scope="session")
def champions(tmp_path_factory) -> dict:
    """The three champions in one tmp MLflow store (`MLFLOW_TRACKING_URI` and the
    artifact, report and notification locations point at it for the session)."""
    root = tmp_path_factory.mktemp("batch-registry")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", tracking_uri)
        mp.setenv("ML_PIPELINE_MLFLOW_ARTIFACTS", (root / "artifacts").as_uri())
        mp.setenv("ML_PIPELINE_REPORTS", str(root / "reports"))
        mp.setenv("ML_PIPELINE_NOTIFICATIONS", str(root / "notifications"))
        models = {problem: register_champion(tracking_uri, root, problem) for problem in MODELS}
        yield {"tracking_uri": tracking_uri, "root": root, **models}


def write_table(path: Path, rows: int, *, seed: int, files: int = 1, row_group: int = 400):
    """Generated churn rows (with a `customer_id`) as `files` Parquet files of row groups
    of `row_group` rows: one file at `path`, or a folder of parts. Returns the frame."""
    from include.ml_pipeline.data_preparation.sample_data import generate_churn_frame

    frame = generate_churn_frame(rows, seed=seed)
    frame.insert(0, "customer_id", [f"c{seed}-{i:06d}" for i in range(rows)])
    if files == 1:
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path, index=False, row_group_size=row_group)
        return frame
    path.mkdir(parents=True, exist_ok=True)
    step = -(-rows // files)
    for i in range(files):
        frame.iloc[i * step : (i + 1) * step].to_parquet(
            path / f"part-{i}.parquet", index=False, row_group_size=row_group
        )
    return frame


def prepare_run(champion: dict, tracking_uri: str, input_uri: str, out: str, **options):
    """What the DAG's tasks before `score_part` do: list and check the input, plan the
    parts (`part_rows`, default 800), write the plan, load the pinned version. Returns
    `(model, check, parts, plan)`."""
    from include.ml_pipeline.batch_scoring import manifest as manifests
    from include.ml_pipeline.batch_scoring.contract_check import check_input
    from include.ml_pipeline.batch_scoring.model import load_batch_model
    from include.ml_pipeline.batch_scoring.source import file_schema, list_input, plan_parts
    from include.ml_pipeline.registry.contract import load_contract

    listing = list_input(input_uri)
    contract = load_contract(tracking_uri, champion["name"], champion["version"])
    check = check_input(
        [(f, file_schema(f)) for f in listing.files],
        contract,
        non_null_columns=options.get("non_null_columns"),
        strict_categories=options.get("strict_categories", False),
    )
    parts = plan_parts(listing, options.get("part_rows", 800))
    plan = {
        "scoring_run_id": "run-1",
        "model_name": champion["name"],
        "model_version": champion["version"],
        "input": {"uri": listing.uri, "files": len(listing.files), "fingerprint": "f"},
        "check": check.to_dict(),
        "parts": [p.to_dict() for p in parts],
    }
    manifests.write_plan(out, plan)
    model = load_batch_model(tracking_uri, champion["name"], champion["version"])
    return model, check, parts, plan
