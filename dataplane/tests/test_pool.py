"""The backends' shared HTTP client: one per process, and it never carries a cookie from one
call to the next (it carries every tenant's calls)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dataplane.backends.pool import shared_client


class _CookieSetter(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = (self.headers.get("Cookie") or "none").encode()
        self.send_response(200)
        self.send_header("Set-Cookie", "session=tenant-a-secret; Path=/")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _CookieSetter)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_set_cookie_never_rides_on_the_next_call(server: str) -> None:
    first = shared_client().get(f"{server}/tenant-a")
    assert first.headers["set-cookie"].startswith("session=")
    assert shared_client().get(f"{server}/tenant-b").text == "none"
    assert not shared_client().cookies


def test_one_client_per_process_shared_by_threads() -> None:
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(shared_client())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(client is shared_client() for client in seen)
