"""The one poll-until-up loop (`service_probe.poll` / `wait_until_up`) and its process
helpers, against a real HTTP server on loopback."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from include.ml_pipeline.service_probe import Unreachable, answer, reap, tail, wait_until_up


class _Handler(http.server.BaseHTTPRequestHandler):
    calls = 0

    def do_GET(self):
        type(self).calls += 1
        status = 200 if self.path == "/ready" and type(self).calls >= 3 else 503
        if self.path == "/missing":
            status = 404
        body = b'{"ok": true}' if status == 200 else b"not yet"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.calls = 0
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_waits_until_the_answer_is_ready(server):
    waited = wait_until_up(server + "/ready", timeout=10, interval=0.05)
    assert _Handler.calls == 3  # two 503s, then the 200
    assert 0.1 <= waited < 10


def test_gives_up_after_the_timeout_naming_the_last_answer(server):
    started = time.monotonic()
    with pytest.raises(Unreachable) as info:
        wait_until_up(server + "/other", timeout=0.5, interval=0.05)
    assert info.value.last == "503 not yet"
    assert time.monotonic() - started < 5


def test_check_stops_the_wait_when_the_process_has_exited():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()

    def running() -> None:
        if child.poll() is not None:
            raise RuntimeError(f"exited with {child.returncode}")

    started = time.monotonic()
    with pytest.raises(RuntimeError, match="exited with 0"):
        wait_until_up("http://127.0.0.1:9/", timeout=60, check=running)
    assert time.monotonic() - started < 5


def test_answer_returns_the_first_answer_that_is_not_5xx(server):
    assert answer(server + "/missing", wait_seconds=5).status_code == 404


def test_tail_and_reap(tmp_path):
    log = tmp_path / "service.log"
    log.write_text("\n".join(f"line {i}" for i in range(50)))
    assert tail(log, 3) == "line 47\nline 48\nline 49"
    assert tail(tmp_path / "absent.log") == ""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    stat = Path(f"/proc/{child.pid}/stat")
    deadline = time.monotonic() + 10
    while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z" and time.monotonic() < deadline:
        time.sleep(0.01)  # exited, not yet collected: a zombie
    reap(child.pid)
    assert not stat.exists()  # collected
    reap(child.pid)  # no longer a child of ours: no error
