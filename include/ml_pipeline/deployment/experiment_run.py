"""A release on live evidence, run by the deployment DAG (`release_strategy` shadow or
canary): start the experiment in the model API, read the evidence, take the planned
looks, then promote the challenger or abort it. Plain Python (no Airflow): the DAG's
`desplegar_api` calls `begin` once and `poke` at each reschedule.

- **stages**: `shadow` is one stage (the champion answers every request, the challenger
  predicts the same rows off the response path); `canary` is shadow, then each of
  `canary_steps` (the challenger answers that percent of the traffic, split by key). Each
  stage is one planned look of `release/decision.py`: each stage waits for
  `min_requests` challenger requests of its own (so look `k` of `K` has at least the
  `k x min_requests` its plan needs: the `DecisionPolicy` has `looks=K`,
  `final_requests=K x min_requests`), or for the stage's time limit, whichever comes
  first;
- **a look** reads the inference log since the start (`read_logged_answers` ->
  `pair_answers`), the label files under the storage root (`read_label_files` -> a
  `LabelBook` -> `join_labels`) and calls `decide(evidence, look, policy)` exactly once
  (the look is stored before anything acts on it, so a retried task never spends a look's
  alpha twice);
- **the verdict**: `fail` at any look -> abort (the kill switch: every request back to the
  champion, the challenger unloaded; the champion's alias never moved); `inconclusive`
  because too little traffic came by the time limit -> the experiment stops and the
  champion stays (outcome `kept`); an interim look that is not a fail -> the next stage;
  `pass` at the last look -> `promote_to_champion` (aliases moved as in a direct release,
  the previous champion kept as `previous_champion`);
- **the kill switch** pulled outside the DAG (`DELETE .../experiment`) ends the release
  at the next poke (aborted, no look spent); a stage change whose call failed is sent again;
- **an API down or restarting** (it restores the experiment from its file before it is
  ready) makes a poke wait, no look taken, within the stage's time limit.

The run's state (`ReleaseRun`: the plan, the stage, the looks taken, the outcome) is a
JSON object under the storage root (`releases/<model>-v<version>.json`), so a sensor in
reschedule mode, which keeps nothing between pokes, carries it; the outcome is also
recorded as tags on the challenger's version in MLflow (`release_*`, `ReleaseRun.tags`)
and in the deployment manifest (`release`).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from include.ml_pipeline import storage
from include.ml_pipeline.inference_records import safe_name
from include.ml_pipeline.names import CHAMPION
from include.ml_pipeline.release.records import CANARY, CHALLENGER, SHADOW

if TYPE_CHECKING:  # pragma: no cover
    from include.ml_pipeline.config import Settings
    from include.ml_pipeline.deployment.rollout import ModelApiEndpoint
    from include.ml_pipeline.release.decision import DecisionPolicy, Evidence

log = logging.getLogger("ml_pipeline.release")

DIRECT = "direct"
RELEASE_STRATEGIES = (DIRECT, SHADOW, CANARY)
DEFAULT_CANARY_STEPS = (5, 25, 50)
DEFAULT_MIN_REQUESTS = 1000
#: how a release ended
PROMOTED, ABORTED, KEPT = "promoted", "aborted", "kept"
RELEASES_FOLDER = "releases"


@dataclass(frozen=True)
class Stage:
    """One stage of a release: shadow, or a canary with `share` of the traffic."""

    mode: str
    share: float | None = None

    def describe(self) -> str:
        return self.mode if self.share is None else f"{self.mode} {self.share:.0%}"


@dataclass(frozen=True)
class ReleasePlan:
    """How a challenger is released (the DAG's `release_*` Params)."""

    strategy: str = DIRECT
    canary_steps: tuple[float, ...] = DEFAULT_CANARY_STEPS  # percent of traffic
    min_requests: int = DEFAULT_MIN_REQUESTS  # challenger requests each stage adds
    max_wait_seconds: float = 3600.0  # per stage
    poke_seconds: float = 30.0
    abort_on_replay_fail: bool = True

    def __post_init__(self) -> None:
        if self.strategy not in RELEASE_STRATEGIES:
            raise ValueError(
                f"release_strategy must be one of {', '.join(RELEASE_STRATEGIES)}; "
                f"got {self.strategy!r}"
            )
        steps = tuple(float(s) for s in self.canary_steps)
        object.__setattr__(self, "canary_steps", steps)
        if self.strategy == CANARY and (
            not steps
            or any(not 0 < s < 100 for s in steps)
            or any(b <= a for a, b in itertools.pairwise(steps))
        ):
            raise ValueError(
                f"canary_steps must be rising percents of traffic within (0, 100), e.g. "
                f"[5, 25, 50]; got {list(self.canary_steps)}"
            )
        if self.min_requests < 1 or self.max_wait_seconds <= 0 or self.poke_seconds <= 0:
            raise ValueError(
                "release_min_requests must be >= 1 and release_max_wait_minutes, "
                f"release_poke_seconds > 0; got {self.min_requests}, "
                f"{self.max_wait_seconds / 60:g}, {self.poke_seconds:g}"
            )

    @classmethod
    def from_params(cls, params: Any) -> ReleasePlan:
        """From a run's Params (a missing key keeps the default: `direct`)."""
        get = params.get
        return cls(
            strategy=get("release_strategy", DIRECT),
            canary_steps=tuple(get("canary_steps", DEFAULT_CANARY_STEPS)),
            min_requests=int(get("release_min_requests", DEFAULT_MIN_REQUESTS)),
            max_wait_seconds=float(get("release_max_wait_minutes", 60.0)) * 60,
            poke_seconds=float(get("release_poke_seconds", 30)),
            abort_on_replay_fail=bool(get("release_abort_on_replay_fail", True)),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReleasePlan:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def staged(self) -> bool:
        """The challenger meets live traffic in stages before any promotion."""
        return self.strategy != DIRECT

    @property
    def stages(self) -> tuple[Stage, ...]:
        if self.strategy == SHADOW:
            return (Stage(SHADOW),)
        if self.strategy == CANARY:
            return (Stage(SHADOW), *(Stage(CANARY, s / 100) for s in self.canary_steps))
        return ()

    def policy(self) -> DecisionPolicy:
        """The decision's defaults with one planned look per stage."""
        from include.ml_pipeline.release.decision import DecisionPolicy

        looks = len(self.stages)
        return DecisionPolicy(looks=looks, final_requests=looks * self.min_requests)


@dataclass
class ReleaseRun:
    """One release's state, kept under the storage root between the sensor's pokes."""

    model_name: str
    version: str  # the challenger
    champion: str | None
    plan: ReleasePlan
    regression: bool
    label_target: dict[str, Any]  # `LabelTarget` as a dict
    manifest_uri: str | None = None
    stage: int = 0
    started_at: str = ""  # the experiment's start: the evidence is read from here on
    stage_started_at: str = ""
    looks: list[dict[str, Any]] = field(default_factory=list)  # ReleaseDecision.to_dict()
    outcome: str | None = None  # promoted / aborted / kept
    summary: str = ""
    previous_champion: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReleaseRun:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["plan"] = ReleasePlan.from_dict(fields["plan"])
        return cls(**fields)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["plan"] = self.plan.to_dict()
        return out

    @property
    def verdict(self) -> str | None:
        return self.looks[-1]["verdict"] if self.looks else None

    def record(self) -> dict[str, Any]:
        """What the manifest and the notification carry: the outcome, the verdict, the
        sentence, every look's verdict and counts (the checks stay in the state file)."""
        return {
            "strategy": self.plan.strategy,
            "stages": [s.describe() for s in self.plan.stages],
            "outcome": self.outcome,
            "verdict": self.verdict,
            "summary": self.summary,
            "champion": self.champion,
            "looks": [
                {k: look[k] for k in ("look", "looks", "verdict", "requests", "paired", "labelled")}
                for look in self.looks
            ],
        }

    def tags(self) -> dict[str, str]:
        """The tags on the challenger's version in MLflow."""
        last = self.looks[-1] if self.looks else {}
        return {
            "release_strategy": self.plan.strategy,
            "release_outcome": str(self.outcome),
            "release_verdict": str(self.verdict),
            "release_reason": self.summary,
            "release_looks": f"{last.get('look', 0)} of {len(self.plan.stages)}",
            "release_requests": str(last.get("requests", 0)),
            "release_champion": str(self.champion),
        }


@dataclass(frozen=True)
class Poke:
    """What one poke found: `done` (the run has its outcome) and a sentence."""

    done: bool
    run: ReleaseRun
    message: str


def state_uri(settings: Settings, model_name: str, version: str) -> str:
    """`<storage_uri>/releases/<model>-v<version>.json`."""
    name = f"{safe_name(model_name)}-v{version}.json"
    return storage.join(settings.storage_uri, RELEASES_FOLDER, name)


def load_run(settings: Settings, model_name: str, version: str) -> ReleaseRun | None:
    uri = state_uri(settings, model_name, version)
    return ReleaseRun.from_dict(storage.read_json(uri)) if storage.exists(uri) else None


def save_run(settings: Settings, run: ReleaseRun) -> str:
    return storage.write_json(state_uri(settings, run.model_name, run.version), run.to_dict())


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


# --------------------------------------------------------------------------- start


def begin(
    settings: Settings,
    endpoint: ModelApiEndpoint,
    model_name: str,
    version: str,
    plan: ReleasePlan,
    *,
    regression: bool,
    label_target: dict[str, Any],
    manifest_uri: str | None = None,
    timeout: float = 180.0,
    now: datetime | None = None,
) -> ReleaseRun:
    """Start the release of `version` (idempotent: a run already begun is returned as it
    is): the API serves the champion (started when embedded and down), then runs the
    challenger alias next to it in the first stage. Without a champion there is nothing
    to test against: the run promotes at its first poke and says so."""
    from include.ml_pipeline.registry.registry import get_alias_version

    if not plan.staged:
        raise ValueError(f"release_strategy {plan.strategy!r} has no experiment to run")
    known = load_run(settings, model_name, version)
    if known is not None and known.plan == plan:
        return known
    champion = get_alias_version(model_name, CHAMPION, tracking_uri=settings.mlflow_tracking_uri)
    run = ReleaseRun(
        model_name=model_name,
        version=str(version),
        champion=champion,
        plan=plan,
        regression=regression,
        label_target=label_target,
        manifest_uri=manifest_uri,
    )
    if champion is not None and champion != str(version):
        from include.ml_pipeline.deployment.rollout import serve_version, served_model

        serving = served_model(endpoint.url, model_name) or {}
        if str(serving.get("model_version")) != champion:  # down, or another version
            serve_version(settings, endpoint, model_name, champion, timeout=timeout)
        _set_stage(endpoint, run, timeout)
    # the clock of the first stage starts once the challenger is loaded
    run.started_at = run.stage_started_at = _now(now).isoformat()
    save_run(settings, run)
    return run


def _set_stage(endpoint: ModelApiEndpoint, run: ReleaseRun, timeout: float = 180.0) -> None:
    from include.ml_pipeline.deployment.experiment_client import start_experiment

    stage = run.plan.stages[run.stage]
    state = start_experiment(
        endpoint.url,
        run.model_name,
        stage.mode,
        share=stage.share,
        token=endpoint.token,
        timeout=timeout,
    )
    serving = str(state.get("experiment", {}).get("challenger_version"))
    if serving != run.version:
        raise RuntimeError(
            f"the model API at {endpoint.url} loaded challenger v{serving} of "
            f"{run.model_name!r}, not v{run.version}: another run registered a newer "
            "challenger; this release stops"
        )
    log.info("release of %s v%s: %s started", run.model_name, run.version, stage.describe())


def _check_stage(endpoint: ModelApiEndpoint, run: ReleaseRun, timeout: float) -> str | None:
    """The API runs the run's stage: None. No experiment at all: someone pulled the kill
    switch (`DELETE .../experiment`) outside the DAG, so the release ends there (the
    sentence says so); unless the API has no champion loaded yet (it is starting, and
    restores its recorded experiment before it loads the champion): `ModelApiError`, the
    poke waits. Another stage (a stage change whose call failed): sent again."""
    from include.ml_pipeline.deployment.api_client import ModelApiError
    from include.ml_pipeline.deployment.experiment_client import experiment_state

    answer = experiment_state(endpoint.url, run.model_name)
    status = answer.get("experiment")
    if status is None and answer.get("champion_version") is None:
        raise ModelApiError(
            f"the model API at {endpoint.url} serves no champion of {run.model_name!r} yet "
            "(starting: it restores the experiment first)"
        )
    if status is None:
        return (
            f"STOPPED at stage {run.stage + 1} of {len(run.plan.stages)}: the experiment of "
            f"{run.model_name!r} v{run.version} was stopped outside the DAG (the kill "
            f"switch); the champion v{run.champion} stays, the challenger is aborted."
        )
    stage = run.plan.stages[run.stage]
    config = status.get("config") or {}
    if config.get("mode") != stage.mode or (
        stage.share is not None and config.get("share") != stage.share
    ):
        _set_stage(endpoint, run, timeout)
    return None


# --------------------------------------------------------------------------- evidence


def read_evidence(settings: Settings, run: ReleaseRun) -> tuple[Evidence, int]:
    """Every request the two versions answered since the experiment started, paired,
    with the labels that came back (label files under the storage root); and the
    challenger requests of the current stage (logged since it started)."""
    from include.ml_pipeline.release.decision import Evidence
    from include.ml_pipeline.release.feedback import (
        LabelBook,
        LabelTarget,
        join_labels,
        labels_uri,
        pair_answers,
        read_label_files,
        read_logged_answers,
    )

    since = datetime.fromisoformat(run.started_at)
    versions = (str(run.champion), run.version)
    answers = read_logged_answers(settings.inference_log_uri, run.model_name, versions, since)
    pairing = pair_answers(answers.answers)
    facts = run.label_target
    target = LabelTarget(
        bool(facts.get("regression", run.regression)),
        str(facts.get("label_type") or ("number" if run.regression else "string")),
        tuple(facts.get("labels") or ()),
    )
    labels = read_label_files(labels_uri(settings.storage_uri, run.model_name), target)
    joined = join_labels(pairing.records, LabelBook().add(labels))
    stage_start = datetime.fromisoformat(run.stage_started_at)
    in_stage = {
        a.request_id
        for a in answers.answers
        if a.arm == CHALLENGER and a.timestamp and _at(a.timestamp) >= stage_start
    }
    return Evidence.of(joined.records, run.regression), len(in_stage)


def _at(stamp: str) -> datetime:
    when = datetime.fromisoformat(stamp)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- looks


def poke(
    settings: Settings,
    endpoint: ModelApiEndpoint,
    run: ReleaseRun,
    *,
    now: datetime | None = None,
    timeout: float = 180.0,
) -> Poke:
    """One look at the evidence: wait (too few requests, time left), or take the stage's
    planned look and act on it (next stage, promote, abort, keep the champion)."""
    from include.ml_pipeline.deployment.api_client import ModelApiError
    from include.ml_pipeline.release.decision import FAIL, INCONCLUSIVE, PASS, decide

    if run.outcome is not None:
        return Poke(True, run, run.summary)
    if run.champion is None or run.champion == run.version:
        run.summary = (
            f"no champion of {run.model_name!r} to test v{run.version} against: released directly"
            if run.champion is None
            else f"v{run.version} is already the champion"
        )
        return Poke(True, _finish(settings, endpoint, run, PROMOTED, timeout), run.summary)
    plan, policy = run.plan, run.plan.policy()
    waited = (_now(now) - datetime.fromisoformat(run.stage_started_at)).total_seconds()
    try:
        stopped = _check_stage(endpoint, run, timeout)
    except ModelApiError as exc:
        if waited >= plan.max_wait_seconds:
            raise
        # down or restarting (it restores the experiment from its file): no look is
        # taken, the next poke asks again; the stage's time limit still bounds the wait
        return Poke(
            False,
            run,
            f"the model API did not answer ({exc}); waiting for it (a restart restores "
            f"the experiment), no look taken, {waited:.0f} s of at most "
            f"{plan.max_wait_seconds:.0f} s in this stage",
        )
    if stopped:
        run.summary = stopped
        return Poke(True, _finish(settings, endpoint, run, ABORTED, timeout), run.summary)
    look = run.stage + 1
    required = policy.plan.sample_at(look)
    evidence, in_stage = read_evidence(settings, run)
    seen = evidence.challenger_requests
    # each stage waits for requests of its own (so a canary step is judged on canary
    # traffic), and for the look's planned sample (k x min_requests in all)
    stage = plan.stages[run.stage]
    if (in_stage < plan.min_requests or seen < required) and waited < plan.max_wait_seconds:
        return Poke(
            False,
            run,
            f"{stage.describe()} (look {look} of {policy.looks}): {in_stage} of "
            f"{plan.min_requests} challenger requests in this stage ({seen} in all) after "
            f"{waited:.0f} s of at most {plan.max_wait_seconds:.0f} s",
        )
    decision = decide(evidence, look, policy)
    run.looks.append(decision.to_dict())
    save_run(settings, run)  # the look is spent: a retried task will not take it again
    log.info("release of %s v%s: %s", run.model_name, run.version, decision.summary)
    run.summary = decision.summary
    if decision.verdict == FAIL:
        return Poke(True, _finish(settings, endpoint, run, ABORTED, timeout), run.summary)
    if decision.verdict == INCONCLUSIVE and seen < required:
        run.summary += f" The time limit ({plan.max_wait_seconds:.0f} s) passed: release stopped."
        return Poke(True, _finish(settings, endpoint, run, KEPT, timeout), run.summary)
    if decision.verdict == PASS and policy.plan.is_final(look):
        return Poke(True, _finish(settings, endpoint, run, PROMOTED, timeout), run.summary)
    run.stage += 1
    save_run(settings, run)  # before the API call: a retry re-sends it (`_check_stage`)
    _set_stage(endpoint, run, timeout)
    run.stage_started_at = _now(now).isoformat()  # once the API runs the new stage
    save_run(settings, run)
    return Poke(False, run, f"{decision.summary} Next: {plan.stages[run.stage].describe()}.")


# --------------------------------------------------------------------------- the end


def _finish(
    settings: Settings,
    endpoint: ModelApiEndpoint,
    run: ReleaseRun,
    outcome: str,
    timeout: float,
) -> ReleaseRun:
    """Stop the experiment (every request to the champion; the challenger unloaded),
    promote when `outcome` is PROMOTED, record the outcome (MLflow tags, the manifest,
    the state file)."""
    from include.ml_pipeline.deployment.experiment_client import stop_experiment
    from include.ml_pipeline.registry.registry import promote_to_champion, tag_version

    uri = settings.mlflow_tracking_uri
    if run.champion is not None and run.champion != run.version:  # idempotent
        stop_experiment(endpoint.url, run.model_name, token=endpoint.token, timeout=timeout)
    if outcome == PROMOTED:
        promotion = promote_to_champion(run.model_name, run.version, tracking_uri=uri)
        run.previous_champion = promotion.get("previous")
    run.outcome = outcome
    tag_version(run.model_name, run.version, run.tags(), tracking_uri=uri)
    if run.manifest_uri:
        manifest = storage.read_json(run.manifest_uri)
        manifest["release"] = {**manifest.get("release", {}), **record_of(settings, run)}
        if outcome == PROMOTED:
            manifest["alias"] = CHAMPION
            manifest["previous_champion"] = run.previous_champion
        storage.write_json(run.manifest_uri, manifest)
    save_run(settings, run)
    log.info("release of %s v%s: %s (%s)", run.model_name, run.version, outcome, run.summary)
    return run


def record_of(settings: Settings, run: ReleaseRun) -> dict[str, Any]:
    """`ReleaseRun.record()` with where its state (every check of every look) is kept."""
    return {**run.record(), "state_uri": state_uri(settings, run.model_name, run.version)}


def replay_abort(settings: Settings, manifest: dict[str, Any], plan: ReleasePlan) -> str | None:
    """Before any live request: when the plan stages the release, aborts on a failed
    replay and the manifest's replay failed, record the abort (MLflow tags, the manifest's
    `release`, the state file; nothing to stop, the champion untouched) and return the
    sentence; else None."""
    from include.ml_pipeline.registry.registry import tag_version
    from include.ml_pipeline.release.decision import FAIL

    replay = manifest.get("replay") or {}
    if not (plan.staged and plan.abort_on_replay_fail and replay.get("status") == FAIL):
        return None
    release = manifest.get("release") or {}
    run = ReleaseRun(
        model_name=manifest["model_name"],
        version=str(manifest["version"]),
        champion=replay.get("champion_version"),
        plan=plan,
        regression=bool(release.get("regression")),
        label_target=release.get("label_target") or {},
        manifest_uri=manifest.get("manifest_uri"),
        outcome=ABORTED,
        summary=(
            f"FAIL at the replay, before any live request: {replay.get('summary')}; the "
            "champion stays, the challenger is aborted (release_abort_on_replay_fail)."
        ),
    )
    tag_version(run.model_name, run.version, run.tags(), tracking_uri=settings.mlflow_tracking_uri)
    if run.manifest_uri:
        manifest = {**manifest, "release": {**release, **record_of(settings, run)}}
        manifest.pop("manifest_uri", None)
        storage.write_json(run.manifest_uri, manifest)
    save_run(settings, run)
    return run.summary
