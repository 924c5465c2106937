"""Metrics and logs end to end: real Celery worker, runtime, router, ASGI server and a real
Prometheus scraping the runtime (and the portal) every second."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from testsupport.e2e import create_function, deploy_and_wait
from testsupport.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]
CODE = """from flask import request

def main():
    if request.args.get("say"):
        print("said", request.args["say"])
    if request.args.get("fail"):
        return "boom", 500
    return "ok"
"""
API = "/t/acme/api/v1"
CALLS, FAILURES = 7, 3


@dataclass
class Deployed:
    name: str  # new in each test: the runtime's counters outlive a test's tenant
    router: str

    def call(self, query: str = "", tenant: str = "acme") -> httpx.Response:
        return httpx.get(f"{self.router}/{tenant}/{self.name}{query}", timeout=30)


@pytest.fixture
def hello(stack: Any, prometheus: Any, api: Any, world: Any) -> Deployed:
    name = f"hello-{uuid.uuid4().hex[:6]}"
    alice = api(world.alice)
    create_function(alice, name, {"main.py": CODE}, f"/{name}")
    deploy_and_wait(alice, name)
    return Deployed(name, stack.router)


@contextmanager
def live(live_server_url: str, tenant: str, secret: str) -> Iterator[ClientConnection]:
    url = live_server_url.replace("http://", "ws://") + f"/t/{tenant}/ws/live/"
    with connect(url, additional_headers={"Authorization": f"Bearer {secret}"}, open_timeout=10) as socket:
        yield socket


def frames(socket: ClientConnection, kind: str, timeout: float) -> Iterator[dict[str, Any]]:
    """Frames of ``kind`` until ``timeout`` seconds have passed (TimeoutError then)."""
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(socket.recv(timeout=max(0.01, deadline - time.monotonic())))
        if frame["type"] == kind:
            yield frame


def subscribe(socket: ClientConnection, **subscription: Any) -> dict[str, Any]:
    socket.send(json.dumps({"type": "subscribe", **subscription}))
    reply: dict[str, Any] = json.loads(socket.recv(timeout=10))
    assert reply["type"] == "subscribed", reply
    return reply


def _call_k_times(hello: Deployed) -> None:
    for _ in range(CALLS):
        assert hello.call().text == "ok"
    for _ in range(FAILURES):
        assert hello.call("?fail=1").status_code == 500


def test_after_k_calls_the_api_reports_k_calls_and_the_errors(hello: Deployed, api: Any, world: Any) -> None:
    _call_k_times(hello)
    vera = api(world.vera)

    def reported() -> dict[str, Any] | None:
        # Counts and percentiles are separate queries over what Prometheus has ingested so far:
        # wait until both have seen the calls (a scrape can land between them).
        body = vera.get(f"{API}/functions/{hello.name}/metrics/?range=15m&by=version").json()
        totals = body["totals"]
        seen = totals["calls"] == CALLS + FAILURES and None not in totals["latency_ms"].values()
        return body if seen else None

    stats = wait_until(reported, timeout=30, interval=0.5, message="Prometheus never reported the calls")
    totals = stats["totals"]
    assert (totals["errors"], totals["error_rate"]) == (FAILURES, 0.3)
    assert totals["cold_starts"] == 1  # one poolmgr specialization served every call
    assert all(totals["latency_ms"][p] > 0 for p in ("p50", "p95", "p99"))
    assert stats["breakdown"] == [{"key": "draft", "calls": 10, "errors": 3, "error_rate": 0.3}]
    by_path = vera.get(f"{API}/functions/{hello.name}/metrics/?range=15m&by=path").json()["breakdown"]
    assert by_path == [{"key": f"/{hello.name}", "calls": 10, "errors": 3, "error_rate": 0.3}]
    only_path = vera.get(f"{API}/functions/{hello.name}/metrics/?range=15m&path=/{hello.name}").json()[
        "totals"
    ]
    assert (only_path["calls"], only_path["errors"]) == (10, 3)

    overview = vera.get(f"{API}/metrics/?range=15m").json()
    assert overview["top_by_calls"] == [{"key": hello.name, "calls": 10, "errors": 3, "error_rate": 0.3}]
    assert [row["key"] for row in overview["top_by_errors"]] == [hello.name]

    def charted() -> dict[str, Any] | None:
        body = vera.get(f"{API}/functions/{hello.name}/metrics/series/?range=5m").json()
        return body if sum(v for _, v in body["series"]["calls"]) == 10 else None

    series = wait_until(charted, timeout=30, interval=0.5, message="the chart never added up to the calls")
    assert sum(v for _, v in series["series"]["errors"]) == 3
    assert series["step_s"] == 5
    assert any(v is not None for _, v in series["series"]["p99"])


def test_the_function_reports_what_its_asynchronous_calls_did(hello: Deployed, api: Any, world: Any) -> None:
    alice = api(world.alice)
    assert (
        alice.patch(f"{API}/functions/{hello.name}/", {"async_retries": 0}, format="json").status_code == 200
    )
    deploy_and_wait(alice, hello.name)
    event = {"X-Faas-Invocation-Type": "Event"}
    for query in ("?fail=1", "?fail=1", ""):
        response = httpx.get(f"{hello.router}/acme/{hello.name}{query}", headers=event, timeout=30)
        assert response.status_code == 202

    def reported() -> dict[tuple[str, str], int] | None:
        events = alice.get(f"{API}/functions/{hello.name}/metrics/?range=15m").json()["events"]
        found = {(row["kind"], row["outcome"]): row["count"] for row in events}
        return (
            found if found.get(("async", "dead_lettered")) == 2 and ("async", "succeeded") in found else None
        )

    found = wait_until(reported, timeout=30, interval=0.5, message="Prometheus never reported the events")
    assert found == {("async", "accepted"): 3, ("async", "succeeded"): 1, ("async", "dead_lettered"): 2}
    page = alice.get(f"/t/acme/functions/{hello.name}/metrics/figures/").content.decode()
    assert "dead_lettered" in page


def test_another_tenant_sees_none_of_it(hello: Deployed, api: Any, world: Any) -> None:
    oscar = api(world.oscar)
    create_function(oscar, hello.name, {"main.py": CODE}, f"/{hello.name}", tenant="globex")
    _call_k_times(hello)
    vera = api(world.vera)
    wait_until(
        lambda: vera.get(f"{API}/functions/{hello.name}/metrics/?range=15m").json()["totals"]["calls"] == 10,
        timeout=30, interval=0.5, message="acme's calls never showed",
    )  # fmt: skip
    theirs = oscar.get(f"/t/globex/api/v1/functions/{hello.name}/metrics/?range=15m").json()["totals"]
    assert (theirs["calls"], theirs["errors"]) == (0, 0)
    top = oscar.get("/t/globex/api/v1/metrics/?range=15m").json()["top_by_calls"]
    assert hello.name not in [row["key"] for row in top]
    assert oscar.get(f"{API}/functions/{hello.name}/metrics/").status_code == 404


def test_a_websocket_client_gets_the_metrics_and_a_printed_line_within_a_second(
    hello: Deployed, live_server_url: str, world: Any, token_for: Any
) -> None:
    secret = token_for(world.vera, world.acme, "viewer")
    with live(live_server_url, "acme", secret) as socket:
        subscribe(socket, stream="logs", function=hello.name)
        assert hello.call("?say=hi-from-e2e").text == "ok"
        line = next(frames(socket, "logs", timeout=1.0))  # the acceptance: within 1 s of the call
        assert [(r["function"], r["message"]) for r in line["records"]] == [(hello.name, "said hi-from-e2e")]

        subscribe(socket, stream="metrics", function=hello.name, interval=1, range="5m")
        for frame in frames(socket, "metrics", timeout=30):
            if frame["data"]["totals"]["calls"] == 1:
                break
        assert frame["data"]["point"]["t"] <= frame["at"]
        assert frame["key"] == f"metrics:{hello.name}:1:5m"


def test_tenant_b_cannot_subscribe_to_tenant_a(
    hello: Any, live_server_url: str, world: Any, token_for: Any
) -> None:
    oscar = token_for(world.oscar, world.globex, "admin")
    with pytest.raises(InvalidStatus) as refused, live(live_server_url, "acme", oscar):
        pass
    assert refused.value.response.status_code == 403  # refused before the handshake completes
    with live(live_server_url, "globex", oscar) as socket:
        socket.send(json.dumps({"type": "subscribe", "stream": "logs", "function": hello.name}))
        assert json.loads(socket.recv(timeout=10))["error"]["code"] == "not_found"
        subscribe(socket, stream="logs")  # all of globex: acme's lines never come
        assert hello.call("?say=acme-only").text == "ok"
        with pytest.raises(TimeoutError):
            next(frames(socket, "logs", timeout=1.5))


def test_the_portal_reports_its_own_requests_and_tasks_to_prometheus(
    hello: Deployed, prometheus: Any
) -> None:
    def scraped(query: str) -> bool:
        return bool(prometheus.query(query))

    wait_until(
        lambda: scraped('portal_celery_tasks_total{task="functions.deploy",outcome="succeeded"} > 0'),
        timeout=30, interval=0.5, message="the deploy task's outcome never reached Prometheus",
    )  # fmt: skip
    wait_until(lambda: scraped("portal_http_requests_total > 0"), timeout=30, interval=0.5)
