"""Prometheus metrics of the model API (own registry, served at `GET /metrics`).

Every series about a model carries its registered name in the label `model` (one API
serves several; `model=""` for a request that named no served model, e.g. a 404).

* `model_api_requests_total{endpoint,status,model}` - requests by endpoint and HTTP status
* `model_api_request_latency_seconds{endpoint,model}` - histogram, handler time
* `model_api_errors_total{kind,model}` - client/server errors by kind (`missing_columns`, ...)
* `model_api_predicted_rows_total{model}` / `model_api_predictions_total{class,model}` -
  predicted rows, by predicted class
* `model_api_model_version{model}` - served version number (NaN when none is served)
* `model_api_model_info{name,version,alias,predict_path}` - 1 for each served model
* `model_api_ignored_columns_requests_total{endpoint,model}` - requests whose extra columns
  were ignored (named in their `X-Ignored-Columns` response header)
* `model_api_reloads_total{model,result}` - reloads and unloads by result (`ok`, `failed`,
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
            ["endpoint", "status", "model"],
            registry=r,
        )
        self.latency = Histogram(
            "model_api_request_latency_seconds",
            "Handler latency",
            ["endpoint", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter("model_api_errors", "Errors by kind", ["kind", "model"], registry=r)
        self.rows = Counter("model_api_predicted_rows", "Rows predicted", ["model"], registry=r)
        self.classes = Counter(
            "model_api_predictions", "Predicted rows by class", ["class", "model"], registry=r
        )
        self.version = Gauge(
            "model_api_model_version", "Served model version", ["model"], registry=r
        )
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
            ["endpoint", "model"],
            registry=r,
        )
        self.reloads = Counter(
            "model_api_reloads", "Reloads by result", ["model", "result"], registry=r
        )
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
        self.experiment_requests = Counter(
            "model_api_experiment_requests",
            "Requests answered during a release experiment, by the arm that answered",
            ["model", "arm"],
            registry=r,
        )
        self.shadow_dropped = Counter(
            "model_api_shadow_dropped",
            "Off-path (shadow) predictions dropped: the queue was full",
            ["model"],
            registry=r,
        )
        self.challenger_errors = Counter(
            "model_api_challenger_errors",
            "Challenger predictions that failed or timed out",
            ["model"],
            registry=r,
        )
        self.breaker_open = Gauge(
            "model_api_experiment_breaker_open",
            "1 while the breaker keeps traffic away from the challenger",
            ["model"],
            registry=r,
        )
        self.feedback = Counter(
            "model_api_feedback",
            "POST /feedback labels by outcome (accepted, correction, repeat) or the problem "
            "that refused them",
            ["model", "outcome"],
            registry=r,
        )
        self._request_children: dict[tuple[str, int, str], Any] = {}
        self._latency_children: dict[tuple[str, str], Any] = {}
        self._class_children: dict[tuple[str, str], Any] = {}
        self._row_children: dict[str, Any] = {}
        self._info_labels: dict[str, tuple[str, str, str, str]] = {}

    def observe(self, endpoint: str, status: int, seconds: float, model: str = "") -> None:
        key = (endpoint, status, model)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(endpoint, str(status), model)
        child.inc()
        hist = self._latency_children.get((endpoint, model))
        if hist is None:
            hist = self._latency_children[(endpoint, model)] = self.latency.labels(endpoint, model)
        hist.observe(seconds)

    def error(self, kind: str, model: str = "") -> None:
        self.errors.labels(kind, model).inc()

    def predicted(
        self, labels: list[Any], label_index: Any, classes: list[Any], model: str = ""
    ) -> None:
        rows = self._row_children.get(model)
        if rows is None:
            rows = self._row_children[model] = self.rows.labels(model)
        rows.inc(len(labels))
        if not classes:  # a regressor: numbers, not classes to count
            return
        if len(labels) == 1:
            self._class(labels[0], model).inc()
            return
        if label_index is not None:
            import numpy as np

            counts = np.bincount(label_index, minlength=len(classes))
            for cls, count in zip(classes, counts.tolist(), strict=False):
                if count:
                    self._class(cls, model).inc(count)
            return
        tally: dict[Any, int] = {}
        for label in labels:
            tally[label] = tally.get(label, 0) + 1
        for label, count in tally.items():
            self._class(label, model).inc(count)

    def _class(self, label: Any, model: str):
        key = (str(label), model)
        child = self._class_children.get(key)
        if child is None:
            child = self._class_children[key] = self.classes.labels(*key)
        return child

    def _forget_info(self, name: str) -> None:
        """Remove `name`'s `model_api_model_info` series (the other models' stay)."""
        labels = self._info_labels.pop(name, None)
        if labels is not None:
            self.info.remove(*labels)

    def model_loaded(self, name: str, version: str, alias: str, path: str) -> None:
        try:
            self.version.labels(name).set(float(version))
        except ValueError:
            self.version.labels(name).set(float("nan"))
        self._forget_info(name)
        self._info_labels[name] = (name, version, alias, path)
        self.info.labels(name, version, alias, path).set(1)

    def model_unloaded(self, name: str) -> None:
        self.version.labels(name).set(float("nan"))
        self._forget_info(name)
        self.reloads.labels(name, "unloaded").inc()
