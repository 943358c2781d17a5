"""`POST /invocations` under uvicorn's httptools protocol writes each answer's head and
body as one piece (`app.OneWrite`): one `write` on the transport, one TCP segment."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import pytest
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from include.ml_pipeline.serving.api.app import OneWrite, create_app


class Transport:
    """What the cycle writes, write by write."""

    def __init__(self):
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name, default=None):
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


@pytest.fixture(scope="module")
def served():
    from include.ml_pipeline.serving.loading.served import build_served_model
    from tests.support.models import fit_pipeline, training_frame

    frame, spec = training_frame(600, 5)
    pipeline = fit_pipeline(frame, spec, "hgb", 5)
    return build_served_model(pipeline, spec, name="ow", version="2", alias="", max_rows=1000)


def _scope(body: bytes) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 5000),
        "scheme": "http",
        "method": "POST",
        "root_path": "",
        "path": "/invocations",
        "raw_path": b"/invocations",
        "query_string": b"",
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "state": {},
    }


def _answer(app, body: bytes, keep_alive: bool = True) -> tuple[Transport, RequestResponseCycle]:
    """One request through uvicorn's request-response cycle on a recording transport."""
    transport = Transport()

    async def run():
        received = asyncio.Event()
        received.set()  # the protocol has read the whole body
        cycle = RequestResponseCycle(
            scope=_scope(body),  # type: ignore[arg-type]
            transport=transport,  # type: ignore[arg-type]
            flow=FlowControl(transport),  # type: ignore[arg-type]
            logger=logging.getLogger("test"),
            access_logger=logging.getLogger("test.access"),
            access_log=False,
            default_headers=[],
            message_event=received,
            expect_100_continue=False,
            keep_alive=keep_alive,
            on_response=lambda: None,
        )
        cycle.body = bytearray(body)
        cycle.more_body = False
        async with app.router.lifespan_context(app):
            while app.state.service.model is None:
                await asyncio.sleep(0.02)
            await app(cycle.scope, cycle.receive, cycle.send)
        return cycle

    cycle = asyncio.run(run())
    return transport, cycle


def test_an_answer_is_one_write_holding_its_head_and_body(served, tmp_path):
    from include.ml_pipeline.data_preparation.sample_data import generate_churn_frame
    from include.ml_pipeline.deployment.api_client import split_payload
    from include.ml_pipeline.serving.api.settings import get_serving_settings

    settings = replace(get_serving_settings(), model_name="ow", log_uri=str(tmp_path / "log"))
    app = create_app(settings, loader=lambda: served)
    body = split_payload(generate_churn_frame(3, 3)[list(served.spec.columns)].head(2))
    body = body.encode() if isinstance(body, str) else body
    transport, cycle = _answer(app, body)
    assert len(transport.writes) == 1  # uvicorn alone writes the head, then the body
    head, _, payload = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-length: %d" % len(payload) in head
    assert payload.startswith(b'{"predictions":[')
    assert cycle.transport is transport  # the cycle's own transport again
    assert cycle.response_complete

    closing, _ = _answer(app, body, keep_alive=False)
    assert closing.closed
    assert len(closing.writes) == 1


def test_one_write_flushes_before_any_other_use_of_the_transport():
    transport = Transport()
    joined = OneWrite(transport)
    joined.write(b"head\r\n\r\n")
    joined.write(bytearray(b"body"))
    assert transport.writes == []
    assert not joined.is_closing()  # flushes, then asks the transport
    assert transport.writes == [b"head\r\n\r\nbody"]
    joined.write(b"more")
    joined.close()
    assert transport.writes == [b"head\r\n\r\nbody", b"more"]
    assert transport.closed
    joined.flush()  # nothing left: nothing written
    assert len(transport.writes) == 2
