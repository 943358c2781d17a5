"""Fixtures of the monitoring tests: the dashboard in headless Chromium, the storage root
on an S3 server, and a deployed version's records."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tests.support.browser import chromium, load_in_chromium, need_chromium


@pytest.fixture(scope="module")
def chromium_loader():
    """`chromium_loader(page, screenshot) -> PageReport` (`tests.support.browser`) in one
    headless Chromium per module; skips where Chromium is absent (fails under CI). Not
    per session: Playwright's sync API allows one running instance per thread, and one
    left open for the session made tests/ui's browser fail to start."""
    path = need_chromium("the dashboard browser check")
    with chromium(path) as browser:
        yield lambda page, screenshot: load_in_chromium(browser, page, screenshot)


# --------------------------------------------------------------------------- S3 storage root


@pytest.fixture
def storage_on_s3(s3_server, tmp_path, monkeypatch):
    """The storage root on the S3 server (`ML_PIPELINE_STORAGE=s3://ml-pipeline/<test>`,
    the standard AWS variables for it), an empty `ML_PIPELINE_HOME` and an empty TMPDIR
    (both must stay empty), and an MLflow store of its own standing in for the tracking
    server. Yields a namespace: `root` (the URI), `prefix`, `home`, `scratch`, `server`."""
    import re
    import types

    import s3fs

    prefix = re.sub(r"[^a-z0-9]+", "-", tmp_path.name.lower()).strip("-")
    for name, value in s3_server.env(prefix).items():
        monkeypatch.setenv(name, value)
    for name in (
        "ML_PIPELINE_REPORTS",
        "ML_PIPELINE_NOTIFICATIONS",
        "ML_PIPELINE_INFERENCE_LOG",
        "ML_PIPELINE_STORAGE_OPTIONS",
    ):
        monkeypatch.delenv(name, raising=False)
    home, scratch, services = (tmp_path / name for name in ("home", "scratch", "services"))
    for folder in (home, scratch, services):
        folder.mkdir()
    monkeypatch.setenv("ML_PIPELINE_HOME", str(home))
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{services / 'mlflow.db'}")
    monkeypatch.setenv("ML_PIPELINE_MLFLOW_ARTIFACTS", (services / "artifacts").as_uri())
    s3fs.S3FileSystem.clear_instance_cache()  # a client made for another endpoint
    yield types.SimpleNamespace(
        root=f"s3://{s3_server.bucket}/{prefix}",
        prefix=prefix,
        home=home,
        scratch=scratch,
        services=services,
        server=s3_server,
    )
    s3fs.S3FileSystem.clear_instance_cache()


# --------------------------------------------------------------------------- a deployed version


def write_splits(base: str | Path) -> dict[str, str]:
    """Train / validation / test Parquet objects (1,000 / 300 / 300 generated churn rows)
    under `base` (a folder path or URI); returns their URIs."""
    import io

    from include.ml_pipeline import storage
    from include.ml_pipeline.data_preparation.sample_data import generate_churn_frame

    frame = generate_churn_frame(1_600, seed=3)
    uris = {}
    for name, part in (
        ("train", frame[:1000]),
        ("validation", frame[1000:1300]),
        ("test", frame[1300:]),
    ):
        buffer = io.BytesIO()
        part.to_parquet(buffer, index=False)
        uris[name] = storage.write_bytes(storage.join(base, f"{name}.parquet"), buffer.getvalue())
    return uris


def training_run_with_plot(tracking_uri: str, artifact_root: str, scratch: Path):
    """An MLflow run with one evaluation plot under `plots/` (what the deployment dashboard
    embeds); returns (client, run id). `scratch` holds the PNG before it is logged."""
    from matplotlib.figure import Figure
    from mlflow import MlflowClient

    from include.ml_pipeline.plots import figure_to_png_bytes
    from include.ml_pipeline.registry.mlflow_setup import ensure_experiment

    experiment = ensure_experiment(tracking_uri, "t", artifact_root)
    client = MlflowClient(tracking_uri)
    run_id = client.create_run(experiment).info.run_id
    fig = Figure()
    fig.add_subplot().plot([0, 1], [0, 1])
    plot = scratch / "roc_curve.png"
    plot.write_bytes(figure_to_png_bytes(fig))
    client.log_artifact(run_id, str(plot), "plots")
    return client, run_id


def live_deployment(split_uris: dict[str, str], run_id: str, manifest_uri: str) -> dict:
    """The `LiveDeployment` dict of model `m` v3 (champion v2 before it), trained in
    `run_id` on `split_uris`, served at an address nothing listens on."""
    from include.ml_pipeline.data_preparation.sample_data import churn_spec
    from include.ml_pipeline.payloads import (
        Decision,
        LiveDeployment,
        RegisteredModel,
        Release,
        Rollout,
        SplitResult,
    )

    split = SplitResult(
        uris=split_uris,
        rows={"train": 1000, "validation": 300, "test": 300},
        class_counts={},
        seed=0,
        feature_spec=churn_spec(),
    )
    registered = RegisteredModel(
        model_name="m",
        version="3",
        run_id=run_id,
        model_uri="models:/m/3",
        metrics={"roc_auc": 0.81},
        champion_version="2",
        champion_metrics={"roc_auc": 0.79},
        champion_error=None,
        candidate="lr",
        version_info={},
        split=split,
    )
    release = Release(
        registered=registered,
        decision=Decision(deploy=True, reasons=["roc_auc 0.81 >= 0.75"]),
        manifest={"previous_champion": "2"},
        manifest_uri=manifest_uri,
    )
    rollout = Rollout(
        release=release, url="http://127.0.0.1:1", version="3", started=None, version_info={}
    )
    return LiveDeployment(rollout=rollout, smoke={"ok": True}).to_dict()
