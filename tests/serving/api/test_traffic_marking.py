"""Smoke-test and benchmark requests are marked (`X-Traffic-Kind`) and logged with their
kind; the drift window monitoring reads holds only the served version's live rows."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import numpy as np

from include.ml_pipeline.deployment import api_client
from include.ml_pipeline.monitoring import windows
from include.ml_pipeline.monitoring.inference_log import read_inference_log
from include.ml_pipeline.names import TRAFFIC_HEADER
from include.ml_pipeline.serving.api.routes import traffic_kind


def test_the_header_decides_the_kind():
    assert traffic_kind("smoke") == "smoke"
    assert traffic_kind(" Benchmark ") == "benchmark"
    for other in (None, "", "live", "canary", "smoke,benchmark"):
        assert traffic_kind(other) == "live"


def _wait_rows(log_dir, since, version, rows, kinds):
    deadline = time.monotonic() + 20
    while True:
        frame = read_inference_log(log_dir, since=since, model_version=version, kinds=kinds)
        if len(frame) >= rows or time.monotonic() > deadline:
            return frame
        time.sleep(0.25)


def test_drift_window_holds_only_live_rows_after_smoke_and_live_traffic(
    live_api, registry, churn_frame
):
    from include.ml_pipeline.data_preparation.sample_data import (
        TARGET,
        churn_spec,
        generate_churn_frame,
    )

    since = datetime.now(UTC)
    smoke_rows = churn_frame.head(20)
    report = api_client.smoke_test(
        live_api.url,
        registry.tracking_uri,
        registry.name,
        registry.v1,
        frame=smoke_rows,
        p95_budget_ms=500,
        latency_requests=30,
    )
    assert report.rows_checked == 20
    drifted = generate_churn_frame(300, seed=7, drift=True).drop(columns=[TARGET])
    for start in range(0, len(drifted), 50):
        api_client.predict_labels(live_api.url, drifted.iloc[start : start + 50])
    with httpx.Client(timeout=10) as client:
        body = api_client.split_payload(drifted.head(5))
        answer = client.post(
            live_api.url + "/invocations",
            content=body,
            headers={"Content-Type": "application/json", TRAFFIC_HEADER: "benchmark"},
        )
        assert answer.status_code == 200
    smoke_sent = 20 + 30 + 10  # the prediction check, the latency probe and its warm-up
    every = _wait_rows(live_api.log_dir, since, registry.v1, smoke_sent + 300 + 5, None)
    counts = every["traffic_kind"].value_counts().to_dict()
    assert counts == {"live": 300, "smoke": smoke_sent, "benchmark": 5}

    window = windows.current_frame(
        "inference_log",
        churn_spec(),
        model_version=registry.v1,
        inference_log_dir=live_api.log_dir,
        since=since,
    )
    assert len(window) == 300
    assert set(window["traffic_kind"]) == {"live"}
    np.testing.assert_array_equal(
        np.sort(window["tenure_months"].to_numpy(float)),
        np.sort(drifted["tenure_months"].to_numpy(float)),
    )
    assert windows.recent_traffic(
        since, model_version=registry.v2, inference_log_dir=live_api.log_dir
    ).empty
