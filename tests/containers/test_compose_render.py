"""The `astro dev start` reproduction's own logic (containers/compose.py), without podman:
the Go-template subset, compose interpolation as the Astro CLI loads it (process
environment only), the override merge; and, on the CLI's template (vendored in
containers/third_party/astro-cli/), the project's merged compose file: loopback ports, the
pipeline volume, the token's path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.quick  # no podman: the files and the rendering only

compose = pytest.importorskip("containers.compose", reason="containers/ not in this image")


def test_go_template_fields_conditions_and_trims():
    text = (
        "a: {{ .A }}\nports:\n  {{- if not .Expose }}\n  - 127.0.0.1:{{ .P }}:80\n"
        "  {{- else }}\n  - {{ .P }}:80\n  {{- end }}\n{{if .On}}x: 1{{else}}x: 2{{end}}\n"
    )
    out = compose.render_go_template(text, {"A": "b", "Expose": False, "P": "81", "On": False})
    assert out == "a: b\nports:\n  - 127.0.0.1:81:80\nx: 2\n"
    out = compose.render_go_template(text, {"A": "b", "Expose": True, "P": "81", "On": True})
    assert out == "a: b\nports:\n  - 81:80\nx: 1\n"


def test_go_template_unknown_field_is_an_error_naming_it():
    with pytest.raises(KeyError, match=r"\.Nope"):
        compose.render_go_template("{{ .Nope }}", {})


def test_interpolation_like_compose():
    env = {"SET": "v", "EMPTY": ""}
    assert compose.interpolate("$$HOME ${SET} $SET", env) == "$HOME v v"
    assert compose.interpolate("${EMPTY:-d} ${EMPTY-d} ${UNSET:-d}", env) == "d  d"
    assert compose.interpolate("${UNSET:-${SET}}", env) == "v"
    with pytest.raises(compose.EngineError, match="EMPTY is missing a value: say why"):
        compose.interpolate("${EMPTY:?say why}", env, "where")


def test_override_merges_like_compose():
    base = {
        "services": {
            "s": {
                "image": "i",
                "environment": {"A": "1"},
                "volumes": ["logs:/logs", "/x:/data"],
                "ports": ["1:1"],
            }
        },
        "volumes": {"logs": {}},
    }
    import yaml

    # One name per process: CI runs the suite on both Airflow lines at once in one checkout.
    override = ROOT / ".local" / f"test-override-{os.getpid()}.yml"
    override.parent.mkdir(exist_ok=True)
    override.write_text(
        yaml.safe_dump(
            {
                "services": {
                    "s": {"environment": ["B=2"], "volumes": ["other:/data"], "ports": ["2:2"]}
                },
                "volumes": {"other": {}},
            }
        )
    )
    try:
        merged = compose.load(yaml.safe_dump(base), override, {})
    finally:
        override.unlink()
    service = merged["services"]["s"]
    assert service["environment"] == {"A": "1", "B": "2"}
    assert service["volumes"] == ["logs:/logs", "other:/data"]  # same target: replaced
    assert service["ports"] == ["1:1", "2:2"]
    assert set(merged["volumes"]) == {"logs", "other"}


@pytest.fixture(scope="module", params=sorted(compose.TEMPLATES), ids=lambda m: f"airflow{m}")
def merged(request) -> dict:
    """The project's merged compose file on each Runtime's template (run.py renders the
    same: the variable of the template if set, else the vendored copy)."""
    if not (ROOT / "docker-compose.override.yml").exists():
        pytest.skip("docker-compose.override.yml not here (not copied into the Astro image)")
    template = compose.TEMPLATES[request.param]
    rendered, _image, _ = compose.render(
        compose.template_text(template), ROOT, webserver_port="8080", postgres_port="5432"
    )
    env = {"MODEL_API_ADMIN_TOKEN": "t"}
    return compose.load(rendered, ROOT / "docker-compose.override.yml", env)


def _airflow_services(merged: dict) -> list[str]:
    image = merged["services"]["scheduler"]["image"]
    return [n for n, s in merged["services"].items() if s.get("image") == image]


def test_every_published_port_is_loopback(merged):
    for name, service in merged["services"].items():
        for port in service.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_every_service_has_an_image_or_a_build(merged):
    """compose-go's rule, which `astro dev start` applies to the merged files: the override
    loads on both Runtimes' templates only if it extends services both have."""
    for name, service in merged["services"].items():
        assert service.get("image") or service.get("build"), name


def test_where_tasks_run_and_the_api_share_the_pipeline_volume(merged):
    """LocalExecutor: the tasks run in the scheduler (and deferrals in the triggerer), on
    both lines; the model API writes its inference log there."""
    home = "/usr/local/airflow/pipeline"
    for name in ("scheduler", "triggerer", "model-api"):
        assert f"pipeline-local:{home}" in merged["services"][name]["volumes"], name
    for name in merged["services"]:
        volumes = merged["services"][name].get("volumes") or []
        assert not any(":/usr/local/airflow/.local" in str(v) for v in volumes), name


def test_model_api_reads_the_token_from_where_airflow_reads_it(merged):
    """The CLI gives the Airflow containers `.env` (env_file) and interpolates compose
    files from the shell only: a token the API takes from `${MODEL_API_ADMIN_TOKEN}` and
    Airflow from `.env` is set in two places or the reload is refused."""
    api = merged["services"]["model-api"]
    files = api.get("env_file") or []
    files = [files] if isinstance(files, str) else files
    assert ".env" in files, api
    assert "MODEL_API_ADMIN_TOKEN" not in (api.get("environment") or {}), api["environment"]
    for name in _airflow_services(merged):
        if name != "db-migration":  # Airflow 3's one-shot `airflow db migrate`: no env_file
            assert merged["services"][name].get("env_file") == ".env", name


def test_each_runtime_gets_its_own_services():
    """generateConfig picks the template by the Runtime's Airflow major version: Airflow 3
    runs the API server, the DAG processor and the migration as their own services."""
    services = {}
    for major, template in compose.TEMPLATES.items():
        rendered, _, _ = compose.render(
            compose.template_text(template), ROOT, webserver_port="8123", postgres_port="5432"
        )
        services[major] = yaml.safe_load(rendered)["services"]
    assert {"webserver", "scheduler", "triggerer"} <= set(services[2])
    assert "api-server" not in services[2]
    assert {"api-server", "scheduler", "dag-processor", "triggerer", "db-migration"} <= set(
        services[3]
    )
    assert "webserver" not in services[3]
    assert services[3]["api-server"]["ports"] == ["127.0.0.1:8123:8080"]


def test_an_override_for_a_service_the_template_lacks_is_refused_naming_it(tmp_path):
    override = tmp_path / "docker-compose.override.yml"
    override.write_text("services:\n  webserver:\n    volumes: ['x:/x']\n")
    rendered, _, _ = compose.render(
        compose.template_text(compose.TEMPLATES[3]), ROOT, webserver_port="1", postgres_port="2"
    )
    with pytest.raises(compose.EngineError, match=r'service "webserver" has neither an image'):
        compose.load(rendered, override, {})


def test_shell_alone_interpolates_the_compose_files():
    """`astro dev start` loads the compose files with the process environment only."""
    if not (ROOT / "docker-compose.override.yml").exists():
        pytest.skip("docker-compose.override.yml not here (not copied into the Astro image)")
    template = compose.TEMPLATES[2]
    rendered, _, _ = compose.render(
        compose.template_text(template), ROOT, webserver_port="8080", postgres_port="5432"
    )
    merged = compose.load(rendered, ROOT / "docker-compose.override.yml", {})
    assert merged["services"]["mlflow"]["ports"] == ["127.0.0.1:5001:5000"]
