"""One verified model for every part of a run: verified once, by the planning task.

Loading a version as `model.load_batch_model` does (download it from MLflow, deserialise
the pipeline, compile it, verify the compiled predictor, its columnar encoding and its leaf
masks against the pipeline) costs seconds of CPU; done by each mapped `score_part` it grew
with the number of parts. Now `plan_parts` loads and verifies the pinned version once and
`publish`es the verified scorer:

* the `BatchModel` (verified compiled predictor, leaf-mask plan, and what their recheck
  needs: the verification batch and the library's raw scores on it) is pickled to
  `<run>/model/verified-v<version>-<digest>.pkl` under the storage root, which every
  worker reads (the parts' outputs live there too; no worker's local disk is used). On a
  compiled path the scikit-learn pipeline is left out (`model.portable`): the object holds
  no scikit-learn class, so a part in a fresh process never imports scikit-learn (~1 s of
  CPU per part) nor MLflow; a version on the scikit-learn path keeps its pipeline;
* its record (`VerifiedModel`: URI, SHA-256 of the bytes, model name, version, path) goes
  to each part through XCom, i.e. Airflow's metadata database, not through the storage.

A part (`load_shared`) takes the scorer from this process's cache when it already holds
that name + version + digest (an embedded `make score` run, a worker process scoring
several parts), else reads the object, refuses it unless its SHA-256 is the recorded one
and its name and version are the pinned ones (`SharedModelError`: the part then loads and
verifies the version itself, as before), and unpickles it. Only what depends on the
worker is redone: the numba kernels are loaded on this worker, and the leaf masks' raw
scores are checked again against the library's on the verification batch (milliseconds);
on any difference the part scores with the compiled predictor or, failing that, the
pipeline, never with an unchecked path.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any

from include.ml_pipeline import storage
from include.ml_pipeline.batch_scoring.model import BatchModel, portable, recheck_on_this_worker

log = logging.getLogger(__name__)

FOLDER = "model"
#: Verified scorers kept by a process (a run pins one version: two leave room for a
#: second run in the same process).
CACHE_SIZE = 2

_cache: OrderedDict[tuple[str, str, str], BatchModel] = OrderedDict()
_lock = threading.Lock()


class SharedModelError(RuntimeError):
    """The published scorer is missing, altered, or not the pinned version."""


@dataclass(frozen=True)
class VerifiedModel:
    """Where `plan_parts` put the verified scorer, and what it must be."""

    uri: str
    sha256: str
    name: str
    version: str
    #: the predict path it was verified on (`compiled:...` or `sklearn`)
    path: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VerifiedModel:
        return cls(**data)


def _remember(key: tuple[str, str, str], model: BatchModel) -> None:
    with _lock:
        _cache[key] = model
        _cache.move_to_end(key)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)


def forget() -> None:
    """Empty this process's cache (a fresh worker process starts so)."""
    with _lock:
        _cache.clear()


def publish(model: BatchModel, run_uri: str) -> VerifiedModel:
    """Write the verified `model` (`portable`: without its pipeline on a compiled path)
    under `run_uri` and return its record (`model` is kept in this process's cache)."""
    data = pickle.dumps(portable(model), protocol=pickle.HIGHEST_PROTOCOL)
    digest = hashlib.sha256(data).hexdigest()
    uri = storage.join(run_uri, FOLDER, f"verified-v{model.version}-{digest[:16]}.pkl")
    storage.write_bytes(uri, data)
    record = VerifiedModel(
        uri=storage.as_uri(uri),
        sha256=digest,
        name=model.name,
        version=str(model.version),
        path=model.path,
    )
    _remember((record.name, record.version, digest), model)
    log.info(
        "verified %s v%s (%s) published for the parts: %s (%d bytes, sha256 %s)",
        model.name,
        model.version,
        model.path,
        record.uri,
        len(data),
        digest,
    )
    return record


def load_shared(record: VerifiedModel, name: str, version: str) -> BatchModel:
    """The scorer `publish` wrote, for a part pinned to `name` v`version`; raises
    `SharedModelError` when it is not that version or its bytes are not the recorded
    ones."""
    if record.name != name or record.version != str(version):
        raise SharedModelError(
            f"{record.uri} holds {record.name} v{record.version}, the run pinned "
            f"{name} v{version}; the part loads the pinned version itself"
        )
    key = (record.name, record.version, record.sha256)
    with _lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    try:
        data = storage.read_bytes(record.uri)
    except FileNotFoundError as exc:
        raise SharedModelError(f"{record.uri}: not there ({exc})") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != record.sha256:
        raise SharedModelError(
            f"{record.uri}: sha256 {digest} differs from {record.sha256} recorded by "
            "plan_parts (the object changed after planning); the part loads and verifies "
            "the pinned version itself"
        )
    model = pickle.loads(data)  # digest-checked: the bytes the planning task wrote
    if not isinstance(model, BatchModel) or (model.name, str(model.version)) != (
        name,
        str(version),
    ):
        raise SharedModelError(f"{record.uri}: not a scorer of {name} v{version}")
    recheck_on_this_worker(model)
    _remember(key, model)
    return model


__all__ = ["SharedModelError", "VerifiedModel", "forget", "load_shared", "publish"]
