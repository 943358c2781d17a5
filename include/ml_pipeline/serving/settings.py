"""Model API settings, read from environment variables.

| variable                      | default                         | meaning                       |
|-------------------------------|---------------------------------|-------------------------------|
| MODEL_API_HOST                | 127.0.0.1                       | bind address                  |
| MODEL_API_PORT                | 8000                            | bind port                     |
| MLFLOW_TRACKING_URI           | project settings                | registry to load from         |
| ML_PIPELINE_MODEL_NAME        | tabular_classifier              | registered model name         |
| MODEL_API_ALIAS               | champion                        | alias to serve                |
| MODEL_API_MAX_ROWS            | 10000                           | rows per request (413 above)  |
| MODEL_API_MAX_BODY_BYTES      | 16777216 (16 MiB)               | body size (413 above)         |
| MODEL_API_ADMIN_TOKEN         | unset: `/admin/reload` refused  | bearer token for reloads      |
| MODEL_API_LOG_SAMPLE_RATE     | 1.0                             | share of requests logged      |
| MODEL_API_LOG_FLUSH_SECONDS   | 2 (local root), 30 (remote)     | at most this old: one object  |
| MODEL_API_LOG_MAX_OBJECT_BYTES| 8 MiB                           | lines per log object, at most |
| MODEL_API_LOG_MAX_TOTAL_BYTES | 512 MiB                         | the whole log on the store    |
| MODEL_API_LOG_QUEUE           | 10000                           | queued requests (oldest drop) |
| ML_PIPELINE_INFERENCE_LOG     | <storage root>/inference_log    | inference log URI (or path)   |
| ML_PIPELINE_STORAGE           | file://<home>/data              | the storage root              |
| MODEL_API_LOG_LEVEL           | info                            | service log level             |
| MODEL_API_PREDICT_THREADS     | usable cores, at most 2         | onnxruntime threads for a     |
|                               |                                 | batch of 64+ rows (trees)     |
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from include.ml_pipeline.config import get_settings


def _float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number; got {value!r}") from None


def _int(name: str, default: int) -> int:
    return int(_float(name, default))


@dataclass(frozen=True)
class ServingSettings:
    host: str
    port: int
    tracking_uri: str
    model_name: str
    alias: str
    max_rows: int
    max_body_bytes: int
    admin_token: str | None
    log_uri: str
    log_sample_rate: float
    log_flush_seconds: float | None
    log_max_object_bytes: int
    log_max_total_bytes: int
    log_queue_size: int
    log_level: str

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_name}@{self.alias}"


def get_serving_settings() -> ServingSettings:
    """Read the model API settings from the environment."""
    base = get_settings()
    rate = _float("MODEL_API_LOG_SAMPLE_RATE", 1.0)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"MODEL_API_LOG_SAMPLE_RATE must be within 0..1; got {rate}")
    return ServingSettings(
        host=os.environ.get("MODEL_API_HOST", "127.0.0.1"),
        port=_int("MODEL_API_PORT", 8000),
        tracking_uri=base.mlflow_tracking_uri,
        model_name=base.model_name,
        alias=os.environ.get("MODEL_API_ALIAS", "champion"),
        max_rows=max(1, _int("MODEL_API_MAX_ROWS", 10_000)),
        max_body_bytes=max(1024, _int("MODEL_API_MAX_BODY_BYTES", 16 * 1024 * 1024)),
        admin_token=os.environ.get("MODEL_API_ADMIN_TOKEN") or None,
        log_uri=base.inference_log_uri,
        log_sample_rate=rate,
        log_flush_seconds=(_float("MODEL_API_LOG_FLUSH_SECONDS", 0.0) or None),
        log_max_object_bytes=_int("MODEL_API_LOG_MAX_OBJECT_BYTES", 8 * 1024 * 1024),
        log_max_total_bytes=_int("MODEL_API_LOG_MAX_TOTAL_BYTES", 512 * 1024 * 1024),
        log_queue_size=_int("MODEL_API_LOG_QUEUE", 10_000),
        log_level=os.environ.get("MODEL_API_LOG_LEVEL", "info"),
    )
