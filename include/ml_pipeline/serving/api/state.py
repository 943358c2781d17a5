"""What the model API's handlers share: which `ServedModel` answers requests (the one
mutable thing, swapped by reloads), the metrics and the inference log."""

from __future__ import annotations

import asyncio
import gc
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

from include.ml_pipeline.serving.api.inference_log import InferenceLogger
from include.ml_pipeline.serving.api.metrics import ApiMetrics
from include.ml_pipeline.serving.api.settings import ServingSettings


def _pkg_version(name: str) -> str | None:
    try:
        return package_version(name)
    except PackageNotFoundError:
        return None


class ServiceState:
    """The one mutable thing in the service: which `ServedModel` answers requests."""

    def __init__(self, settings: ServingSettings, loader=None, pending=None):
        from include.ml_pipeline.serving.loading.load import load_served_model_isolated

        self.settings = settings
        self.model = None  # ServedModel | None, replaced atomically by reloads
        self.metrics = ApiMetrics()
        self.logger = InferenceLogger(
            settings.log_uri,
            model_name=settings.model_name,
            sample_rate=settings.log_sample_rate,
            flush_interval=settings.log_flush_seconds,
            max_object_bytes=settings.log_max_object_bytes,
            max_total_bytes=settings.log_max_total_bytes,
            queue_size=settings.log_queue_size,
        )
        self.metrics.log_dropped.set_function(lambda: self.logger.dropped)
        self.metrics.log_written.set_function(lambda: self.logger.written_records)
        self.metrics.log_errors.set_function(lambda: self.logger.write_errors)
        self.metrics.log_pending.set_function(lambda: self.logger.pending_objects)
        self.reload_lock = asyncio.Lock()
        self.last_load_error: str | None = None
        self.loading = False
        # MLflow and scikit-learn run in short-lived child processes (see loading/load.py).
        self._loader = loader or (
            lambda: load_served_model_isolated(
                settings.tracking_uri,
                settings.model_name,
                settings.alias,
                max_rows=settings.max_rows,
            )
        )
        self._pending = pending  # a load started before the app was built (__main__)
        self.mlflow_version = _pkg_version("mlflow")

    def load_now(self):
        """Build a new ServedModel (blocking; call from a worker thread)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            return pending.result()
        return self._loader()

    def swap(self, served) -> None:
        self.model = served  # a single reference assignment: atomic for readers
        # Move the long-lived objects (libraries, model) out of the collector's view so
        # full collections during requests stay short (fewer latency spikes).
        gc.collect()
        gc.freeze()
        self.last_load_error = None
        self.metrics.model_loaded(served.name, served.version, served.alias, served.predict_path)

    async def reload(self) -> tuple[Any, Any]:
        """Load what the alias points to now and swap it in; returns (old, new)."""
        async with self.reload_lock:
            self.loading = True
            try:
                served = await asyncio.to_thread(self.load_now)
            except Exception as exc:
                self.last_load_error = str(exc)
                raise
            finally:
                self.loading = False
            old = self.model
            self.swap(served)
            return old, served

    async def unload(self, if_version: str | None, reason: str):
        """Serve nothing from now on (every model endpoint answers 503 with `reason`)
        unless `if_version` is given and another version serves: then False. Returns the
        model that served (or None). Serialised with reloads."""
        async with self.reload_lock:
            old = self.model
            if if_version is not None and (old is None or str(old.version) != if_version):
                return False
            self.model = None
            self.last_load_error = reason
            self.metrics.model_unloaded()
            return old
