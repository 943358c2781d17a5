"""Fit one candidate pipeline and track it in MLflow, nested under the DAG run's parent run.

`start_parent_run` makes (or finds) the parent run of one Airflow DAG run.
`fit_candidate` fits `Pipeline([("preprocess", build_preprocessor(spec)),
("model", estimator)])` (`model_for`; a custom estimator with `input: raw` is the whole
model instead) on the train split, scores it on the validation split and logs one
nested run: params, `validation_*` metrics, `fit_seconds`, the fitted pipeline (skops, with
signature, input example and the feature spec as metadata), the train/validation datasets
as inputs (source path + digest + schema; the data is not copied) and the Airflow tags.
A candidate with a `search` block is tuned first (`training.search`: one nested run per
trial under the candidate's run) and the model is then fitted with the best values.

Both are idempotent per Airflow run, so a retried or cleared task does not duplicate
anything: the parent is found by its `airflow_run_id` tag, a candidate's finished run is
found by parent + candidate name and returned as is (no refit); an unfinished one left by
a crashed attempt is deleted and trained again.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from include.ml_pipeline.errors import TrainingDataError
from include.ml_pipeline.names import (
    AIRFLOW_RUN_TAG,
    CANDIDATE_TAG,
    METRIC_NAMES,
    MODEL_URI_TAG,
    PARENT_RUN_TAG,
    PROBLEM_TYPE_TAG,
    ROLE_TAG,
    TRAIN_FINGERPRINT_TAG,
)
from include.ml_pipeline.payloads import Candidate, CandidateResult
from include.ml_pipeline.problem import resolve_metric
from include.ml_pipeline.registry.mlflow_setup import configure_mlflow, ensure_experiment
from include.ml_pipeline.storage import as_uri
from include.ml_pipeline.training.candidates import (
    as_candidate,
    estimator_params,
    make_estimator,
)
from include.ml_pipeline.training.data import (
    limit_threads,
    read_split_with_fingerprint,
)
from include.ml_pipeline.training.metrics import prefixed, score_model

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from include.ml_pipeline.features import FeatureSpec

MODEL_ARTIFACT_NAME = "model"
SIGNATURE_SAMPLE_ROWS = 1000
PARENT_SETTLE_S = 1.5  # longer than a run takes to commit after its start time is taken
# (0.5 s was not, once, on a 2-core machine at load 10: two callers each kept their own)
#: At most this many looks, `PARENT_SETTLE_S` apart, until two in a row elect the same run
#: (one look elected two parents once in CI: a racing run committed > 1.5 s late).
PARENT_LOOKS = 6
_MODEL_PACKAGES = ("mlflow", "scikit-learn", "skops", "numpy", "pandas", "scipy")
#: Packages a model needs besides those, by the top-level module of a type it holds.
_FAMILY_PACKAGES = {"lightgbm": "lightgbm", "xgboost": "xgboost-cpu"}


def _quote(value: str, what: str) -> str:
    if "'" in value or "\\" in value:
        raise ValueError(f"{what} must not contain quotes or backslashes: {value!r}")
    return f"'{value}'"


def start_parent_run(
    *,
    tracking_uri: str,
    experiment: str,
    airflow_run_id: str,
    artifact_location: str | None = None,
    run_name: str | None = None,
    tags: dict[str, Any] | None = None,
) -> str:
    """Return the id of the parent MLflow run of this Airflow DAG run, creating it once.

    Looks for an active run tagged `airflow_run_id=<airflow_run_id>` and role `parent` in
    the experiment first; creates it (status RUNNING, ended by `finish_parent_run`) only
    if there is none. `tags` (e.g. dag_id) are set on a newly created run. Call it from
    one task upstream of the mapped training tasks and pass the id down.
    """
    experiment_id = ensure_experiment(tracking_uri, experiment, artifact_location)
    client = configure_mlflow(tracking_uri)
    own = None
    settle = PARENT_SETTLE_S
    if not _parent_runs(client, experiment_id, airflow_run_id):
        all_tags = {str(k): str(v) for k, v in (tags or {}).items()}
        all_tags.update({AIRFLOW_RUN_TAG: airflow_run_id, ROLE_TAG: "parent"})
        asked = time.monotonic()
        own = client.create_run(
            experiment_id, tags=all_tags, run_name=run_name or f"airflow-{airflow_run_id}"
        ).info.run_id
        settle = max(settle, 3 * (time.monotonic() - asked))
    # Concurrent callers may each have created one: the oldest (start time, then id) wins
    # and the others delete theirs (the oldest is never deleted: its caller sees none
    # older). A run started just before this one may not be committed yet when this one
    # is: wait out that lag, or two callers could each see themselves as the oldest. On a
    # loaded store a commit takes longer: wait at least three times what this one's took
    # (1.5 s fell short once at load ~5), and look until two looks in a row agree. A caller
    # that found runs already elects the same way rather than taking the first it saw: in
    # CI one took a run that was about to lose to an older one committed after it.
    oldest, previous = own, None
    for _ in range(PARENT_LOOKS):
        time.sleep(settle)
        oldest = _parent_runs(client, experiment_id, airflow_run_id)[0].info.run_id
        if oldest == previous:
            break
        previous = oldest
    if own is not None and oldest != own:
        client.delete_run(own)
    assert oldest is not None
    return oldest


def _parent_runs(client: Any, experiment_id: str, airflow_run_id: str) -> list[Any]:
    from mlflow.entities import ViewType

    return list(
        client.search_runs(
            [experiment_id],
            filter_string=(
                f"tags.{AIRFLOW_RUN_TAG} = {_quote(airflow_run_id, 'airflow_run_id')} "
                f"and tags.`{ROLE_TAG}` = 'parent'"
            ),
            run_view_type=ViewType.ACTIVE_ONLY,
            order_by=["attributes.start_time ASC", "attributes.run_id ASC"],
        )
    )


def finish_parent_run(*, tracking_uri: str, run_id: str, status: str = "FINISHED") -> None:
    """Mark the parent run ended (`FINISHED`, `FAILED` or `KILLED`); repeating is harmless."""
    client = configure_mlflow(tracking_uri)
    client.set_terminated(run_id, status=status)


def close_open_parent_run(
    *, tracking_uri: str, experiment: str, airflow_run_id: str, status: str = "FAILED"
) -> str | None:
    """End this Airflow run's parent run if it is still RUNNING (the run failed before
    `registrar_mlflow` finished it); return its id, or None when there was none open."""
    from mlflow.exceptions import MlflowException

    client = configure_mlflow(tracking_uri)
    try:
        experiment_id = client.get_experiment_by_name(experiment)
    except MlflowException:
        return None
    if experiment_id is None:
        return None
    for run in _parent_runs(client, experiment_id.experiment_id, airflow_run_id):
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, status=status)
            return run.info.run_id
    return None


def build_pipeline(spec: FeatureSpec, estimator: Any) -> Pipeline:
    """The model's fixed shape: the feature preprocessor followed by the estimator.

    A LightGBM or XGBoost estimator gets the categorical columns as codes and splits them
    with its own categorical splits: better than one-hot on high-cardinality columns
    (`benchmarks/bench_lightgbm_categoricals.py`: accuracy 0.747 -> 0.823 with LightGBM,
    0.746 -> 0.822 with XGBoost; LightGBM's RMSE 1.59 -> 1.11). LightGBM is told the code
    columns' positions (after the numeric ones) as `categorical_column`, the documented
    alias of `categorical_feature` (which, as a constructor parameter, makes its Python
    layer warn that the Dataset ignores it, though the C++ config applies it); XGBoost by
    `feature_types` ("c") and `enable_categorical`. The compiled serving path reads both
    libraries' category splits (`serving/compiled/boosters.py`)."""
    from sklearn.pipeline import Pipeline

    from include.ml_pipeline.features import build_preprocessor

    library = {c.__module__.split(".", 1)[0] for c in type(estimator).__mro__}
    native = bool(spec.categorical) and bool(library & {"lightgbm", "xgboost"})
    if native and "lightgbm" in library:
        first = len(spec.numeric)
        estimator.set_params(categorical_column=list(range(first, first + len(spec.categorical))))
    elif native:
        kinds = ["q"] * len(spec.numeric) + ["c"] * len(spec.categorical)
        estimator.set_params(feature_types=kinds, enable_categorical=True)
    return Pipeline(
        [("preprocess", build_preprocessor(spec, ordinal=native)), ("model", estimator)]
    )


def model_for(candidate: Candidate, spec: FeatureSpec, seed: int) -> Any:
    """The unfitted model of a candidate: `build_pipeline` around its estimator, or the
    estimator itself when it takes the raw columns (`input: raw`)."""
    estimator = make_estimator(candidate, seed, spec.problem_type)
    return estimator if candidate.input == "raw" else build_pipeline(spec, estimator)


def skops_trusted_types(pipeline: Any) -> list[str]:
    """The types skops must be told to trust to load this pipeline (e.g. HGB's
    `TreePredictor`), computed from the pipeline's own serialisation."""
    import skops.io

    return sorted(skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)))


def model_signature(pipeline: Any, X_sample: pd.DataFrame) -> Any:
    """`infer_signature(X, pipeline.predict(X))` with every input column optional: the
    fitted preprocessor imputes any feature, so a missing value is valid model input
    even for a column whose sample happened to have none."""
    from mlflow.models import infer_signature
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    with warnings.catch_warnings():
        # MLflow hints that integer columns cannot hold missing values; that applies to
        # integer *labels* here (the output), never to the float64 inputs.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        signature = infer_signature(X_sample, pipeline.predict(X_sample))
    inputs = Schema(
        [ColSpec(col.type, col.name, required=False) for col in signature.inputs.inputs]
    )
    return ModelSignature(inputs=inputs, outputs=signature.outputs, params=signature.params)


def model_pip_requirements(trusted_types: Iterable[str] = ()) -> list[str]:
    """Pinned requirements of a logged pipeline, from the installed versions: the base
    packages plus LightGBM / XGBoost when the model holds one of their types.

    Given explicitly because MLflow's inference (a subprocess that loads the model and
    records its imports) costs ~9 s per model and picks up unrelated packages.
    """
    from importlib.metadata import version

    roots = {name.split(".", 1)[0] for name in trusted_types}
    extra = [package for root, package in _FAMILY_PACKAGES.items() if root in roots]
    return [f"{name}=={version(name)}" for name in (*_MODEL_PACKAGES, *extra)]


def log_pipeline(pipeline: Any, X: pd.DataFrame, spec: FeatureSpec) -> Any:
    """Log the fitted pipeline to the active run per the serving contract; return ModelInfo."""
    import mlflow.sklearn

    sample = X.head(SIGNATURE_SAMPLE_ROWS)
    trusted = skops_trusted_types(pipeline)
    return mlflow.sklearn.log_model(
        pipeline,
        name=MODEL_ARTIFACT_NAME,
        signature=model_signature(pipeline, sample),
        input_example=X.head(5),
        serialization_format="skops",
        skops_trusted_types=trusted,
        metadata={"feature_spec": spec.to_dict()},
        pip_requirements=model_pip_requirements(trusted),
    )


def _dataset(frame: pd.DataFrame, uri: str, spec: FeatureSpec, name: str, digest: str) -> Any:
    """The split as an MLflow dataset whose source is its URI (`file://` or the object
    store's), so whoever reads the run can find the rows on any machine."""
    from mlflow.data.pandas_dataset import from_pandas

    source = as_uri(uri)
    with warnings.catch_warnings():
        # MLflow registers the local source class twice and warns that it is ambiguous.
        warnings.simplefilter("ignore", UserWarning)
        return from_pandas(frame, source=source, targets=spec.target, name=name, digest=digest)


def _tuned(
    candidate: Candidate,
    spec: FeatureSpec,
    data: tuple[Any, Any, Any, Any],
    *,
    seed: int,
    metric: str,
    experiment_id: str,
    threads: int | None,
) -> Candidate:
    """Run the candidate's search inside its (active) run; the candidate with the best
    values in its params, which are logged with the history."""
    from include.ml_pipeline.training.search import SearchError, log_outcome, run_search

    def build(values: dict[str, Any]) -> Any:
        return model_for(candidate.replace(params={**candidate.params, **values}), spec, seed)

    import mlflow

    search = candidate.search or {}
    mlflow.log_params(
        {
            "search_n_trials": search.get("n_trials"),
            "search_timeout_seconds": search.get("timeout_seconds"),
            "search_seed": search.get("seed") if search.get("seed") is not None else seed,
            "search_metric": metric,
        }
    )
    with limit_threads(threads), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            outcome = run_search(
                search,
                build,
                data,
                problem_type=spec.problem_type,
                metric=metric,
                seed=seed,
                candidate=candidate.name,
                experiment_id=experiment_id,
            )
        except SearchError as exc:
            raise TrainingDataError(str(exc)) from exc
    log_outcome(outcome)
    return candidate.replace(params={**candidate.params, **outcome.best_params})


def _existing_child(client: Any, experiment_id: str, parent_run_id: str, name: str) -> Any:
    from mlflow.entities import ViewType

    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`{PARENT_RUN_TAG}` = {_quote(parent_run_id, 'parent_run_id')} "
            f"and tags.`{CANDIDATE_TAG}` = {_quote(name, 'candidate name')}"
        ),
        run_view_type=ViewType.ACTIVE_ONLY,
        order_by=["attributes.start_time DESC"],
    )
    finished = None
    for run in runs:
        if finished is None and run.info.status == "FINISHED" and MODEL_URI_TAG in run.data.tags:
            finished = run
        else:
            # Left by a crashed or superseded attempt (Airflow runs one attempt of a task
            # at a time): delete it so it is never compared or registered.
            client.delete_run(run.info.run_id)
    return finished


def _result_from_run(run: Any, candidate: Candidate, parent_run_id: str) -> CandidateResult:
    metrics = {
        name: run.data.metrics[f"validation_{name}"]
        for name in METRIC_NAMES
        if f"validation_{name}" in run.data.metrics
    }
    tags = run.data.tags
    params = candidate.params
    if candidate.search:  # the values the search chose, as the first attempt returned
        import mlflow

        best = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/search/best_params.json")
        params = {**params, **best}
    return CandidateResult(
        candidate=candidate.name,
        estimator=candidate.estimator,
        params=params,
        run_id=run.info.run_id,
        model_uri=tags[MODEL_URI_TAG],
        metrics=metrics,
        fit_seconds=run.data.metrics.get("fit_seconds"),
        train_fingerprint=tags.get(TRAIN_FINGERPRINT_TAG),
        reused=True,
        parent_run_id=parent_run_id,
    )


def fit_candidate(
    candidate: Candidate | dict[str, Any],
    train_uri: str,
    validation_uri: str,
    spec: FeatureSpec,
    *,
    tracking_uri: str,
    experiment: str,
    parent_run_id: str,
    tags: dict[str, Any] | None = None,
    seed: int = 42,
    artifact_location: str | None = None,
    reuse_finished: bool = True,
    threads: int | None = 1,
    metric: str | None = None,
) -> CandidateResult:
    """Fit, validate and log one candidate (a dict is validated first) as a run nested
    under `parent_run_id`; its validation metrics, unprefixed, in the result.

    A candidate with a `search` block is tuned on the validation split by `metric` (the
    selection metric; None: the problem type's default) first; the result's `params` are
    the candidate's with the best values.

    `threads` caps BLAS/OpenMP threads while fitting (None: library default). One thread
    is the default because mapped candidates run side by side; on a 2-vCPU machine two
    OpenMP threads made HistGradientBoosting fit 4x slower than one.
    A finished run for this candidate under this parent is returned as it is (`reused`)
    without refitting.
    """
    import mlflow

    candidate = as_candidate(candidate, spec.problem_type)
    experiment_id = ensure_experiment(tracking_uri, experiment, artifact_location)
    client = configure_mlflow(tracking_uri)
    parent = client.get_run(parent_run_id)
    if parent.info.experiment_id != experiment_id:
        raise ValueError(
            f"parent run {parent_run_id} belongs to experiment {parent.info.experiment_id}, "
            f"not {experiment!r} ({experiment_id})"
        )
    if reuse_finished:
        existing = _existing_child(client, experiment_id, parent_run_id, candidate.name)
        if existing is not None:
            return _result_from_run(existing, candidate, parent_run_id)

    train, train_fp = read_split_with_fingerprint(train_uri, spec)
    validation, validation_fp = read_split_with_fingerprint(validation_uri, spec)

    from include.ml_pipeline.features import coerce_features

    X_train = coerce_features(train, spec)
    y_train = train[spec.target]
    X_val = coerce_features(validation, spec)
    y_val = validation[spec.target]

    run_tags = {str(k): str(v) for k, v in (tags or {}).items()}
    run_tags.setdefault(AIRFLOW_RUN_TAG, parent.data.tags.get(AIRFLOW_RUN_TAG, ""))
    run_tags.update(
        {
            PARENT_RUN_TAG: parent_run_id,
            ROLE_TAG: "candidate",
            CANDIDATE_TAG: candidate.name,
            "estimator": candidate.estimator,
            TRAIN_FINGERPRINT_TAG: train_fp,
        }
    )
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=candidate.name, tags=run_tags
    ) as run:
        run_id = run.info.run_id
        if candidate.search:
            candidate = _tuned(
                candidate,
                spec,
                (X_train, y_train, X_val, y_val),
                seed=seed,
                metric=resolve_metric(metric, spec.problem_type, "selection_metric"),
                experiment_id=experiment_id,
                threads=threads,
            )
        pipeline = model_for(candidate, spec, seed)
        estimator = pipeline.named_steps["model"] if candidate.input != "raw" else pipeline
        mlflow.log_params(
            {
                "candidate": candidate.name,
                "estimator": candidate.estimator,
                "problem_type": spec.problem_type or "classification",
                "seed": seed,
                "train_rows": len(train),
                "validation_rows": len(validation),
                "numeric_features": len(spec.numeric),
                "categorical_features": len(spec.categorical),
                "threads": threads if threads is not None else "default",
                **estimator_params(estimator),
            }
        )
        if candidate.input == "raw":
            mlflow.set_tag("ml_pipeline.model_input", "raw")
        mlflow.log_input(_dataset(train, train_uri, spec, "train", train_fp), context="training")
        mlflow.log_input(
            _dataset(validation, validation_uri, spec, "validation", validation_fp),
            context="validation",
        )

        with limit_threads(threads), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # e.g. unknown categories in val
            started = time.perf_counter()
            try:
                pipeline.fit(X_train, y_train)
            except ValueError as exc:
                raise TrainingDataError(
                    f"candidate {candidate.name!r} cannot be fitted on {train_uri}: {exc}"
                ) from exc
            fit_seconds = time.perf_counter() - started
            started = time.perf_counter()
            metrics = score_model(pipeline, X_val, y_val, spec.problem_type)
            predict_seconds = time.perf_counter() - started
        mlflow.log_metrics(
            {
                **prefixed(metrics, "validation"),
                "fit_seconds": fit_seconds,
                "validation_predict_seconds": predict_seconds,
            }
        )
        mlflow.set_tag(PROBLEM_TYPE_TAG, spec.problem_type or "classification")
        if not spec.is_regression:
            mlflow.set_tag("classes", ",".join(map(str, pipeline.classes_.tolist())))

        info = log_pipeline(pipeline, X_train, spec)
        # Set last: a run with this tag and status FINISHED is complete and reusable.
        mlflow.set_tag(MODEL_URI_TAG, info.model_uri)

    return CandidateResult(
        candidate=candidate.name,
        estimator=candidate.estimator,
        params=candidate.params,
        run_id=run_id,
        model_uri=info.model_uri,
        metrics=metrics,
        fit_seconds=fit_seconds,
        train_fingerprint=train_fp,
        reused=False,
        parent_run_id=parent_run_id,
    )
