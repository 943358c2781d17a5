"""The Astro files a user runs and deploys with: `astro dev init`'s folders, the compose
override (loopback ports, the pipeline volume off ~/.local, no working default token),
one ML_PIPELINE_HOME everywhere, and the GitHub workflows (they parse, and deploy only
with a secret and a deployment id given in the repository's settings)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = {"ml_model_deployment_advanced.py", "ml_model_monitoring.py"}


pytestmark = pytest.mark.quick  # the files only, no browser


def _need(*paths: str) -> None:
    """Skip where the project's own files are absent: the Astro image (`astro dev pytest`)
    has no .env, airflow_settings.yaml or .github (.dockerignore leaves them out)."""
    missing = [p for p in paths if not (ROOT / p).exists()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not here (not copied into the Astro image)")


def _env_file() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / ".env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def _yaml(path: str) -> dict:
    return yaml.safe_load((ROOT / path).read_text())


def test_astro_dev_init_folders_are_there():
    # git keeps no empty folder: plugins/ holds its README.
    assert [p.name for p in (ROOT / "plugins").iterdir()]
    assert (ROOT / "dags" / ".airflowignore").is_file()


def test_airflowignore_keeps_both_dags(airflow_db):
    from airflow.utils.file import list_py_file_paths

    from include.ml_pipeline.orchestration.compat import AIRFLOW_3

    extra = {} if AIRFLOW_3 else {"include_examples": False}  # no examples argument on 3.x
    found = {Path(p).name for p in list_py_file_paths(str(ROOT / "dags"), **extra)}
    assert found >= DAG_FILES, found


def test_compose_publishes_on_loopback_only_and_mounts_no_home():
    _need(".env", "airflow_settings.yaml", "docker-compose.override.yml")
    compose = _yaml("docker-compose.override.yml")
    home = _env_file()["ML_PIPELINE_HOME"]
    assert home == "/usr/local/airflow/pipeline"
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
        for volume in service.get("volumes", []):
            target = str(volume).split(":")[1]
            assert not target.startswith("/usr/local/airflow/.local"), (name, volume)
            if str(volume).startswith("pipeline-local:"):
                assert target == home, (name, volume)
    api = compose["services"]["model-api"]
    assert api["environment"]["ML_PIPELINE_HOME"] == home
    for dockerfile in ("Dockerfile", "Dockerfile.model-api"):
        assert f"ML_PIPELINE_HOME={home}" in (ROOT / dockerfile).read_text(), dockerfile


def test_no_working_default_admin_token():
    _need(".env", "airflow_settings.yaml", "docker-compose.override.yml")
    # One place for the token: .env, which the Astro CLI gives the Airflow containers and
    # the override gives the model API (the CLI fills compose's ${...} from the shell only).
    api = _yaml("docker-compose.override.yml")["services"]["model-api"]
    assert api["env_file"] == ".env"
    assert "MODEL_API_ADMIN_TOKEN" not in api["environment"]
    for path in (".env", "docker-compose.override.yml", "airflow_settings.yaml"):
        assert "change-me-local-admin-token" not in (ROOT / path).read_text(), path
    assert _env_file()["MODEL_API_ADMIN_TOKEN"] == ""
    model_api = next(
        c
        for c in _yaml("airflow_settings.yaml")["airflow"]["connections"]
        if c["conn_id"] == "model_api"
    )
    assert not model_api["conn_password"]


WORKFLOWS = sorted(p.name for p in (ROOT / ".github" / "workflows").glob("*.yml"))


@pytest.mark.parametrize("path", WORKFLOWS)
def test_workflow_parses(path):
    workflow = _yaml(f".github/workflows/{path}")
    assert workflow["jobs"], path
    assert True in workflow or "on" in workflow  # YAML 1.1 reads the key `on` as True


def test_ci_runs_lint_and_make_test_and_deploy_needs_a_secret():
    _need(".github/workflows/ci.yml", ".github/workflows/deploy.yml", ".ci/run")
    ci = _yaml(".github/workflows/ci.yml")
    steps = [s.get("run", "") for job in ci["jobs"].values() for s in job["steps"]]
    assert "make lint" in steps
    assert "bash .ci/run" in steps
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    deploy = _yaml(".github/workflows/deploy.yml")
    triggers = deploy[True]
    assert "workflow_dispatch" in triggers
    job = deploy["jobs"]["deploy"]
    assert job["needs"] == "ci"
    assert job["env"]["ASTRO_API_TOKEN"] == "${{ secrets.ASTRO_API_TOKEN }}"
    action = next(
        s for s in job["steps"] if str(s.get("uses", "")).startswith("astronomer/deploy-action@")
    )
    assert action["with"]["deployment-id"] == "${{ env.DEPLOYMENT_ID }}"
