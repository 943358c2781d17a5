"""Steps of the `entrenamiento_evaluacion` group: one MLflow parent run per Airflow run,
one nested run per candidate (mapped), the best one scored on the test split beside the
champion, and registered as a new version with alias `challenger`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from include.ml_pipeline.config import get_settings
from include.ml_pipeline.errors import TrainingDataError
from include.ml_pipeline.names import (
    AIRFLOW_DAG_TAG,
    AIRFLOW_MAP_INDEX_TAG,
    AIRFLOW_RUN_TAG,
    AIRFLOW_TASK_TAG,
    CHAMPION,
    INPUT_CONTRACT_TAG,
    PROBLEM_TYPE_TAG,
    TRAIN_PATH_TAG,
    VERSION_CANDIDATE_TAG,
    VERSION_RUN_TAG,
)
from include.ml_pipeline.orchestration.defaults import fail_without_retry
from include.ml_pipeline.payloads import (
    CandidateResult,
    Evaluation,
    RegisteredModel,
    SplitResult,
    TrainingJob,
)
from include.ml_pipeline.training.candidates import CandidateError

#: A bad candidate list is a bad Param: fail at once.
fail_on_bad_candidates = fail_without_retry(CandidateError)
#: Data that scikit-learn refuses fails every attempt the same way: fail at once.
fail_on_unfittable_data = fail_without_retry(TrainingDataError)


def problem_type_of(data: SplitResult) -> str:
    """The split's problem type ("" for a split made before it was recorded)."""
    return data.feature_spec.problem_type


@fail_on_bad_candidates
def start_experiment(
    params: Mapping[str, Any], split: dict | None = None, *, dag_id: str, run_id: str
) -> list[dict]:
    """`iniciar_experimento`: the MLflow parent run of this Airflow run (found again on a
    retry) and one training job per candidate, each candidate validated here, once, for
    the split's problem type (no `candidates` Param: that type's defaults); LightGBM,
    XGBoost and custom estimators are also fitted on a small sample of the validation
    split, so a bad import path, a non-estimator or a failing fit stops the run here."""
    from include.ml_pipeline.registry.mlflow_setup import setup_from_settings
    from include.ml_pipeline.training.candidates import validate_candidates
    from include.ml_pipeline.training.probe import needs_probe, probe_candidates
    from include.ml_pipeline.training.train import start_parent_run

    settings = get_settings()
    data = SplitResult.from_dict(split) if split else None
    problem_type = problem_type_of(data) if data else ""
    candidates = validate_candidates(params["candidates"], problem_type)
    if data and any(needs_probe(c) for c in candidates):
        from include.ml_pipeline.training.data import read_split

        frame = read_split(data.uris["validation"], data.feature_spec)
        probe_candidates(candidates, frame, data.feature_spec, params["seed"])
    tracking_uri, _ = setup_from_settings(settings)
    parent = start_parent_run(
        tracking_uri=tracking_uri,
        experiment=settings.mlflow_experiment,
        airflow_run_id=run_id,
        artifact_location=settings.mlflow_artifact_root,
        run_name=f"{dag_id} {run_id}",
        tags={AIRFLOW_DAG_TAG: dag_id, PROBLEM_TYPE_TAG: problem_type or "classification"},
    )
    return [TrainingJob(candidate, parent).to_dict() for candidate in candidates]


@fail_on_unfittable_data
def train_candidate(job: dict, split: dict, params: Mapping[str, Any], ti: Any) -> dict:
    """`entrenar_modelo` (mapped): fit one candidate, score it on validation, log it as a
    nested run tagged with the Airflow ids of this task instance."""
    from include.ml_pipeline.training.train import fit_candidate

    settings = get_settings()
    training = TrainingJob.from_dict(job)
    data = SplitResult.from_dict(split)
    result = fit_candidate(
        training.candidate,
        data.uris["train"],
        data.uris["validation"],
        data.feature_spec,
        tracking_uri=settings.mlflow_tracking_uri,
        experiment=settings.mlflow_experiment,
        parent_run_id=training.parent_run_id,
        tags={
            AIRFLOW_DAG_TAG: ti.dag_id,
            AIRFLOW_RUN_TAG: ti.run_id,
            AIRFLOW_TASK_TAG: ti.task_id,
            AIRFLOW_MAP_INDEX_TAG: ti.map_index,
        },
        seed=params["seed"],
        artifact_location=settings.mlflow_artifact_root,
        metric=params["selection_metric"],
    )
    return result.to_dict()


def evaluate_best(results: list[dict], split: dict, params: Mapping[str, Any]) -> dict:
    """`evaluar_modelo`: the best candidate on validation, scored on the test split; the
    current champion scored on the same rows."""
    from include.ml_pipeline.problem import resolve_metric
    from include.ml_pipeline.training.evaluate import evaluate_on_test, select_best

    data = SplitResult.from_dict(split)
    metric = resolve_metric(params["selection_metric"], problem_type_of(data), "selection_metric")
    selection = select_best(
        [CandidateResult.from_dict(r) if r else None for r in results],
        metric=metric,
    )
    best = selection.best
    evaluation = evaluate_on_test(
        best.model_uri,
        data.uris["test"],
        data.feature_spec,
        tracking_uri=get_settings().mlflow_tracking_uri,
        run_id=best.run_id,
        candidate=best.candidate,
        model_name=params["model_name"],
        seed=params["seed"],
        train_uri=data.uris["train"],
    )
    return evaluation.replace(
        selection=selection.to_dict(), parent_run_id=best.parent_run_id
    ).to_dict()


def register(evaluation: dict, split: dict, params: Mapping[str, Any], *, run_id: str) -> dict:
    """`registrar_mlflow`: a new version with alias `challenger` (one per Airflow run, even
    when retried), its input contract (built from the training split) logged to its run
    and tagged on the version, the parent run closed; returns what the decision and
    deployment need."""
    from include.ml_pipeline.registry.contract import build_contract, log_contract, summary
    from include.ml_pipeline.registry.registry import (
        describe_version,
        get_alias_version,
        register_challenger,
    )
    from include.ml_pipeline.training.data import read_split
    from include.ml_pipeline.training.train import finish_parent_run

    uri = get_settings().mlflow_tracking_uri
    evaluated = Evaluation.from_dict(evaluation)
    data = SplitResult.from_dict(split)
    name = params["model_name"]
    spec = data.feature_spec
    contract = build_contract(read_split(data.uris["train"], spec), spec)
    contract_uri = log_contract(uri, evaluated.run_id, contract)
    version = register_challenger(
        evaluated.model_uri,
        name,
        airflow_run_id=run_id,
        metrics=evaluated.metrics,
        data_fingerprint=data.data_fingerprint,
        tags={
            VERSION_CANDIDATE_TAG: evaluated.candidate,
            VERSION_RUN_TAG: evaluated.run_id,
            TRAIN_PATH_TAG: data.uris["train"],
            INPUT_CONTRACT_TAG: contract_uri,
            PROBLEM_TYPE_TAG: spec.problem_type or "classification",
        },
        tracking_uri=uri,
    )
    if evaluated.parent_run_id:
        finish_parent_run(tracking_uri=uri, run_id=evaluated.parent_run_id)
    champion = evaluated.champion or {}
    return RegisteredModel(
        model_name=name,
        version=version,
        run_id=evaluated.run_id,
        model_uri=f"models:/{name}/{version}",
        metrics=evaluated.metrics,
        champion_version=get_alias_version(name, CHAMPION, tracking_uri=uri),
        champion_metrics=champion.get("metrics"),
        champion_error=champion.get("error"),
        candidate=evaluated.candidate,
        version_info=describe_version(name, version, tracking_uri=uri),
        split=data,
        baseline_metrics=evaluated.baseline_metrics,
        contract={**summary(contract), "uri": contract_uri},
    ).to_dict()
