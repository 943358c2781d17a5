"""Real receivers on loopback: an HTTP server standing in for Slack, an aiosmtpd server.

Connections are given to Airflow as `AIRFLOW_CONN_<ID>` JSON environment variables, which
need no metadata database. The session's Airflow environment comes from tests/conftest.py;
the defaults below only apply when this folder is run on its own.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from devtools.ports import free_port

if "AIRFLOW_HOME" not in os.environ:  # standalone run without tests/conftest.py
    _home = Path(tempfile.mkdtemp(prefix="airflow-notifications-"))
    os.environ["AIRFLOW_HOME"] = str(_home)
    os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{_home}/airflow.db")
    os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


@pytest.fixture
def unused_port():
    """A function returning a loopback port nothing listens on (bound, then released)."""
    return free_port


@dataclass
class WebhookReceiver:
    url: str
    requests: list[dict] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def webhook_receiver():
    """A Slack incoming-webhook stand-in: records each POST, answers `ok` (or `status`)."""
    receiver = WebhookReceiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            receiver.requests.append(
                {
                    "path": self.path,
                    "content_type": self.headers.get("Content-Type", ""),
                    "json": json.loads(body or b"null"),
                }
            )
            payload = b"ok" if receiver.status == 200 else b"invalid_token"
            self.send_response(receiver.status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):  # keep pytest output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass
class SmtpReceiver:
    host: str
    port: int
    messages: list[tuple[str, list[str], Message]] = field(default_factory=list)


@pytest.fixture
def smtp_receiver():
    """A real SMTP server (aiosmtpd) on loopback that keeps every message it accepts.

    aiosmtpd is a dev requirement: where it is missing (the Astro image under
    `astro dev pytest`) the tests that need this receiver skip, saying so."""
    Controller = pytest.importorskip(
        "aiosmtpd.controller",
        reason="aiosmtpd is a dev requirement (requirements-dev.txt), not in the Astro image",
    ).Controller

    receiver = SmtpReceiver(host="127.0.0.1", port=free_port())

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            receiver.messages.append(
                (envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content))
            )
            return "250 Message accepted for delivery"

    controller = Controller(Handler(), hostname=receiver.host, port=receiver.port)
    controller.start()
    try:
        yield receiver
    finally:
        controller.stop()


def slack_connection(base_url: str, token: str = "T000/B000/secret-token") -> str:
    """`AIRFLOW_CONN_*` JSON of a Slack incoming-webhook connection."""
    return json.dumps(
        {"conn_type": "slackwebhook", "host": f"{base_url}/services", "password": token}
    )


def smtp_connection(host: str, port: int) -> str:
    """`AIRFLOW_CONN_*` JSON of a plain (no TLS, no login) SMTP connection."""
    return json.dumps(
        {
            "conn_type": "smtp",
            "host": host,
            "port": port,
            "extra": {
                "disable_tls": True,
                "disable_ssl": True,
                "from_email": "ml-pipeline@example.org",
                "timeout": 5,
                "retry_limit": 1,  # attempts: the SMTP provider 3.x makes none with 0
            },
        }
    )


@pytest.fixture
def connections(monkeypatch):
    """`connections(slack_url=..., smtp_port=...)` defines SLACK_TEST / SMTP_TEST.

    `slack_url` is the receiver's base URL (the hook appends `/services/<token>`);
    `smtp_port` a port on 127.0.0.1.
    """

    def define(slack_url: str | None = None, smtp_port: int | None = None) -> None:
        if slack_url is not None:
            monkeypatch.setenv("AIRFLOW_CONN_SLACK_TEST", slack_connection(slack_url))
        if smtp_port is not None:
            monkeypatch.setenv("AIRFLOW_CONN_SMTP_TEST", smtp_connection("127.0.0.1", smtp_port))

    return define
