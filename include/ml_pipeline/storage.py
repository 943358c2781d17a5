"""Where a URI points on this machine, and the fingerprint of what is stored there: one
rule for every stage (raw data, splits, batches)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse
from urllib.request import url2pathname

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

_BLOCK = 1 << 20


def local_path(uri: str | os.PathLike) -> Path | None:
    """The local path behind `uri` (a plain path or `file://`), or None for a remote URI."""
    text = os.fspath(uri)
    if text.startswith("file:"):
        return Path(url2pathname(urlparse(text).path))
    if urlparse(text).scheme and "://" in text:
        return None
    return Path(text).expanduser()


def fingerprint(
    uri: str | os.PathLike, frame: pd.DataFrame | None = None, *, length: int = 64
) -> str:
    """SHA-256 (the first `length` hex digits) of the bytes at `uri`: one file, or every
    file of a folder in name order. For a remote URI, `frame` (the loaded data) is hashed
    instead."""
    digest = hashlib.sha256()
    local = local_path(uri)
    if local is not None and local.exists():
        files = sorted(p for p in local.rglob("*") if p.is_file()) if local.is_dir() else [local]
        for file in files:
            if local.is_dir():
                digest.update(str(file.relative_to(local)).encode())
            with file.open("rb") as handle:
                for block in iter(lambda h=handle: h.read(_BLOCK), b""):
                    digest.update(block)
        return digest.hexdigest()[:length]
    if frame is None:
        raise ValueError(f"cannot fingerprint {os.fspath(uri)} without its data")
    import pandas as pd

    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:length]

