"""Headless Chromium driven over the Chrome DevTools protocol, for the dashboard tests.

`load_in_chromium` opens a local file in Debian's `chromium`, records console errors,
uncaught exceptions, failed loads and every network request, counts images that did not
decode, and saves a full-page screenshot. Tests that need it skip only when no Chromium
binary is installed (`apt-get install chromium`).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devtools.browser import CHROMIUM_ARGS, find_chromium

CHROMIUM_FLAGS = (
    "--headless",
    *CHROMIUM_ARGS,
    "--disable-extensions",
    "--hide-scrollbars",
    "--window-size=1280,900",
    "--remote-debugging-port=0",
)


@dataclass
class PageReport:
    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    failed_loads: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    broken_images: int = -1
    image_count: int = -1
    title: str = ""
    screenshot: Path | None = None

    @property
    def errors(self) -> list[str]:
        return [*self.console_errors, *self.exceptions, *self.failed_loads]


class _DevTools:
    """A minimal synchronous CDP client over one page's websocket."""

    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect

        # held open across calls, closed by close(): a direct connection (websockets 17.1+)
        self.ws = connect(url, max_size=None, open_timeout=10, legacy=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        call_id = self.next_id
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def wait_for(self, event: str, timeout: float = 30.0) -> None:
        if any(e["method"] == event for e in self.events):
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if "method" in message:
                self.events.append(message)
                if message["method"] == event:
                    return
        raise TimeoutError(f"no {event} within {timeout} s")

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                return
            if "method" in message:
                self.events.append(message)

    def close(self) -> None:
        self.ws.close()


def load_in_chromium(page: Path, screenshot: Path, timeout: float = 60.0) -> PageReport:
    """Open `page` (a local HTML file) in headless Chromium and report what happened."""
    binary = find_chromium()
    if binary is None:
        raise RuntimeError("chromium is not installed")
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
    log = (profile / "stderr.log").open("wb")
    process = subprocess.Popen(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        port = _devtools_port(profile, process, timeout)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            targets = json.load(resp)
        target = next(t for t in targets if t.get("type") == "page")
        tools = _DevTools(target["webSocketDebuggerUrl"])
        try:
            for domain in ("Runtime", "Log", "Network", "Page"):
                tools.call(f"{domain}.enable")
            tools.call("Page.navigate", url=page.resolve().as_uri())
            tools.wait_for("Page.loadEventFired", timeout)
            tools.drain(0.5)
            report = _collect(tools)
            metrics = tools.call("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            shot = tools.call(
                "Page.captureScreenshot",
                format="png",
                captureBeyondViewport=True,
                clip={
                    "x": 0,
                    "y": 0,
                    "width": size["width"],
                    "height": min(size["height"], 16_000),
                    "scale": 1,
                },
            )
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            report.screenshot = screenshot
            return report
        finally:
            tools.close()
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()
        shutil.rmtree(profile, ignore_errors=True)


def _devtools_port(profile: Path, process: subprocess.Popen, timeout: float) -> int:
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = (profile / "stderr.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"chromium exited with {process.returncode}: {stderr}")
        if marker.exists():
            lines = marker.read_text().splitlines()
            if lines and lines[0].strip().isdigit():
                return int(lines[0])
        time.sleep(0.05)
    raise TimeoutError("chromium did not open its DevTools port")


def _collect(tools: _DevTools) -> PageReport:
    report = PageReport()
    for event in tools.events:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            texts = [str(a.get("value", a.get("description", ""))) for a in params.get("args", [])]
            report.console_errors.append(" ".join(texts))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "")
            report.exceptions.append(str(text))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            report.console_errors.append(f"{entry.get('text', '')} {entry.get('url', '')}")
        elif method == "Network.requestWillBeSent":
            report.requests.append(params.get("request", {}).get("url", ""))
        elif method == "Network.loadingFailed":
            report.failed_loads.append(f"{params.get('errorText', '')} ({params.get('type', '')})")
    images = tools.call(
        "Runtime.evaluate",
        expression=(
            "JSON.stringify([document.images.length, Array.from(document.images)"
            ".filter(i => !(i.complete && i.naturalWidth > 0)).length, document.title])"
        ),
        returnByValue=True,
    )
    count, broken, title = json.loads(images["result"]["value"])
    report.image_count, report.broken_images, report.title = count, broken, title
    return report


@pytest.fixture(scope="session")
def chromium_loader():
    """`load_in_chromium(page, screenshot) -> PageReport`; skips when Chromium is absent."""
    if find_chromium() is None:
        pytest.skip(
            "Chromium is not installed (Debian: apt-get install -y chromium); "
            "the dashboard browser check needs it"
        )
    return load_in_chromium


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
    from devtools.fixtures import churn_spec
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
