"""Load the model version an alias points to, in the calling process (the release step,
benchmarks, tests), with the same two steps the API server runs in child processes
(`isolated.py`): `fetch.fetch` (MLflow) and `compile_worker.served_from_fetched`
(scikit-learn: deserialise, compile, verify).
"""

from __future__ import annotations

import logging
import os
import time

from include.ml_pipeline.serving.errors import ModelLoadError
from include.ml_pipeline.serving.served import ServedModel

log = logging.getLogger("ml_pipeline.serving")


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
    from include.ml_pipeline.serving.compile_worker import served_from_fetched
    from include.ml_pipeline.serving.fetch import fetch

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
