"""Capture of failed requests (runtime/captures.py) and the direct call of one version
(runtime/control.py ``.../functions/<name>/call``), through a real runtime and router; the
streams are read straight from Redis (the portal's reading of them is tested in
dataplane/tests/test_local_captures.py: the runtime's tests import nothing of the portal)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from typing import Any

import httpx
import pytest
import redis

from runtime.captures import (
    CAPTURE_ANNOTATION,
    PARSE_LIMIT,
    REDACTED,
    Captured,
    CapturePolicy,
    CaptureRecorder,
    captures_stream,
    entry,
    is_secret,
    redact_body,
    redact_headers,
    redact_target,
)
from runtime.objects import parse_httptrigger
from testsupport.fission import environment, function, httptrigger, package_literal
from testsupport.processes import wait_until
from testsupport.runtime import TOKEN, RuntimeProcess
from testsupport.services import require

ACME, GLOBEX = "faas-acme", "faas-globex"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Answers with the status its query asks for, a long body, a cookie and its own Fission name.
SHOP = """
from flask import request

def main():
    code = int(request.args.get("code", "200"))
    served_by = request.headers["X-Fission-Function-Name"]
    headers = {"Set-Cookie": "sid=SECRET-RESPONSE-COOKIE", "X-Served-By": served_by}
    return "answer-" + "z" * 100, code, headers
"""
# Says which version it is and what it was sent.
WHO = """
import json
from flask import request

def main():
    return json.dumps({"me": "NAME", "method": request.method, "full_path": request.full_path,
                       "headers": dict(request.headers), "body": request.get_data(as_text=True)}), 201
"""
BROKEN = "def main(:\n"
SECRETS = ("SECRET-AUTH", "SECRET-COOKIE", "SECRET-TOKEN", "SECRET-QUERY", "SECRET-BODY", "SECRET-RESPONSE")


def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)


def policy(function: str = "shop", **fields: Any) -> str:
    return CapturePolicy(function, **fields).to_annotation()


def deploy(runtime: RuntimeProcess, namespace: str, name: str, code: str = SHOP) -> None:
    for obj in (
        environment(namespace, "python", poolsize=1),
        package_literal(namespace, f"{name}-pkg", code),
        function(namespace, name, package=f"{name}-pkg", idle_timeout=600),
    ):
        response = runtime.apply(obj)
        assert response.status_code in (200, 201), response.text


def route(runtime: RuntimeProcess, namespace: str, name: str, path: str, annotation: str | None,
          **options: Any) -> None:  # fmt: skip
    trigger = httptrigger(namespace, name, path, **options)
    if annotation is not None:
        trigger["metadata"]["annotations"] = {CAPTURE_ANNOTATION: annotation}
    response = runtime.apply(trigger)
    assert response.status_code in (200, 201), response.text


def raw_entries(namespace: str, function: str) -> list[tuple[str, dict[str, str]]]:
    client = _redis()
    found: list[tuple[str, dict[str, str]]] = client.xrange(captures_stream(namespace, function))  # type: ignore[assignment]
    client.close()
    return found


def captured(namespace: str, function: str, count: int) -> list[dict[str, str]]:
    wait_until(lambda: len(raw_entries(namespace, function)) >= count, timeout=10)
    return [fields for _, fields in raw_entries(namespace, function)]


def quiet() -> None:
    """Long enough for a capture queued by a call already answered to reach Redis."""
    time.sleep(0.5)


@pytest.fixture
def clean() -> None:
    require("redis")
    client = _redis()
    keys = list(client.scan_iter(match="runtime:captures:*"))
    if keys:
        client.delete(*keys)
    client.close()


# --- the policy and the redaction rule, without a runtime ---------------------------------------


def test_a_policy_round_trips_through_its_annotation_and_matches_codes_and_classes() -> None:
    rule = CapturePolicy("shop", codes=(500, "4XX", "502", 500), max_requests=10)
    assert rule.codes == (500, "4xx", 502)  # normalised, duplicates gone
    assert CapturePolicy.from_annotation(rule.to_annotation()) == rule
    assert [rule.matches(s) for s in (500, 502, 503, 404, 429, 200)] == [True, True, False, True, True, False]
    assert CapturePolicy("shop").matches(503)
    assert not CapturePolicy("shop").matches(404)  # the default is 5xx


@pytest.mark.parametrize(
    "fields",
    [
        {"function": "Shop"}, {"function": "a:b"}, {"codes": []}, {"codes": [600]}, {"codes": [99]},
        {"codes": ["6xx"]}, {"codes": [True]}, {"codes": "5xx"}, {"max_requests": 0},
        {"max_requests": 1001}, {"max_body_bytes": -1}, {"max_body_bytes": 1024 * 1024 + 1},
        {"retention_s": 59}, {"retention_s": 30 * 86400 + 1}, {"max_requests": 5.0},
    ],
)  # fmt: skip
def test_a_policy_out_of_bounds_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message names the field, checked below
        CapturePolicy(**{"function": "shop", **fields})


BAD_ANNOTATIONS = ["not json", "[]", '{"codes": [500]}', '{"function": "shop", "x": 1}',
                   '{"function": "shop", "codes": "5xx"}',
                   '{"function": "shop", "max_requests": 0}']  # fmt: skip


@pytest.mark.parametrize("value", BAD_ANNOTATIONS)
def test_a_bad_annotation_is_ignored_and_the_trigger_still_routes(value: str) -> None:
    raw = httptrigger(ACME, "t", "/acme/t", function_name="f")
    raw["metadata"]["annotations"] = {CAPTURE_ANNOTATION: value}
    trigger = parse_httptrigger(raw, ACME)
    assert trigger.capture is None
    assert trigger.weights == {"f": 100}


def test_the_redaction_rule() -> None:
    for name in ("Authorization", "proxy-authorization", "Cookie", "Set-Cookie", "X-Api-Key",
                 "X-Auth-Token", "X-CSRF-Token", "X-Xsrf-Token", "X-Amz-Security-Token", "password",
                 "client_secret", "SessionId", "X-Signature", "credentials", "oauth_state", "X-APIKEY",
                 "my-api-key", "api_key", "key", "private_key", "access_key", "x-functions-key", "pwd",
                 "passphrase"):  # fmt: skip
        assert is_secret(name), name
    for name in ("Content-Type", "Accept", "X-Request-Id", "page", "user", "X-Forwarded-For"):
        assert not is_secret(name), name
    headers = [(b"Authorization", b"Bearer abc"), (b"Accept", b"*/*"), (b"X-Fission-Request-Id", b"r1"),
               (b"X-Fission-Function-Name", b"f-v1"), (b"X-Fission-Params-Id", b"7"),
               (b"X-Fission-Full-Url", b"/acme/x?token=abc&a=1")]  # fmt: skip
    assert redact_headers(headers) == [
        ["Authorization", REDACTED], ["Accept", "*/*"], ["X-Fission-Params-Id", "7"],
        ["X-Fission-Full-Url", f"/acme/x?token={REDACTED}&a=1"],
    ]  # fmt: skip
    assert (
        redact_target("/p?a=1&api%5Fkey=x&Session=y&b&c=%20")
        == f"/p?a=1&api%5Fkey={REDACTED}&Session={REDACTED}&b&c=%20"
    )
    assert redact_target("/p") == "/p"
    urls = [
        (b"Referer", b"https://app.example/cb?access_token=abc&x=1"),
        (b"Location", b"/next?code=1&pwd=2"),
    ]
    assert redact_headers(urls) == [["Referer", f"https://app.example/cb?access_token={REDACTED}&x=1"],
                                    ["Location", f"/next?code=1&pwd={REDACTED}"]]  # fmt: skip
    multipart = [(b"Content-Type", b"multipart/form-data; boundary=x")]
    assert (
        redact_body(multipart, b"--x\r\nContent-Disposition: form-data; name=password\r\n\r\nhunter2") == b""
    )
    form = [(b"Content-Type", b"application/x-www-form-urlencoded; charset=utf-8")]
    assert redact_body(form, b"user=al&password=hunter2") == f"user=al&password={REDACTED}".encode()
    json_type = [(b"content-type", b"application/json")]
    nested = json.loads(
        redact_body(json_type, b'{"user": "al", "auth": {"x": 1}, "list": [{"apiKey": "k"}]}')
    )
    assert nested == {"user": "al", "auth": REDACTED, "list": [{"apiKey": REDACTED}]}
    assert redact_body(json_type, b'{"user": "al"}') == b'{"user": "al"}'  # untouched: as it came
    assert redact_body(json_type, b"{not json password=1") == b"{not json password=1"
    assert redact_body([], b"password=1") == b"password=1"  # not a form: the body is the function's
    # Too large to parse on the router's loop: the head, unless it names a secret.
    big = json.dumps({"items": ["x" * 1000] * 3000}).encode()
    assert len(big) > PARSE_LIMIT
    assert redact_body(json_type, big) == big[:PARSE_LIMIT]
    assert redact_body(json_type, b'{"Password": 1, "pad": "' + b"x" * PARSE_LIMIT + b'"}') == b""


def test_a_multipart_body_is_not_kept_and_its_entry_says_it_was_cut() -> None:
    call = Captured(
        namespace="faas-acme", policy=CapturePolicy(function="hello"), fission_function="hello-v1",
        trigger_path="/hello", method="POST", target=b"/", status=500, response_headers=[], response_body=b"",
        headers=[(b"Content-Type", b"multipart/form-data; boundary=x")], body=b"--x\r\npassword=hunter2",
        started=0.0, duration_ms=1.0, request_id="r",
    )  # fmt: skip
    stored = entry(call)
    assert (stored["body"], stored["body_truncated"]) == ("", "1")


def test_the_queue_is_bounded_and_counts_what_it_drops() -> None:
    from runtime.captures import Captured

    async def scenario() -> tuple[int, int]:
        recorder = CaptureRecorder("redis://127.0.0.1:1/0", queue_limit=2)  # never written: not started
        call = Captured(
            namespace=ACME, policy=CapturePolicy("shop"), fission_function="shop", trigger_path="/acme/s",
            method="GET", target=b"/?password=x", headers=[], body=b"", status=500, response_headers=[],
            response_body=b"", started=time.time(), duration_ms=1.0, request_id="r",
        )  # fmt: skip
        for _ in range(5):
            recorder.record(call)
        queued = recorder.queue.qsize()
        assert REDACTED in recorder.queue.get_nowait()[2]["path"]  # redacted before it is queued
        await recorder.client.aclose()  # type: ignore[union-attr]
        return queued, recorder.dropped

    assert asyncio.run(scenario()) == (2, 3)


# --- through a real runtime ----------------------------------------------------------------------


@pytest.mark.usefixtures("clean")
def test_only_matching_answers_are_captured_redacted_and_cut(runtime: RuntimeProcess) -> None:
    deploy(runtime, ACME, "shop")
    route(runtime, ACME, "shop", "/acme/shop", policy(codes=["5xx"], max_body_bytes=40), function_name="shop")
    body = json.dumps({"password": "SECRET-BODY", "item": "x" * 200}).encode()
    failed = runtime.call(
        "/acme/shop?code=500&api_key=SECRET-QUERY&page=2", "POST", content=body,
        headers={"Authorization": "Bearer SECRET-AUTH", "Cookie": "sid=SECRET-COOKIE",
                 "X-My-Token": "SECRET-TOKEN", "Content-Type": "application/json", "X-Trace": "visible"},
    )  # fmt: skip
    assert failed.status_code == 500
    assert (
        runtime.call("/acme/shop?code=200", headers={"Authorization": "Bearer SECRET-AUTH"}).status_code
        == 200
    )
    assert runtime.call("/acme/shop?code=404").status_code == 404  # not a 5xx
    assert runtime.call("/acme/shop?code=503").status_code == 503

    entries = captured(ACME, "shop", 2)
    quiet()
    entries = [fields for _, fields in raw_entries(ACME, "shop")]
    assert [e["status"] for e in entries] == ["500", "503"]
    first = entries[0]
    assert (first["fission_function"], first["trigger_path"], first["method"]) == (
        "shop",
        "/acme/shop",
        "POST",
    )
    assert first["path"] == f"/?code=500&api_key={REDACTED}&page=2"  # as the function saw it
    assert first["request_id"] == failed.headers["X-Fission-Request-ID"]
    headers = {name.lower(): value for name, value in json.loads(first["headers"])}
    assert headers["authorization"] == headers["cookie"] == headers["x-my-token"] == REDACTED
    assert headers["x-trace"] == "visible"
    assert not any(name.startswith(("x-fission-request", "x-fission-function")) for name in headers)
    assert headers["x-fission-full-url"] == f"/acme/shop?code=500&api_key={REDACTED}&page=2"
    stored = base64.b64decode(first["body"])
    assert stored == json.dumps({"password": REDACTED, "item": "x" * 200}).encode()[:40]
    assert (first["body_truncated"], first["response_truncated"]) == ("1", "1")
    assert base64.b64decode(first["response_body"]) == ("answer-" + "z" * 100).encode()[:40]
    response_headers = {n.lower(): v for n, v in json.loads(first["response_headers"])}
    assert response_headers["set-cookie"] == REDACTED
    assert response_headers["x-served-by"] == "shop"
    assert "x-fission-request-id" not in response_headers
    assert float(first["duration_ms"]) > 0
    assert abs(float(first["time"]) - time.time()) < 60
    assert (entries[1]["body"], entries[1]["body_truncated"]) == ("", "0")

    # No secret reaches the store, in any field, encoded or not.
    for _, fields in raw_entries(ACME, "shop"):
        text = json.dumps(fields) + "".join(base64.b64decode(fields[k]).decode("latin-1")
                                            for k in ("body", "response_body"))  # fmt: skip
        assert not any(secret in text for secret in SECRETS), text


@pytest.mark.usefixtures("clean")
def test_the_stream_keeps_exactly_the_newest_max_requests(runtime: RuntimeProcess) -> None:
    deploy(runtime, ACME, "shop")
    route(runtime, ACME, "shop", "/acme/shop", policy(codes=[500], max_requests=3), function_name="shop")
    ids = [runtime.call("/acme/shop?code=500").headers["X-Fission-Request-ID"] for _ in range(7)]
    wait_until(lambda: [f["request_id"] for _, f in raw_entries(ACME, "shop")] == ids[-3:], timeout=10)
    client = _redis()
    assert client.xlen(captures_stream(ACME, "shop")) == 3
    assert 0 < client.ttl(captures_stream(ACME, "shop")) <= 259200  # the key goes with its retention
    client.close()


@pytest.mark.usefixtures("clean")
def test_triggers_without_a_policy_or_with_a_bad_one_capture_nothing_but_route(
    runtime: RuntimeProcess,
) -> None:
    deploy(runtime, ACME, "shop")
    route(runtime, ACME, "plain", "/acme/plain", None, function_name="shop")
    route(runtime, ACME, "bad", "/acme/bad", '{"function": "shop", "codes": [700]}', function_name="shop")
    route(runtime, ACME, "good", "/acme/good", policy(), function_name="shop")
    assert runtime.call("/acme/plain?code=500").status_code == 500
    assert runtime.call("/acme/bad?code=500").status_code == 500
    # Queued calls are not captured, though this one answers 500 when the dispatcher makes it.
    assert (
        runtime.call("/acme/good?code=500", "POST", headers={"X-Faas-Invocation-Type": "Event"}).status_code
        == 202
    )
    assert runtime.call("/acme/good?code=502").status_code == 502  # the one call that is captured
    entries = captured(ACME, "shop", 1)
    quiet()
    entries = [fields for _, fields in raw_entries(ACME, "shop")]
    assert [(e["trigger_path"], e["status"]) for e in entries] == [("/acme/good", "502")]
    client = _redis()
    assert sorted(client.scan_iter(match="runtime:captures:*")) == [captures_stream(ACME, "shop")]
    client.close()


@pytest.mark.usefixtures("clean")
def test_a_namespaces_captures_go_to_its_own_stream_only(runtime: RuntimeProcess) -> None:
    client = _redis()
    client.xadd(captures_stream(GLOBEX, "shop"), {"status": "500", "request_id": "globex-own"})
    deploy(runtime, ACME, "shop")
    deploy(runtime, GLOBEX, "shop")
    route(runtime, ACME, "shop", "/acme/shop", policy(), function_name="shop")
    route(runtime, GLOBEX, "shop", "/globex/shop", policy(), function_name="shop")
    for _ in range(2):
        assert runtime.call("/acme/shop?code=500").status_code == 500
    captured(ACME, "shop", 2)
    quiet()
    globex = raw_entries(GLOBEX, "shop")
    assert [fields["request_id"] for _, fields in globex] == ["globex-own"]  # untouched
    assert runtime.call("/globex/shop?code=500").status_code == 500
    assert len(captured(GLOBEX, "shop", 2)) == 2
    assert len(raw_entries(ACME, "shop")) == 2
    client.close()


# --- the direct call of one version --------------------------------------------------------------


def call_url(runtime: RuntimeProcess, namespace: str, name: str) -> str:
    return f"{runtime.control}/apis/fission.io/v1/namespaces/{namespace}/functions/{name}/call"


def direct(
    runtime: RuntimeProcess, namespace: str, name: str, body: dict[str, Any], **kw: Any
) -> httpx.Response:
    headers = kw.pop("headers", AUTH)
    return httpx.post(call_url(runtime, namespace, name), json=body, headers=headers, timeout=60, **kw)


def test_a_direct_call_reaches_exactly_the_named_version(runtime: RuntimeProcess) -> None:
    for version in ("who-v1", "who-v2"):
        deploy(runtime, ACME, version, WHO.replace("NAME", version))
    # The alias sends everything to v1: a direct call of v2 must not follow it.
    route(runtime, ACME, "who", "/acme/who", None, weights={"who-v1": 100, "who-v2": 0})
    request = {"method": "POST", "path": "/?q=1", "body": base64.b64encode(b"payload").decode(),
               "headers": [["Content-Type", "text/plain"], ["X-Fission-Function-Name", "spoofed"],
                           ["X-Fission-Params-Id", "7"], ["Authorization", REDACTED]]}  # fmt: skip
    for version in ("who-v2", "who-v1", "who-v2"):
        response = direct(
            runtime, ACME, version, request, headers={**AUTH, "X-Fission-Request-ID": f"replay-{version}"}
        )
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["status"] == 201
        assert answer["request_id"] == f"replay-{version}"
        assert answer["duration_ms"] > 0
        seen = json.loads(base64.b64decode(answer["body"]))
        assert seen["me"] == version
        assert (seen["method"], seen["full_path"], seen["body"]) == ("POST", "/?q=1", "payload")
        assert seen["headers"]["X-Fission-Function-Name"] == version  # the runtime's, not the caller's
        assert seen["headers"]["X-Fission-Request-Id"] == f"replay-{version}"
        assert seen["headers"]["X-Fission-Params-Id"] == "7"
        assert ["Content-Type", "text/html; charset=utf-8"] in answer["headers"]
    assert json.loads(runtime.call("/acme/who").text)["me"] == "who-v1"


def test_a_direct_call_is_refused_without_the_token_for_another_namespace_and_for_a_bad_body(
    runtime: RuntimeProcess,
) -> None:
    deploy(runtime, ACME, "who", WHO)
    deploy(runtime, ACME, "broken", BROKEN)
    assert direct(runtime, ACME, "who", {}, headers={}).status_code == 401
    assert direct(runtime, GLOBEX, "who", {}).status_code == 404  # acme's function, globex's URL
    assert direct(runtime, ACME, "nosuch", {}).status_code == 404
    bad_bodies: list[tuple[dict[str, Any], str]] = [
        ({"method": "BREW"}, "method"), ({"path": "no-slash"}, "path"), ({"body": "%%%"}, "body"),
        ({"headers": {"a": "b"}}, "headers"), ({"headers": [["a b", "c"]]}, "headers[0]"),
    ]  # fmt: skip
    for bad, field in bad_bodies:
        response = direct(runtime, ACME, "who", bad)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["detail"]["field"] == field
    # A function that does not load is an answer, as a router's caller would get it.
    response = direct(runtime, ACME, "broken", {"path": "/"})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == 502
    assert direct(runtime, ACME, "who", {}).json()["status"] == 201  # defaults: GET /, no body
