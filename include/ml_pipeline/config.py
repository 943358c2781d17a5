"""Where things live and which services the pipeline talks to.

Every setting has an embedded default under one local folder (`ML_PIPELINE_HOME`,
default `<project>/.local`), and an environment variable that points it elsewhere
(`astro dev start` sets them in `.env` / `docker-compose.override.yml`). Nothing here
imports Airflow, so the same settings serve the DAG, the model API and the tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: The registered model's name unless `ML_PIPELINE_MODEL_NAME` says otherwise: it fits
#: classifiers and regressors alike.
DEFAULT_MODEL_NAME = "tabular_model"
#: The default before regression existed: an embedded home whose MLflow registry already
#: holds a model of this name keeps using it (`default_model_name`), so its champion,
#: aliases and API keep working after an upgrade.
LEGACY_MODEL_NAME = "tabular_classifier"
DEFAULT_API_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class Settings:
    home: Path
    mlflow_tracking_uri: str
    mlflow_artifact_root: str
    mlflow_experiment: str
    model_name: str
    api_url: str
    #: The storage root URI (`ML_PIPELINE_STORAGE`: a path, `file://`, `s3://bucket/prefix`,
    #: ...): everything that outlives a task lives under it (include/ml_pipeline/storage.py).
    storage_uri: str
    #: Reports and dashboards, and the model API's inference log: under the storage root
    #: unless `ML_PIPELINE_REPORTS` / `ML_PIPELINE_INFERENCE_LOG` name another URI.
    reports_uri: str
    inference_log_uri: str
    #: One JSON object per notification (`ML_PIPELINE_NOTIFICATIONS`, default
    #: `<storage_uri>/notifications`): S3 cannot append, so there is no shared log file.
    notifications_uri: str

    def ensure_dirs(self) -> Settings:
        """Create the local folders: the home and, when the storage root is local, the
        root itself (a bucket is never created here)."""
        from include.ml_pipeline.storage import local_path

        self.home.mkdir(parents=True, exist_ok=True)
        root = local_path(self.storage_uri)
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
        if self.mlflow_tracking_uri.startswith("sqlite:///"):
            Path(self.mlflow_tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
                parents=True, exist_ok=True
            )
        return self


def _path(env: str, default: Path) -> Path:
    value = os.environ.get(env)
    return Path(value).expanduser().resolve() if value else default


def _uri(env: str, default: str) -> str:
    from include.ml_pipeline.storage import as_uri

    value = os.environ.get(env, "").strip()
    return as_uri(value) if value else default


def default_model_name(tracking_uri: str) -> str:
    """`LEGACY_MODEL_NAME` when the embedded registry (a `sqlite:///` tracking URI whose
    file exists) already has a registered model of that name, else `DEFAULT_MODEL_NAME`.
    A tracking server is not asked (no network call in settings): a deployment that
    registered `tabular_classifier` there sets `ML_PIPELINE_MODEL_NAME` (`.env` does)."""
    import sqlite3

    if not tracking_uri.startswith("sqlite:///"):
        return DEFAULT_MODEL_NAME
    path = Path(tracking_uri.removeprefix("sqlite:///"))
    if not path.is_file():
        return DEFAULT_MODEL_NAME
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0) as con:
            found = con.execute(
                "SELECT 1 FROM registered_models WHERE name = ?", (LEGACY_MODEL_NAME,)
            ).fetchone()
    except sqlite3.Error:  # not an MLflow store yet (no table), or locked: the new name
        return DEFAULT_MODEL_NAME
    return LEGACY_MODEL_NAME if found else DEFAULT_MODEL_NAME


def get_settings() -> Settings:
    """Read the settings from the environment (cheap; call it where you need it)."""
    from include.ml_pipeline.storage import as_uri, join

    home = _path("ML_PIPELINE_HOME", PROJECT_ROOT / ".local")
    mlflow_dir = home / "mlflow"
    storage_uri = _uri("ML_PIPELINE_STORAGE", as_uri(home / "data"))
    inference_log_uri = _uri("ML_PIPELINE_INFERENCE_LOG", join(storage_uri, "inference_log"))
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{mlflow_dir / 'mlflow.db'}")
    model_name = os.environ.get("ML_PIPELINE_MODEL_NAME") or default_model_name(tracking_uri)
    return Settings(
        home=home,
        mlflow_tracking_uri=tracking_uri,
        mlflow_artifact_root=os.environ.get(
            "ML_PIPELINE_MLFLOW_ARTIFACTS", (mlflow_dir / "artifacts").as_uri()
        ),
        mlflow_experiment=os.environ.get("ML_PIPELINE_EXPERIMENT", "ml_model_deployment_advanced"),
        model_name=model_name,
        api_url=os.environ.get("MODEL_API_URL", DEFAULT_API_URL).rstrip("/"),
        storage_uri=storage_uri,
        reports_uri=_uri("ML_PIPELINE_REPORTS", join(storage_uri, "reports")),
        inference_log_uri=inference_log_uri,
        notifications_uri=_uri("ML_PIPELINE_NOTIFICATIONS", join(storage_uri, "notifications")),
    )


def tracking_auth_headers() -> dict[str, str]:
    """The `Authorization` header MLflow's own client sends to a tracking server, from
    its environment: a bearer `MLFLOW_TRACKING_TOKEN`, else basic auth when both
    `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD` are set; none otherwise."""
    import base64

    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    user, password = (os.environ.get(f"MLFLOW_TRACKING_{k}") for k in ("USERNAME", "PASSWORD"))
    if user and password:
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}
    return {}
