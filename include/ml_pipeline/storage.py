"""The storage root: where everything that outlives a task lives, as URIs.

Staged raw data, splits, manifests, reports and dashboards, drift reports, the inference
log and monitoring snapshots are objects under one root URI (`Settings.storage_uri`):
`file://` under `.local/` by default, `s3://bucket/prefix` (or `gs://`, `abfs://`, any
fsspec protocol whose package is installed) on Astro. XCom carries these URIs, never a
worker's local path, so a task may run on any worker.

Underneath is fsspec, the library Airflow's own `ObjectStoragePath` wraps: the same
filesystem classes, but usable where no Airflow is installed (the model API service, the
plain benchmark script) and with one API on Airflow 2.11 and 3.x. Credentials come from
the filesystem's own chain (for S3: `AWS_*` variables, `AWS_ENDPOINT_URL`, an instance or
workload-identity role), from `ML_PIPELINE_STORAGE_OPTIONS` (JSON storage options), or
from an Airflow connection that the orchestration layer hands to `configure()`.

Local paths and `file://` URIs keep working everywhere: `local_path()` gives the file
behind them, and the helpers below read and write both kinds the same way.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlparse
from urllib.request import url2pathname

if TYPE_CHECKING:  # pragma: no cover
    import fsspec
    import pandas as pd

_BLOCK = 1 << 20
#: Storage options by protocol, set by `configure()` (from an Airflow connection).
_CONFIGURED: dict[str, dict[str, Any]] = {}
OPTIONS_ENV = "ML_PIPELINE_STORAGE_OPTIONS"


class StorageError(RuntimeError):
    """The storage root cannot be used as configured (no such bucket, no credentials,
    unreachable endpoint): a configuration error that a retry cannot fix."""


def local_path(uri: str | os.PathLike) -> Path | None:
    """The local path behind `uri` (a plain path or `file://`), or None for a remote URI."""
    text = os.fspath(uri)
    if text.startswith("file:"):
        return Path(url2pathname(urlparse(text).path))
    if urlparse(text).scheme and "://" in text:
        return None
    return Path(text).expanduser()


def is_remote(uri: str | os.PathLike) -> bool:
    return local_path(uri) is None


def as_uri(location: str | os.PathLike) -> str:
    """`location` as a URI: a local path becomes `file:///...`, a URI stays as it is."""
    local = local_path(location)
    return local.resolve().as_uri() if local is not None else os.fspath(location)


def join(base: str | os.PathLike, *parts: str) -> str:
    """`base` (a URI or a path) with `parts` appended, as a URI."""
    text = as_uri(base).rstrip("/")
    cleaned = [str(p).strip("/") for p in parts if str(p).strip("/")]
    return "/".join([text, *cleaned])


def protocol(uri: str | os.PathLike) -> str:
    return "file" if local_path(uri) is not None else urlparse(os.fspath(uri)).scheme


def configure(protocol_name: str, options: dict[str, Any] | None) -> None:
    """Use `options` (fsspec storage options) for every URI of `protocol_name` in this
    process; None forgets them."""
    if options is None:
        _CONFIGURED.pop(protocol_name, None)
    else:
        _CONFIGURED[protocol_name] = dict(options)


def storage_options(uri: str | os.PathLike) -> dict[str, Any]:
    """The storage options for `uri`: `configure()`d ones, else `ML_PIPELINE_STORAGE_OPTIONS`
    (JSON) for a remote URI, else none (the filesystem's own credential chain)."""
    name = protocol(uri)
    if name in _CONFIGURED:
        return dict(_CONFIGURED[name])
    raw = os.environ.get(OPTIONS_ENV, "").strip()
    if name != "file" and raw:
        try:
            options = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise StorageError(
                f"{OPTIONS_ENV} is not valid JSON ({exc}); set it to an object of fsspec "
                'storage options, e.g. {"client_kwargs": {"endpoint_url": "http://..."}}'
            ) from exc
        if not isinstance(options, dict):
            raise StorageError(f"{OPTIONS_ENV} must be a JSON object of storage options")
        return options
    return {}


def filesystem(
    uri: str | os.PathLike, options: dict[str, Any] | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem for `uri` and the path inside it; `options` (storage options,
    e.g. from another connection than the storage root's) replace `storage_options(uri)`."""
    local = local_path(uri)
    if local is not None:
        from fsspec.implementations.local import LocalFileSystem

        return LocalFileSystem(), str(local)
    from fsspec.core import url_to_fs

    text = os.fspath(uri)
    try:
        return url_to_fs(text, **(storage_options(text) if options is None else options))
    except (ImportError, ValueError) as exc:
        raise StorageError(
            f"{text}: no filesystem for {protocol(text)}:// ({exc}); install its fsspec "
            "package (s3fs, gcsfs, adlfs) or use another storage root"
        ) from exc


def exists(uri: str | os.PathLike, options: dict[str, Any] | None = None) -> bool:
    fs, path = filesystem(uri, options)
    return bool(fs.exists(path))


def is_file(uri: str | os.PathLike) -> bool:
    fs, path = filesystem(uri)
    return bool(fs.isfile(path))


@contextlib.contextmanager
def open_uri(uri: str | os.PathLike, mode: str = "rb") -> Iterator[IO]:
    """Open the object at `uri`; writing creates its parent folders when local (never a
    bucket: a mistyped one must fail, not appear)."""
    fs, path = filesystem(uri)
    local = local_path(uri)
    if local is not None and ("w" in mode or "a" in mode):
        local.parent.mkdir(parents=True, exist_ok=True)
    with fs.open(path, mode) as handle:
        yield handle


def read_bytes(uri: str | os.PathLike) -> bytes:
    with open_uri(uri, "rb") as handle:
        return handle.read()


def write_bytes(uri: str | os.PathLike, data: bytes) -> str:
    """Write `data` to `uri` whole (locally through a temporary file, so a reader never
    sees half of it); return the URI."""
    local = local_path(uri)
    if local is not None:
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.{os.getpid()}.part")
        tmp.write_bytes(data)
        tmp.replace(local)
    else:
        with open_uri(uri, "wb") as handle:
            handle.write(data)
    return as_uri(uri)


def read_text(uri: str | os.PathLike) -> str:
    return read_bytes(uri).decode("utf-8")


def write_text(uri: str | os.PathLike, text: str) -> str:
    return write_bytes(uri, text.encode("utf-8"))


def read_json(uri: str | os.PathLike) -> Any:
    return json.loads(read_bytes(uri))


def write_json(uri: str | os.PathLike, document: Any) -> str:
    return write_text(uri, json.dumps(document, indent=2, default=str))


def list_files(prefix: str | os.PathLike, suffix: str = "") -> list[str]:
    """URIs of the files under `prefix` (recursively) ending in `suffix`, in name order;
    empty when `prefix` does not exist."""
    return list(list_sizes(prefix, suffix))


def list_sizes(prefix: str | os.PathLike, suffix: str = "") -> dict[str, int]:
    """`list_files` with each file's size in bytes (one listing, no extra request per
    object): `{uri: size}` in name order."""
    fs, path = filesystem(prefix)
    if not fs.exists(path):
        return {}
    if fs.isfile(path):
        found = {path: fs.info(path)}
    else:
        found = {
            p: info
            for p, info in fs.find(path, detail=True).items()
            if not p.rsplit("/", 1)[-1].startswith(".")
        }
    base = as_uri(prefix).rstrip("/")
    root = path.rstrip("/")
    sizes: dict[str, int] = {}
    for item in sorted(found):
        if not item.endswith(suffix):
            continue
        uri = as_uri(prefix) if item == root else base + "/" + item[len(root) :].lstrip("/")
        sizes[uri] = int(found[item].get("size") or 0)
    return sizes


def read_many(uris: list[str]) -> dict[str, bytes]:
    """The bytes of each object in `uris` (all under one filesystem), fetched in one
    batch: concurrent requests on an async filesystem such as s3fs. An object that
    vanished meanwhile is left out."""
    if not uris:
        return {}
    fs, _ = filesystem(uris[0])
    paths = {filesystem(uri)[1]: uri for uri in uris}
    found = fs.cat(list(paths), on_error="omit")
    return {paths[p]: data for p, data in found.items() if p in paths}


def remove(uri: str | os.PathLike, recursive: bool = False) -> None:
    """Remove the object (or, with `recursive`, the folder) at `uri`; absent is fine."""
    fs, path = filesystem(uri)
    if fs.exists(path):
        fs.rm(path, recursive=recursive)


def upload(local: str | os.PathLike, uri: str | os.PathLike) -> str:
    """Copy the local file or folder `local` to `uri` (replacing it); return the URI."""
    source = Path(local)
    target = local_path(uri)
    if target is not None:
        if source.resolve() == target.resolve():
            return as_uri(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target)
        else:
            shutil.copyfile(source, target)
        return as_uri(uri)
    fs, path = filesystem(uri)
    if source.is_dir():
        if fs.exists(path):
            fs.rm(path, recursive=True)
        fs.put(str(source), path, recursive=True)
    else:
        fs.put_file(str(source), path)
    return as_uri(uri)


@contextlib.contextmanager
def local_copy(
    uri: str | os.PathLike, suffix: str = "", options: dict[str, Any] | None = None
) -> Iterator[Path]:
    """A local file (or folder) with the data at `uri`: the file itself when it is
    local, else a temporary download removed afterwards (`options`: as in `filesystem`)."""
    local = local_path(uri)
    if local is not None:
        if not local.exists():
            raise FileNotFoundError(f"{as_uri(uri)}: no such file")
        yield local
        return
    fs, path = filesystem(uri, options)
    if not fs.exists(path):
        raise FileNotFoundError(f"{os.fspath(uri)}: no such object")
    with tempfile.TemporaryDirectory(prefix="ml_pipeline_") as tmp:
        name = path.rstrip("/").rsplit("/", 1)[-1] or "object"
        target = Path(tmp) / (name if not suffix or name.endswith(suffix) else name + suffix)
        if fs.isdir(path):
            fs.get(path.rstrip("/") + "/", str(target), recursive=True)
        else:
            fs.get_file(path, str(target))
        yield target


@contextlib.contextmanager
def staged_output(uri: str | os.PathLike) -> Iterator[Path]:
    """A local path to write the object at `uri` to: the file itself when `uri` is local
    (written through a temporary name and moved into place), else a temporary file
    uploaded when the block ends without an error."""
    local = local_path(uri)
    if local is not None:
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.{os.getpid()}.part")
        try:
            yield tmp
            if tmp.is_dir():
                shutil.rmtree(local, ignore_errors=True)
            tmp.replace(local)
        finally:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
        return
    with tempfile.TemporaryDirectory(prefix="ml_pipeline_") as folder:
        name = os.fspath(uri).rstrip("/").rsplit("/", 1)[-1] or "object"
        target = Path(folder) / name
        yield target
        upload(target, uri)


def fingerprint(
    uri: str | os.PathLike, frame: pd.DataFrame | None = None, *, length: int = 64
) -> str:
    """SHA-256 (the first `length` hex digits) of the bytes at `uri`: one object, or every
    object under a folder in name order (local or remote alike). When nothing is stored
    at `uri`, `frame` (the loaded data) is hashed instead."""
    digest = hashlib.sha256()
    if exists(uri):
        files = list_files(uri)
        base = as_uri(uri).rstrip("/")
        for file in files:
            if file != as_uri(uri):
                digest.update(file[len(base) :].lstrip("/").encode())
            with open_uri(file, "rb") as handle:
                for block in iter(functools.partial(handle.read, _BLOCK), b""):
                    digest.update(block)
        return digest.hexdigest()[:length]
    if frame is None:
        raise ValueError(f"cannot fingerprint {os.fspath(uri)} without its data")
    import pandas as pd

    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:length]
