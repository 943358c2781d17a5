"""Steps of the `despliegue_modelo` group: release (verify as served, promote), roll out to
the model API, smoke-test the live API, and roll back when the deployment failed."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

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


def release(decided: dict, *, dag_id: str, run_id: str) -> dict:
    """`generar_artefactos`: verify the challenger as the API will serve it, store its
    serving artifact, promote it to champion, write the manifest."""
    from include.ml_pipeline.deployment.release import prepare_release

    airflow = {"dag_id": dag_id, "run_id": run_id}
    return prepare_release(
        get_settings(), DecidedModel.from_dict(decided), airflow=airflow
    ).to_dict()


@fail_on_model_api_config
def roll_out(release: dict, params: Mapping[str, Any]) -> dict:
    """`desplegar_api`: the model API serves the new champion (bounded wait). With the
    `model_api` connection the API is a service: only asked to reload, never started here;
    without it, the embedded local process. A configuration error fails at once."""
    from include.ml_pipeline.deployment.rollout import serve_version

    released = Release.from_dict(release)
    api = connections.model_api()  # the rollout logs which mode it uses
    serving = serve_version(
        get_settings(),
        api,
        released.model_name,
        released.version,
        timeout=params["api_timeout_seconds"],
    )
    return serving.of(released).to_dict()


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
