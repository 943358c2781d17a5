"""What the model API's handlers share: one `ModelSlot` per served registered model (its
`ServedModel`, the one mutable thing, swapped by its own reloads), the metrics and the
inference log.

Each slot has its own reload lock, load error and loader: a reload of one model runs in a
worker thread and swaps one reference when done, so a request to another model never waits
for it. The set of slots is itself one dict reference, replaced (copy on write) when a
model is added or removed, so a request reads it without a lock.

A slot is keyed by the registered model's name and serves one alias (`champion` by
default); a second arm of the same model (the `challenger` of a safe release) is another
slot with the same name and another alias, built and reloaded by the same code.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from include.ml_pipeline.release.records import CHALLENGER
from include.ml_pipeline.serving.api.experiment import (
    Experiment,
    ExperimentConfig,
    ShadowRunner,
    read_experiments,
    write_experiment,
)
from include.ml_pipeline.serving.api.inference_log import InferenceLogger
from include.ml_pipeline.serving.api.labels import LabelDesk
from include.ml_pipeline.serving.api.metrics import ApiMetrics
from include.ml_pipeline.serving.api.settings import ServingSettings
from include.ml_pipeline.serving.loading.worker import close_predictor

log = logging.getLogger("ml_pipeline.serving")


def _pkg_version(name: str) -> str | None:
    try:
        return package_version(name)
    except PackageNotFoundError:
        return None


def read_models_file(path: str | os.PathLike | None) -> list[str]:
    """The models recorded in the models file (loaded and not unloaded since), in the
    order they were first loaded; [] without one."""
    if not path or not Path(path).exists():
        return []
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        log.warning("models file %s not read: %s", path, exc)
        return []
    return [str(m) for m in data.get("models", []) if m]


def update_models_file(
    path: str | os.PathLike, *, add: str | None = None, remove: str | None = None
) -> list[str]:
    """Add or remove one model in the models file (written whole: a reader never sees
    half); returns the models it lists now."""
    models = read_models_file(path)
    if add and add not in models:
        models.append(add)
    if remove in models:
        models.remove(remove)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".tmp")
    partial.write_text(json.dumps({"models": models}, indent=1))
    os.replace(partial, target)
    return models


class ModelSlot:
    """One served model (a registered model's alias): the `ServedModel` answering its
    requests (None before the first load, or after an unload), its own reload lock,
    last load error and loader."""

    def __init__(
        self,
        name: str,
        alias: str,
        loader: Callable[[], Any],
        metrics: ApiMetrics,
        primary: bool = True,
    ):
        self.name = name
        self.alias = alias
        self.model = None  # ServedModel | None, replaced atomically by reloads
        #: the release experiment running on this model (its challenger's slot is not
        #: `primary`: it reports no version metrics), None: the champion answers alone
        self.experiment: Experiment | None = None
        self.primary = primary
        self.reload_lock = asyncio.Lock()
        self.last_load_error: str | None = None
        self.loading = False
        self._loader = loader
        self._pending = None  # a load started before the app was built (__main__)
        self._metrics = metrics

    def not_served_reason(self) -> str:
        return self.last_load_error or ("loading" if self.loading else "no model loaded")

    def load_now(self):
        """Build a new ServedModel (blocking; call from a worker thread)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            return pending.result()
        return self._loader()

    def swap(self, served) -> None:
        old, self.model = self.model, served  # a single reference assignment: atomic for readers
        if old is not served:
            close_predictor(old)  # the replaced version's isolated worker, if it has one
        # Move the long-lived objects (libraries, model) out of the collector's view so
        # full collections during requests stay short (fewer latency spikes). No
        # gc.collect() first: on the event loop it would pause every other model's requests.
        gc.freeze()
        self.last_load_error = None
        if self.primary:
            self._metrics.model_loaded(
                served.name, served.version, served.alias, served.predict_path
            )

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
        """Serve nothing from now on (this model's endpoints answer 503 with `reason`)
        unless `if_version` is given and another version serves: then False. Returns the
        model that served (or None). Serialised with this model's reloads."""
        async with self.reload_lock:
            old = self.model
            if if_version is not None and (old is None or str(old.version) != if_version):
                return False
            self.model = None
            close_predictor(old)
            self.last_load_error = reason
            if self.primary:
                self._metrics.model_unloaded(self.name)
            return old

    def status(self) -> dict[str, Any]:
        """The model's line in `GET /models`."""
        served = self.model
        return {
            "name": self.name,
            "alias": self.alias,
            "ready": served is not None,
            "model_version": served.version if served else None,
            "predict_path": served.predict_path if served else None,
            "reason": None if served else self.not_served_reason(),
        }


class ServiceState:
    """The served models (one `ModelSlot` each), the default one the bare routes serve,
    the metrics and the inference log."""

    def __init__(self, settings: ServingSettings, loader=None, pending=None, model_loader=None):
        self.settings = settings
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
        self.mlflow_version = _pkg_version("mlflow")
        # `loader` (tests): a callable building the default model; `model_loader(name,
        # alias)`: any model's. Otherwise MLflow and scikit-learn run in short-lived child
        # processes (see loading/load.py).
        self._default_loader = loader
        self._model_loader = model_loader
        self.default_name = settings.model_name
        names = dict.fromkeys([settings.model_name, *settings.models])
        self.slots: dict[str, ModelSlot] = {name: self._new_slot(name) for name in names}
        if pending is not None:  # a load __main__ started for the default model
            self.slots[self.default_name]._pending = pending
        self.shadow = ShadowRunner(
            settings.shadow_queue, settings.shadow_inline_us / 1e6, settings.shadow_max_share
        )
        self.labels = LabelDesk(settings.storage_uri, settings.log_uri, self.logger)
        self.remember = self.labels.remember  # (model, request id, rows) of each answer

    # ------------------------------------------------------------------ the default model

    @property
    def default(self) -> ModelSlot:
        return self.slots[self.default_name]

    @property
    def model(self):
        """The default model's `ServedModel` (None when it is not served)."""
        return self.slots[self.default_name].model

    # ------------------------------------------------------------------ the set of models

    def _loader_for(self, name: str, alias: str | None = None) -> Callable[[], Any]:
        alias = alias or self.settings.alias
        if name == self.default_name and alias == self.settings.alias and self._default_loader:
            return self._default_loader
        model_loader = self._model_loader
        if model_loader is not None:
            return lambda: model_loader(name, alias)
        settings = self.settings

        def load():
            from include.ml_pipeline.serving.loading.load import load_served_model_isolated

            return load_served_model_isolated(
                settings.tracking_uri, name, alias, max_rows=settings.max_rows
            )

        return load

    def _new_slot(self, name: str) -> ModelSlot:
        return ModelSlot(name, self.settings.alias, self._loader_for(name), self.metrics)

    def slot(self, name: str) -> ModelSlot | None:
        return self.slots.get(name)

    def served_names(self) -> list[str]:
        return list(self.slots)

    def add(self, name: str) -> ModelSlot:
        """The slot of `name`, created if new."""
        found = self.slots.get(name)
        if found is not None:
            return found
        slot = self._new_slot(name)
        self.slots = {**self.slots, name: slot}  # one reference: readers never see half
        return slot

    def record(self, *, add: str | None = None, remove: str | None = None) -> None:
        """Note a model loaded (`add`) or unloaded (`remove`) in the models file, so `make
        api` serves every model deployed in this home again."""
        path = self.settings.models_file
        if not path:
            return
        try:
            update_models_file(path, add=add, remove=remove)
        except OSError as exc:
            log.warning("models file %s not written: %s", path, exc)

    async def reload(self, name: str | None = None) -> tuple[Any, Any]:
        """Reload `name` (default: the default model), adding it first if it is new."""
        slot = self.add(name or self.default_name)
        result = await slot.reload()
        self.record(add=slot.name)
        return result

    async def unload(self, if_version: str | None, reason: str, name: str | None = None):
        slot = self.slots.get(name or self.default_name)
        if slot is None:
            return None
        old = await slot.unload(if_version, reason)
        if old is not False:
            self.record(remove=slot.name)
        return old

    async def load_all(self) -> None:
        """The first load of every model, side by side (a failure is that model's 503),
        each after the experiment recorded for it in the experiments file (a restart
        keeps them). The experiment first: the model is ready (`/ready`, its requests
        answered) only once it is back in its recorded state, so nobody (a client, the
        DAG's release poke) sees its champion alone for a moment and takes the
        experiment for stopped. A challenger that does not load leaves the champion
        alone, said in the log."""
        recorded = read_experiments(self.settings.experiments_file)

        async def one(slot: ModelSlot) -> None:
            config = recorded.get(slot.name)
            if config is not None:
                try:
                    await self.start_experiment(slot.name, config, persist=False)
                except Exception as exc:
                    log.error("experiment of %s not restored: %s", slot.name, exc)
            try:
                await slot.reload()
                self.record(add=slot.name)
            except Exception as exc:
                log.error("initial load of %s failed: %s", slot.name, exc)
                self.metrics.reloads.labels(slot.name, "failed").inc()

        await asyncio.gather(*(one(slot) for slot in list(self.slots.values())))

    # ------------------------------------------------------------------ experiments

    async def start_experiment(
        self, name: str, config: ExperimentConfig, persist: bool = True
    ) -> Experiment:
        """Load `name`'s challenger (alias `challenger`) and run `config` on it; replaces
        a running experiment (fresh breaker and counts). The load runs before anything
        changes: when it fails the model's traffic is untouched."""
        slot = self.add(name)
        challenger = ModelSlot(
            name, CHALLENGER, self._loader_for(name, CHALLENGER), self.metrics, primary=False
        )
        await challenger.reload()
        experiment = Experiment(config, challenger)
        replaced, slot.experiment = slot.experiment, experiment  # the next request sees it
        if replaced is not None:
            close_predictor(replaced.challenger.model)
        self.metrics.breaker_open.labels(name).set(0)
        if persist and self.settings.experiments_file:
            write_experiment(self.settings.experiments_file, name, config)
        return experiment

    def stop_experiment(self, name: str) -> Experiment | None:
        """The kill switch: every request of `name` goes to the champion from now on
        (off-path jobs already queued finish and are logged); returns the experiment."""
        slot = self.slots.get(name)
        experiment = slot.experiment if slot is not None else None
        if slot is not None:
            slot.experiment = None
            if experiment is not None:
                close_predictor(experiment.challenger.model)
            self.metrics.breaker_open.labels(name).set(0)
        if self.settings.experiments_file:
            write_experiment(self.settings.experiments_file, name, None)
        return experiment

    def close_models(self) -> None:
        """At shutdown: stop every isolated worker (champions and challengers)."""
        for slot in list(self.slots.values()):
            close_predictor(slot.model, wait=True)
            if slot.experiment is not None:
                close_predictor(slot.experiment.challenger.model, wait=True)
