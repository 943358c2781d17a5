"""The typed payloads that travel between tasks through XCom: small facts and references
(table names, URIs, run ids, versions, metrics), never a dataset.

Each is a dataclass with `to_dict()` (what the task returns: JSON-able) and `from_dict()`
(what the next task reads: unknown keys are an error, so a renamed field fails loudly).
Each group of the DAG hands the next one payload that carries what it needs further down,
so no XCom edge has to cross a group: the split travels inside the registered model, the
registered model inside the release, and so on.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Protocol, TypeVar

from include.ml_pipeline.features import FeatureSpec

P = TypeVar("P", bound="Payload")


class _FromDict(Protocol):
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any: ...


class Payload:
    """Base of the XCom payloads: dataclass <-> plain dict, nested payloads included."""

    #: Fields that are themselves payloads (or a `FeatureSpec`): rebuilt by `from_dict`.
    _nested: ClassVar[dict[str, type[_FromDict]]] = {}
    _nested_lists: ClassVar[dict[str, type[_FromDict]]] = {}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[P], data: dict[str, Any] | P) -> P:
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__}: expected a dict, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
        values = dict(data)
        for name, kind in cls._nested.items():
            if isinstance(values.get(name), dict):
                values[name] = kind.from_dict(values[name])
        for name, kind in cls._nested_lists.items():
            if values.get(name) is not None:
                values[name] = [
                    kind.from_dict(item) if isinstance(item, dict) else item
                    for item in values[name]
                ]
        return cls(**values)

    def replace(self: P, **changes: Any) -> P:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


# --------------------------------------------------------------------- data preparation


@dataclasses.dataclass(frozen=True)
class LoadResult(Payload):
    """`descargar_datos`: the raw file as a warehouse table, stored as the Parquet object
    `table_uri` (`<run>/tables/raw.parquet` under the storage root)."""

    table: str
    table_uri: str
    source_uri: str
    file_format: str
    rows: int
    columns: list[str]
    bytes: int
    fingerprint: str
    warnings: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class ValidationReport(Payload):
    """`validar_datos`: the table met the rules; what each column is."""

    source: str
    rows: int
    kinds: dict[str, str]
    classes: dict[str, int]
    duplicates: int
    null_fractions: dict[str, float]
    table: str = ""
    #: The validated table's Parquet object (the raw table: validation only reads it).
    table_uri: str = ""
    warnings: list[str] = dataclasses.field(default_factory=list)
    #: binary | multiclass | regression, and why (`problem.infer_problem_type`).
    problem_type: str = ""
    problem_reason: str = ""


@dataclasses.dataclass(frozen=True)
class PreprocessResult(Payload):
    """`preprocesar_datos`: the typed, cleaned table (the Parquet object `table_uri`,
    `<run>/tables/clean.parquet`) and the features chosen."""

    table: str
    table_uri: str
    rows_in: int
    rows_out: int
    dropped_unlabelled: int
    dropped_duplicates: int
    feature_spec: FeatureSpec
    target_type: str
    excluded_columns: dict[str, str]
    _nested: ClassVar = {"feature_spec": FeatureSpec}


@dataclasses.dataclass(frozen=True)
class SplitResult(Payload):
    """`dividir_datos`: one Parquet object per split (`uris`: train, validation, test ->
    `<run>/splits/<split>.parquet` under the storage root), and where the data came from."""

    uris: dict[str, str]
    rows: dict[str, int]
    class_counts: dict[str, dict[str, int]]
    seed: int
    feature_spec: FeatureSpec
    source_uri: str | None = None
    data_fingerprint: str | None = None
    _nested: ClassVar = {"feature_spec": FeatureSpec}


# --------------------------------------------------------------------- training


@dataclasses.dataclass(frozen=True)
class Candidate(Payload):
    """One model configuration to try (validated once, by `training.candidates`):
    `estimator` a built-in kind or an import path `package.module:name`, `search` an
    optional Optuna search block, `input` where a custom estimator sits (`preprocessed`:
    after the project's preprocessor; `raw`: it takes the raw columns)."""

    name: str
    estimator: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    search: dict[str, Any] | None = None
    input: str = "preprocessed"

    def to_dict(self) -> dict[str, Any]:
        """As given: the optional keys only when they are set."""
        out = super().to_dict()
        if out["search"] is None:
            del out["search"]
        if out["input"] == "preprocessed":
            del out["input"]
        return out


@dataclasses.dataclass(frozen=True)
class TrainingJob(Payload):
    """One mapped `entrenar_modelo`: a candidate under this run's MLflow parent run."""

    candidate: Candidate
    parent_run_id: str
    _nested: ClassVar = {"candidate": Candidate}


@dataclasses.dataclass(frozen=True)
class CandidateResult(Payload):
    """`entrenar_modelo`: one fitted candidate, scored on the validation split."""

    candidate: str
    estimator: str
    params: dict[str, Any]
    run_id: str
    model_uri: str
    metrics: dict[str, float]
    fit_seconds: float | None
    train_fingerprint: str | None
    reused: bool
    parent_run_id: str | None = None


@dataclasses.dataclass(frozen=True)
class Evaluation(Payload):
    """`evaluar_modelo`: the best candidate scored on the test split, beside the champion."""

    model_uri: str
    run_id: str
    metrics: dict[str, float]
    classes: list[Any]
    test_rows: int
    test_fingerprint: str
    artifacts: list[str]
    feature_importance: dict[str, Any]
    champion: dict[str, Any] | None
    candidate: str
    selection: dict[str, Any] | None = None
    parent_run_id: str | None = None
    baseline_metrics: dict[str, float] | None = None


# --------------------------------------------------------------------- registry and decision


@dataclasses.dataclass(frozen=True)
class RegisteredModel(Payload):
    """`registrar_mlflow`: the new version (alias `challenger`), the champion it faces on
    the same test split, and the split it was trained on."""

    model_name: str
    version: str
    run_id: str
    model_uri: str
    metrics: dict[str, float]
    champion_version: str | None
    champion_metrics: dict[str, float] | None
    champion_error: str | None
    candidate: str
    version_info: dict[str, Any]
    split: SplitResult
    baseline_metrics: dict[str, float] | None = None
    contract: dict[str, Any] | None = None
    _nested: ClassVar = {"split": SplitResult}


@dataclasses.dataclass(frozen=True)
class Decision(Payload):
    """`decidir_despliegue`: deploy or not, with one sentence per check."""

    deploy: bool
    reasons: list[str] = dataclasses.field(default_factory=list)
    contract_changes: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class DecidedModel(Payload):
    """`decidir_despliegue` (XCom key `decision`): the registered model and the verdict,
    for whichever path the branch follows."""

    registered: RegisteredModel
    decision: Decision
    _nested: ClassVar = {"registered": RegisteredModel, "decision": Decision}


# --------------------------------------------------------------------- deployment


@dataclasses.dataclass(frozen=True)
class Release(Payload):
    """`generar_artefactos`: the challenger verified as served and promoted to champion;
    `manifest` is what was written to `manifest_uri`."""

    registered: RegisteredModel
    decision: Decision
    manifest: dict[str, Any]
    manifest_uri: str
    _nested: ClassVar = {"registered": RegisteredModel, "decision": Decision}

    @property
    def model_name(self) -> str:
        return self.registered.model_name

    @property
    def version(self) -> str:
        return self.registered.version


@dataclasses.dataclass(frozen=True)
class Rollout(Payload):
    """`desplegar_api`: the model API at `url` serves the release."""

    release: Release
    url: str
    version: str
    started: dict[str, Any] | None
    version_info: dict[str, Any]
    #: `service` (the `model_api` connection: reloaded, never started by a task) or
    #: `embedded` (a local process on loopback; `started` is it when this task started it).
    mode: str = "embedded"
    _nested: ClassVar = {"release": Release}


@dataclasses.dataclass(frozen=True)
class LiveDeployment(Payload):
    """`pruebas_api`: the live API passed its smoke tests."""

    rollout: Rollout
    smoke: dict[str, Any]
    _nested: ClassVar = {"rollout": Rollout}

    @property
    def release(self) -> Release:
        return self.rollout.release

    @property
    def registered(self) -> RegisteredModel:
        return self.rollout.release.registered

    @property
    def decision(self) -> Decision:
        return self.rollout.release.decision

    @property
    def api_url(self) -> str:
        return self.rollout.url


@dataclasses.dataclass(frozen=True)
class Rollback(Payload):
    """`revertir_despliegue`: what the rollback did."""

    rolled_back: bool
    champion: str | None
    detail: str
    api_stopped: bool | None = None
    unloaded: str | None = None  # a service that stopped serving this failed version


# --------------------------------------------------------------------- monitoring and reports


@dataclasses.dataclass(frozen=True)
class DriftResult(Payload):
    """`configurar_monitoreo`: drift of recent traffic (or the test split) vs training;
    `report_uri` is the report's object under the reports URI."""

    summary: dict[str, Any]
    report_uri: str
    report: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Dashboard(Payload):
    """`configurar_dashboards`: the deployed version's HTML dashboard (one object at `uri`)."""

    deployment: LiveDeployment
    uri: str
    plots: list[str]
    traffic_rows: int
    _nested: ClassVar = {"deployment": LiveDeployment}

    @property
    def registered(self) -> RegisteredModel:
        return self.deployment.registered

    @property
    def decision(self) -> Decision:
        return self.deployment.decision

    @property
    def api_url(self) -> str:
        return self.deployment.api_url


@dataclasses.dataclass(frozen=True)
class Notified(Payload):
    """A notification task: what was said and how each channel took it (the `log`
    channel's detail is the notification object's URI)."""

    event: str
    title: str
    outcomes: dict[str, dict[str, str]]


@dataclasses.dataclass(frozen=True)
class TaskFailure(Payload):
    """What a failed task recorded about itself (its failure callback)."""

    task_id: str
    error: str
    map_index: int = -1


# --------------------------------------------------------------------- ml_model_monitoring


@dataclasses.dataclass(frozen=True)
class Champion(Payload):
    """`find_champion`: the version behind `models:/<name>@champion` and what the drift
    check needs from its MLflow metadata (feature spec, training split, test metrics)."""

    model_name: str
    version: str
    alias: str
    run_id: str | None
    model_uri: str
    feature_spec: FeatureSpec
    train_path: str | None
    data_fingerprint: str | None = None
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    candidate: str | None = None
    _nested: ClassVar = {"feature_spec": FeatureSpec}


@dataclasses.dataclass(frozen=True)
class ReferenceData(Payload):
    """`load_reference`: the champion's training split (its URI), checked readable and
    complete."""

    uri: str
    rows: int


@dataclasses.dataclass(frozen=True)
class CurrentWindow(Payload):
    """`load_current`: the current rows frozen to a Parquet object at `uri` (under the
    storage root); `since` is the start of the inference-log window (None for a batch
    file)."""

    uri: str
    rows: int
    source: str
    since: str | None


@dataclasses.dataclass(frozen=True)
class DriftCheck(Payload):
    """`compute_drift`: the drift summary, the report JSON's URI, and what drifted in a
    sentence."""

    summary: dict[str, Any]
    report_uri: str
    reason: str


@dataclasses.dataclass(frozen=True)
class LiveCheck(Payload):
    """`live_performance`: the champion version's live metrics on the answers whose true
    labels came back (`monitoring/live_performance.py`), and the report's URI (every
    version, over time)."""

    version: str
    regression: bool
    answers: int
    labelled: int
    metrics: dict[str, float]
    report_uri: str | None = None
    problem: str | None = None  # why it was not measured (e.g. a label file that is refused)


@dataclasses.dataclass(frozen=True)
class RetrainDecision(Payload):
    """`decide_retraining`: retrain or not, why, and the earlier request that holds it back
    (within the cool-down) if any."""

    retrain: bool
    decision: str
    previous_request: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class MonitoringRun(Payload):
    """`log_to_mlflow`: the check's run in the monitoring experiment, its dashboard's URI,
    and the decision recorded on it (what `drift_detected` branches on)."""

    mlflow_run_id: str
    dashboard_uri: str
    retrain: bool
    decision: str


@dataclasses.dataclass(frozen=True)
class RetrainRequest(Payload):
    """`prepare_retraining`: the conf of the `ml_model_deployment_advanced` run it starts."""

    retrain_reason: str


# --------------------------------------------------------------------- ml_batch_scoring


@dataclasses.dataclass(frozen=True)
class BatchInput(Payload):
    """`wait_for_input`: the table found at `input_uri` (its files: one format)."""

    uri: str
    format: str
    files: int
    bytes: int


@dataclasses.dataclass(frozen=True)
class PlannedPart(Payload):
    """One element of `plan_parts`' list, the argument of one mapped `score_part`: the
    part (`batch_scoring.source.Part` as a dict), how many scored rows it keeps for the
    drift check, whether the input has several files (then the output names them), and
    where the pinned version, verified once by `plan_parts`, is stored with its digest
    (`batch_scoring.shared.VerifiedModel` as a dict; None: the part loads it itself)."""

    part: dict[str, Any]
    sample_rows: int
    several_files: bool
    verified_model: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class ScoredPart(Payload):
    """`score_part`: what one part did (its report object holds the details)."""

    name: str
    rows_in: int
    rows_out: int
    rows_rejected: int
    seconds: float
    predict_path: str


@dataclasses.dataclass(frozen=True)
class ScoringOutput(Payload):
    """`finalize_output`: the run's manifest (its URI and the facts it judged)."""

    manifest_uri: str
    status: str
    rows_in: int
    rows_out: int
    rows_rejected: int
    predictions_uri: str
    rejects_uri: str | None
    model_version: str


@dataclasses.dataclass(frozen=True)
class BatchScoringRun(Payload):
    """`log_to_mlflow`: the batch's run in experiment `ml_batch_scoring`, and whether the
    batch drifted (what `drift_detected` branches on)."""

    mlflow_run_id: str
    drifted: bool
