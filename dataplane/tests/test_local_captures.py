"""The local backend's captured requests and direct calls, against a real runtime: captures()
reads and decodes a function's stream (oldest first, one tenant's only), captures_delete()
deletes some or all, deleting the tenant's namespace deletes them, call_function() reaches
exactly the version it names; on Kubernetes each says, in a sentence, that it needs the local
runtime."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
import redis

from dataplane.backends.base import CapturesNotRecorded, NotFound
from dataplane.backends.local import LocalBackend
from runtime.captures import CAPTURE_ANNOTATION, REDACTED, CapturePolicy, captures_stream
from runtime.tests.test_captures import SHOP, WHO, captured, deploy
from testsupport.fission import httptrigger
from testsupport.runtime import TOKEN, RuntimeProcess
from testsupport.services import require

ACME, GLOBEX = "faas-acme", "faas-globex"


@pytest.fixture
def backend(runtime: RuntimeProcess) -> LocalBackend:
    require("redis")
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    for key in client.scan_iter(match="runtime:captures:*"):
        client.delete(key)
    client.close()
    return LocalBackend(control_url=runtime.control, router_url=runtime.router, token=TOKEN)


def route(runtime: RuntimeProcess, namespace: str, path: str, **options: Any) -> None:
    trigger = httptrigger(namespace, "shop", path, **options)
    trigger["metadata"]["annotations"] = {CAPTURE_ANNOTATION: CapturePolicy("shop").to_annotation()}
    assert runtime.apply(trigger).status_code in (200, 201)


def test_captures_are_read_decoded_oldest_first_and_deleted(
    runtime: RuntimeProcess, backend: LocalBackend
) -> None:
    for namespace in (ACME, GLOBEX):
        deploy(runtime, namespace, "shop", SHOP)
        route(runtime, namespace, f"/{namespace.removeprefix('faas-')}/shop", function_name="shop")
    since = time.time()
    ids = []
    for code in (500, 502, 503):
        headers = {"Authorization": "Bearer abc", "Content-Type": "text/plain"}
        response = runtime.call(
            f"/acme/shop?code={code}&token=abc", "POST", content=b"order=1", headers=headers
        )
        ids.append(response.headers["X-Fission-Request-ID"])
    assert runtime.call("/globex/shop?code=500").status_code == 500
    captured(ACME, "shop", 3)
    captured(GLOBEX, "shop", 1)

    found = backend.captures(ACME, "shop")
    assert [c.request_id for c in found] == ids  # oldest first, this tenant's only
    assert [c.status for c in found] == [500, 502, 503]
    first = found[0]
    assert (first.fission_function, first.trigger_path, first.method) == ("shop", "/acme/shop", "POST")
    assert first.path == f"/?code=500&token={REDACTED}"
    assert ("Authorization", REDACTED) in first.headers
    assert ("Content-Type", "text/plain") in first.headers
    assert (first.body, first.body_truncated) == (b"order=1", False)
    assert first.response_body == ("answer-" + "z" * 100).encode()
    assert ("X-Served-By", "shop") in first.response_headers
    assert first.duration_ms > 0
    assert since - 1 <= first.time <= time.time()
    assert len(backend.captures(GLOBEX, "shop")) == 1
    assert backend.captures(ACME, "other") == []

    assert backend.captures_delete(ACME, "shop", [found[1].id, "not-an-id", "1-1"]) == 1
    assert [c.request_id for c in backend.captures(ACME, "shop")] == [ids[0], ids[2]]
    assert backend.captures_delete(ACME, "shop", None) == 2
    assert backend.captures(ACME, "shop") == []
    assert len(backend.captures(GLOBEX, "shop")) == 1  # another tenant's are untouched


def test_an_entry_past_its_retention_is_not_read(backend: LocalBackend) -> None:
    client = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    fields: dict[Any, Any] = {
        "time": "1", "fission_function": "shop-v1", "trigger_path": "/acme/shop", "method": "GET",
        "path": "/", "headers": "[]", "body": "", "body_truncated": "0", "status": "500",
        "response_headers": "[]", "response_body": "", "response_truncated": "0", "duration_ms": "1",
        "request_id": "r",
    }  # fmt: skip
    client.xadd(
        captures_stream(ACME, "shop"), {**fields, "expires": str(time.time() - 1), "request_id": "old"}
    )
    client.xadd(
        captures_stream(ACME, "shop"), {**fields, "expires": str(time.time() + 60), "request_id": "new"}
    )
    client.xadd(captures_stream(ACME, "shop"), {"status": "not one of the runtime's"})
    client.close()
    assert [c.request_id for c in backend.captures(ACME, "shop")] == ["new"]


def test_deleting_a_namespace_deletes_its_captures_only(
    runtime: RuntimeProcess, backend: LocalBackend
) -> None:
    client = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    for namespace, function in ((GLOBEX, "a"), (GLOBEX, "b"), (ACME, "a"), ("faas-globex2", "a")):
        client.xadd(captures_stream(namespace, function), {"status": "500"})
    backend.delete_namespace(GLOBEX)
    kept = sorted(client.scan_iter(match="runtime:captures:*"))
    client.close()
    assert kept == [captures_stream(ACME, "a"), captures_stream("faas-globex2", "a")]


def test_call_function_reaches_exactly_the_named_version(
    runtime: RuntimeProcess, backend: LocalBackend
) -> None:
    for version in ("who-v1", "who-v2"):
        deploy(runtime, ACME, version, WHO.replace("NAME", version))
    alias = httptrigger(ACME, "who", "/acme/who", weights={"who-v1": 100, "who-v2": 0})
    assert runtime.apply(alias).status_code in (200, 201)
    for version in ("who-v2", "who-v1"):
        answer = backend.call_function(ACME, version, method="PUT", path="/x?y=1",
                                       headers=[("X-Seen", "yes")], body=b"\x00\xffbytes",
                                       timeout_s=30)  # fmt: skip
        seen = json.loads(answer.body)
        assert (answer.status, seen["me"], seen["method"], seen["full_path"]) == (
            201,
            version,
            "PUT",
            "/x?y=1",
        )
        assert seen["headers"]["X-Seen"] == "yes"
        assert seen["headers"]["X-Fission-Request-Id"] == answer.request_id
        assert answer.duration_ms > 0
        assert ("Content-Type", "text/html; charset=utf-8") in answer.headers
    with pytest.raises(NotFound):
        backend.call_function(ACME, "who-v3", method="GET", path="/", headers=[], body=b"", timeout_s=30)
    with pytest.raises(NotFound):  # acme's version, through globex's namespace
        backend.call_function(GLOBEX, "who-v1", method="GET", path="/", headers=[], body=b"", timeout_s=30)


def test_on_kubernetes_captures_and_direct_calls_say_they_need_the_local_runtime() -> None:
    from dataplane.backends.k8s import KubernetesBackend

    k8s = KubernetesBackend.__new__(KubernetesBackend)  # these need no cluster
    for attempt in (lambda: k8s.captures(ACME, "shop"), lambda: k8s.captures_delete(ACME, "shop", None),
                    lambda: k8s.call_function(ACME, "shop-v1", method="GET", path="/", headers=[], body=b"",
                                              timeout_s=5)):  # fmt: skip
        with pytest.raises(CapturesNotRecorded, match="local runtime"):
            attempt()
