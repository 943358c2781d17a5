"""The model API refuses to start with a placeholder admin token, saying how to make a
real one; an empty token starts it with reloads disabled."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest

from include.ml_pipeline.config import PROJECT_ROOT
from include.ml_pipeline.serving.api.settings import (
    InsecureSettingError,
    check_admin_token,
    get_serving_settings,
)

PLACEHOLDERS = [
    "change-me",
    "changeme",
    "CHANGE_ME_0123456789",
    "placeholder",
    "<your admin token>",
    "<MODEL_API_ADMIN_TOKEN>",
    "${MODEL_API_ADMIN_TOKEN}",
    "{{ admin_token }}",
    "example-token-0123456789",
    "replace-me-with-a-token",
    "dummy",
    "password",
    "my-secret-value-123",
    "admin-token",
    "short-token",
    "0123456789abcde",
    "aaaaaaaaaaaaaaaaaaaaaaaa",
    "abababababababababab",
]


@pytest.mark.parametrize("token", PLACEHOLDERS)
def test_placeholders_and_short_tokens_are_refused_with_how_to_fix(token):
    with pytest.raises(InsecureSettingError) as info:
        check_admin_token(token)
    message = str(info.value)
    assert "MODEL_API_ADMIN_TOKEN" in message
    assert "secrets.token_urlsafe(32)" in message  # how to make one
    assert "leave it empty" in message


def test_random_tokens_pass_and_empty_disables_reloads(monkeypatch):
    for _ in range(200):
        token = secrets.token_urlsafe(32)
        assert check_admin_token(token) == token
    token = secrets.token_hex(16)
    assert check_admin_token(token) == token
    assert check_admin_token(f"  {token}\n") == token  # blanks around it (a .env line) go
    for empty in (None, "", "   "):
        assert check_admin_token(empty) is None
    monkeypatch.setenv("MODEL_API_ADMIN_TOKEN", "")
    assert get_serving_settings().admin_token is None  # /admin/reload answers 403
    monkeypatch.setenv("MODEL_API_ADMIN_TOKEN", "change-me")
    with pytest.raises(InsecureSettingError):
        get_serving_settings()


def test_the_service_process_refuses_to_start(tmp_path):
    env = dict(
        os.environ,
        MODEL_API_ADMIN_TOKEN="change-me",
        ML_PIPELINE_HOME=str(tmp_path),
        PYTHONPATH=str(PROJECT_ROOT),
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/m.db",
    )
    done = subprocess.run(
        [sys.executable, "-m", "include.ml_pipeline.serving.api", "--port", "0"],
        env=env,
        cwd=str(PROJECT_ROOT),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "model API not started: MODEL_API_ADMIN_TOKEN is not a usable secret" in done.stderr
    assert "Traceback" not in done.stderr


def test_start_api_refuses_before_starting_a_process(tmp_path):
    from include.ml_pipeline.deployment import api_process

    with pytest.raises(InsecureSettingError):
        api_process.start_api(
            url="http://127.0.0.1:1", admin_token="placeholder", home=tmp_path, timeout=5
        )
    assert api_process.api_status(home=tmp_path) is None
