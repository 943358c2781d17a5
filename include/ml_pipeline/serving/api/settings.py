"""Model API settings, read from environment variables.

| variable                      | default                         | meaning                       |
|-------------------------------|---------------------------------|-------------------------------|
| MODEL_API_HOST                | 127.0.0.1                       | bind address                  |
| MODEL_API_PORT                | 8000                            | bind port                     |
| MLFLOW_TRACKING_URI           | project settings                | registry to load from         |
| ML_PIPELINE_MODEL_NAME        | tabular_model (*)               | the default model (bare       |
|                               |                                 | `/invocations`, `/predict`)   |
| MODEL_API_MODELS              | empty                           | more registered models to     |
|                               |                                 | serve, comma-separated        |
| MODEL_API_MODELS_FILE         | unset (`make run`/`make api`:   | JSON the API keeps: every     |
|                               | <home>/api/served_models.json)  | model loaded and not unloaded |
|                               |                                 | (`make api` serves them all)  |
| MODEL_API_EXPERIMENTS_FILE    | experiments.json next to the    | release experiments set by    |
|                               | models file                     | the admin API (restored)      |
| MODEL_API_SHADOW_QUEUE        | 1000                            | off-path predictions queued   |
|                               |                                 | (full: dropped and counted)   |
| MODEL_API_SHADOW_INLINE_US    | 300                             | an off-path prediction this   |
|                               |                                 | cheap runs on the event loop  |
|                               |                                 | when idle; 0: always a thread |
| MODEL_API_SHADOW_MAX_SHARE    | 1 (no bound)                    | off-path predictions' CPU,    |
|                               |                                 | share of the clock at most    |
|                               |                                 | (past it skipped, counted)    |
| MODEL_API_ALIAS               | champion                        | alias to serve                |
| MODEL_API_MAX_ROWS            | 10000                           | rows per request (413 above)  |
| MODEL_API_MAX_BODY_BYTES      | 16777216 (16 MiB)               | body size (413 above)         |
| MODEL_API_ADMIN_TOKEN         | unset: `/admin/reload` refused  | bearer token for reloads; a   |
|                               |                                 | placeholder or < 16 chars:    |
|                               |                                 | the API refuses to start      |
| MODEL_API_STRICT_COLUMNS      | false: extra columns ignored    | true: 422 naming them         |
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
| MODEL_API_WORKER_TIMEOUT_     | 30                              | a model served by an isolated |
| SECONDS                       |                                 | worker (`loading/worker.py`): |
|                               |                                 | 504 past it, worker restarted |
| MODEL_API_MICRO_BATCH_ROWS    | 1000                            | concurrent requests of up to  |
|                               |                                 | this many rows predicted as   |
|                               |                                 | one batch (0: off)            |

(*) `tabular_classifier` in an embedded home whose registry already has it
(`config.default_model_name`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from include.ml_pipeline.config import get_settings
from include.ml_pipeline.serving.api.experiment import experiments_file_for


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


def _bool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false; got {value!r}")


def _names(name: str) -> tuple[str, ...]:
    """A comma-separated list of names (blanks and repeats dropped)."""
    words = (word.strip() for word in os.environ.get(name, "").split(","))
    return tuple(dict.fromkeys(word for word in words if word))


MIN_TOKEN_LENGTH = 16
MAKE_TOKEN = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
# What placeholders and examples look like once lower-cased and stripped to [a-z0-9];
# words of 5+ letters, so a random token holds one by chance about once in a million.
_PLACEHOLDER_WORDS = (
    "changeme",
    "placeholder",
    "example",
    "replaceme",
    "dummy",
    "yourtoken",
    "yoursecret",
    "password",
    "secret",
    "sample",
    "default",
    "insecure",
    "notset",
    "admintoken",
)
_TEMPLATE = re.compile(r"^\s*(<.*>|\$\{.*\}|\{\{.*\}\}|%\(.*\)s?)\s*$")


class InsecureSettingError(ValueError):
    """A setting holds a placeholder or a value too weak to protect what it guards."""


def check_admin_token(token: str | None) -> str | None:
    """`token` if it can guard `/admin/reload`, None when unset or empty (reloads are then
    refused); raises `InsecureSettingError` for a placeholder, an example or a short
    value, saying how to make a real one."""
    if token is None or not token.strip():
        return None
    token = token.strip()
    normalised = re.sub(r"[^a-z0-9]", "", token.lower())
    reason = None
    if _TEMPLATE.match(token):
        reason = "it is a template placeholder"
    elif any(word in normalised for word in _PLACEHOLDER_WORDS):
        reason = "it looks like a placeholder or an example"
    elif len(token) < MIN_TOKEN_LENGTH:
        reason = f"it has {len(token)} characters; at least {MIN_TOKEN_LENGTH} are needed"
    elif len(set(token)) < 6:
        reason = "it repeats a few characters"
    if reason is None:
        return token
    raise InsecureSettingError(
        f"MODEL_API_ADMIN_TOKEN is not a usable secret ({reason}), so the model API does "
        f"not start: anyone who guessed it could change the served model. Set it to a "
        f"random value, e.g. `{MAKE_TOKEN}` (in .env or the environment of the service and "
        "of the Airflow tasks), or leave it empty to disable /admin/reload."
    )


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
    strict_columns: bool
    log_uri: str
    log_sample_rate: float
    log_flush_seconds: float | None
    log_max_object_bytes: int
    log_max_total_bytes: int
    log_queue_size: int
    log_level: str
    #: More registered models served next to `model_name` (`/models/<name>/...`).
    models: tuple[str, ...] = ()
    #: The models file (see the table above), None: no file.
    models_file: str | None = None
    #: Release experiments (`experiment.py`), None: kept in memory only.
    experiments_file: str | None = None
    #: Off-path (shadow) predictions waiting at most; more are dropped and counted.
    shadow_queue: int = 1000
    #: An off-path prediction that took at most this many microseconds last time runs on
    #: the event loop between requests; a slower one in a worker thread (0: always).
    shadow_inline_us: int = 300
    #: Off-path predictions take at most this share of the clock (CPU); past it a request
    #: is not shadowed (skipped, counted): a sample under load. 1.0: no bound (default).
    shadow_max_share: float = 1.0
    #: The storage root: label files and `POST /feedback` labels go under `labels/<model>`.
    storage_uri: str = ""
    #: Requests of at most this many rows that arrive together are predicted as one
    #: batch (`microbatch.py`); 0 turns that off.
    micro_batch_rows: int = 1000

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
        admin_token=check_admin_token(os.environ.get("MODEL_API_ADMIN_TOKEN")),
        strict_columns=_bool("MODEL_API_STRICT_COLUMNS", False),
        log_uri=base.inference_log_uri,
        log_sample_rate=rate,
        log_flush_seconds=(_float("MODEL_API_LOG_FLUSH_SECONDS", 0.0) or None),
        log_max_object_bytes=_int("MODEL_API_LOG_MAX_OBJECT_BYTES", 8 * 1024 * 1024),
        log_max_total_bytes=_int("MODEL_API_LOG_MAX_TOTAL_BYTES", 512 * 1024 * 1024),
        log_queue_size=_int("MODEL_API_LOG_QUEUE", 10_000),
        log_level=os.environ.get("MODEL_API_LOG_LEVEL", "info"),
        models=_names("MODEL_API_MODELS"),
        models_file=os.environ.get("MODEL_API_MODELS_FILE") or None,
        experiments_file=os.environ.get("MODEL_API_EXPERIMENTS_FILE")
        or experiments_file_for(os.environ.get("MODEL_API_MODELS_FILE")),
        shadow_queue=max(1, _int("MODEL_API_SHADOW_QUEUE", 1000)),
        shadow_inline_us=max(0, _int("MODEL_API_SHADOW_INLINE_US", 300)),
        shadow_max_share=min(1.0, max(0.0, _float("MODEL_API_SHADOW_MAX_SHARE", 1.0))),
        storage_uri=base.storage_uri,
        micro_batch_rows=max(0, _int("MODEL_API_MICRO_BATCH_ROWS", 1000)),
    )
