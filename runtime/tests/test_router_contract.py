"""What a function sees through the router, and what a caller or the portal hears back, compared
with Fission's router (pkg/router: rewrite.go, requesthHeader.go, functionHandler.go,
transport.go): the forwarded path and query, the headers, HEAD, the specialize probe, and a load
error's traceback kept under the request's id."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from runtime.http import Request, Response, UpstreamConnection
from runtime.logs import LogCollector, stream_name
from runtime.objects import parse_httptrigger
from runtime.router import canonical_header, forwarded_host, forwarded_path
from runtime.tests.core import core_apply, resource_quota
from testsupport.fission import environment, function, httptrigger, package_literal
from testsupport.processes import wait_until
from testsupport.runtime import TOKEN, RuntimeProcess

NS = "faas-acme"
R = "/acme"  # the tenant root of NS: its routes live under it
AUTH = {"Authorization": f"Bearer {TOKEN}"}

ECHO = """
from flask import request

def main():
    print("echo called")
    seen = {"path": request.path, "full_path": request.full_path, "method": request.method,
            "headers": dict(request.headers)}
    return seen, 200, {"X-Seen-Method": request.method, "X-Seen-Path": request.path}
"""
# A body of a known length, so that a HEAD's Content-Length can be checked against it.
TWELVE = """
from flask import request

def main():
    return "twelve bytes", 200, {"X-Seen-Method": request.method}
"""
BROKEN = "def main(:\n    return 'never'\n"
DIES = "import os\nos._exit(3)\n"


# ---------------------------------------------------------------- pure parts, no runtime


def _trigger(path: str, *, prefix: bool = False, keep: bool = False) -> Any:
    raw = httptrigger(NS, "t", path, function_name="f", prefix=prefix, keep_prefix=keep)
    return parse_httptrigger(raw, NS)


@pytest.mark.parametrize(
    ("path", "prefix", "keep", "request_path", "expected"),
    [
        ("/acme/echo", False, False, "/acme/echo", "/"),
        ("/acme/items/{item}", False, False, "/acme/items/42", "/"),
        ("/acme/api", True, False, "/acme/api", "/"),
        ("/acme/api", True, False, "/acme/api/v1/x", "/v1/x"),
        ("/acme/dir/", True, False, "/acme/dir/sub", "/sub"),
        ("/acme/api", True, True, "/acme/api/v1", "/acme/api/v1"),
    ],
)
def test_the_path_forwarded_is_relative_to_the_trigger(path, prefix, keep, request_path, expected):
    assert forwarded_path(_trigger(path, prefix=prefix, keep=keep), request_path) == expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (b"example.com", b"host=example.com;"),
        (b"example.com:8080", b"host=example.com:8080;"),
        (b"127.0.0.1:80", b"host=127.0.0.1:80;"),
        (b"[::1]:8080", b'host="[::1]:8080";'),
        (b"[::1]", b'host="[::1]";'),
        (b"::ffff:1.2.3.4", b'host="::ffff:1.2.3.4";'),
    ],
)
def test_forwarded_quotes_ipv6_hosts_only(host, expected):
    assert forwarded_host(host) == expected


def test_header_names_are_written_as_go_writes_them():
    assert canonical_header("X-Fission-Params-itemId") == "X-Fission-Params-Itemid"
    assert canonical_header("x-fission-params-item_id") == "X-Fission-Params-Item_id"


def test_full_url_is_the_target_as_sent():
    request = Request("GET", "/acme/a%20b", b"x=1&y=%2F", [], target=b"/acme/a%20b?x=1&y=%2F")
    assert request.full_url() == b"/acme/a%20b?x=1&y=%2F"
    assert Request("GET", "/p", b"q=1", []).full_url() == b"/p?q=1"  # built without a target


class _Transport:
    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True


def test_an_answer_to_head_ends_with_its_headers_and_keeps_its_length():
    async def exchange() -> tuple[Response, UpstreamConnection, _Transport]:
        connection = UpstreamConnection()
        transport = _Transport()
        connection.connection_made(transport)  # type: ignore[arg-type]
        sent = asyncio.ensure_future(connection.send("HEAD", b"/", [], b""))
        await asyncio.sleep(0)
        # A worker's answer to HEAD: the GET body's length, and no body (none will ever come).
        connection.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nX-Seen: HEAD\r\n\r\n")
        return await asyncio.wait_for(sent, 5), connection, transport

    response, connection, transport = asyncio.run(exchange())
    assert transport.written.startswith(b"HEAD / HTTP/1.1\r\n")
    assert (response.status, response.body) == (200, b"")
    assert (b"X-Seen", b"HEAD") in response.headers
    assert connection.closed  # never reused: nothing more is read from it
    assert transport.closed
    response.head_only = True
    encoded = response.encode()
    assert b"content-length: 12\r\n" in encoded.lower()
    assert encoded.endswith(b"\r\n\r\n")


def test_the_routers_own_answer_to_head_has_no_body():
    encoded = Response(404, [], b"not found\n", head_only=True).encode()
    assert b"content-length: 10\r\n" in encoded
    assert encoded.endswith(b"\r\n\r\n")


def test_log_records_name_the_function_object_and_a_tap_sees_its_request():
    async def scenario() -> tuple[list[dict[str, str]], list[str], bool]:
        collector = LogCollector(None, 1000)
        await collector.start()
        owner = ("faas-acme", "f", "uid-1")
        with collector.tap("r1") as stderr:
            collector._record(lambda: owner, b'{"request_id": "r1", "stream": "stderr", "message": "boom"}')
            collector._record(lambda: owner, b'{"request_id": "r1", "stream": "stdout", "message": "out"}')
            collector._record(lambda: owner, b'{"request_id": "r2", "stream": "stderr", "message": "other"}')
        collector.note(owner, "r3", "the function failed to load: x")
        entries = [entry for _, entry in list(collector.queue._queue)]  # type: ignore[attr-defined]
        stored = await collector.flushed(5)
        await collector.stop()
        return entries, stderr, stored

    entries, stderr, stored = asyncio.run(scenario())
    assert stderr == ["boom"]  # only its request's stderr
    assert {e["function_uid"] for e in entries} == {"uid-1"}
    assert entries[-1]["message"] == "[runtime] the function failed to load: x"
    assert (entries[-1]["stream"], entries[-1]["request_id"]) == ("stderr", "r3")
    assert stored


# ---------------------------------------------------------------- through a real runtime


def _deploy(runtime: RuntimeProcess, name: str, code: str, **fn: Any) -> None:
    assert runtime.apply(environment(NS, "python", poolsize=1)).status_code in (200, 201)
    response = runtime.apply(package_literal(NS, f"{name}-pkg", code))
    assert response.status_code in (200, 201), response.text
    response = runtime.apply(function(NS, name, package=f"{name}-pkg", **fn))
    assert response.status_code in (200, 201), response.text


def _route(runtime: RuntimeProcess, name: str, path: str, fn: str, **options: Any) -> None:
    response = runtime.apply(httptrigger(NS, name, path, function_name=fn, **options))
    assert response.status_code in (200, 201), response.text


def _object(runtime: RuntimeProcess, plural: str, name: str) -> dict[str, Any]:
    url = f"{runtime.control}/apis/fission.io/v1/namespaces/{NS}/{plural}/{name}"
    response = httpx.get(url, headers=AUTH, timeout=30)
    response.raise_for_status()
    return response.json()


@pytest.fixture(scope="module", params=["compiled", "python"])
def routed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RuntimeProcess]:
    """One runtime for the read-only checks: ``echo`` behind each kind of route. Twice: with the
    router's compiled front (runtime.fastpath), which serves the warm calls on exact routes itself,
    and with the Python router alone: what a function sees must not depend on which served it."""
    env = {"RUNTIME_FASTPATH": "1" if request.param == "compiled" else "0"}
    process = RuntimeProcess(state_dir=tmp_path_factory.mktemp("router-contract"), env=env).start()
    assert ("compiled front" in process.log_tail()) == (request.param == "compiled"), process.log_tail()
    try:
        _deploy(process, "echo", ECHO)
        _deploy(process, "twelve", TWELVE)
        _route(process, "exact", f"{R}/echo", "echo", methods=("GET", "POST", "HEAD"))
        _route(process, "template", f"{R}/items/{{item}}/{{itemId}}", "echo")
        _route(process, "strip", f"{R}/api", "echo", prefix=True)
        _route(process, "keep", f"{R}/keep", "echo", prefix=True, keep_prefix=True)
        _route(process, "slash", f"{R}/dir/", "echo", prefix=True)
        _route(process, "patch", f"{R}/patch", "echo", methods=("PATCH",))
        _route(process, "twelve", f"{R}/twelve", "twelve", methods=("GET", "HEAD"))
        yield process
    finally:
        process.stop()


def _seen(runtime: RuntimeProcess, target: str, method: str = "GET", **kwargs: Any) -> dict[str, Any]:
    response = runtime.call(target, method, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def test_an_exact_route_forwards_the_root_and_the_query_as_sent(routed):
    seen = _seen(routed, f"{R}/echo?b=2&a=%20x&c=%2F")
    assert (seen["path"], seen["full_path"]) == ("/", "/?b=2&a=%20x&c=%2F")
    assert seen["headers"]["X-Fission-Full-Url"] == f"{R}/echo?b=2&a=%20x&c=%2F"


def test_a_templated_route_forwards_the_root_and_its_params_as_headers(routed):
    seen = _seen(routed, f"{R}/items/42/abc?q=1")
    assert (seen["path"], seen["full_path"]) == ("/", "/?q=1")
    assert seen["headers"]["X-Fission-Params-Item"] == "42"
    assert seen["headers"]["X-Fission-Params-Itemid"] == "abc"
    assert seen["headers"]["X-Fission-Full-Url"] == f"{R}/items/42/abc?q=1"


def test_a_prefix_route_forwards_the_remainder_unless_it_keeps_the_prefix(routed):
    assert _seen(routed, f"{R}/api/v1/x?z=1")["full_path"] == "/v1/x?z=1"
    assert _seen(routed, f"{R}/api")["path"] == "/"
    assert _seen(routed, f"{R}/keep/v1?z=1")["full_path"] == f"{R}/keep/v1?z=1"
    assert _seen(routed, f"{R}/dir/sub")["path"] == "/sub"
    # Fission registers a prefix ending in "/" as that prefix only: the bare path is not its.
    assert routed.call(f"{R}/dir").status_code == 404


def test_the_function_is_named_by_fissions_headers(routed):
    meta = _object(routed, "functions", "echo")["metadata"]
    spoofed = {"X-Fission-Function-Name": "evil", "X-Fission-Function-Uid": "evil",
               "X-Fission-Full-Url": "/evil", "X-Fission-Params-Item": "evil"}  # fmt: skip
    headers = _seen(routed, f"{R}/echo?x=1", headers=spoofed)["headers"]
    assert headers["X-Fission-Function-Uid"] == meta["uid"]
    assert re.fullmatch(r"[0-9a-f-]{36}", meta["uid"])
    assert headers["X-Fission-Function-Name"] == "echo"
    assert headers["X-Fission-Function-Namespace"] == NS
    assert headers["X-Fission-Function-Resourceversion"] == meta["resourceVersion"]
    assert headers["X-Fission-Full-Url"] == f"{R}/echo?x=1"
    assert "X-Fission-Params-Item" not in headers  # a caller cannot name a param the route has not
    assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Fission-Request-Id"])


def test_a_changed_function_is_named_by_its_new_resource_version(routed):
    before = _object(routed, "functions", "echo")["metadata"]["resourceVersion"]
    assert routed.apply(function(NS, "echo", package="echo-pkg")).status_code == 200
    after = _object(routed, "functions", "echo")["metadata"]
    assert after["resourceVersion"] != before
    headers = _seen(routed, f"{R}/echo")["headers"]
    assert headers["X-Fission-Function-Resourceversion"] == after["resourceVersion"]


def test_forwarded_headers_name_the_host_unless_a_proxy_did(routed):
    port = routed.router_port
    headers = _seen(routed, f"{R}/echo")["headers"]
    assert headers["Forwarded"] == f"host=127.0.0.1:{port};"
    assert headers["X-Forwarded-Host"] == f"127.0.0.1:{port}"
    assert headers["X-Forwarded-For"] == "127.0.0.1"

    ipv6 = _seen(routed, f"{R}/echo", headers={"Host": "[::1]:8080"})["headers"]
    assert ipv6["Forwarded"] == 'host="[::1]:8080";'
    assert ipv6["X-Forwarded-Host"] == "[::1]:8080"

    proxied = _seen(routed, f"{R}/echo", headers={"Forwarded": "for=192.0.2.1;host=example.com",
                                                  "X-Forwarded-For": "198.51.100.7"})["headers"]  # fmt: skip
    assert proxied["Forwarded"] == "for=192.0.2.1;host=example.com"
    assert "X-Forwarded-Host" not in proxied
    assert proxied["X-Forwarded-For"] == "198.51.100.7, 127.0.0.1"

    host_only = _seen(routed, f"{R}/echo", headers={"X-Forwarded-Host": "example.com"})["headers"]
    assert host_only["X-Forwarded-Host"] == "example.com"
    assert "Forwarded" not in host_only


def test_head_reaches_the_function_as_head_and_gets_no_body(routed):
    head = routed.call(f"{R}/twelve", "HEAD")
    assert head.status_code == 200
    assert head.headers["x-seen-method"] == "HEAD"
    assert head.headers["content-length"] == "12"  # the length the GET body has
    assert head.content == b""
    get = routed.call(f"{R}/twelve")  # the worker serves on after a HEAD
    assert (get.status_code, get.text, get.headers["x-seen-method"]) == (200, "twelve bytes", "GET")
    assert routed.call(f"{R}/echo", "HEAD").headers["x-seen-path"] == "/"
    assert routed.call(f"{R}/items/1/2", "HEAD").status_code == 405  # not among the route's methods


def _answers(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """``count`` answers read off a keep-alive connection: (status, body) each."""
    data, found = b"", list[tuple[int, bytes]]()
    while len(found) < count:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed after {found}"
        data += chunk
        while b"\r\n\r\n" in data:
            head, rest = data.split(b"\r\n\r\n", 1)
            status = int(head.split(b" ")[1])
            match = re.search(rb"(?im)^content-length: (\d+)", head)
            length = int(match.group(1)) if match and status >= 200 else 0
            if len(rest) < length:
                break
            found.append((status, rest[:length]))
            data = rest[length:]
    return found


def test_expect_100_continue_gets_its_go_ahead_and_each_caller_its_own_answer(routed):
    host, port = routed.router.removeprefix("http://").split(":")
    body = b"x" * 2048  # curl sends Expect: 100-continue for a body over 1 KiB
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST {R}/echo HTTP/1.1\r\nHost: h\r\nContent-Length: {len(body)}\r\n"
                     "Expect: 100-continue\r\n\r\n".encode())  # fmt: skip
        assert _answers(sock, 1) == [(100, b"")]  # from the router, at once: no wait for a timeout
        sock.sendall(body)
        first = _answers(sock, 1)[0]
        sock.sendall(f"GET {R}/twelve HTTP/1.1\r\nHost: h\r\n\r\n".encode())
        second = _answers(sock, 1)[0]
    assert first[0] == 200
    assert "expect" not in {k.lower() for k in json.loads(first[1])["headers"]}  # answered, not passed on
    assert second == (200, b"twelve bytes")  # its own answer, not one behind


def test_patch_is_forwarded_when_the_route_allows_it(routed):
    # The router forwards it; the worker, like Fission's Python environment, does not serve PATCH.
    forwarded = routed.call(f"{R}/patch", "PATCH")
    assert forwarded.status_code == 405
    assert "allow" in forwarded.headers  # the worker's answer, not the router's
    assert "x-fission-request-id" in forwarded.headers
    refused = routed.call(f"{R}/echo", "PATCH")  # not among that route's methods: the router's 405
    assert (refused.status_code, "allow" in refused.headers) == (405, False)


# ---------------------------------------------------------------- the specialize probe


def _probe(runtime: RuntimeProcess, name: str, request_id: str | None = None,
           namespace: str = NS, token: str = TOKEN) -> httpx.Response:  # fmt: skip
    url = f"{runtime.control}/apis/fission.io/v1/namespaces/{namespace}/functions/{name}/specialize"
    headers = {"Authorization": f"Bearer {token}"}
    if request_id is not None:
        headers["X-Fission-Request-ID"] = request_id
    return httpx.post(url, headers=headers, timeout=60)


def _cold_starts(runtime: RuntimeProcess, name: str) -> float:
    text = runtime.metrics()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("fission_function_cold_starts_total{") and f'function_name="{name}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _new_id(tag: str) -> str:
    """A request id no other test (of this run or an earlier one on the same Redis) has used."""
    return f"{tag}-{uuid.uuid4().hex[:12]}"


def _records(request_id: str) -> list[dict[str, str]]:
    client = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    entries: list[tuple[str, dict[str, str]]] = client.xrange(stream_name(NS))  # type: ignore[assignment]
    return [fields for _, fields in entries if fields["request_id"] == request_id]


@pytest.mark.parametrize("executor", ["poolmgr", "newdeploy"])
def test_the_probe_specializes_a_worker_that_the_first_call_then_uses(runtime, executor):
    _deploy(runtime, "hot", ECHO, executor=executor, max_scale=1)
    _route(runtime, "hot", f"{R}/hot", "hot")
    rid = _new_id("probe")
    probed = _probe(runtime, "hot", rid)
    assert (probed.status_code, probed.json()) == (200, {"status": "specialized"})
    assert probed.headers["x-fission-request-id"] == rid
    assert _cold_starts(runtime, "hot") == 1
    assert runtime.call(f"{R}/hot").status_code == 200
    assert _probe(runtime, "hot").status_code == 200  # already served: nothing more to start
    assert _cold_starts(runtime, "hot") == 1  # the call and the second probe used that worker


def test_the_probe_answers_a_load_error_with_the_workers_traceback(runtime):
    _deploy(runtime, "broken", BROKEN)
    uid = _object(runtime, "functions", "broken")["metadata"]["uid"]
    rid = _new_id("probe")
    response = _probe(runtime, "broken", rid)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "load_failed"
    detail = error["detail"]
    assert detail["request_id"] == rid
    assert response.headers["x-fission-request-id"] == rid
    assert "\n" not in detail["reason"]
    assert detail["reason"] in error["message"]
    assert "Traceback" in detail["traceback"]
    assert "SyntaxError" in detail["traceback"]
    # Stored before the answer: the portal may read the logs at once.
    stored = _records(rid)
    assert any("SyntaxError" in r["message"] and r["stream"] == "stderr" for r in stored), stored
    assert {(r["function"], r["function_uid"]) for r in stored} == {("broken", uid)}


def test_the_probe_refuses_what_it_cannot_specialize(runtime):
    assert _probe(runtime, "nosuch").status_code == 404
    assert runtime.apply(environment(NS, "python", poolsize=0)).status_code == 201
    assert runtime.apply(function(NS, "orphan", package="missing-pkg")).status_code == 201
    not_deployed = _probe(runtime, "orphan")
    assert (not_deployed.status_code, not_deployed.json()["error"]["code"]) == (404, "not_found")
    assert _probe(runtime, "orphan", token="wrong").status_code == 401
    bad_id = _probe(runtime, "nosuch", "not a valid id!")
    assert re.fullmatch(r"[0-9a-f]{32}", bad_id.headers["x-fission-request-id"])


def test_the_probe_answers_429_when_the_quota_is_exhausted(runtime):
    assert core_apply(runtime, resource_quota(NS, pods=0)).status_code in (200, 201)
    _deploy(runtime, "capped", ECHO)
    response = _probe(runtime, "capped")
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "quota_exhausted"


# ---------------------------------------------------------------- load errors of a call


def test_a_load_error_is_logged_under_the_calls_request_id_before_the_502(runtime):
    _deploy(runtime, "broken", BROKEN)
    _route(runtime, "broken", f"{R}/broken", "broken")
    uid = _object(runtime, "functions", "broken")["metadata"]["uid"]
    rid = _new_id("load")
    response = runtime.call(f"{R}/broken", headers={"X-Fission-Request-ID": rid})
    assert (response.status_code, response.text) == (502, "the function is unavailable\n")
    assert response.headers["x-fission-request-id"] == rid
    stored = _records(rid)  # read at once: the runtime stored them before answering
    assert any("SyntaxError" in r["message"] for r in stored if r["stream"] == "stderr"), stored
    assert {(r["function"], r["function_uid"]) for r in stored} == {("broken", uid)}
    assert not any(r["message"].startswith("[runtime]") for r in stored)  # the worker said why


def test_the_runtime_says_why_when_the_worker_left_no_traceback(runtime):
    _deploy(runtime, "dies", DIES)
    _route(runtime, "dies", f"{R}/dies", "dies")
    uid = _object(runtime, "functions", "dies")["metadata"]["uid"]
    rid = _new_id("load")
    response = runtime.call(f"{R}/dies", headers={"X-Fission-Request-ID": rid})
    assert response.status_code == 502
    stored = _records(rid)
    notes = [r for r in stored if r["message"].startswith("[runtime] the function failed to load")]
    assert len(notes) == 1, stored
    assert (notes[0]["stream"], notes[0]["function"], notes[0]["function_uid"]) == ("stderr", "dies", uid)


def test_a_functions_output_names_the_function_object(routed):
    uid = _object(routed, "functions", "echo")["metadata"]["uid"]
    rid = _new_id("named")
    response = routed.call(f"{R}/echo", headers={"X-Fission-Request-ID": rid})
    assert response.status_code == 200

    def printed() -> list[dict[str, str]]:
        return [r for r in _records(rid) if r["message"] == "echo called"]

    wait_until(lambda: len(printed()) == 1, timeout=10)  # a call's lines are shipped after it
    assert printed()[0]["function_uid"] == uid
