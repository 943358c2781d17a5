"""Reading a prepared split, and the thread limit for fitting and scoring.

Splits are Parquet files (or folders of Parquet files) holding the feature columns and
the target. Only the columns the `FeatureSpec` names are read.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from include.ml_pipeline.storage import local_path

#: Split fingerprints are MLflow dataset digests, which hold at most 36 characters.
DIGEST_LENGTH = 16

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



def read_split(path: str | os.PathLike, spec: FeatureSpec) -> pd.DataFrame:
    """The split's spec columns and target (raises `KeyError` naming missing columns)."""
    import pandas as pd
    import pyarrow.parquet as pq

    local = local_path(path)
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
