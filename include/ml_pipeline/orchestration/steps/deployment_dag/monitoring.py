"""Steps of the deployment DAG's `visualizacion_monitoreo` group: drift of recent traffic
(or the test split) against the training split of the version that just went live, and
that version's dashboard."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from include.ml_pipeline.config import get_settings
from include.ml_pipeline.orchestration.params import drift_thresholds
from include.ml_pipeline.payloads import Dashboard, DriftResult, LiveDeployment


def check_drift(deployment: dict, params: Mapping[str, Any]) -> dict:
    """`configurar_monitoreo`: KS / chi-square / PSI drift against the training split; the
    report JSON is an object under `reports_uri`, its metrics and artifacts go to the
    version's training run. Returns a `DriftResult` (the report's URI)."""
    from include.ml_pipeline.monitoring.deployment_drift import drift_at_deployment

    model = LiveDeployment.from_dict(deployment).registered
    settings = get_settings()
    result = drift_at_deployment(
        model,
        thresholds=drift_thresholds(params),
        window_hours=params["drift_window_hours"],
        tracking_uri=settings.mlflow_tracking_uri,
        reports_uri=settings.reports_uri,
    )
    return result.to_dict()


def render_dashboard(
    deployment: dict, drift: dict, params: Mapping[str, Any], *, dag_id: str, run_id: str
) -> dict:
    """`configurar_dashboards`: the live version's self-contained HTML dashboard, an
    object under `reports_uri`, also logged to its training run. Returns a `Dashboard`
    (the page's URI)."""
    from include.ml_pipeline.batch_scoring.manifest import list_runs
    from include.ml_pipeline.monitoring.version_dashboards import render_deployment_dashboard
    from include.ml_pipeline.orchestration.alerts import airflow_run_url
    from include.ml_pipeline.runs import batch_runs_uri

    live = LiveDeployment.from_dict(deployment)
    settings = get_settings()
    uri, plots, traffic_rows = render_deployment_dashboard(
        live.registered,
        decision=live.decision,
        previous_champion=live.release.manifest.get("previous_champion"),
        drift_report=DriftResult.from_dict(drift).report,
        api_url=live.api_url,
        airflow_run_url=airflow_run_url(dag_id, run_id),
        tracking_uri=settings.mlflow_tracking_uri,
        out=settings.reports_uri,
        window_hours=params["drift_window_hours"],
        batch_runs=list_runs(batch_runs_uri(settings), live.registered.model_name),
    )
    return Dashboard(deployment=live, uri=uri, plots=plots, traffic_rows=traffic_rows).to_dict()
