"""The embedded Airflow used by `make run` and the tests: no Docker, no servers.

`configure()` must run before `airflow` is imported: it points AIRFLOW_HOME, the metadata
database (SQLite) and the logs into `ML_PIPELINE_HOME` and loads this project's `dags/`.
It defines no service connection: without them the tasks use the embedded defaults (local
storage root, SQLite MLflow store, a local model API process).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from include.ml_pipeline.config import PROJECT_ROOT, get_settings


def _airflow_major() -> int:
    from importlib.metadata import version

    return int(version("apache-airflow").split(".", 1)[0])


def configure(home: Path | None = None) -> Path:
    """Set the environment for an embedded Airflow under `home`; return AIRFLOW_HOME."""
    if home is not None:
        os.environ["ML_PIPELINE_HOME"] = str(home)
    settings = get_settings().ensure_dirs()
    airflow_home = settings.home / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    env = {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # Airflow 3 has no SequentialExecutor (read before `airflow` is imported: metadata)
        "AIRFLOW__CORE__EXECUTOR": (
            "LocalExecutor" if _airflow_major() >= 3 else "SequentialExecutor"
        ),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(airflow_home / "logs"),
        "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "30",
        "AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES": "airflow.* astro.*",
        # the UI's address for links in notifications ([webserver] moved to [api] on 3.x)
        f"AIRFLOW__{'API' if _airflow_major() >= 3 else 'WEBSERVER'}__BASE_URL": (
            "http://localhost:8080"
        ),
        "AIRFLOW__METRICS__TIMER_UNIT_CONSISTENCY": "True",
        "PYTHONPATH": os.pathsep.join(
            p for p in [str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")] if p
        ),
    }
    for key, value in env.items():
        os.environ.setdefault(key, value)
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    return airflow_home


def ensure_metadata_db() -> None:
    """Create or upgrade the SQLite metadata database (idempotent, ~15 s the first time)."""
    db = Path(os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///"))
    marker = db.with_suffix(".migrated")
    if db.exists() and marker.exists():
        return
    done = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"airflow db migrate failed:\n{done.stdout}\n{done.stderr}")
    marker.touch()


def serialize_dags(bag=None, *, require: tuple[str, ...] = ()) -> dict[str, str]:
    """Write the DAGs (default: all of the DAGs folder) to the metadata database, as the
    scheduler's DAG processor and `airflow dags reserialize` do; return import errors.
    `require`: DAG ids that must have parsed (else `SystemExit` with the import errors).

    `dag.test()` (`make run`) writes runs and task instances but neither the DAG row nor
    the serialized DAG, and the webserver shows only serialized DAGs: without this the UI
    says the DAG "seems to be missing from DagBag" and lists none of the runs;
    `TriggerDagRunOperator` needs the triggered DAG there too."""
    import logging

    from include.ml_pipeline.orchestration import compat

    logging.disable(logging.INFO)  # parsing and syncing log a line per DAG and permission
    try:
        if bag is None:
            bag = compat.dag_bag()
        missing = [dag_id for dag_id in require if dag_id not in bag.dags]
        if missing:
            raise SystemExit(f"DAG(s) {missing} failed to load: {bag.import_errors}")
        compat.sync_dags_to_db(bag)
    finally:
        logging.disable(logging.NOTSET)
    return dict(bag.import_errors)


def ui_env(url: str) -> dict[str, str]:
    """Environment of `make ui`'s webserver and scheduler, on top of `configure()`'s."""
    return {
        "AIRFLOW__WEBSERVER__BASE_URL": url,
        # The database and the scheduler's heartbeat on /health; no log server (the
        # webserver reads the local task logs), no example DAGs, no unpausing by itself.
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__WEBSERVER__WARN_DEPLOYMENT_EXPOSURE": "False",
        "AIRFLOW__WEBSERVER__EXPOSE_CONFIG": "False",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "60",
    }
