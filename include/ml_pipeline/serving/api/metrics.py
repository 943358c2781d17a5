"""Prometheus metrics of the model API (own registry, served at `GET /metrics`).

* `model_api_requests_total{endpoint,status}` - requests by endpoint and HTTP status
* `model_api_request_latency_seconds{endpoint}` - histogram, handler time
* `model_api_errors_total{kind}` - client/server errors by kind (`missing_columns`, ...)
* `model_api_predicted_rows_total` / `model_api_predictions_total{class}` - predicted
  rows, by predicted class
* `model_api_model_version` - served version number (NaN before the first load)
* `model_api_model_info{name,version,alias,predict_path}` - 1 for the served model
* `model_api_ignored_columns_requests_total{endpoint}` - requests whose extra columns
  were ignored (named in their `X-Ignored-Columns` response header)
* `model_api_reloads_total{result}` - reloads and unloads by result (`ok`, `failed`,
  `unauthorized`, `refused`, `unloaded`)
* `model_api_inference_log_dropped_total` / `..._written_total` /
  `..._write_errors_total` / `model_api_inference_log_pending_objects` - the inference log
  (entries dropped when full, records written, failed writes, objects waiting)
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "model_api_requests",
            "Requests by endpoint and status",
            ["endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "model_api_request_latency_seconds",
            "Handler latency",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter("model_api_errors", "Errors by kind", ["kind"], registry=r)
        self.rows = Counter("model_api_predicted_rows", "Rows predicted", registry=r)
        self.classes = Counter(
            "model_api_predictions", "Predicted rows by class", ["class"], registry=r
        )
        self.version = Gauge("model_api_model_version", "Served model version", registry=r)
        self.version.set(float("nan"))
        self.info = Gauge(
            "model_api_model_info",
            "Served model (value 1)",
            ["name", "version", "alias", "predict_path"],
            registry=r,
        )
        self.ignored_columns = Counter(
            "model_api_ignored_columns_requests",
            "Requests with columns the model does not take (ignored, named in the "
            "X-Ignored-Columns header)",
            ["endpoint"],
            registry=r,
        )
        self.reloads = Counter("model_api_reloads", "Reloads by result", ["result"], registry=r)
        self.log_dropped = Gauge(
            "model_api_inference_log_dropped_total",
            "Inference log entries dropped (queue full)",
            registry=r,
        )
        self.log_written = Gauge(
            "model_api_inference_log_written_total", "Inference log records written", registry=r
        )
        self.log_errors = Gauge(
            "model_api_inference_log_write_errors_total",
            "Inference log writes that failed (retried)",
            registry=r,
        )
        self.log_pending = Gauge(
            "model_api_inference_log_pending_objects",
            "Inference log objects waiting for the store",
            registry=r,
        )
        self._request_children: dict[tuple[str, int], Any] = {}
        self._latency_children: dict[str, Any] = {}
        self._class_children: dict[str, Any] = {}

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        key = (endpoint, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(endpoint, str(status))
        child.inc()
        hist = self._latency_children.get(endpoint)
        if hist is None:
            hist = self._latency_children[endpoint] = self.latency.labels(endpoint)
        hist.observe(seconds)

    def error(self, kind: str) -> None:
        self.errors.labels(kind).inc()

    def predicted(self, labels: list[Any], label_index: Any, classes: list[Any]) -> None:
        self.rows.inc(len(labels))
        if not classes:  # a regressor: numbers, not classes to count
            return
        if len(labels) == 1:
            self._class(labels[0]).inc()
            return
        if label_index is not None:
            import numpy as np

            counts = np.bincount(label_index, minlength=len(classes))
            for cls, count in zip(classes, counts.tolist(), strict=False):
                if count:
                    self._class(cls).inc(count)
            return
        tally: dict[Any, int] = {}
        for label in labels:
            tally[label] = tally.get(label, 0) + 1
        for label, count in tally.items():
            self._class(label).inc(count)

    def _class(self, label: Any):
        key = str(label)
        child = self._class_children.get(key)
        if child is None:
            child = self._class_children[key] = self.classes.labels(key)
        return child

    def model_loaded(self, name: str, version: str, alias: str, path: str) -> None:
        try:
            self.version.set(float(version))
        except ValueError:
            self.version.set(float("nan"))
        self.info.clear()
        self.info.labels(name, version, alias, path).set(1)

    def model_unloaded(self) -> None:
        self.version.set(float("nan"))
        self.info.clear()
        self.reloads.labels("unloaded").inc()
