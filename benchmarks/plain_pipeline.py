"""The work of `ml_model_deployment_advanced` without Airflow: the benchmark's baseline.

Calls, one after another in one process, the step functions the DAG's tasks call
(`include/ml_pipeline/orchestration/steps/deployment_dag/*.py`): wait for the file, load, validate,
preprocess, split, open the MLflow parent run, train every candidate one after another
(the same nested MLflow runs), evaluate, register, decide, release, deploy the model API,
smoke-test it, drift at deployment, the dashboard, the notification. The Params are the
DAG's defaults (`orchestration/params.py`), `data_uri` and `--conf` overrides applied.

No scheduler, executor, metadata database, DagBag or task context: where a step wants an
Airflow object it gets the plain values it uses (`ti` for `train_candidate`: the four ids
of its MLflow tags; for `decide`: an object whose `xcom_push` keeps the verdict).
Two steps cannot be called as they are, because they read Airflow connections from the
metadata database:

- `deployment.roll_out` asks `connections.model_api()` (the `model_api` connection): here
  the stage function under it, `deployment.rollout.serve_version`, gets the embedded endpoint
  that the step builds when that connection is absent (what `make run` uses);
- the notification's Slack / SMTP connections: `slack_conn_id` / `smtp_conn_id` are None
  (in `make run` they are not defined either, so nothing is sent there).

The step modules import Airflow themselves (`params.py` and `fail_without_retry` go through
`orchestration/compat.py`); this script adds no Airflow import of its own. AIRFLOW_HOME is
pointed into the run's home so that import writes nothing under ~/airflow.

    PYTHONPATH=. .local/venv/bin/python benchmarks/plain_pipeline.py --data-uri FILE \
        [--conf KEY=VALUE ...] [--out summary.json]

Prints each step's seconds and writes them, with the outcome, to `--out` (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

DAG_TASKS = {  # the task each step stands for, as the DAG names it
    "wait": "esperar_datos",
    "load": "preparacion_datos.descargar_datos",
    "validate": "preparacion_datos.validar_datos",
    "preprocess": "preparacion_datos.preprocesar_datos",
    "split": "preparacion_datos.dividir_datos",
    "start_experiment": "entrenamiento_evaluacion.iniciar_experimento",
    "train": "entrenamiento_evaluacion.entrenar_modelo",
    "evaluate": "entrenamiento_evaluacion.evaluar_modelo",
    "register": "entrenamiento_evaluacion.registrar_mlflow",
    "decide": "decidir_despliegue",
    "release": "despliegue_modelo.generar_artefactos",
    "deploy_api": "despliegue_modelo.desplegar_api",
    "smoke_test": "despliegue_modelo.pruebas_api",
    "drift": "visualizacion_monitoreo.configurar_monitoreo",
    "dashboard": "visualizacion_monitoreo.configurar_dashboards",
    "notify": "notificar_despliegue_exitoso",
}


class Pushed:
    """Stands in for `ti` in `decision.decide`: keeps what it pushes to XCom."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.values[key] = value


def default_params(overrides: dict[str, Any]) -> dict[str, Any]:
    """The DAG's Param defaults with `overrides`, each checked by its Param."""
    from include.ml_pipeline.orchestration.params import deployment_params

    params = deployment_params()
    unknown = sorted(set(overrides) - set(params))
    if unknown:
        raise SystemExit(f"unknown Param(s) {unknown} (see orchestration/params.py)")
    return {
        key: param.resolve(value=overrides.get(key, param.value)) for key, param in params.items()
    }


def run(params: dict[str, Any], run_id: str, timings: dict[str, float]) -> dict[str, Any]:
    """Every step of the deployment DAG in order; `timings` gets each step's seconds."""
    from include.ml_pipeline.config import get_settings
    from include.ml_pipeline.deployment.rollout import EMBEDDED, ModelApiEndpoint, serve_version
    from include.ml_pipeline.names import DECISION_XCOM_KEY, DEPLOYMENT_DAG_ID
    from include.ml_pipeline.orchestration.steps.deployment_dag import (
        data_preparation,
        decision,
        deployment,
        monitoring,
        notifications,
        training,
    )
    from include.ml_pipeline.payloads import Release

    dag_id = DEPLOYMENT_DAG_ID

    def step(name: str, func, *args, **kwargs):
        started = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            timings[name] = round(time.perf_counter() - started, 3)
            print(f"  {name:<17} {timings[name]:8.2f} s", flush=True)

    import pendulum

    poked = step("wait", data_preparation.wait_for_data, params, pendulum.now("UTC"))
    if not poked.is_done:
        raise SystemExit(f"no data at {params['data_uri']}")
    uri = params["data_uri"]
    loaded = step("load", data_preparation.load_raw_data, uri, params, run_id)
    validated = step("validate", data_preparation.validate_raw_data, loaded, params)
    prepared = step("preprocess", data_preparation.preprocess, validated, params, run_id)
    split = step("split", data_preparation.split, prepared, loaded, params, run_id)
    jobs = step("start_experiment", training.start_experiment, params, dag_id=dag_id, run_id=run_id)

    def train_all() -> list[dict]:
        results = []
        for index, job in enumerate(jobs):  # one after another, as in `make run`
            ti = SimpleNamespace(
                dag_id=dag_id, run_id=run_id, task_id=DAG_TASKS["train"], map_index=index
            )
            started = time.perf_counter()
            results.append(training.train_candidate(job, split, params, ti))
            name = f"train[{index}]"
            timings[name] = round(time.perf_counter() - started, 3)
            print(f"    {name} {job['candidate']['name']}: {timings[name]:.2f} s", flush=True)
        return results

    results = step("train", train_all)
    evaluation = step("evaluate", training.evaluate_best, results, split, params)
    registered = step("register", training.register, evaluation, split, params, run_id=run_id)
    pushed = Pushed()
    branch = step(
        "decide",
        decision.decide,
        registered,
        params,
        pushed,
        deploy_to="deploy",
        reject_to="reject",
    )
    decided = pushed.values[DECISION_XCOM_KEY]
    if branch == "reject":
        step("notify", notifications.notify_rejected, decided, params, dag_id=dag_id, run_id=run_id)
        return {"deployed": False, "version": registered["version"]}
    released = step("release", deployment.release, decided, dag_id=dag_id, run_id=run_id)

    def roll_out() -> dict:
        # `deployment.roll_out` without its connection lookup: the embedded endpoint it
        # builds when there is no `model_api` connection.
        settings = get_settings()
        release = Release.from_dict(released)
        api = ModelApiEndpoint(
            settings.api_url,
            os.environ.get("MODEL_API_ADMIN_TOKEN") or None,
            EMBEDDED,
            "MODEL_API_URL",
        )
        serving = serve_version(
            settings,
            api,
            release.model_name,
            release.version,
            timeout=params["api_timeout_seconds"],
        )
        return serving.of(release).to_dict()

    rollout = step("deploy_api", roll_out)
    live = step("smoke_test", deployment.test_live_api, rollout, params)
    drift = step("drift", monitoring.check_drift, live, params)
    dashboard = step(
        "dashboard",
        monitoring.render_dashboard,
        live,
        drift,
        params,
        dag_id=dag_id,
        run_id=run_id,
    )
    step("notify", notifications.notify_deployed, dashboard, params, dag_id=dag_id, run_id=run_id)
    return {"deployed": True, "version": registered["version"], "api_url": rollout["url"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-uri", required=True, help="raw CSV / Parquet (path or URI)")
    parser.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Param override, VALUE as JSON when it parses (repeatable)",
    )
    parser.add_argument("--run-id", default=None, help="default: plain__<UTC time>")
    parser.add_argument("--out", type=Path, default=None, help="write the timings here (JSON)")
    args = parser.parse_args(argv)

    home = Path(os.environ.get("ML_PIPELINE_HOME") or Path.cwd() / ".local")
    os.environ.setdefault("AIRFLOW_HOME", str(home / "airflow"))  # the steps import Airflow
    overrides: dict[str, Any] = {}
    for item in args.conf:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except ValueError:
            overrides[key] = value
    overrides["data_uri"] = args.data_uri
    overrides.update(slack_conn_id=None, smtp_conn_id=None)  # connections live in Airflow's DB

    started = time.perf_counter()
    params = default_params(overrides)
    run_id = args.run_id or time.strftime("plain__%Y-%m-%dT%H:%M:%S", time.gmtime())
    timings: dict[str, float] = {"params": round(time.perf_counter() - started, 3)}
    print(f"plain pipeline {run_id} on {args.data_uri}", flush=True)
    outcome: dict[str, Any] = {}
    error = None
    try:
        outcome = run(params, run_id, timings)
    except Exception as exc:  # reported in the summary, then re-raised
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        seconds = round(time.perf_counter() - started, 3)
        summary = {
            "run_id": run_id,
            "state": "failed" if error else "success",
            "seconds": seconds,
            "steps": timings,
            "tasks": DAG_TASKS,
            "outcome": outcome,
            "error": error,
            "airflow_imported_by_steps": "airflow" in sys.modules,
        }
        print(f"plain pipeline {summary['state']} in {seconds:.1f} s", flush=True)
        if args.out:
            args.out.write_text(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
