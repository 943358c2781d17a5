"""The local background services: `make api`, `make stop`, `make status`.

- `api`: start the model API on the current `champion` of the configured `model_name` (the
  default model) and of every other model deployed in this home
  (`<home>/api/served_models.json`;
  `deployment.api_process.start_api`, on `MODEL_API_URL`, default http://127.0.0.1:8000),
  unless it already runs.
- `stop`: stop the Airflow UI of `make ui` (2.11: webserver + scheduler; 3.x: api-server,
  scheduler, DAG processor, triggerer) and the model API (started by `make run` or `make api`)
  with every model it serves.
- `status`: what runs, and where.
"""

from __future__ import annotations

import sys

from include.ml_pipeline.deployment.api_process import (
    ApiStartError,
    api_status,
    models_file,
    start_api,
    stop_api,
)


def _served(url: str) -> str:
    """`name vN, name vM` from the API's `GET /models` ("?" when it does not answer)."""
    import httpx

    try:
        models = httpx.get(url + "/models", timeout=5.0).json()["models"]
    except (httpx.HTTPError, ValueError, KeyError):
        return "?"
    return ", ".join(
        f"{m['name']} v{m['model_version']}" if m["ready"] else f"{m['name']} (not loaded)"
        for m in models
    )


def _champion() -> tuple[str, str | None]:
    from include.ml_pipeline.config import get_settings
    from include.ml_pipeline.names import CHAMPION
    from include.ml_pipeline.registry.registry import get_alias_version

    settings = get_settings()
    version = get_alias_version(
        settings.model_name, CHAMPION, tracking_uri=settings.mlflow_tracking_uri
    )
    return settings.model_name, version


def start_model_api() -> int:
    running = api_status()
    if running is not None:
        print(f"The model API is already running at {running.url} (pid {running.pid}).")
        return 0
    from include.ml_pipeline.serving.api.state import read_models_file

    deployed = read_models_file(models_file())
    name, version = _champion()
    if version is None and not deployed:
        print(
            f"No '{name}' version has the alias champion yet: run `make run` first.",
            file=sys.stderr,
        )
        return 1
    default = name if version is not None else deployed[0]
    try:
        process = start_api(model_name=default, models=[m for m in deployed if m != default])
    except (ApiStartError, ValueError) as exc:
        print(f"The model API did not start: {exc}", file=sys.stderr)
        return 1
    print(
        f"Model API: {process.url} serves {_served(process.url)} (champions); "
        f"docs {process.url}/docs; log {process.log_path}; stop it with: make stop"
    )
    return 0


def main(argv: list[str]) -> int:
    from devtools import ui

    command = argv[0] if argv else "status"
    if command == "api":
        return start_model_api()
    running = api_status()
    if command == "stop":
        stopped_ui = ui.stop()
        print(
            f"Stopped the Airflow UI at {stopped_ui.url}."
            if stopped_ui
            else "The Airflow UI is not running."
        )
        if running is None:
            print("The model API is not running.")
            return 0
        served = _served(running.url)
        stop_api()
        print(f"Stopped the model API at {running.url} (pid {running.pid}; served {served}).")
        return 0
    ui_state = ui.status()
    print(f"Airflow UI: {ui_state.url}" if ui_state else "Airflow UI: not running")
    print(
        f"Model API: {running.url} (pid {running.pid}) serves {_served(running.url)}"
        if running
        else "Model API: not running"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
