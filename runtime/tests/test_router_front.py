"""The router's compiled front (runtime.fastpath, front.c) through a real runtime, over raw sockets:
which requests it answers itself and which it hands to the Python router, that answers on one
connection come back in order whichever answered them, the HTTP rules ServerProtocol keeps (400,
413, 501, ``100 Continue``), and a fast call's worker given back, kept, or removed as
Executor.finish would (a timeout, a crash, a client gone). What a function sees through it is
pinned by test_router_contract.py, run against both routers."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from runtime import fastpath
from runtime.http import own_answers
from runtime.tests.core import resource_quota
from testsupport.fission import environment, function, httptrigger, package_literal
from testsupport.processes import wait_until
from testsupport.runtime import RuntimeProcess

NS = "faas-acme"
R = "/acme"
HELLO = "def main():\n    return 'hello'\n"
SLOW = "import time\ndef main():\n    time.sleep(5)\n    return 'late'\n"
# Each answers its first call (its cold start's, which the Python router makes) and fails the next.
SLOW_LATER = (
    "import time\nCALLS = []\ndef main():\n    CALLS.append(1)\n"
    "    time.sleep(5 if len(CALLS) > 1 else 0)\n    return 'ok'\n"
)
DIES_LATER = (
    "import os\nCALLS = []\ndef main():\n    CALLS.append(1)\n"
    "    if len(CALLS) > 1:\n        os._exit(3)\n    return 'ok'\n"
)
ECHO_ID = (
    "from flask import request\ndef main():\n    return request.headers.get('X-Fission-Request-Id', '')\n"
)


def _deploy(runtime: RuntimeProcess, name: str, code: str, path: str, **fn: Any) -> None:
    for obj in (
        environment(NS, "python", poolsize=1),
        package_literal(NS, f"{name}-pkg", code),
        function(NS, name, package=f"{name}-pkg", **fn),
        httptrigger(NS, name, path, function_name=name, methods=("GET", "POST", "HEAD")),
    ):
        response = runtime.apply(obj)
        assert response.status_code in (200, 201), response.text


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    assert fastpath.available(), "the compiled front is not built: make fastpath"
    process = RuntimeProcess(
        state_dir=tmp_path_factory.mktemp("front"), env={"RUNTIME_FASTPATH": "1"}
    ).start()
    try:
        _deploy(process, "hello", HELLO, f"{R}/hello")
        _deploy(process, "slow", SLOW_LATER, f"{R}/slow", timeout=1)
        _deploy(process, "dies", DIES_LATER, f"{R}/dies")
        _deploy(process, "echoid", ECHO_ID, f"{R}/echoid")
        for path in ("/hello", "/echoid"):
            assert process.call(R + path).status_code == 200  # warm: the next calls find a worker
        yield process
    finally:
        process.stop()


def _paths(runtime: RuntimeProcess) -> dict[str, float]:
    found = re.findall(r'^faas_router_requests_total\{path="(\w+)"\} (\S+)$', runtime.metrics(), re.M)
    return {path: float(value) for path, value in found}


def _connect(runtime: RuntimeProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", runtime.router_port), timeout=20)
    return sock


def _read_answers(
    sock: socket.socket, count: int, heads: tuple[int, ...] = ()
) -> list[tuple[int, dict[str, str], bytes]]:
    """``count`` answers, each (status, headers with lower-case names, body); interim ones too.
    ``heads``: the indexes of answers to HEAD requests (no body, whatever their length says)."""
    data, answers = b"", list[tuple[int, dict[str, str], bytes]]()
    while len(answers) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {len(answers)} answers: {data!r}"
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:])}
        length = 0 if status < 200 or len(answers) in heads else int(headers.get("content-length", "0"))
        while len(data) < length:
            chunk = sock.recv(65536)
            assert chunk, "closed within a body"
            data += chunk
        answers.append((status, headers, data[:length]))
        data = data[length:]
    return answers


def _get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: h\r\n{extra}\r\n".encode()


def test_a_warm_call_on_an_exact_route_is_answered_by_the_front(front):
    before = _paths(front)
    answer = front.call(f"{R}/echoid", headers={"X-Fission-Request-ID": "mine-1"})
    after = _paths(front)
    assert (answer.status_code, answer.text) == (200, "mine-1")
    assert answer.headers["x-fission-request-id"] == "mine-1"
    assert re.fullmatch(r"router;dur=\d+\.\d{3}, function;dur=\d+\.\d{3}", answer.headers["server-timing"])
    assert after["compiled"] == before["compiled"] + 1
    assert after["python"] == before["python"]
    fresh = front.call(f"{R}/echoid", headers={"X-Fission-Request-ID": "not plain!"})
    assert re.fullmatch(r"[0-9a-f]{32}", fresh.text)
    assert fresh.headers["x-fission-request-id"] == fresh.text


def test_what_the_front_does_not_serve_goes_to_the_python_router(front):
    before = _paths(front)
    assert front.call(f"{R}/nowhere").status_code == 404
    assert front.call(f"{R}/hello", "HEAD").status_code == 200
    assert front.call(f"{R}/hello", headers={"X-Faas-Invocation-Type": "Event"}).status_code == 202
    after = _paths(front)
    assert after["python"] == before["python"] + 3
    assert after["compiled"] == before["compiled"]


def test_pipelined_answers_come_back_in_order_whichever_router_gives_them(front):
    sock = _connect(front)
    with sock:
        sock.sendall(
            _get(f"{R}/hello") + _get(f"{R}/nowhere") + _get(f"{R}/echoid", "X-Fission-Request-ID: third\r\n")
            + b"HEAD " + f"{R}/hello".encode() + b" HTTP/1.1\r\nHost: h\r\n\r\n" + _get(f"{R}/hello")
        )  # fmt: skip
        answers = _read_answers(sock, 5, heads=(3,))
    assert [(status, body) for status, _, body in answers] == [
        (200, b"hello"), (404, b"not found\n"), (200, b"third"), (200, b""), (200, b"hello"),
    ]  # fmt: skip
    assert answers[3][1]["content-length"] == "5"  # the HEAD's: a GET's length, and no body


def test_the_front_keeps_the_parsers_rules(front):
    with _connect(front) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        status, headers, body = _read_answers(sock, 1)[0]
        assert (status, body, headers.get("connection")) == (400, b"malformed request\n", "close")
        assert sock.recv(10) == b""
    with _connect(front) as sock:
        sock.sendall(_get(f"{R}/hello", "Connection: Upgrade\r\nUpgrade: websocket\r\n"))
        status, _, body = _read_answers(sock, 1)[0]
        assert (status, body) == (501, b"upgrades are not supported\n")
        assert sock.recv(10) == b""
    with _connect(front) as sock:
        head = f"POST {R}/hello HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        sock.sendall(head.encode())
        interim = _read_answers(sock, 1)[0]
        assert interim[0] == 100
        sock.sendall(b"12345")
        assert _read_answers(sock, 1)[0][2] == b"hello"


def test_headers_over_a_mebibyte_end_the_connection(front):
    """Refused (400) and closed: the client may see the answer, or a reset if the front closed
    with the request's last bytes unread; either way it is not read on without bound."""
    with _connect(front) as sock:
        try:
            sock.sendall(_get(f"{R}/hello", "X-Big: " + "a" * (2 << 20) + "\r\n"))
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
        except (ConnectionResetError, BrokenPipeError):
            received = b""
        assert received in (b"", own_answers()["400"])
    assert front.call(f"{R}/hello").text == "hello"


def test_a_body_over_the_limit_is_refused_and_the_connection_goes_on(tmp_path):
    runtime = RuntimeProcess(
        state_dir=tmp_path / "rt", env={"RUNTIME_FASTPATH": "1", "RUNTIME_MAX_BODY_BYTES": "10"}
    ).start()
    try:
        _deploy(runtime, "hello", HELLO, f"{R}/hello")
        with _connect(runtime) as sock:
            post = f"POST {R}/hello HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n01234567890"
            sock.sendall(post.encode() + _get(f"{R}/hello"))
            first, second = _read_answers(sock, 2)
        assert (first[0], first[2]) == (413, b"request body too large\n")
        assert (second[0], second[2]) == (200, b"hello")
    finally:
        runtime.stop()


def _calls_of(runtime: RuntimeProcess, function: str) -> int:
    found = re.findall(rf'^fission_function_calls_total\{{[^}}]*function_name="{function}"[^}}]*\}} (\S+)$',
                       runtime.metrics(), re.M)  # fmt: skip
    return int(sum(float(v) for v in found))


def test_a_fast_call_that_times_out_is_answered_504_and_its_worker_removed(front):
    assert front.call(f"{R}/slow", timeout=30).text == "ok"  # its cold start's call
    before = _paths(front)
    started = time.monotonic()
    answer = front.call(f"{R}/slow", timeout=30)
    assert (answer.status_code, answer.text) == (504, "the function timed out\n")
    assert time.monotonic() - started < 4  # the function's 1 s, not its 5 s sleep
    assert _paths(front)["compiled"] == before["compiled"] + 1
    wait_until(lambda: "'slow')) removed: timed out" in front.log_tail(), timeout=10)
    assert front.call(f"{R}/slow", timeout=30).text == "ok"  # a new worker's first call


def test_a_worker_that_dies_in_a_fast_call_is_answered_502_and_replaced(front):
    assert front.call(f"{R}/dies").text == "ok"  # its cold start's call
    before = _paths(front)
    answer = front.call(f"{R}/dies")
    assert (answer.status_code, answer.text) == (502, "the function's worker failed during the request\n")
    assert _paths(front)["compiled"] == before["compiled"] + 1
    # removed for the failed call, or for its exit if the runtime saw that first
    wait_until(lambda: re.search(r"'dies'\)\) removed: (crashed|exited)", front.log_tail()), timeout=10)
    assert front.call(f"{R}/dies").text == "ok"  # a new worker's first call
    assert front.call(f"{R}/hello").text == "hello"  # the front goes on


def test_a_client_gone_mid_call_leaves_the_worker_free(front):
    sock = _connect(front)
    sock.sendall(_get(f"{R}/echoid"))
    sock.close()  # before (or while) the worker answers
    for _ in range(20):
        assert front.call(f"{R}/echoid", headers={"X-Fission-Request-ID": "again"}).text == "again"
    assert _calls_of(front, "echoid") >= 20


def test_the_namespace_concurrency_quota_holds_across_both_routers(tmp_path):
    runtime = RuntimeProcess(state_dir=tmp_path / "rt", env={"RUNTIME_FASTPATH": "1"}).start()
    try:
        assert runtime.apply(resource_quota(NS, concurrency=1)).status_code in (200, 201)
        _deploy(runtime, "slow", SLOW.replace("5", "2"), f"{R}/slow", timeout=10, concurrency=2)
        runtime.call(f"{R}/slow", timeout=30)  # warm
        held = _connect(runtime)
        held.sendall(_get(f"{R}/slow"))  # in flight for 2 s, through the front
        time.sleep(0.5)
        refused = runtime.call(f"{R}/slow", timeout=30)
        assert refused.status_code == 429
        assert b"late" in held.recv(4096)
        held.close()
        assert runtime.call(f"{R}/slow", timeout=30).status_code == 200
    finally:
        runtime.stop()
