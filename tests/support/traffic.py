"""A client that keeps calling the model API while something else happens (a DAG run, a
reload), so a test can assert that none of its requests failed."""

from __future__ import annotations

import threading

import httpx


def sample_records(problem: str, target: str, rows: int = 40, seed: int = 3) -> list[dict]:
    """`rows` generated customers of `problem` (the project's generator) without `target`,
    as JSON records (NaN as null): what a client of that model sends."""
    from include.ml_pipeline.data_preparation.sample_data import generate_churn_frame

    frame = generate_churn_frame(rows, seed=seed, problem=problem).drop(columns=[target])
    return [
        {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]


class TrafficClient(threading.Thread):
    """POSTs one record at a time (`dataframe_records`, the records in turn) to `path` every
    `interval` seconds and keeps every outcome: (status or the transport error, the first
    prediction or the error text)."""

    def __init__(
        self, url: str, records: list[dict], path: str = "/invocations", interval: float = 0.02
    ):
        super().__init__(name=f"traffic{path}", daemon=True)
        self.url, self.records, self.path, self.interval = url, records, path, interval
        self.outcomes: list[tuple[int | str, object]] = []
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
                except httpx.HTTPError as exc:
                    self.outcomes.append((repr(exc), None))
                self.stopping.wait(self.interval)

    def stop(self) -> list[tuple[int | str, object]]:
        self.stopping.set()
        self.join(timeout=30)
        return self.outcomes

    def failures(self) -> list[tuple[int | str, object]]:
        """The outcomes that are not a 2xx."""
        return [o for o in self.outcomes if not (isinstance(o[0], int) and 200 <= o[0] < 300)]
