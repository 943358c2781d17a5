"""Airflow 3's REST API v2 as the cluster's client uses it: a token from the simple auth
manager (`POST /auth/token`), then JSON requests with it (unpause a DAG, trigger a run).
What a user of the cluster does from the UI or a script; no Airflow import."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import quote

from devtools.cluster.processes import ClusterError


@dataclass
class RestApi:
    url: str  # the API server's base URL, e.g. http://127.0.0.1:8080
    username: str
    password: str = field(repr=False)
    _token: str | None = field(default=None, repr=False)

    def _send(self, method: str, path: str, body: dict | None, token: str | None) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers=headers,
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:1000]
            raise ClusterError(f"{method} {self.url}{path} answered {exc.code}: {detail}") from None

    def token(self) -> str:
        """A JWT for `username` (simple auth manager), fetched once."""
        if self._token is None:
            answer = self._send(
                "POST", "/auth/token", {"username": self.username, "password": self.password}, None
            )
            self._token = answer["access_token"]
        return self._token

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        return self._send(method, f"/api/v2{path}", body, self.token())

    def unpause(self, dag_id: str) -> dict:
        return self.call("PATCH", f"/dags/{quote(dag_id)}", {"is_paused": False})

    def trigger(self, dag_id: str, run_id: str, conf: dict) -> dict:
        """A manual run `run_id` with `conf` (no logical date: Airflow 3 allows none)."""
        return self.call(
            "POST",
            f"/dags/{quote(dag_id)}/dagRuns",
            {"dag_run_id": run_id, "logical_date": None, "conf": conf},
        )

    def health(self) -> dict:
        return self._send("GET", "/api/v2/monitor/health", None, None)

    def execution_health(self) -> bool:
        """Whether the Task Execution API (the workers' tasks' API) answers healthy."""
        return self._send("GET", "/execution/health", None, None).get("status") == "healthy"
