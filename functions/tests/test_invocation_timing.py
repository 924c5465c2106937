"""A test call's duration split into the portal's round trip and what the router measured
(its Server-Timing header, runtime/timing.py): kept per invocation, shown in words in the test
panel and its history, exposed read-only by the API; nothing kept, and said so, when the router
says nothing (Fission's never does)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.template.defaultfilters import floatformat
from django.utils.html import strip_tags
from django_tenants.utils import tenant_context

from dataplane.backends import local
from dataplane.backends.base import InvokeResult
from functions.models import Invocation
from functions.services import invocations
from testsupport.fission import environment, function, httptrigger, package_literal

pytestmark = pytest.mark.django_db
NS = "faas-acme"
INVOKE = "/t/acme/functions/hello/invoke/"
CALL = {"method": "GET", "path": "/hello", "headers": "{}", "body": ""}
# Sleeps, so that the function's own time is known to be at least 20 ms.
SLEEPS = "import time\n\ndef main():\n    time.sleep(0.02)\n    return 'slept'\n"


def _text(html: str) -> str:
    return " ".join(strip_tags(html).split())


def _attrs(html: str, marker: str) -> dict[str, str]:
    """The data- attributes of the first element that has the attribute ``marker``."""
    tag = re.search(rf"<[a-z]+ [^>]*\b{marker}\b[^>]*>", html)
    assert tag is not None, f"no element with {marker}"
    return dict(re.findall(r'(data-[a-z-]+)="([^"]*)"', tag.group(0)))


def _stored_call(hello: Any) -> Invocation:
    """A test call of ``/hello`` (inside the tenant), as stored."""
    invocation = invocations.invocation_create(
        function=hello, method="GET", path="/hello", headers={}, body=""
    )
    return Invocation.objects.get(pk=invocation.pk)


def _answer(monkeypatch: pytest.MonkeyPatch, headers: dict[str, str], status: int = 200) -> None:
    """The backend answers this, with no logs (the call does not reach a router)."""
    result = InvokeResult(status=status, headers=headers, body=b"ok", duration_ms=168.37, request_id="r")
    monkeypatch.setattr(local.LocalBackend, "invoke", lambda self, *args, **kwargs: result)
    monkeypatch.setattr(local.LocalBackend, "logs", lambda self, *args, **kwargs: [])


# ---------------------------------------------------------------- reading the header


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"server-timing": "router;dur=2.104, function;dur=1.432"}, (2.104, 1.432)),
        ({"Server-Timing": "router;dur=2.104, function;dur=1.432"}, (2.104, 1.432)),  # any case
        ({"server-timing": "router;dur=0.3"}, (0.3, None)),  # no worker answered
        # a function's own figures first (httpx joins repeated headers), the router's last
        ({"server-timing": "router;dur=0, function;dur=0, router;dur=5, function;dur=4"}, (5.0, 4.0)),
        ({}, (None, None)),
        ({"server-timing": ""}, (None, None)),
        ({"server-timing": "router;dur=fast"}, (None, None)),
        ({"server-timing": "router;dur=-3, function;dur=1"}, (None, None)),
        ({"server-timing": "db;dur=7"}, (None, None)),
    ],
)
def test_the_routers_figures_are_read_from_its_header(headers, expected):
    assert invocations._router_timing(headers) == expected


def test_on_kubernetes_the_header_is_not_believed(settings):
    # Fission's router sends none, and passes a function's own through: it is not the router's.
    settings.PORTAL_BACKEND = "kubernetes"
    assert invocations._router_timing({"server-timing": "router;dur=2, function;dur=1"}) == (None, None)


@pytest.mark.parametrize("value", [None, "router;dur=fast, function;dur=", '"unterminated;dur=1'])
def test_a_missing_or_malformed_header_keeps_nothing_and_is_no_error(world, hello, monkeypatch, value):
    _answer(monkeypatch, {} if value is None else {"server-timing": value})
    with tenant_context(world.acme):
        stored = _stored_call(hello)
    assert (stored.status, stored.duration_ms) == (200, 168.37)
    assert (stored.router_ms, stored.function_ms) == (None, None)


# ---------------------------------------------------------------- against the real local runtime


@pytest.fixture
def deployed(world: Any, runtime_session: Any) -> Iterator[Any]:
    """Portal function ``hello``'s route, ``/acme/hello``, served by the session's runtime (with
    ``SLEEPS``); the namespace emptied before and after, as it is shared by the session."""
    runtime_session.wipe(NS)
    objects = (
        environment(NS, "python"), package_literal(NS, "hello-pkg", SLEEPS),
        function(NS, "hello", package="hello-pkg"), httptrigger(NS, "hello", "/acme/hello"),
    )  # fmt: skip
    for obj in objects:
        response = runtime_session.apply(obj)
        assert response.status_code in (200, 201), response.text
    yield runtime_session
    runtime_session.wipe(NS)


def test_a_test_call_keeps_what_the_router_measured(world, hello, deployed):
    with tenant_context(world.acme):
        stored = _stored_call(hello)
    assert (stored.status, stored.response_body) == (200, "slept")
    assert stored.router_ms is not None
    assert stored.function_ms is not None
    assert stored.duration_ms is not None
    assert stored.function_ms >= 20  # the function slept 20 ms
    # Each contains the next: the portal's round trip, the router's time, the worker's.
    assert stored.function_ms <= stored.router_ms <= stored.duration_ms


def test_the_panel_and_its_history_show_the_split(world, hello, client, deployed):
    client.force_login(world.bob)
    response = client.post(INVOKE, CALL)
    assert response.status_code == 200
    html = response.content.decode()
    with tenant_context(world.acme):
        stored = Invocation.objects.get()
    assert stored.router_ms is not None
    assert stored.function_ms is not None
    timing = _attrs(html, "data-timing")
    assert float(timing["data-router-ms"]) == stored.router_ms
    assert float(timing["data-function-ms"]) == stored.function_ms
    assert float(timing["data-round-trip-ms"]) == stored.duration_ms
    text = _text(html)
    # Django rounds half up (decimally): Python's format would say 2.10 where the page says 2.11.
    trip, router, took = (floatformat(v, n) for v, n in ((stored.duration_ms, 1), (stored.router_ms, 2),
                                                          (stored.function_ms, 2)))  # fmt: skip
    assert f"Round trip {trip} ms (through the portal) · router {router} ms · function {took} ms" in text
    assert "includes the portal's own call to the router" in text
    assert "did not report" not in text
    row = _attrs(html, "data-split")  # the history row, sent along out of band
    assert float(row["data-router-ms"]) == stored.router_ms
    assert float(row["data-function-ms"]) == stored.function_ms
    assert f"(router {router} ms · function {took} ms)" in text
    assert "data-status>200<" in html  # what the browser tests look for is still there


def test_without_the_routers_figures_the_panel_says_so(world, hello, client, monkeypatch):
    _answer(monkeypatch, {})  # as through Fission's router: no Server-Timing
    client.force_login(world.bob)
    response = client.post(INVOKE, CALL)
    assert response.status_code == 200
    html = response.content.decode()
    said = "Round trip 168.4 ms · the router did not report its time (Fission's router does not)"
    assert said in _text(html)
    timing = _attrs(html, "data-timing")
    assert timing["data-round-trip-ms"] == "168.37"
    assert "data-router-ms" not in timing
    assert "data-function-ms" not in timing
    assert "data-split" not in html  # the history row has the round trip only


def test_a_call_no_worker_answered_has_the_routers_figure_only(world, hello, client, monkeypatch):
    _answer(monkeypatch, {"server-timing": "router;dur=0.25"}, status=502)
    client.force_login(world.bob)
    html = client.post(INVOKE, CALL).content.decode()
    assert "router 0.25 ms · no function time: no worker answered" in _text(html)
    assert "data-function-ms" not in html


def test_the_api_shows_the_figures(world, hello, api, monkeypatch):
    _answer(monkeypatch, {"server-timing": "router;dur=2.5, function;dur=1.25"})
    client = api(world.bob)
    answer = client.post("/t/acme/api/v1/functions/hello/invoke/", {"path": "/hello"}, format="json")
    assert answer.status_code == 201, answer.content
    assert (answer.json()["router_ms"], answer.json()["function_ms"]) == (2.5, 1.25)
    listed = client.get("/t/acme/api/v1/functions/hello/invocations/").json()["results"][0]
    assert (listed["router_ms"], listed["function_ms"]) == (2.5, 1.25)
