"""Real receivers on loopback: an HTTP(S) server standing in for Slack, Apprise's json:// and
Teams Workflows endpoints and Jira's REST API; an aiosmtpd server.

Connections are given to Airflow as `AIRFLOW_CONN_<ID>` JSON environment variables, which
need no metadata database. The session's Airflow environment comes from tests/conftest.py;
the defaults below only apply when this folder is run on its own.
"""

from __future__ import annotations

import json
import os
import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from devtools.ports import free_port
from include.ml_pipeline.notifications import EVENT_DEPLOYED, Notification

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
    port: int = 0
    requests: list[dict] = field(default_factory=list)
    status: int = 200
    #: The body of a 2xx answer (`ok`, as Slack answers; JSON for Jira).
    answer: bytes = b"ok"
    content_type: str = "text/plain"
    #: Called inside each request, before the answer (to look at the world meanwhile).
    on_request: Callable[[], object] | None = None


def _serve(receiver: WebhookReceiver, tls: ssl.SSLContext | None = None):
    """Serve `receiver` on a loopback port (HTTPS with `tls`); yields, then stops."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            receiver.requests.append(
                {
                    "path": self.path,
                    "content_type": self.headers.get("Content-Type", ""),
                    "authorization": self.headers.get("Authorization", ""),
                    "json": json.loads(body or b"null"),
                }
            )
            if receiver.on_request is not None:
                receiver.on_request()
            ok = 200 <= receiver.status < 300
            payload = receiver.answer if ok else b"invalid_token"
            self.send_response(receiver.status)
            self.send_header("Content-Type", receiver.content_type if ok else "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):  # keep pytest output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    receiver.port = server.server_address[1]
    receiver.url = f"{'https' if tls else 'http'}://127.0.0.1:{receiver.port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def webhook_receiver():
    """A webhook stand-in (Slack, Apprise's json://, Jira's REST API): records each POST
    with its JSON body, answers `answer` with `status` (default 200 `ok`)."""
    yield from _serve(WebhookReceiver(url=""))


@pytest.fixture
def tls_receiver(tmp_path):
    """The same receiver over HTTPS with a self-signed certificate for 127.0.0.1 (made
    here with `cryptography`): Apprise's Teams Workflows plugin only speaks https."""
    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    yield from _serve(WebhookReceiver(url=""), context)


def _self_signed(folder: Path) -> tuple[Path, Path]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "receiver.crt", folder / "receiver.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


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


def deployed() -> Notification:
    """The notification of a new champion that the receivers' tests send."""
    return Notification(
        event=EVENT_DEPLOYED,
        title="tabular_classifier v7 is live",
        model_name="tabular_classifier",
        version=7,
        metrics={"roc_auc": 0.86123, "accuracy": 0.8033, "log_loss": 0.41},
        reasons=["roc_auc 0.8612 >= 0.75", "beats champion v6 by 0.011"],
        mlflow_run_url="http://127.0.0.1:5000/#/experiments/1/runs/abc123",
        airflow_run_url="http://localhost:8080/dags/ml_model_deployment_advanced/grid",
        api_url="http://127.0.0.1:8000",
        dag_id="ml_model_deployment_advanced",
        run_id="manual__2026-11-27",
    )


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


def apprise_connection(*urls: tuple[str, str]) -> str:
    """`AIRFLOW_CONN_*` JSON of an Apprise connection: (URL, tags) pairs in extra `config`."""
    config = [{"path": url, "tag": tags} for url, tags in urls]
    return json.dumps({"conn_type": "apprise", "extra": {"config": config}})


def jira_connection(url: str, project: str | None = "ML") -> str:
    """`AIRFLOW_CONN_*` JSON of a Jira connection (extra `project` = the project key)."""
    extra = {"project": project} if project else {}
    return json.dumps(
        {
            "conn_type": "jira",
            "host": url,
            "login": "alerts@example.org",
            "password": "jira-api-token",
            "extra": extra,
        }
    )
