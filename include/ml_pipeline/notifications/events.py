"""What the DAGs tell people, worded once: a new champion is live, a challenger was
rejected, a run failed (which task, and why), the champion's data drifted."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from include.ml_pipeline.notifications.message import (
    EVENT_DEPLOYED,
    EVENT_DRIFT,
    EVENT_FAILED,
    EVENT_REJECTED,
    Notification,
)
from include.ml_pipeline.payloads import (
    Champion,
    Decision,
    DriftCheck,
    MonitoringRun,
    RegisteredModel,
    Rollback,
    TaskFailure,
)


def deployed(
    registered: RegisteredModel,
    decision: Decision | None,
    *,
    api_url: str | None,
    dashboard: str | None,
    **links_and_ids: str | None,
) -> Notification:
    """`notificar_despliegue_exitoso`: version, metrics, why it won, links; when the gate
    allowed an input-contract change, what clients must change, first."""
    note = _verdict(
        EVENT_DEPLOYED,
        "is live as champion",
        registered,
        decision,
        api_url=api_url,
        dashboard_uri=dashboard,
        **links_and_ids,
    )
    changes = list(decision.contract_changes) if decision else []
    if changes:
        note.title += " with a CHANGED INPUT CONTRACT"
        note.reasons[:0] = [
            f"Clients must change ({len(changes)} contract change"
            f"{'s' if len(changes) != 1 else ''} allowed by allow_contract_change):",
            *(f"contract change: {change}" for change in changes),
        ]
        note.details["contract_changes"] = "; ".join(changes)
    return note


def rejected(
    registered: RegisteredModel, decision: Decision | None, **links_and_ids: str | None
) -> Notification:
    """`notificar_modelo_rechazado`: the gate's reasons (and the named contract
    differences, when the input contract is why)."""
    note = _verdict(EVENT_REJECTED, "was rejected", registered, decision, **links_and_ids)
    if decision and decision.contract_changes:
        note.details["contract_changes"] = "; ".join(decision.contract_changes)
    return note


def _verdict(
    event: str,
    what: str,
    registered: RegisteredModel,
    decision: Decision | None,
    **fields: Any,
) -> Notification:
    """The gate's verdict on a version: title, metrics, reasons, plus `fields` (links,
    Airflow ids)."""
    return Notification(
        event=event,
        title=f"{registered.model_name} v{registered.version} {what}",
        model_name=registered.model_name,
        version=registered.version,
        metrics=registered.metrics,
        reasons=list(decision.reasons) if decision else [],
        **fields,
    )


def failed(
    failures: Iterable[TaskFailure],
    rollback: Rollback | None,
    *,
    airflow_run_url: str | None,
    dag_id: str,
    run_id: str,
) -> Notification:
    """`notificar_fallo`: each failed task with the error it failed on, and the rollback."""
    failures = list(failures)
    reasons = [
        f"failed task: {f.task_id}"
        + (f"[{f.map_index}]" if f.map_index >= 0 else "")
        + (f": {f.error}" if f.error else "")
        for f in failures
    ]
    if rollback is not None:
        reasons.append(f"rollback: {rollback.detail}")
    first = failures[0] if failures else None
    return Notification(
        event=EVENT_FAILED,
        title=f"{dag_id}: run {run_id} failed" + (f" at {first.task_id}" if first else ""),
        reasons=reasons,
        airflow_run_url=airflow_run_url,
        dag_id=dag_id,
        run_id=run_id,
        task_id=first.task_id if first else None,
        error=first.error if first else None,
    )


def drifted(
    champion: Champion,
    drift: DriftCheck,
    logged: MonitoringRun,
    *,
    api_url: str | None,
    airflow_run_url: str | None,
    dag_id: str,
    run_id: str,
) -> Notification:
    """`notify_drift`: which version drifted and how much (or, without dataset drift,
    that its live performance broke the rule), why retraining started, the dashboard,
    the report and the check's MLflow run."""
    summary = drift.summary
    what = "Data drift on" if summary.get("dataset_drift", True) else "Live performance of"
    return Notification(
        event=EVENT_DRIFT,
        title=f"{what} {champion.model_name} v{champion.version}; retraining started",
        model_name=champion.model_name,
        version=champion.version,
        metrics={
            "share_drifted": summary["share_drifted"],
            "n_drifted": summary["n_drifted"],
            "current_rows": summary["current_rows"],
        },
        reasons=[drift.reason, logged.decision],
        airflow_run_url=airflow_run_url,
        api_url=api_url,
        dashboard_uri=logged.dashboard_uri,
        dag_id=dag_id,
        run_id=run_id,
        details={"report": drift.report_uri, "mlflow_run_id": logged.mlflow_run_id},
    )
