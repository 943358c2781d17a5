"""The work of the monitoring DAG `ml_model_monitoring`, as plain functions (no Airflow).

One check, step by step (each step is one task of the DAG):

1. `find_champion`: the version behind `models:/<name>@champion`, with what the check needs
   from its MLflow metadata: the feature spec (model metadata `feature_spec`, else the
   version tag `feature_spec`, else the model signature) and the training split it was
   fitted on (version tag `train_path`, else the `training` dataset input of its run).
   None when there is no champion (nothing to monitor yet).
2. `load_reference`: the champion's training split (Parquet), spec columns only.
3. `load_current` + `snapshot_current`: the recent inference log rows of that version
   (`window_hours` back from the run's logical date) or a batch file (CSV/Parquet, a path
   or `file://` URI), frozen to Parquet so a retried task sees the same rows.
4. `run_drift_check`: `compute_drift` on features, plus prediction drift with the
   champion's own predictions on the reference (and on a batch without predictions).
5. `write_report`, `render_monitoring_dashboard`, `log_monitoring_run`: the report JSON
   under `reports_dir/monitoring/`, an HTML dashboard with the drift table, and an MLflow
   run in experiment `ml_model_monitoring` (metrics, report, dashboard, drift table).
6. `retrain_decision`: retrain when the dataset drifted, unless a retraining was already
   requested for the same champion version within `retrain_cooldown_hours` (looked up in
   the monitoring experiment), so a drift that retraining cannot fix (the new model was
   rejected, the champion stays) does not start a retraining every hour.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.ml_pipeline.contracts.names import (
    CHAMPION,
    FEATURE_SPEC_TAG,
    INFERENCE_LOG_SOURCE,
    MONITORING_EXPERIMENT,
    MONITORING_ROLE,
    RETRAIN_REQUESTED_TAG,
    ROLE_TAG,
    TRAIN_PATH_TAG,
)
from include.ml_pipeline.features import FeatureSpec

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from include.ml_pipeline.monitoring.drift import DriftReport

log = logging.getLogger(__name__)

TRAINING_CONTEXT = "training"


class MonitoringError(Exception):
    """A check that cannot run as configured (retrying does not help)."""


# --------------------------------------------------------------------------- champion


def find_champion(
    model_name: str, *, tracking_uri: str, alias: str = CHAMPION
) -> dict[str, Any] | None:
    """JSON-able facts of `models:/<model_name>@<alias>`, or None when it does not exist.

    Keys: `model_name`, `version`, `alias`, `run_id`, `model_uri`, `feature_spec` (dict),
    `train_path` (str or None), `data_fingerprint`, `metrics` (the version's `test_*`
    tags, unprefixed), `classes`.
    """
    from include.ml_pipeline.registry.registry import describe_version, get_alias_version

    version = get_alias_version(model_name, alias, tracking_uri=tracking_uri)
    if version is None:
        return None
    facts = describe_version(model_name, version, tracking_uri=tracking_uri)
    tags = facts["tags"]
    model_uri = f"models:/{model_name}/{version}"
    spec = champion_feature_spec(model_uri, tags)
    train_path = tags.get(TRAIN_PATH_TAG) or training_input_source(
        facts["run_id"], tracking_uri=tracking_uri
    )
    metrics = {}
    for key, value in tags.items():
        if key.startswith("test_"):
            try:
                metrics[key.removeprefix("test_")] = float(value)
            except ValueError:
                continue
    return {
        "model_name": model_name,
        "version": str(version),
        "alias": alias,
        "run_id": facts["run_id"],
        "model_uri": model_uri,
        "feature_spec": spec.to_dict(),
        "train_path": train_path,
        "data_fingerprint": tags.get("data_fingerprint"),
        "metrics": {k: v for k, v in metrics.items() if math.isfinite(v)},
        "candidate": tags.get("candidate"),
    }


def champion_feature_spec(model_uri: str, tags: dict[str, str] | None = None) -> FeatureSpec:
    """The model's feature spec: MLmodel metadata, else the version tag, else the signature."""
    from mlflow.models import get_model_info

    info = get_model_info(model_uri)
    metadata = info.metadata or {}
    if metadata.get("feature_spec"):
        return FeatureSpec.from_dict(metadata["feature_spec"])
    if tags and tags.get(FEATURE_SPEC_TAG):
        return FeatureSpec.from_dict(json.loads(tags[FEATURE_SPEC_TAG]))
    signature = info.signature
    if signature is None or signature.inputs is None:
        raise MonitoringError(
            f"{model_uri} has no feature spec (model metadata `feature_spec`, version tag "
            f"`{FEATURE_SPEC_TAG}`) and no input signature; cannot tell its features"
        )
    numeric, categorical = [], []
    for col in signature.inputs.inputs:
        kind = str(getattr(col.type, "name", col.type)).lower()
        (categorical if kind in ("string", "boolean") else numeric).append(col.name)
    return FeatureSpec(target="", numeric=numeric, categorical=categorical)


def training_input_source(run_id: str | None, *, tracking_uri: str) -> str | None:
    """The source path of the `training` dataset input logged on `run_id`, if any."""
    if not run_id:
        return None
    from include.ml_pipeline.registry.mlflow_setup import configure_mlflow

    client = configure_mlflow(tracking_uri)
    try:
        run = client.get_run(run_id)
    except Exception as exc:  # deleted run, remote store hiccup: the tag is the main way
        log.warning("could not read run %s for its training input: %r", run_id, exc)
        return None
    for item in run.inputs.dataset_inputs if run.inputs else []:
        contexts = {t.value for t in item.tags if t.key == "mlflow.data.context"}
        if TRAINING_CONTEXT not in contexts:
            continue
        try:
            source = json.loads(item.dataset.source)
        except (TypeError, ValueError):
            continue
        uri = source.get("uri") or source.get("path") if isinstance(source, dict) else None
        if uri:
            return str(uri)
    return None


# --------------------------------------------------------------------------- data


def _local_path(uri: str) -> Path | None:
    if uri.startswith("file://"):
        from urllib.parse import urlparse
        from urllib.request import url2pathname

        return Path(url2pathname(urlparse(uri).path))
    if "://" in uri:
        return None
    return Path(uri).expanduser()


def read_frame(uri: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet file (or folder of Parquet files): a path or any URI pandas
    reads. `columns` keeps those that exist (the caller checks what it needs)."""
    import pandas as pd

    local = _local_path(str(uri))
    source = str(local) if local is not None else str(uri)
    if local is not None and not local.exists():
        raise FileNotFoundError(f"no such file: {source}")
    name = source.lower()
    if name.endswith((".csv", ".csv.gz", ".txt")):
        frame = pd.read_csv(source)
    elif name.endswith((".parquet", ".pq")) or (local is not None and local.is_dir()):
        frame = pd.read_parquet(source)
    else:
        raise MonitoringError(f"unsupported file type (need .csv or .parquet): {source}")
    if columns is not None:
        frame = frame[[c for c in columns if c in frame.columns]]
    return frame


def _require_features(frame: pd.DataFrame, spec: FeatureSpec, what: str) -> None:
    missing = [c for c in spec.columns if c not in frame.columns]
    if missing:
        raise MonitoringError(f"{what} lacks the model's feature column(s): {', '.join(missing)}")


def load_reference(train_path: str | None, spec: FeatureSpec | dict[str, Any]) -> pd.DataFrame:
    """The champion's training split (its feature columns and the target if present)."""
    spec = _as_spec(spec)
    if not train_path:
        raise MonitoringError(
            f"the champion has no reference data: tag its version with `{TRAIN_PATH_TAG}` "
            "(the train split Parquet) or log the split as its run's training input"
        )
    frame = read_frame(train_path, [*spec.columns, spec.target])
    _require_features(frame, spec, f"reference {train_path}")
    if frame.empty:
        raise MonitoringError(f"reference {train_path} is empty")
    return frame


def window_start(logical_date: datetime | str | None, window_hours: float) -> datetime:
    """`logical_date - window_hours` (now when there is no logical date), in UTC."""
    if logical_date is None:
        end = datetime.now(UTC)
    elif isinstance(logical_date, str):
        end = datetime.fromisoformat(logical_date)
    else:
        end = logical_date
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    return (end - timedelta(hours=float(window_hours))).astimezone(UTC)


def load_current(
    source: str,
    spec: FeatureSpec | dict[str, Any],
    *,
    model_version: str | None = None,
    inference_log_dir: str | Path | None = None,
    since: datetime | None = None,
    max_rows: int | None = None,
) -> pd.DataFrame:
    """The data to compare with the reference.

    `source="inference_log"`: the log rows of `model_version` since `since` (the most
    recent `max_rows`), with their `prediction` / `proba_*` columns. Anything else is a
    batch file (CSV or Parquet path or URI), read whole. An empty frame is valid (the
    drift check reports `insufficient_data`).
    """
    spec = _as_spec(spec)
    if source == INFERENCE_LOG_SOURCE:
        from include.ml_pipeline.monitoring.inference_log import read_inference_log

        if inference_log_dir is None:
            from include.ml_pipeline.config import get_settings

            inference_log_dir = get_settings().inference_log_dir
        frame = read_inference_log(
            inference_log_dir, since=since, model_version=model_version, limit=max_rows
        )
        if frame.empty:
            return frame
        _require_features(frame, spec, f"inference log {inference_log_dir}")
        return frame
    frame = read_frame(source)
    _require_features(frame, spec, f"batch {source}")
    return frame


def snapshot_current(frame: pd.DataFrame, path: str | Path) -> Path:
    """Freeze the current rows to Parquet (atomically), so a retry sees the same data."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = frame.copy()
    if "timestamp" in out.columns:
        out["timestamp"] = out["timestamp"].astype(str)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        out.to_parquet(tmp, index=False)
    except (TypeError, ValueError):  # mixed types in a text column: keep them as text
        for column in out.columns:
            if out[column].dtype == object:
                out[column] = out[column].map(_text_or_none)
        out.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------- drift


def model_predictions(model: Any, frame: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """`prediction` and `proba_<class>` columns for `frame` (the inference log's shape)."""
    import pandas as pd

    from include.ml_pipeline.features import coerce_features

    X = coerce_features(frame, spec)
    out = {}
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(X)
        classes = [str(c) for c in model.classes_]
        out["prediction"] = [classes[i] for i in proba.argmax(axis=1)]
        for j, name in enumerate(classes):
            out[f"proba_{name}"] = proba[:, j]
    else:
        out["prediction"] = [str(v) for v in model.predict(X)]
    return pd.DataFrame(out, index=frame.index)


def load_model(model_uri: str, *, tracking_uri: str) -> Any:
    """The champion's fitted scikit-learn pipeline (the registry is trusted, as in serving)."""
    os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    import mlflow.sklearn

    from include.ml_pipeline.registry.mlflow_setup import configure_mlflow

    configure_mlflow(tracking_uri)
    return mlflow.sklearn.load_model(model_uri)


def run_drift_check(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    spec: FeatureSpec | dict[str, Any],
    thresholds: Any = None,
    *,
    model: Any = None,
) -> DriftReport:
    """Feature drift, and prediction drift when `model` is given.

    The reference is sub-sampled to `thresholds.max_rows` before scoring it. The current
    frame's own `prediction` / `proba_*` columns (inference log) are used when present;
    otherwise the model scores it too. A model that fails to score is logged and the
    report has `prediction_drift = None`, never a failed check.
    """
    from include.ml_pipeline.monitoring.drift import DriftThresholds, compute_drift

    spec = _as_spec(spec)
    if not isinstance(thresholds, DriftThresholds):
        thresholds = DriftThresholds.from_dict(thresholds)
    reference_predictions = current_predictions = None
    if model is not None and len(current):
        try:
            sample = reference
            if len(reference) > thresholds.max_rows:
                sample = reference.sample(thresholds.max_rows, random_state=thresholds.seed)
            reference_predictions = model_predictions(model, sample, spec)
            reference = sample
            if "prediction" not in current.columns:
                current_predictions = model_predictions(model, current, spec)
        except Exception as exc:
            log.warning("prediction drift skipped, the model could not score: %r", exc)
            reference_predictions = current_predictions = None
    return compute_drift(
        reference,
        current,
        spec,
        thresholds,
        reference_predictions=reference_predictions,
        current_predictions=current_predictions,
    )


def drift_reason(summary: dict[str, Any], champion: dict[str, Any], source: str) -> str:
    """One sentence for the retraining run's `retrain_reason` and the notification."""
    share = float(summary.get("share_drifted") or 0.0)
    drifted = summary.get("drifted_features") or []
    text = (
        f"data drift on {champion['model_name']} v{champion['version']}: "
        f"{summary.get('n_drifted', 0)} of {summary.get('n_features', 0)} features drifted "
        f"({share:.0%})"
    )
    if drifted:
        text += f" [{', '.join(drifted)}]"
    if summary.get("prediction_drift"):
        text += "; prediction drift"
    text += (
        f"; {summary.get('current_rows', 0)} current rows from {source} vs "
        f"{summary.get('reference_rows', 0)} reference rows"
    )
    return text


# --------------------------------------------------------------------------- decision


def recent_retrain_request(
    model_name: str,
    version: str,
    *,
    tracking_uri: str,
    since: datetime,
    experiment: str = MONITORING_EXPERIMENT,
    exclude_airflow_run_id: str | None = None,
) -> dict[str, Any] | None:
    """The latest monitoring run since `since` that requested a retraining of this
    champion version (`{"run_id", "airflow_run_id", "start_time"}`), or None."""
    from mlflow.entities import ViewType

    from include.ml_pipeline.registry.mlflow_setup import configure_mlflow

    client = configure_mlflow(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    since_ms = int(since.timestamp() * 1000)
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=(
            f"tags.{RETRAIN_REQUESTED_TAG} = 'true' and tags.model_name = {_q(model_name)} "
            f"and tags.model_version = {_q(str(version))} "
            f"and attributes.start_time >= {since_ms}"
        ),
        run_view_type=ViewType.ACTIVE_ONLY,
        order_by=["attributes.start_time DESC"],
        max_results=10,
    )
    for run in runs:
        airflow_run_id = run.data.tags.get("airflow_run_id")
        if exclude_airflow_run_id and airflow_run_id == exclude_airflow_run_id:
            continue
        return {
            "run_id": run.info.run_id,
            "airflow_run_id": airflow_run_id,
            "start_time": datetime.fromtimestamp(run.info.start_time / 1000, UTC).isoformat(),
        }
    return None


def retrain_decision(
    summary: dict[str, Any], previous_request: dict[str, Any] | None
) -> tuple[bool, str]:
    """(retrain?, why) from the drift summary and an earlier request in the cool-down."""
    status = summary.get("status")
    if not summary.get("dataset_drift"):
        if status == "insufficient_data":
            return False, (
                f"not enough current data to judge drift ({summary.get('current_rows', 0)} "
                "rows); no retraining"
            )
        return False, "no dataset drift; no retraining"
    if previous_request:
        return False, (
            "dataset drift, but a retraining of this champion version was already requested "
            f"at {previous_request['start_time']} (monitoring run "
            f"{previous_request.get('airflow_run_id')}); within the cool-down, not again"
        )
    return True, "dataset drift above the threshold; retraining requested"


# --------------------------------------------------------------------------- outputs


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._") or "x"


def write_report(
    report: DriftReport | dict[str, Any],
    champion: dict[str, Any],
    *,
    reports_dir: str | Path,
    run_key: str,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the report JSON to `<reports_dir>/monitoring/drift_<model>_v<version>_<run>.json`
    and a copy to `drift_latest.json` beside it; return the first path."""
    data = report.to_dict() if hasattr(report, "to_dict") else dict(report)
    document = {
        "model_name": champion["model_name"],
        "version": champion["version"],
        "model_uri": champion.get("model_uri"),
        **(extra or {}),
        **data,
    }
    text = json.dumps(document, indent=2, allow_nan=False, default=str)
    out_dir = Path(reports_dir) / "monitoring"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / (
        f"drift_{_safe(champion['model_name'])}_v{_safe(champion['version'])}_{_safe(run_key)}.json"
    )
    for target in (path, out_dir / "drift_latest.json"):
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
    return path


def render_monitoring_dashboard(
    report: DriftReport | dict[str, Any],
    champion: dict[str, Any],
    *,
    out_dir: str | Path,
    traffic: pd.DataFrame | None = None,
    mlflow_run_url: str | None = None,
    airflow_run_url: str | None = None,
    api_url: str | None = None,
) -> Path:
    """The dashboard (test metrics, traffic if any, drift table) of the champion, written
    to `out_dir` (the monitoring folder, so the deployment's own dashboard is kept)."""
    from include.ml_pipeline.monitoring.dashboard import DashboardContext, render_dashboard

    has_traffic = traffic is not None and len(traffic) and "timestamp" in traffic.columns
    context = DashboardContext(
        model_name=champion["model_name"],
        version=champion["version"],
        alias=champion.get("alias"),
        run_id=champion.get("run_id"),
        model_uri=champion.get("model_uri"),
        mlflow_run_url=mlflow_run_url,
        airflow_run_url=airflow_run_url,
        api_url=api_url,
        metrics=dict(champion.get("metrics") or {}),
        traffic=traffic if has_traffic else None,
        drift=report,
    )
    return render_dashboard(context, out_dir=out_dir)


def drift_table_html(report: DriftReport | dict[str, Any]) -> str:
    """The per-feature drift table as a small standalone HTML page."""
    from include.ml_pipeline.monitoring.drift import DriftReport as Report

    if not hasattr(report, "to_frame"):
        report = Report.from_dict(report)
    frame = report.to_frame()
    summary = report.summary()
    head = (
        f"<h2>Drift: {summary['status']}</h2><p>{summary['n_drifted']} of "
        f"{summary['n_features']} features drifted ({summary['share_drifted']:.0%}); "
        f"prediction drift: {summary['prediction_drift']}</p>"
    )
    table = frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="", border=1)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Drift</title></head>"
        f"<body>{head}{table}</body></html>"
    )


def log_monitoring_run(
    report: DriftReport | dict[str, Any],
    champion: dict[str, Any],
    *,
    tracking_uri: str,
    airflow_run_id: str,
    experiment: str = MONITORING_EXPERIMENT,
    artifact_location: str | None = None,
    params: dict[str, Any] | None = None,
    tags: dict[str, Any] | None = None,
    retrain_requested: bool = False,
    report_path: str | Path | None = None,
    dashboard_path: str | Path | None = None,
) -> str:
    """Log one drift check as a run of `experiment`; return its run id.

    Metrics: `DriftReport.mlflow_metrics()` plus the row counts. Artifacts: the report
    JSON, the drift table HTML and the dashboard. Tags: model name/version, status, the
    Airflow run id, `retrain_requested`. Idempotent per Airflow run: a repeat logs into
    the run that run already created.
    """
    import mlflow
    from mlflow.entities import ViewType

    from include.ml_pipeline.monitoring.drift import DriftReport as Report
    from include.ml_pipeline.registry.mlflow_setup import configure_mlflow, ensure_experiment

    if not hasattr(report, "mlflow_metrics"):
        report = Report.from_dict(report)
    experiment_id = ensure_experiment(tracking_uri, experiment, artifact_location)
    client = configure_mlflow(tracking_uri)
    summary = report.summary()
    run_tags = {str(k): str(v) for k, v in (tags or {}).items()}
    run_tags.update(
        {
            "airflow_run_id": airflow_run_id,
            ROLE_TAG: MONITORING_ROLE,
            "model_name": champion["model_name"],
            "model_version": str(champion["version"]),
            "model_uri": str(champion.get("model_uri")),
            "drift_status": str(summary["status"]),
            "dataset_drift": str(bool(summary["dataset_drift"])).lower(),
            "drifted_features": ",".join(summary["drifted_features"])[:5000],
            RETRAIN_REQUESTED_TAG: str(bool(retrain_requested)).lower(),
        }
    )
    existing = client.search_runs(
        [experiment_id],
        filter_string=f"tags.airflow_run_id = {_q(airflow_run_id)}",
        run_view_type=ViewType.ACTIVE_ONLY,
        max_results=1,
    )
    run_id = existing[0].info.run_id if existing else None
    name = f"drift {champion['model_name']} v{champion['version']}"
    with mlflow.start_run(
        run_id=run_id,
        experiment_id=None if run_id else experiment_id,
        run_name=None if run_id else name,
        tags=run_tags,
    ) as run:
        if run_id:
            mlflow.set_tags(run_tags)
        mlflow.log_params({str(k): _param(v) for k, v in (params or {}).items()})
        mlflow.log_metrics(
            {
                **report.mlflow_metrics(),
                "reference_rows": float(report.reference_rows),
                "current_rows": float(report.current_rows),
            }
        )
        mlflow.log_dict(report.to_dict(), "drift/drift_report.json")
        mlflow.log_text(drift_table_html(report), "drift/drift_table.html")
        if report_path:
            mlflow.log_artifact(str(report_path), "drift")
        if dashboard_path:
            mlflow.log_artifact(str(dashboard_path), "dashboard")
        return run.info.run_id


# --------------------------------------------------------------------------- helpers


def _as_spec(spec: FeatureSpec | dict[str, Any]) -> FeatureSpec:
    return spec if isinstance(spec, FeatureSpec) else FeatureSpec.from_dict(spec)


def _text_or_none(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value if isinstance(value, str) else str(value)


def _q(value: str) -> str:
    if "'" in value or "\\" in value:
        raise ValueError(f"value must not contain quotes or backslashes: {value!r}")
    return f"'{value}'"


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:6000]
