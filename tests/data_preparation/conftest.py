"""Fixtures of the data-plane unit tests: the storage root on an S3 server (moto, on
loopback) with a worker's folders that must stay empty."""

from __future__ import annotations

import re
import tempfile
import types

import pytest


@pytest.fixture
def worker(tmp_path, monkeypatch):
    """A worker's own folders, all empty: `home` (ML_PIPELINE_HOME), `scratch` (TMPDIR,
    Python's temporary folder) and `cwd` (the working directory)."""
    folders = types.SimpleNamespace(
        home=tmp_path / "home", scratch=tmp_path / "scratch", cwd=tmp_path / "cwd"
    )
    for folder in vars(folders).values():
        folder.mkdir()
    monkeypatch.setenv("ML_PIPELINE_HOME", str(folders.home))
    monkeypatch.setenv("TMPDIR", str(folders.scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(folders.scratch))
    monkeypatch.chdir(folders.cwd)
    for name in ("ML_PIPELINE_STORAGE", "ML_PIPELINE_STORAGE_OPTIONS"):
        monkeypatch.delenv(name, raising=False)
    return folders


def leftovers(*folders) -> list[str]:
    """Every file or folder under `folders` (what a task left behind)."""
    return sorted(str(p) for folder in folders for p in folder.rglob("*"))


@pytest.fixture
def s3_root(s3_server, worker, tmp_path, monkeypatch):
    """The storage root on the S3 server (`ML_PIPELINE_STORAGE=s3://ml-pipeline/<test>`,
    the standard AWS variables for it) for a worker whose folders start empty. A
    namespace: `uri`, `prefix`, `server`, `worker`."""
    import s3fs

    prefix = re.sub(r"[^a-z0-9]+", "-", tmp_path.name.lower()).strip("-")
    for name, value in s3_server.env(prefix).items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()  # a client made for another endpoint
    yield types.SimpleNamespace(
        uri=f"s3://{s3_server.bucket}/{prefix}", prefix=prefix, server=s3_server, worker=worker
    )
    s3fs.S3FileSystem.clear_instance_cache()
