"""Reading a prepared split and fingerprinting it.

Splits are Parquet files (or folders of Parquet files) holding the feature columns and
the target. Only the columns the `FeatureSpec` names are read.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from include.ml_pipeline.features import FeatureSpec


def as_spec(spec: Any) -> FeatureSpec:
    """Accept a `FeatureSpec` or its dict (as it travels through XCom)."""
    from include.ml_pipeline.features import FeatureSpec

    if isinstance(spec, FeatureSpec):
        return spec
    if isinstance(spec, dict):
        return FeatureSpec.from_dict(spec)
    raise TypeError(f"spec must be a FeatureSpec or its dict; got {type(spec).__name__}")


def _local_path(path: str | os.PathLike) -> Path | None:
    text = os.fspath(path)
    if text.startswith("file://"):
        from urllib.parse import urlparse
        from urllib.request import url2pathname

        return Path(url2pathname(urlparse(text).path))
    if "://" in text:
        return None
    return Path(text)


def read_split(path: str | os.PathLike, spec: FeatureSpec) -> pd.DataFrame:
    """The split's spec columns and target (raises `KeyError` naming missing columns)."""
    import pandas as pd
    import pyarrow.parquet as pq

    local = _local_path(path)
    source = str(local) if local is not None else os.fspath(path)
    if local is not None and not local.exists():
        raise FileNotFoundError(f"split not found: {source}")
    wanted = [*spec.columns, spec.target]
    available = pq.read_schema(source).names if local is None or local.is_file() else None
    if available is not None:
        missing = [c for c in wanted if c not in available]
        if missing:
            raise KeyError(f"{source}: missing column(s): {', '.join(missing)}")
    frame = pd.read_parquet(source, columns=wanted)
    if frame.empty:
        raise ValueError(f"split is empty: {source}")
    if frame[spec.target].isna().any():
        raise ValueError(
            f"{source}: target column {spec.target!r} has "
            f"{int(frame[spec.target].isna().sum())} missing value(s)"
        )
    return frame


def file_fingerprint(path: str | os.PathLike, frame: pd.DataFrame | None = None) -> str:
    """16 hex characters of SHA-256 over the file's bytes (every file, sorted, for a folder).

    For a non-local URI, `frame` (the loaded data) is hashed instead.
    """
    digest = hashlib.sha256()
    local = _local_path(path)
    if local is not None and local.exists():
        files = sorted(p for p in local.rglob("*") if p.is_file()) if local.is_dir() else [local]
        for file in files:
            digest.update(str(file.relative_to(local) if local.is_dir() else "").encode())
            with file.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()[:16]
    if frame is None:
        raise ValueError(f"cannot fingerprint {path!s} without its data")
    import pandas as pd

    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def limit_threads(threads: int | None) -> Iterator[None]:
    """Cap BLAS and OpenMP threads inside the block (None: leave the library defaults).

    scikit-learn's OpenMP runtime is loaded first, so the cap also reaches a model that is
    only loaded (e.g. unpickled) inside the block.
    """
    if threads is None:
        yield
        return
    import sklearn.utils._openmp_helpers  # noqa: F401  (loads the OpenMP runtime)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(threads):
        yield
