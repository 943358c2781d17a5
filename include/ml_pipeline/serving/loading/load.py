"""Load the `ServedModel` an alias points to, in two ways with the same two steps, `fetch.fetch`
(MLflow) and `compile_worker.served_from_fetched` (scikit-learn: deserialise, compile,
verify):

- in the calling process: `load_served_model` (the release step, benchmarks, tests);
- for the API server, without importing MLflow or scikit-learn in its process:
  `start_load` / `load_served_model_isolated` run `fetch` and `compile_worker` as two
  short-lived child processes started at once, and the server keeps only numpy +
  onnxruntime objects (about half the startup time and memory).

When the version has a serving artifact, the server serves it as soon as `fetch` is done;
the compile child (low priority) still compiles and verifies, checks the artifact against
the pipeline, and if they disagree the service switches to the predictor it just verified.
The pickle the compile child writes comes from the registry the service already trusts
(`MLFLOW_ALLOW_PICKLE_DESERIALIZATION`) and goes into a private temporary directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.ml_pipeline.serving.loading.fetch import ModelLoadError, fetch
from include.ml_pipeline.serving.loading.registry_rest import quick_fetch
from include.ml_pipeline.serving.loading.worker import ROOT, child_env, isolated_reason

if TYPE_CHECKING:  # pragma: no cover
    from include.ml_pipeline.serving.loading.served import ServedModel

TIMEOUT_S = 900.0
log = logging.getLogger("ml_pipeline.serving")


def _marked(output: bytes, marker: str) -> dict[str, Any] | None:
    for line in reversed(output.decode("utf-8", "replace").splitlines()):
        if line.startswith(marker):
            return json.loads(line[len(marker) :])
    return None


class LazySklearnPredictor:
    """The registered pipeline, deserialised on first use (only if the fast path raises).
    Built with `info=None` (a fast start, `registry_rest.py`), it waits for `provide`:
    the fetch child's result, which says where the pipeline was downloaded."""

    path = "sklearn"

    def __init__(self, info: dict[str, Any] | None):
        self.info = info
        self._predictor: Any = None  # the SklearnPredictor, loaded on first use
        self._lock = threading.Lock()
        self._provided = threading.Event()
        self._problem: str | None = None
        if info is not None:
            self._provided.set()

    def provide(self, info: dict[str, Any] | None, problem: str | None = None) -> None:
        """The fetched `info` (or, when fetching failed, `problem`)."""
        self.info, self._problem = info, problem
        self._provided.set()

    def predict(self, batch):
        if self._predictor is None:
            if not self._provided.wait(TIMEOUT_S) or self.info is None:
                raise ModelLoadError(
                    f"the registered pipeline is not available: {self._problem or 'not fetched'}"
                )
            with self._lock:
                if self._predictor is None:
                    from include.ml_pipeline.serving.compiled.predictor import SklearnPredictor
                    from include.ml_pipeline.serving.loading.compile_worker import load_pipeline

                    self._predictor = SklearnPredictor(load_pipeline(self.info))
        return self._predictor.predict(batch)


class PendingLoad:
    """Both helper processes of one load, started in the constructor."""

    def __init__(
        self,
        tracking_uri: str,
        name: str,
        alias: str,
        *,
        max_rows: int = 10_000,
        force_sklearn: bool = False,
    ):
        self.name, self.alias, self.max_rows = name, alias, max_rows
        self.tracking_uri = tracking_uri
        self.started = time.perf_counter()
        self.folder = Path(tempfile.mkdtemp(prefix="model-api-load-"))
        self.out = self.folder / "predictor.pkl"
        # The fast start (`registry_rest.py`; None when it does not apply) first: when it
        # found the artifact, the fetch child below starts at low priority, off the
        # critical path, instead of competing with this process for the CPU.
        self.quick = quick_fetch(tracking_uri, name, alias, self.folder / "quick")
        env = child_env()
        self.compile = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "include.ml_pipeline.serving.loading.compile_worker",
                str(self.out),
                str(max_rows),
                "1" if force_sklearn else "0",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=str(ROOT),
        )
        with contextlib.suppress(OSError, AttributeError):
            # lower priority: with a serving artifact it only re-checks, off the critical path
            os.setpriority(os.PRIO_PROCESS, self.compile.pid, 19)
        self.fetch = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "include.ml_pipeline.serving.loading.fetch",
                tracking_uri,
                name,
                alias,
            ],
            stdout=subprocess.PIPE,
            env=env,
            cwd=str(ROOT),
        )
        if self.quick is not None:
            with contextlib.suppress(OSError, AttributeError):
                os.setpriority(os.PRIO_PROCESS, self.fetch.pid, 19)

    def cancel(self) -> None:
        for proc in (self.fetch, self.compile):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def result(self):
        """Wait for what the load needs; the `ServedModel`, or `ModelLoadError` naming the
        cause. With a serving artifact that only means `fetch`: the compile child then
        checks the artifact in the background (`_check_in_background`)."""
        try:
            info: dict[str, Any]
            served = None
            if self.quick is not None:
                info = self.quick
                served = self._from_artifact(info, LazySklearnPredictor(None))
            if served is None:
                info = self._fetched()
                served = self._from_artifact(info, LazySklearnPredictor(info))
        except BaseException:
            self.cancel()
            raise
        if served is not None:
            threading.Thread(
                target=self._check_in_background,
                args=(served, info),
                name="artifact-check",
                daemon=True,
            ).start()
            return served
        try:
            compiled = self._compiled(info)
        finally:
            self.cancel()
        if compiled["predictor"] is None:  # the compiler does not know this model
            predictor = self._isolated(info)
            return self._served(
                info,
                predictor,
                predictor.classes,
                predictor.path,
                isolated_reason(compiled["fallback_reason"]),
                compiled["verification"],
                predictor,
                compiled["warmup"],
            )
        return self._served(
            info,
            compiled["predictor"],
            compiled["classes"],
            compiled["predict_path"],
            compiled["fallback_reason"],
            compiled["verification"],
            LazySklearnPredictor(info),
            compiled["warmup"],
        )

    def _isolated(self, info: dict[str, Any]):
        """The pipeline in a worker process of its own (started now, loaded, answering)."""
        from include.ml_pipeline.serving.loading.worker import IsolatedPredictor, WorkerStartError

        try:
            return IsolatedPredictor(info)
        except WorkerStartError as exc:
            raise ModelLoadError(f"cannot load models:/{self.name}@{self.alias}: {exc}") from exc

    def _fetched(self) -> dict[str, Any]:
        try:
            out, _ = self.fetch.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise ModelLoadError(
                f"resolving models:/{self.name}@{self.alias} took over {TIMEOUT_S:.0f}s"
            ) from exc
        info = _marked(out, "FETCH_RESULT ")
        if self.fetch.returncode != 0 or info is None or "error" in info:
            reason = (info or {}).get("error") or f"fetch exited with {self.fetch.returncode}"
            raise ModelLoadError(reason)
        return info

    def _compiled(self, info: dict[str, Any]) -> dict[str, Any]:
        """Hand `info` to the compile child and return what it pickled."""
        self._run_compile(info)
        return self._load_compiled()

    def _run_compile(self, info: dict[str, Any]) -> dict[str, Any]:
        """Hand `info` to the compile child, wait; its result line (`artifact_check`)."""
        try:
            out, _ = self.compile.communicate(json.dumps(info).encode(), timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise ModelLoadError(
                f"loading models:/{self.name}@{self.alias} took over {TIMEOUT_S:.0f}s"
            ) from exc
        if self.compile.returncode != 0 or not self.out.exists():
            error = (_marked(out, "COMPILE_RESULT ") or {}).get("error")
            raise ModelLoadError(
                f"cannot load models:/{self.name}@{self.alias}: "
                f"{error or f'compile exited with {self.compile.returncode}'}"
            )
        return _marked(out, "COMPILE_RESULT ") or {}

    def _load_compiled(self) -> dict[str, Any]:
        import pickle

        with open(self.out, "rb") as handle:
            return pickle.load(handle)  # written by our own child, just now

    def _from_artifact(self, info: dict[str, Any], reference: LazySklearnPredictor):
        """The `ServedModel` from the version's serving artifact, or None without one."""
        import numpy as np

        from include.ml_pipeline.serving.batch import Batch
        from include.ml_pipeline.serving.compiled.trees import WIDE_BATCH_ROWS
        from include.ml_pipeline.serving.compiled.verify import PROBA_TOLERANCE
        from include.ml_pipeline.serving.loading.artifact import ArtifactError, read_predictor

        artifact = info.get("serving_artifact")
        if not artifact:
            return None
        try:
            predictor = read_predictor(artifact["dir"], artifact["sha256"])
        except (ArtifactError, KeyError, ValueError) as exc:
            log.warning("serving artifact of v%s not used: %s", info["version"], exc)
            return None
        spec = info["spec"]
        numeric, categorical = tuple(spec["numeric"]), tuple(spec["categorical"])
        warmup = Batch(
            numeric,
            categorical,
            np.zeros((WIDE_BATCH_ROWS, len(numeric))),
            tuple([None] * WIDE_BATCH_ROWS for _ in categorical),
        )
        verification = {
            "source": "serving_artifact",
            "verified_at_release": True,
            "load_check": "running",
            "proba_tolerance": PROBA_TOLERANCE,
            "passed": True,
            # how the alias was resolved: by the fetch child (MLflow), or over the REST
            # API before it was done (`registry_rest.py`)
            "resolved_by": info.get("resolved_by", "mlflow"),
        }
        return self._served(
            info,
            predictor,
            predictor.classes,
            f"compiled:{predictor.estimator_path}",
            None,
            verification,
            reference,
            warmup,
        )

    def _check_in_background(self, served, info: dict[str, Any]) -> None:
        """Compile and verify as without an artifact, and check the artifact's predictor
        against the pipeline; on a mismatch serve the freshly verified predictor. After a
        fast start (`info` from the REST API) the fetch child's result comes first: the
        same version (else the alias moved meanwhile: not re-checked, reload to serve
        it), its input contract, and the pipeline for the sklearn fallback."""
        try:
            if info.get("resolved_by") is not None:
                try:
                    full = self._fetched()
                except ModelLoadError as exc:
                    served.reference.provide(None, str(exc))
                    raise
                if full["version"] != served.version:
                    moved = (
                        f"the alias {self.alias!r} names v{full['version']} now, not the "
                        f"v{served.version} served (POST /admin/reload serves it)"
                    )
                    served.reference.provide(None, moved)  # not another version's pipeline
                    raise ModelLoadError(moved)
                served.reference.provide(full)
                served.contract = full.get("contract")
                info = full
            # the server unpickles the compiled predictor only when it is needed, so the
            # usual outcome costs it no GIL time while it serves
            problem = self._run_compile(info).get("artifact_check", "no result line")
            if problem is None:
                served.verification["load_check"] = "passed"
                log.info("serving artifact of v%s re-checked against the pipeline", served.version)
                return
            compiled = self._load_compiled()
        except Exception as exc:
            served.verification["load_check"] = f"not run: {exc}"
            log.warning("serving artifact of v%s not re-checked: %s", served.version, exc)
            return
        finally:
            self.cancel()
        log.error(
            "serving artifact of v%s disagrees with the pipeline (%s); serving the "
            "predictor compiled now",
            served.version,
            problem,
        )
        predictor, path = compiled["predictor"], compiled["predict_path"]
        if predictor is None:
            try:
                predictor = self._isolated(info)
            except ModelLoadError as exc:
                served.verification["load_check"] = f"failed: {problem}; {exc}"
                return
            path = predictor.path
        served.predictor = predictor  # one reference: atomic for requests
        served.predict_path = path
        served.fallback_reason = f"serving artifact rejected at load: {problem}"
        served.verification.update(
            load_check=f"failed: {problem}", passed=compiled["fallback_reason"] is None
        )

    def _served(
        self,
        info,
        predictor,
        classes,
        predict_path,
        fallback_reason,
        verification,
        reference,
        warmup,
    ):
        from include.ml_pipeline.features import FeatureSpec
        from include.ml_pipeline.serving.loading.served import ServedModel
        from include.ml_pipeline.serving.parsing import parser_for

        for _ in range(3):
            predictor.predict(warmup)
            predictor.predict(warmup.slice(0, 1))
        spec = FeatureSpec.from_dict(info["spec"])
        return ServedModel(
            name=self.name,
            version=info["version"],
            alias=self.alias,
            run_id=info["run_id"],
            source=info["source"],
            metrics=dict(info["metrics"] or {}),
            spec=spec,
            classes=classes,
            parser=parser_for(predictor, list(spec.numeric), list(spec.categorical), self.max_rows),
            predictor=predictor,
            predict_path=predict_path,
            fallback_reason=fallback_reason,
            loaded_at=datetime.now(UTC).isoformat(),
            load_seconds=time.perf_counter() - self.started,
            verification=verification,
            reference=reference,
            contract=info.get("contract"),
        )


def start_load(
    tracking_uri: str, name: str, alias: str, *, max_rows: int = 10_000, force_sklearn: bool = False
) -> PendingLoad:
    return PendingLoad(tracking_uri, name, alias, max_rows=max_rows, force_sklearn=force_sklearn)


def load_served_model_isolated(
    tracking_uri: str, name: str, alias: str, *, max_rows: int = 10_000, force_sklearn: bool = False
):
    """Like `load_served_model`, with MLflow and scikit-learn kept in child processes."""
    return start_load(
        tracking_uri, name, alias, max_rows=max_rows, force_sklearn=force_sklearn
    ).result()


def load_served_model(
    tracking_uri: str,
    name: str,
    alias: str,
    *,
    max_rows: int = 10_000,
    force_sklearn: bool = False,
) -> ServedModel:
    """Resolve `models:/<name>@<alias>` now and return the fully built `ServedModel`.

    Raises `ModelLoadError` naming what failed (alias unknown, artifact missing, ...).
    The service trusts its own registry: `MLFLOW_ALLOW_PICKLE_DESERIALIZATION` defaults
    to true in this process (MLflow 3 refuses to deserialise skops/pickle models without it).
    """
    from include.ml_pipeline.serving.loading.compile_worker import served_from_fetched

    started = time.perf_counter()
    os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    info = fetch(tracking_uri, name, alias)  # what the API's fetch child runs
    try:
        served = served_from_fetched(info, max_rows, force_sklearn)
    except Exception as exc:
        raise ModelLoadError(f"cannot load models:/{name}@{alias}: {exc!r}") from exc
    served.contract = info.get("contract")
    served.load_seconds = time.perf_counter() - started
    log.info(
        "loaded %s v%s (%s) in %.2fs",
        name,
        served.version,
        served.predict_path,
        served.load_seconds,
    )
    return served
