"""A client that keeps calling the model API while something else happens (a DAG run, a
reload), so a test can assert that none of its requests failed; and a feeder that posts
the true labels of its answers back (`POST /feedback`, by request id)."""

from __future__ import annotations

import threading

import httpx


def sample_records(problem: str, target: str, rows: int = 40, seed: int = 3) -> list[dict]:
    """`rows` generated customers of `problem` (the project's generator) without `target`,
    as JSON records (NaN as null): what a client of that model sends."""
    return sample_rows(problem, target, rows, seed)[0]


def sample_rows(
    problem: str, target: str, rows: int = 40, seed: int = 3
) -> tuple[list[dict], list]:
    """`sample_records` and the true value of `target` for each (what a client would
    label them with later)."""
    from include.ml_pipeline.data_preparation.sample_data import generate_churn_frame

    full = generate_churn_frame(rows, seed=seed, problem=problem)
    frame = full.drop(columns=[target])
    records = [
        {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]
    return records, full[target].tolist()


class TrafficClient(threading.Thread):
    """POSTs one record at a time (`dataframe_records`, the records in turn) to `path` every
    `interval` seconds and keeps every outcome: (status or the transport error, the first
    prediction or the error text), and the request id the API gave each answer (`ids`,
    None without one): outcome `k` is the answer to record `k % len(records)`."""

    def __init__(
        self, url: str, records: list[dict], path: str = "/invocations", interval: float = 0.02
    ):
        super().__init__(name=f"traffic{path}", daemon=True)
        self.url, self.records, self.path, self.interval = url, records, path, interval
        self.outcomes: list[tuple[int | str, object]] = []
        self.ids: list[str | None] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            i = 0
            while not self.stopping.is_set():
                record = self.records[i % len(self.records)]
                i += 1
                try:
                    answer = client.post(self.path, json={"dataframe_records": [record]})
                    label = answer.json()["predictions"][0] if answer.is_success else answer.text
                    self.outcomes.append((answer.status_code, label))
                    self.ids.append(answer.headers.get("X-Request-Id"))
                except httpx.HTTPError as exc:
                    self.outcomes.append((repr(exc), None))
                    self.ids.append(None)
                self.stopping.wait(self.interval)

    def stop(self) -> list[tuple[int | str, object]]:
        self.stopping.set()
        self.join(timeout=30)
        return self.outcomes

    def failures(self) -> list[tuple[int | str, object]]:
        """The outcomes that are not a 2xx."""
        return [o for o in self.outcomes if not (isinstance(o[0], int) and 200 <= o[0] < 300)]


class LabelFeeder(threading.Thread):
    """Posts the true label (`labels[k % len(labels)]`) of each answer `client` got, by its
    request id, to `path` (`POST /models/<name>/feedback`) every `interval` seconds, in one
    body per call (sent again after a transport error or a 5xx: the API restarting);
    keeps each call's (status or the transport error, body) in `answers` and the ids
    labelled."""

    def __init__(self, client: TrafficClient, labels: list, path: str, interval: float = 0.5):
        super().__init__(name=f"labels{path}", daemon=True)
        self.client, self.labels, self.path, self.interval = client, labels, path, interval
        self.answers: list[tuple[int | str, object]] = []
        self.labelled: set[str] = set()
        self.stopping = threading.Event()
        self.sent = 0  # answers of the client handled so far

    def post_new(self, http: httpx.Client) -> None:
        answered = len(self.client.ids)
        items = [
            {"request_id": rid, "label": self.labels[k % len(self.labels)]}
            for k, rid in enumerate(self.client.ids[self.sent : answered], self.sent)
            if rid is not None and self.client.outcomes[k][0] == 200
        ]
        if not items:
            return
        try:
            answer = http.post(self.path, json={"labels": items})
        except httpx.HTTPError as exc:  # down: sent again at the next call
            self.answers.append((repr(exc), None))
            return
        self.answers.append((answer.status_code, answer.text[:500]))
        if answer.status_code >= 500:  # not ready (a restart): sent again at the next call
            return
        if answer.is_success:
            self.labelled.update(item["request_id"] for item in items)
        self.sent = answered  # a refused body (4xx) is kept in `answers`, not sent again

    def run(self) -> None:
        with httpx.Client(base_url=self.client.url, timeout=10.0) as http:
            while not self.stopping.wait(self.interval):
                self.post_new(http)
            self.post_new(http)

    def stop(self) -> list[tuple[int | str, object]]:
        self.stopping.set()
        self.join(timeout=30)
        return self.answers


def keyed_arms(url: str, path: str, record: dict, keys: list[str]) -> list[str]:
    """The arm (`X-Experiment-Arm`) that answers `record` for each key of a canary
    (`X-Experiment-Key`)."""
    return [
        httpx.post(
            f"{url}{path}", json={"dataframe_records": [record]}, headers={"X-Experiment-Key": k}
        ).headers["X-Experiment-Arm"]
        for k in keys
    ]
