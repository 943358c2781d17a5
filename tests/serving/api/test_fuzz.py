"""Hypothesis fuzz of every endpoint of the live API: arbitrary bytes, JSON values,
near-valid payloads with one thing broken, odd content types, headers and methods. Every
answer is below 500 with a JSON error body naming the problem, the service stays
healthy, and its memory stays bounded."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

# A test tool (requirements-dev.txt): not in the Astro image, where `astro dev pytest`
# runs this folder.
pytest.importorskip("hypothesis", reason="hypothesis (a dev requirement) is not installed")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PATHS = [
    "/invocations",
    "/predict",
    "/ping",
    "/health",
    "/version",
    "/ready",
    "/model",
    "/metrics",
    "/admin/reload",
    "/admin/unload",
    "/openapi.json",
    "/docs",
    "/nothing-here",
]
FORMATS = ["dataframe_split", "dataframe_records", "instances", "inputs", "params", "other"]
CONTENT_TYPES = [
    "application/json",
    "text/csv",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "text/plain",
    "",
    "multipart/form-data",
    "application/x-www-form-urlencoded",
    "text/csv; charset=utf-16",
    "*/*",
]
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(
    str.strip
)  # what an HTTP client can send
FUZZ = settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SEEN: dict[str, int] = {"requests": 0}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=25,
)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def api(live_api):
    with httpx.Client(base_url=live_api.url, timeout=30) as client:
        for _ in range(20):  # warm up, so growth is what the fuzz adds
            client.post("/invocations", content=b"[]", headers={"Content-Type": "application/json"})
        yield client, _rss_mib(live_api.pid), live_api.pid


@pytest.fixture(scope="module")
def good_records(churn_frame):
    return [
        {c: (None if isinstance(v, float) and v != v else v) for c, v in r.items()}
        for r in churn_frame.head(4).to_dict("records")
    ]


def _check(response: httpx.Response) -> None:
    SEEN["requests"] += 1
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400 and response.request.url.path != "/docs":
        error = response.json()
        assert error["message"], error


@st.composite
def near_valid(draw, records):
    """A valid body of some format with one thing broken (or none)."""
    rows = [dict(r) for r in draw(st.lists(st.sampled_from(records), min_size=1, max_size=4))]
    column = draw(st.sampled_from(sorted(rows[0])))
    change = draw(st.sampled_from(["value", "drop", "extra", "none", "rename"]))
    for row in rows:
        if change == "value":
            row[column] = draw(json_values)
        elif change == "drop":
            row.pop(column, None)
        elif change == "extra":
            row[draw(st.text(max_size=10))] = draw(json_values)
        elif change == "rename":
            row[column + draw(st.text(min_size=1, max_size=3))] = row.pop(column)
    shape = draw(st.sampled_from(["split", "records", "instances", "inputs", "predict"]))
    if shape == "split":
        columns = list(rows[0])
        body = {
            "dataframe_split": {
                "columns": columns,
                "data": [[r.get(c) for c in columns] for r in rows],
            }
        }
    elif shape == "predict":
        body = {"records": rows}
    else:
        body = {{"records": "dataframe_records"}.get(shape, shape): rows}
    if draw(st.booleans()):
        body[draw(st.sampled_from(FORMATS))] = draw(json_values)
    return shape, orjson.dumps(body)


def test_fuzz_near_valid_payloads(api, good_records):
    client, _, _ = api

    @FUZZ
    @given(payload=near_valid(good_records), traffic=HEADER_TEXT)
    def run(payload, traffic):
        shape, body = payload
        path = "/predict" if shape == "predict" else "/invocations"
        _check(
            client.post(
                path,
                content=body,
                headers={"Content-Type": "application/json", "X-Traffic-Kind": traffic},
            )
        )

    run()


def test_fuzz_arbitrary_bodies_content_types_and_headers(api):
    client, _, _ = api

    @FUZZ
    @given(
        path=st.sampled_from(["/invocations", "/predict", "/admin/reload", "/admin/unload"]),
        body=st.binary(max_size=3000)
        | json_values.map(orjson.dumps)
        | st.text(max_size=500).map(str.encode),
        content_type=st.sampled_from(CONTENT_TYPES) | HEADER_TEXT,
        authorization=st.none() | HEADER_TEXT,
    )
    def run(path, body, content_type, authorization):
        headers = {"Content-Type": content_type}
        if authorization is not None:
            headers["Authorization"] = authorization
        _check(client.post(path, content=body, headers=headers))

    run()


def test_a_lying_content_length_is_refused(live_api):
    """Raw requests (an HTTP client would not send them): a Content-Length that is not a
    number gets 400, one above the limit 413 before the body is read."""
    import socket
    from urllib.parse import urlparse

    where = urlparse(live_api.url)
    for length, status in ((b"abc", 400), (b"99999999999", 413)):
        with socket.create_connection((where.hostname, where.port), timeout=10) as sock:
            sock.sendall(
                b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: "
                b"application/json\r\nContent-Length: " + length + b"\r\n\r\n{}"
            )
            answer = sock.recv(4096)
        SEEN["requests"] += 1
        assert int(answer.split(b" ", 2)[1]) == status, answer[:200]


def test_fuzz_methods_paths_and_queries(api):
    client, _, _ = api

    @FUZZ
    @given(
        method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
        path=st.sampled_from(PATHS),
        query=st.dictionaries(HEADER_TEXT, HEADER_TEXT, max_size=3),
    )
    def run(method, path, query):
        response = client.request(method, path, params=query)
        SEEN["requests"] += 1
        assert response.status_code < 500, (method, path, response.text[:300])

    run()


def test_still_healthy_and_memory_bounded_after_the_fuzz(api):
    client, rss_before, pid = api
    assert client.get("/ping").status_code == 200
    assert client.get("/ready").status_code == 200
    rss_after = _rss_mib(pid)
    print(
        f"fuzz: {SEEN['requests']} requests, 0 5xx; server RSS {rss_before:.0f} -> "
        f"{rss_after:.0f} MiB"
    )
    assert SEEN["requests"] >= 500
    assert rss_after - rss_before < 64, (rss_before, rss_after)
