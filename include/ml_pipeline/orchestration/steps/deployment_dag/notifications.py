"""Steps that tell people: a new champion is live, a challenger was rejected, a run failed.
The wording lives in `notifications.events`; delivery in `orchestration.alerts` (each
notification also becomes an object under the settings' `notifications_uri`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from include.ml_pipeline.config import get_settings
from include.ml_pipeline.names import ROLLBACK_TASK_ID, ROLLBACK_XCOM_KEY
from include.ml_pipeline.orchestration.callbacks import recorded_failures
from include.ml_pipeline.payloads import (
    Dashboard,
    DecidedModel,
    RegisteredModel,
    Rollback,
)


def _send(note: Any, params: Mapping[str, Any]) -> dict:
    from include.ml_pipeline.orchestration.alerts import deliver

    return deliver(note, params)


def _links(model: RegisteredModel, dag_id: str, run_id: str) -> dict[str, str | None]:
    from include.ml_pipeline.orchestration.alerts import airflow_run_url
    from include.ml_pipeline.registry.mlflow_setup import run_url

    return {
        "mlflow_run_url": run_url(get_settings().mlflow_tracking_uri, model.run_id),
        "airflow_run_url": airflow_run_url(dag_id, run_id),
    }


def notify_deployed(
    dashboard: dict, params: Mapping[str, Any], *, dag_id: str, run_id: str
) -> dict:
    """`notificar_despliegue_exitoso`: version, metrics, the gate's reasons, links."""
    from include.ml_pipeline.notifications import events

    shown = Dashboard.from_dict(dashboard)
    note = events.deployed(
        shown.registered,
        shown.decision,
        api_url=shown.api_url,
        dashboard=shown.uri,
        dag_id=dag_id,
        run_id=run_id,
        **_links(shown.registered, dag_id, run_id),
    )
    release = shown.deployment.rollout.release.manifest.get("release") or {}
    if release.get("summary"):  # shadow / canary: the stated decision that promoted it
        note.reasons.append(f"release ({release['strategy']}): {release['summary']}")
        note.details["release_verdict"] = release.get("verdict")
    return _send(note, params)


def notify_rejected(decided: dict, params: Mapping[str, Any], *, dag_id: str, run_id: str) -> dict:
    """`notificar_modelo_rechazado`: the challenger and the gate's reasons."""
    from include.ml_pipeline.notifications import events

    verdict = DecidedModel.from_dict(decided)
    model = verdict.registered
    note = events.rejected(
        model, verdict.decision, dag_id=dag_id, run_id=run_id, **_links(model, dag_id, run_id)
    )
    return _send(note, params)


def notify_failure(params: Mapping[str, Any], ti: Any, *, dag_id: str, run_id: str) -> dict:
    """`notificar_fallo`: which tasks failed and the error each failed on, the rollback;
    an MLflow parent run the failure left open is ended as FAILED."""
    from include.ml_pipeline.notifications import events
    from include.ml_pipeline.orchestration.alerts import airflow_run_url
    from include.ml_pipeline.training.train import close_open_parent_run

    settings = get_settings()
    closed = close_open_parent_run(
        tracking_uri=settings.mlflow_tracking_uri,
        experiment=settings.mlflow_experiment,
        airflow_run_id=run_id,
    )

    failures = recorded_failures(ti, ti.task.dag.task_ids)
    rollback = ti.xcom_pull(task_ids=ROLLBACK_TASK_ID, key=ROLLBACK_XCOM_KEY)
    note = events.failed(
        failures,
        Rollback.from_dict(rollback) if rollback else None,
        airflow_run_url=airflow_run_url(dag_id, run_id),
        dag_id=dag_id,
        run_id=run_id,
    )
    if closed:
        note.details["mlflow_parent_run"] = f"{closed} ended as FAILED"
    return _send(note, params)
