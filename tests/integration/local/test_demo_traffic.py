"""The demo's traffic client: every request is counted by the variant that answered, and a request
no variant answered says why (the tests' "no request unanswered" failures name their cause)."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from modelops_local.demo import SteadyTraffic


class _Half(BaseHTTPRequestHandler):
    """Answers as the stable variant, except every third request: a proxy's 502 without one."""

    protocol_version = "HTTP/1.1"
    count = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).count += 1
        if type(self).count % 3 == 0:
            body, headers = b'{"error": "the endpoint failed during the request"}', {}
            self.send_response(502)
        else:
            body, headers = (
                b'{"predictions": [1]}',
                {"X-Modelops-Variant": "stable", "X-Modelops-Version": "v1"},
            )
            self.send_response(200)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _run_for(traffic: SteadyTraffic, seconds: float) -> None:
    traffic.start()
    time.sleep(seconds)  # the client sends at its own steady rate; this is how long it runs
    traffic.stop()


def test_answers_are_counted_per_variant_and_the_unanswered_say_why() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Half)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        traffic = SteadyTraffic(f"http://127.0.0.1:{server.server_address[1]}", [[1.0, 2.0]], 50.0)
        _run_for(traffic, 0.5)
    finally:
        server.shutdown()
        server.server_close()
    counts = traffic.summary()
    total = counts["stable"]["ok"] + counts["?"]["failed"]
    assert total == len(traffic.answers) >= 6
    assert counts["?"]["failed"] == total // 3
    unanswered = traffic.unanswered()
    assert len(unanswered) == counts["?"]["failed"]
    assert all(
        "HTTP 502: " in line and "the endpoint failed" in line and " UTC after " in line
        for line in unanswered
    )


def test_a_refused_connection_is_unanswered_with_the_error() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    traffic = SteadyTraffic(f"http://127.0.0.1:{port}", [[1.0]], 50.0)
    _run_for(traffic, 0.2)
    assert traffic.summary() == {"?": {"ok": 0, "failed": len(traffic.answers)}}
    assert traffic.unanswered() and all("ConnectionRefusedError" in line for line in traffic.unanswered())
