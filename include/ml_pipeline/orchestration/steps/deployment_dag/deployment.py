"""Steps of the `despliegue_modelo` group: release (verify as served, promote), roll out to
the model API, smoke-test the live API, and roll back when the deployment failed."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from include.ml_pipeline import storage
from include.ml_pipeline.config import get_settings
from include.ml_pipeline.deployment.rollout import ModelApiConfigError
from include.ml_pipeline.names import ROLLBACK_XCOM_KEY
from include.ml_pipeline.orchestration import connections
from include.ml_pipeline.orchestration.callbacks import recorded_failures
from include.ml_pipeline.orchestration.defaults import fail_without_retry
from include.ml_pipeline.payloads import DecidedModel, LiveDeployment, Release, Rollout

log = logging.getLogger(__name__)
#: No token, a refused token, an unknown host, another model served: fail at once.
fail_on_model_api_config = fail_without_retry(ModelApiConfigError)


def release(
    decided: dict, params: Mapping[str, Any] | None = None, *, dag_id: str, run_id: str
) -> dict:
    """`generar_artefactos`: verify the challenger as the API will serve it, store its
    serving artifact, replay it on the champion's live requests, promote it to champion
    (`release_strategy` direct) and write the manifest. Shadow / canary: no promotion
    here (the live decision promotes); a failed replay aborts the release before any
    live request (`release_abort_on_replay_fail`): the task fails with the decision."""
    from include.ml_pipeline.deployment.experiment_run import ReleasePlan, replay_abort
    from include.ml_pipeline.deployment.release import prepare_release
    from include.ml_pipeline.orchestration.compat import AirflowFailException

    plan = ReleasePlan.from_params(params or {})
    airflow = {"dag_id": dag_id, "run_id": run_id}
    settings = get_settings()
    released = prepare_release(
        settings,
        DecidedModel.from_dict(decided),
        airflow=airflow,
        staged=plan.strategy if plan.staged else None,
    )
    aborted = replay_abort(settings, released.manifest, plan)
    if aborted:
        raise AirflowFailException(aborted)
    return released.to_dict()


@fail_on_model_api_config
def roll_out(release: dict, params: Mapping[str, Any]) -> Any:
    """`desplegar_api` (a sensor in reschedule mode): the model API serves the new
    champion (bounded wait). With the `model_api` connection the API is a service: only
    asked to reload, never started here; without it, the embedded local process. A
    configuration error fails at once.

    `release_strategy` shadow / canary: first the API runs the challenger next to the
    champion (`experiment_run.begin`), and each poke reads the evidence
    (`experiment_run.poke`), rescheduling after `release_poke_seconds` while the look
    waits (no worker slot held). A pass at the last look promotes the challenger, and the
    API then serves it as champion as in a direct release; a fail, or too little traffic
    by the time limit, fails this task with the decision as its message: the champion
    stays (its alias never moved), the run shows the release did not happen, and
    `notificar_fallo` says why."""
    from include.ml_pipeline.deployment.experiment_run import PROMOTED, ReleasePlan
    from include.ml_pipeline.deployment.rollout import serve_version
    from include.ml_pipeline.orchestration.compat import PokeReturnValue

    released = Release.from_dict(release)
    api = connections.model_api()  # the rollout logs which mode it uses
    plan = ReleasePlan.from_params(params)
    if plan.staged:
        run = _staged_release(released, api, plan, params["api_timeout_seconds"])
        if run.outcome != PROMOTED:
            from include.ml_pipeline.orchestration.compat import AirflowFailException

            raise AirflowFailException(f"release {run.outcome}: {run.summary}")
        released = dataclasses.replace(released, manifest=storage.read_json(released.manifest_uri))
    serving = serve_version(
        get_settings(),
        api,
        released.model_name,
        released.version,
        timeout=params["api_timeout_seconds"],
    )
    return PokeReturnValue(is_done=True, xcom_value=serving.of(released).to_dict())


def _staged_release(released: Release, api: Any, plan: Any, timeout: float) -> Any:
    """Begin the release's experiment (once) and take one poke; reschedule while it
    waits, return the finished `ReleaseRun`."""
    import pendulum

    from include.ml_pipeline.deployment import experiment_run
    from include.ml_pipeline.orchestration.compat import AirflowRescheduleException

    settings = get_settings()
    facts = released.manifest.get("release") or {}
    run = experiment_run.begin(
        settings,
        api,
        released.model_name,
        released.version,
        plan,
        regression=bool(facts.get("regression")),
        label_target=facts.get("label_target") or {},
        manifest_uri=released.manifest_uri,
        timeout=timeout,
    )
    poked = experiment_run.poke(settings, api, run, timeout=timeout)
    log.info("desplegar_api: %s", poked.message)
    if not poked.done:
        raise AirflowRescheduleException(pendulum.now("UTC").add(seconds=plan.poke_seconds))
    return poked.run


def test_live_api(rollout: dict, params: Mapping[str, Any]) -> dict:
    """`pruebas_api`: health, predictions equal to the registered version's on rows of this
    run's test split, a 4xx for a bad payload, p95 latency. A failed check fails at once
    (no retry) so the rollback starts."""
    from include.ml_pipeline.deployment.api_client import ModelApiError, smoke_test
    from include.ml_pipeline.deployment.rollout import smoke_rows
    from include.ml_pipeline.orchestration.compat import AirflowFailException

    live = Rollout.from_dict(rollout)
    try:
        report = smoke_test(
            live.url,
            get_settings().mlflow_tracking_uri,
            live.release.model_name,
            live.release.version,
            frame=smoke_rows(live.release.registered.split),
            p95_budget_ms=params["latency_p95_budget_ms"],
        )
    except ModelApiError as exc:
        raise AirflowFailException(str(exc)) from exc
    return LiveDeployment(rollout=live, smoke=report.to_dict()).to_dict()


def roll_back(release: dict | None, params: Mapping[str, Any], ti: Any) -> None:
    """`revertir_despliegue`: point `champion` back to the previous version, reload the
    API, verify it, then fail the task so the run shows the failed deployment. Skipped
    when no release was made (nothing was deployed, nothing to undo)."""
    from include.ml_pipeline.deployment.rollout import restore_champion
    from include.ml_pipeline.orchestration.compat import (
        AirflowFailException,
        AirflowSkipException,
    )

    if not release:
        raise AirflowSkipException("no release was made in this run: nothing to roll back")
    released = Release.from_dict(release)
    if released.manifest.get("release"):
        _end_unpromoted(released)  # skips when the challenger never became champion
    failures = recorded_failures(ti, ti.task.upstream_task_ids)
    reason = "; ".join(f"{f.task_id}: {f.error}" for f in failures) or "deployment failed"
    api = connections.model_api()
    log.info("revertir_despliegue: %s", api.describe())
    outcome = restore_champion(
        get_settings(),
        released.model_name,
        released.version,
        api,
        reason=reason,
        timeout=params["api_timeout_seconds"],
    )
    ti.xcom_push(key=ROLLBACK_XCOM_KEY, value=outcome.to_dict())
    raise AirflowFailException(
        f"deployment of {released.model_name} v{released.version} failed ({reason}); "
        f"rollback: {outcome.detail}"
    )


def _end_unpromoted(released: Release) -> None:
    """A shadow / canary release whose challenger never became champion: the kill switch
    (stop any experiment still running), then skip: the champion's alias never moved, so
    there is nothing to roll back. A promoted one goes on to the usual rollback."""
    from include.ml_pipeline.deployment.experiment_client import stop_experiment
    from include.ml_pipeline.names import CHAMPION
    from include.ml_pipeline.orchestration.compat import AirflowSkipException
    from include.ml_pipeline.registry.registry import get_alias_version

    settings = get_settings()
    name, version = released.model_name, released.version
    champion = get_alias_version(name, CHAMPION, tracking_uri=settings.mlflow_tracking_uri)
    if champion == str(version):
        return
    api = connections.model_api()
    try:
        stopped = stop_experiment(api.url, name, token=api.token)
        experiment = "an experiment still running was stopped" if stopped else "none running"
    except Exception as exc:  # the API may be down: the champion is untouched anyway
        experiment = f"the experiment could not be stopped ({exc})"
    raise AirflowSkipException(
        f"{name} v{version} was never promoted: champion v{champion} untouched, nothing "
        f"to roll back ({experiment})"
    )
