"""`make mlflow-ui`: the MLflow UI on the local store (http://127.0.0.1:5000)."""

from __future__ import annotations

import os
import sys

from include.ml_pipeline.config import get_settings


def main() -> None:
    settings = get_settings().ensure_dirs()
    port = os.environ.get("MLFLOW_UI_PORT", "5000")
    print(f"MLflow UI on {settings.mlflow_tracking_uri}: http://127.0.0.1:{port} (Ctrl+C stops)")
    os.execvp(
        sys.executable,
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            settings.mlflow_tracking_uri,
            "--default-artifact-root",
            settings.mlflow_artifact_root,
            "--host",
            "127.0.0.1",
            "--port",
            port,
            "--workers",
            "1",
        ],
    )


if __name__ == "__main__":
    main()
