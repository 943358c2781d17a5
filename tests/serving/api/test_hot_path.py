"""The pieces of `POST /invocations` made cheaper per request give what the general ones
gave: request ids as `uuid.uuid4().hex` gives them, the answer's head as
`Response(body, media_type=JSON, headers=...)` builds it, the body as Starlette's
`Request.body()` reads it."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from include.ml_pipeline.serving.api import routes
from include.ml_pipeline.serving.api.routes import (
    JSONAnswer,
    new_request_id,
    request_id,
    whole_body,
)


def test_new_request_ids_are_uuid4_hex_and_unique_across_refills():
    ids = [new_request_id() for _ in range(3 * routes._ID_BATCH + 7)]
    assert len(set(ids)) == len(ids)
    for rid in ids:
        assert len(rid) == 32
        parsed = uuid.UUID(hex=rid)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert parsed.hex == rid
    assert request_id(None) != request_id("")
    assert request_id("client-id.1:2") == "client-id.1:2"
    assert len(request_id("bad id with spaces")) == 32


def test_the_answer_has_the_head_and_body_of_a_starlette_response():
    body = b'{"predictions": ["yes"]}'
    headers = {"X-Ignored-Columns": "a,b", "X-Request-Id": "r1", "X-Model-Version": "3"}
    ours = JSONAnswer(body, dict(headers))
    theirs = Response(body, media_type="application/json", headers=dict(headers))
    assert ours.raw_headers == theirs.raw_headers
    assert (ours.status_code, ours.body, ours.background) == (200, body, None)
    assert ours.headers == theirs.headers


def _body_read(read, messages: list[dict]):
    """`read(request)` over these ASGI messages: (what it gave or raised, the messages it
    took, then `request.body()` again, the request's disconnected flag)."""
    taken: list[dict] = []

    async def receive():
        message = messages[len(taken)]
        taken.append(message)
        return message

    async def run():
        request = Request({"type": "http", "method": "POST", "headers": []}, receive)
        try:
            got = await read(request)
        except ClientDisconnect as exc:
            got = type(exc).__name__
            return got, len(taken), None, request._is_disconnected
        return got, len(taken), await request.body(), request._is_disconnected

    return asyncio.run(run())


@pytest.mark.parametrize(
    "messages",
    [
        [{"type": "http.request", "body": b'{"a": 1}', "more_body": False}],
        [{"type": "http.request", "body": b'{"a": 1}'}],  # more_body absent: the last
        [{"type": "http.request"}],  # no body at all
        [
            {"type": "http.request", "body": b'{"a"', "more_body": True},
            {"type": "http.request", "body": b"", "more_body": True},
            {"type": "http.request", "body": b": 1}", "more_body": False},
        ],
        [
            {"type": "http.request", "body": b'{"a"', "more_body": True},
            {"type": "http.disconnect"},
        ],
    ],
)
def test_the_body_is_read_as_starlette_reads_it(messages):
    assert _body_read(whole_body, messages) == _body_read(Request.body, messages)
