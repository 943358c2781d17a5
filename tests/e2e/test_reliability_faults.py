"""Fault injection in whole DAG runs (embedded mode): the model API is killed at deploy
time. Each run must end with `champion` on a version the API actually serves, and nothing
half-done (no rollback of a good version, no second API process, the release recorded).

The faults are injected in this process, where `dag.test()` runs the tasks: the API
process is killed with SIGKILL as `desplegar_api` starts, or between its "is an API up?"
check and the reload request.
"""

from __future__ import annotations

import json
import os
import signal
import time

import httpx
import pytest
from mlflow import MlflowClient

from devtools import run_pipeline
from include.ml_pipeline import storage
from include.ml_pipeline.config import get_settings
from include.ml_pipeline.deployment import api_client, api_process, rollout
from include.ml_pipeline.training.candidates import WEAK_CANDIDATE
from tests.e2e.conftest import FAST_CANDIDATES

MODEL = "fault_classifier"


def _conf(data, **extra) -> dict:
    # tolerance 0.5: a challenger as good as the champion is deployed (the faults are at
    # deploy time; the gate is not under test here)
    return {
        "data_uri": str(data),
        "model_name": MODEL,
        "candidates": FAST_CANDIDATES,
        "latency_p95_budget_ms": 500.0,
        "tolerance": 0.5,
        **extra,
    }


def _registry():
    uri = get_settings().mlflow_tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _alias(alias: str) -> str | None:
    try:
        return str(_registry().get_model_version_by_alias(MODEL, alias).version)
    except Exception:
        return None


def _served(url: str) -> str | None:
    try:
        return str(httpx.get(f"{url}/version", timeout=5).json()["model_version"])
    except httpx.HTTPError:
        return None


def _kill_api() -> int:
    """SIGKILL the running embedded API (no clean shutdown), wait until it is gone."""
    running = api_process.api_status()
    assert running is not None, "no model API to kill"
    os.kill(running.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:  # our child (started by an earlier run in this process): reap it
            if os.waitpid(running.pid, os.WNOHANG)[0]:
                break
        except ChildProcessError:
            if not os.path.exists(f"/proc/{running.pid}"):
                break
        time.sleep(0.05)
    return running.pid


@pytest.fixture
def champion(run_dag, small_csv, api_url) -> str:
    """A champion served by the embedded API: a first run when there is none yet."""
    version = _alias("champion")
    if version is None or _served(api_url) != version:
        result = run_dag(_conf(small_csv))
        assert result.state == "success", result.log[-3000:]
        version = _alias("champion")
        assert _served(api_url) == version
    return version


def _tries(result, task_id: str) -> int:
    return result.dag_run.get_task_instance(task_id).try_number


def _kill_api_on_first_call(monkeypatch, module, name: str) -> list[int]:
    """Patch `module.name` so that its first call SIGKILLs the embedded API first; the
    pids killed are appended to the list returned."""
    killed: list[int] = []
    real = getattr(module, name)

    def killed_first(*args, **kwargs):
        if not killed:
            killed.append(_kill_api())
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, killed_first)
    return killed


def _assert_deployed_and_served(result, api_url: str, before: str, killed: list[int]) -> None:
    """The run deployed a new champion that a new API process (started by desplegar_api on
    its first try) serves, with `before` kept for rollback, and nothing half-done."""
    assert len(killed) == 1
    assert result.state == "success", result.log[-4000:]
    new = result.result("entrenamiento_evaluacion.registrar_mlflow")["version"]
    assert new != before
    assert _alias("champion") == new
    assert _alias("previous_champion") == before
    assert _served(api_url) == new  # the API actually serves the champion
    running = api_process.api_status()
    assert running is not None
    assert running.pid != killed[0]
    rollout_done = result.result("despliegue_modelo.desplegar_api")
    assert rollout_done["started"]["pid"] == running.pid
    # at once, not through a task retry (120 s apart by default)
    assert _tries(result, "despliegue_modelo.desplegar_api") == 1
    # nothing half-done: the release is recorded, the smoke tests ran on the new API,
    # nothing was rolled back, no failure was notified
    release = result.result("despliegue_modelo.generar_artefactos")
    assert storage.read_json(release["manifest_uri"])["version"] == new
    assert str(rollout_done["version_info"]["model_version"]) == new
    assert result.task_state("despliegue_modelo.pruebas_api") == "success"
    assert result.task_state("despliegue_modelo.revertir_despliegue") == "skipped"
    assert result.task_state("notificar_fallo") == "skipped"
    assert result.task_state("fin") == "success"


def test_api_killed_when_desplegar_api_starts_is_started_again_serving_the_new_champion(
    run_dag, small_csv, api_url, champion, monkeypatch
):
    killed = _kill_api_on_first_call(monkeypatch, rollout, "serve_version")
    result = run_dag(_conf(small_csv, seed=7))
    _assert_deployed_and_served(result, api_url, champion, killed)


def test_api_killed_between_the_check_and_the_reload_is_started_again_too(
    run_dag, small_csv, api_url, champion, monkeypatch
):
    # desplegar_api found the API up; it dies before the reload request
    killed = _kill_api_on_first_call(monkeypatch, api_client, "reload_model")
    result = run_dag(_conf(small_csv, seed=8))
    _assert_deployed_and_served(result, api_url, champion, killed)
    assert "went away before the reload; starting it" in result.log


def test_after_a_rejected_run_a_down_api_is_reported_with_how_to_start_it(
    small_csv, api_url, champion, capsys
):
    before = _alias("champion")
    _kill_api()
    candidates = json.dumps([WEAK_CANDIDATE])
    code = run_pipeline.main(
        [
            "--data",
            str(small_csv),
            "--target",
            "churn",
            "--conf",
            f"candidates={candidates}",
            "--conf",
            f'model_name="{MODEL}"',
        ]
    )
    printed = capsys.readouterr().out
    summary = json.loads((get_settings().home / "run_summary.json").read_text())
    assert code == 0, summary["failed_tasks"]  # a rejection is a successful run
    assert summary["decision"]["deploy"] is False
    assert _alias("champion") == before
    assert summary["api"] == {"url": api_url, "up": False, "serves": None, "champion": before}
    assert (
        f"model API DOWN at {api_url}: champion v{before} is not served; start it with: make api"
    ) in printed
