"""Without MODEL_API_ADMIN_TOKEN every reload is refused (in-process app)."""

from __future__ import annotations

from dataclasses import replace

from fastapi.testclient import TestClient

from include.ml_pipeline.serving.api.app import create_app
from include.ml_pipeline.serving.api.settings import get_serving_settings


def test_reload_refused_without_configured_token(tmp_path):
    settings = replace(get_serving_settings(), admin_token=None, log_uri=tmp_path.as_uri())
    calls = []
    app = create_app(settings, loader=lambda: calls.append(1), load_on_startup=False)
    with TestClient(app) as client:
        response = client.post("/admin/reload", headers={"Authorization": "Bearer x"})
        assert response.status_code == 403
        assert "MODEL_API_ADMIN_TOKEN" in response.json()["message"]
        assert client.get("/ping").status_code == 503
        assert client.post("/invocations", json={"inputs": {}}).status_code == 503
        assert client.get("/version").json()["model_version"] is None
    assert calls == []
