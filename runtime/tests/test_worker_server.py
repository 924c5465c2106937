"""The worker's HTTP side: flask.request, return values, errors, keep-alive, the CLI."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from runtime.tests.test_worker_support import (
    REPO,
    Rig,
    UnixHTTPConnection,
    call,
    healthy,
    rig,
    short_tmpdir,
    specialize,
    start_worker,
    stop,
    write_files,
)
from testsupport.processes import wait_until

ECHO = {
    "main.py": """
        from flask import request

        def main():
            return {
                "method": request.method,
                "path": request.path,
                "args": request.args.to_dict(flat=False),
                "json": request.get_json(silent=True),
                "data": request.get_data(as_text=True),
                "header": request.headers.get("X-Custom"),
                "content_type": request.content_type,
            }
    """
}

# One function answering with the return value named by the path (one worker serves them all).
RETURNS = {
    "main.py": """
        import flask
        from flask import request
        from werkzeug.wrappers import Response as WerkzeugResponse

        def stream():
            yield "chunk1-"
            yield b"chunk2"

        CASES = {
            "str": lambda: "text",
            "bytes": lambda: b"\\x00raw",
            "dict": lambda: {"a": 1},
            "list": lambda: [1, "two"],
            "status": lambda: ("created", 201),
            "status-headers": lambda: ("teapot", 418, {"X-Tea": "earl grey"}),
            "headers": lambda: ("with headers", {"X-Only": "headers"}),
            "flask-response": lambda: flask.Response("flask", status=202, mimetype="text/csv"),
            "werkzeug-response": lambda: WerkzeugResponse(b"wz", status=203),
            "generator": lambda: flask.Response(stream(), mimetype="text/plain"),
            "abort": lambda: flask.abort(404),
            "none": lambda: None,
            "no-content": lambda: ("", 204),
        }

        def main():
            return CASES[request.path.strip("/")]()
    """
}

FAILING = {
    "main.py": """
        def helper_that_fails():
            raise ValueError("the function failed")

        def main():
            print("before the failure")
            helper_that_fails()
    """
}


@pytest.fixture(scope="module")
def harness() -> Iterator[Rig]:
    with rig() as r:
        yield r


@pytest.fixture(scope="module")
def echo(harness: Rig) -> str:
    return harness.function(ECHO)


@pytest.fixture(scope="module")
def returns(harness: Rig) -> str:
    return harness.function(RETURNS)


def test_flask_request_fields(echo: str) -> None:
    reply = call(
        echo,
        "POST",
        "/some/path?x=1&x=2&y=%C3%A9",
        json.dumps({"k": [1, 2]}),
        {"Content-Type": "application/json", "X-Custom": "custom value"},
    )

    assert reply.status == 200
    assert reply.json() == {
        "method": "POST",
        "path": "/some/path",
        "args": {"x": ["1", "2"], "y": ["é"]},
        "json": {"k": [1, 2]},
        "data": '{"k": [1, 2]}',
        "header": "custom value",
        "content_type": "application/json",
    }


# Only Fission's methods: any other is a 405 (test_worker_contract.py).
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "OPTIONS"])
def test_every_method_reaches_the_function(echo: str, method: str) -> None:
    reply = call(echo, method, "/p%20q")

    assert reply.json()["method"] == method
    assert reply.json()["path"] == "/p q"


def test_head_has_headers_but_no_body(returns: str) -> None:
    get = call(returns, "GET", "/str")
    head = call(returns, "HEAD", "/str")

    assert head.status == 200
    assert head.body == b""
    assert head.headers["Content-Length"] == get.headers["Content-Length"]


def test_chunked_request_body(echo: str) -> None:
    conn = UnixHTTPConnection(echo)
    conn.request("POST", "/", body=iter([b"part one, ", b"part two"]), encode_chunked=True)
    response = conn.getresponse()

    assert json.loads(response.read())["data"] == "part one, part two"
    conn.close()


@pytest.mark.parametrize(
    ("case", "status", "body", "headers"),
    [
        ("str", 200, b"text", {"Content-Type": "text/html; charset=utf-8"}),
        ("bytes", 200, b"\x00raw", {}),
        ("dict", 200, b'{"a":1}\n', {"Content-Type": "application/json"}),
        ("list", 200, b'[1,"two"]\n', {"Content-Type": "application/json"}),
        ("status", 201, b"created", {}),
        ("status-headers", 418, b"teapot", {"X-Tea": "earl grey"}),
        ("headers", 200, b"with headers", {"X-Only": "headers"}),
        ("flask-response", 202, b"flask", {"Content-Type": "text/csv; charset=utf-8"}),
        ("werkzeug-response", 203, b"wz", {}),
        ("generator", 200, b"chunk1-chunk2", {"Content-Length": "13"}),
        ("abort", 404, None, {}),
        ("none", 500, b"Internal Server Error", {}),
        ("no-content", 204, b"", {}),
    ],
)
def test_return_values_follow_flask(
    returns: str, case: str, status: int, body: bytes | None, headers: dict[str, str]
) -> None:
    reply = call(returns, url=f"/{case}", headers={"X-Fission-Request-ID": f"ret-{case}"})

    assert reply.status == status
    if body is not None:
        assert reply.body == body
    for name, value in headers.items():
        assert reply.headers[name] == value
    assert reply.headers["X-Fission-Request-ID"] == f"ret-{case}"
    assert reply.headers.get("Transfer-Encoding") is None  # always buffered


def test_uncaught_exception_is_a_500_and_a_traceback_in_the_logs(harness: Rig) -> None:
    path = harness.function(FAILING)

    reply = call(path, headers={"X-Fission-Request-ID": "req-fail"})

    assert (reply.status, reply.text) == (500, "Internal Server Error")
    assert reply.headers["X-Fission-Request-ID"] == "req-fail"
    logs = harness.logs
    logs.wait_for(lambda _: any("ValueError: the function failed" in m for m in logs.messages("req-fail")))
    stderr = logs.messages("req-fail", "stderr")
    assert stderr[0] == "Traceback (most recent call last):"
    assert any("helper_that_fails" in line for line in stderr)
    assert logs.messages("req-fail", "stdout") == ["before the failure"]


def test_keep_alive_and_pipelining(echo: str) -> None:
    conn = UnixHTTPConnection(echo)
    for i in range(3):
        assert call(echo, url=f"/{i}", conn=conn).json()["path"] == f"/{i}"
    first_socket = conn.sock
    assert call(echo, conn=conn).status == 200
    assert conn.sock is first_socket  # the same connection served every request
    conn.close()

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.connect(echo)
        raw.sendall(b"".join(b"GET /pipe%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(3)))
        raw.sendall(b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := raw.recv(65536):  # the worker closes after the last one
            data += chunk
    paths = [
        json.loads(part.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1")[0])["path"]
        for part in data.split(b"HTTP/1.1 200")[1:]
    ]
    assert paths == ["/pipe0", "/pipe1", "/pipe2", "/last"]


def test_expect_100_continue(echo: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.connect(echo)
        raw.settimeout(5)
        raw.sendall(
            b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n"
            b"Connection: close\r\n\r\n"
        )
        assert raw.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        raw.sendall(b"body")
        assert json.loads(_read_all(raw).split(b"\r\n\r\n", 1)[1])["data"] == "body"


def test_malformed_request_gets_400(echo: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.connect(echo)
        raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        raw.settimeout(5)
        assert raw.recv(65536).startswith(b"HTTP/1.1 400")


def test_a_repeated_request_id_header_counts_once(echo: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.connect(echo)
        raw.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Fission-Request-ID: from-client\r\n"
            b"X-Fission-Request-ID: from-router\r\nConnection: close\r\n\r\n"
        )
        head = _read_all(raw).split(b"\r\n\r\n")[0].split(b"\r\n")

    assert [h for h in head if h.lower().startswith(b"x-fission-request-id")] == [
        b"X-Fission-Request-ID: from-router"
    ]


def test_healthz(harness: Rig) -> None:
    path = harness.worker()

    reply = call(path, url="/healthz", headers={"X-Fission-Request-ID": "hz"})

    assert (reply.status, reply.body) == (200, b"")
    assert reply.headers["X-Fission-Request-ID"] == "hz"


def test_cli_serves_a_unix_socket_and_a_tcp_port() -> None:
    with short_tmpdir() as root:
        code = write_files(root / "code", {"main.py": "def main():\n    return 'hello'\n"})
        port = _free_port()
        path = str(root / "w.sock")
        process = start_worker(path, "--port", str(port), "--concurrency", "2")
        try:
            assert specialize(path, code).status == 200
            assert call(path).text == "hello"
            with socket.create_connection(("127.0.0.1", port), timeout=5) as tcp:
                tcp.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert _read_all(tcp).endswith(b"\r\n\r\nhello")
        finally:
            stop(process)
        assert process.returncode == 0  # SIGTERM is a clean shutdown
        assert not (root / "w.sock").exists()  # and it removed its socket


@pytest.mark.parametrize("log_socket", ["", "/nonexistent/log.sock"])
def test_cli_without_a_reachable_log_socket_writes_records_to_stderr(log_socket: str) -> None:
    with short_tmpdir() as root:
        code = write_files(root / "code", {"main.py": "def main():\n    print('to stderr')\n    return ''\n"})
        path = str(root / "w.sock")
        process = start_worker(path, env={"RUNTIME_LOG_SOCKET": log_socket})
        try:
            assert specialize(path, code).status == 200
            assert call(path, headers={"X-Fission-Request-ID": "cli"}).status == 200
        finally:
            stop(process)
        assert process.stderr is not None
        records = [json.loads(line) for line in process.stderr.read().splitlines()]
        assert {"request_id": "cli", "stream": "stdout", "message": "to stderr"}.items() <= records[
            -1
        ].items()


def test_cli_rejects_missing_arguments() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "runtime.worker"], cwd=REPO, capture_output=True, timeout=30, check=False
    )

    assert result.returncode == 2
    assert b"--socket" in result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_worker_becomes_healthy_only_while_running() -> None:
    with short_tmpdir() as root:
        path = str(root / "w.sock")
        assert not healthy(path)
        process = start_worker(path)
        stop(process)
        wait_until(lambda: not healthy(path), timeout=5, message="the socket to go away")
