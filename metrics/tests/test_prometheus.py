"""The Prometheus adapter: every failure is "metrics unavailable", none escapes as an exception
of its own (each would otherwise be a 500). Against servers that misbehave on purpose, and
the real Prometheus of the suite."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from metrics import queries
from metrics.prometheus import MetricsUnavailable, Prometheus
from metrics.queries import Scope

QUERY = queries.calls(Scope("faas-acme", "hello"), 60)


def _serve(status: int, body: bytes, seen: list[bytes] | None = None) -> Iterator[str]:
    """A server answering every GET and POST with ``status`` and ``body``; the POST bodies it
    got in ``seen``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            received = self.rfile.read(int(self.headers["Content-Length"]))
            if seen is not None:
                seen.append(received)
            self.do_GET()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def silent() -> Iterator[str]:
    """Accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (500, b"oops", "refused the query"),
        (400, b'{"status":"error","error":"parse error"}', "refused the query"),
        (200, b"<html>not prometheus</html>", "not a query result"),
        (200, b'{"status":"success","data":{"result":[{"metric":{},"value":"x"}]}}', "unexpected"),
        (200, b'{"status":"success","data":{"result":{"oops":1}}}', "not a query result"),
    ],
)
def test_bad_answers_are_unavailable(status: int, body: bytes, message: str) -> None:
    for url in _serve(status, body):
        with pytest.raises(MetricsUnavailable, match=message) as raised:
            Prometheus(url, timeout_s=2).instant(QUERY)
        assert (raised.value.status, raised.value.code) == (503, "metrics_unavailable")


def test_a_silent_server_times_out(silent: str) -> None:
    with pytest.raises(MetricsUnavailable, match="did not answer within 1 s"):
        Prometheus(silent, timeout_s=1).range(QUERY, start=0, end=60, step_s=15)


def test_nothing_listening_and_nothing_configured() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(MetricsUnavailable, match="unreachable"):
        Prometheus(url, timeout_s=1).instant(QUERY)
    with pytest.raises(MetricsUnavailable, match="PROMETHEUS_URL is not set"):
        Prometheus("", timeout_s=1).instant(QUERY)


@pytest.mark.django_db(transaction=True)  # the fixture's Prometheus scrapes the session's portal
def test_nan_is_no_value(prometheus: Any) -> None:
    client = Prometheus(prometheus.url, timeout_s=5, auth=prometheus.auth)
    (sample,) = client.instant(queries.PromQL("vector(0) / 0"))
    assert sample.value is None
    (series,) = client.range(queries.PromQL("vector(2)"), start=1e9, end=1e9 + 30, step_s=15)
    assert [value for _, value in series.points] == [2.0, 2.0, 2.0]
