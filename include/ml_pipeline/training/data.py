"""Reading a prepared split, and the thread limit for fitting and scoring.

Splits are Parquet objects (or folders of Parquet files) holding the feature columns and
the target, named by URI: under the storage root (`file://`, `s3://`, ...) or a local
path, so a split written on one worker is read on another. A remote object is read once
into memory (nothing on the worker's disk, even when the task is killed) and its
fingerprint is the hash of those bytes, the same digest as `storage.fingerprint`'s; a
remote folder is downloaded into a temporary folder (`storage.local_copy`).
Only the columns the `FeatureSpec` names are read.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from include.ml_pipeline import storage

#: Split fingerprints are MLflow dataset digests, which hold at most 36 characters.
DIGEST_LENGTH = 16

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from include.ml_pipeline.features import FeatureSpec


def read_parquet(
    uri: str | os.PathLike, columns: list[str], *, fingerprint: bool = False
) -> tuple[pd.DataFrame, str | None]:
    """`columns` of the Parquet object (or folder) at `uri`, and with `fingerprint` the
    hash of its bytes (`DIGEST_LENGTH` hex digits); raises `FileNotFoundError` naming the
    URI and `KeyError` naming missing columns."""
    import io

    import pandas as pd
    import pyarrow.parquet as pq

    if (
        storage.local_path(uri) is None
        and storage.exists(uri)
        and (storage.list_files(uri) == [storage.as_uri(uri)])
    ):
        # One remote object: read in memory, so no copy is left on the worker's disk even
        # when the task is killed mid-read (SIGKILL removes no temporary file).
        data = storage.read_bytes(uri)
        available = pq.read_schema(io.BytesIO(data)).names
        missing = [c for c in columns if c not in available]
        if missing:
            raise KeyError(f"{os.fspath(uri)}: missing column(s): {', '.join(missing)}")
        frame = pd.read_parquet(io.BytesIO(data), columns=columns)
        digest = hashlib.sha256(data).hexdigest()[:DIGEST_LENGTH] if fingerprint else None
        return frame, digest
    with contextlib.ExitStack() as stack:
        try:
            local = stack.enter_context(storage.local_copy(uri))
        except FileNotFoundError:
            raise FileNotFoundError(f"split not found: {os.fspath(uri)}") from None
        if local.is_file():
            available = pq.read_schema(local).names
            missing = [c for c in columns if c not in available]
            if missing:
                raise KeyError(f"{os.fspath(uri)}: missing column(s): {', '.join(missing)}")
        frame = pd.read_parquet(local, columns=columns)
        digest = storage.fingerprint(local, length=DIGEST_LENGTH) if fingerprint else None
    return frame, digest


def read_split_with_fingerprint(
    uri: str | os.PathLike, spec: FeatureSpec
) -> tuple[pd.DataFrame, str]:
    """The split's spec columns and target, and the fingerprint of its bytes (raises
    `KeyError` naming missing columns, `ValueError` for an empty split or a missing
    label)."""
    source = os.fspath(uri)
    frame, digest = read_parquet(uri, [*spec.columns, spec.target], fingerprint=True)
    if frame.empty:
        raise ValueError(f"split is empty: {source}")
    if frame[spec.target].isna().any():
        raise ValueError(
            f"{source}: target column {spec.target!r} has "
            f"{int(frame[spec.target].isna().sum())} missing value(s)"
        )
    return frame, str(digest)


def read_split(uri: str | os.PathLike, spec: FeatureSpec) -> pd.DataFrame:
    """The split's spec columns and target (see `read_split_with_fingerprint`)."""
    return read_split_with_fingerprint(uri, spec)[0]


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
