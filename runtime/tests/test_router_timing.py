"""The router's ``Server-Timing`` header (runtime/timing.py): what it writes, how the portal reads
it back, and, through a real runtime, that every answer given through a route carries plausible
figures: the function's at most the router's, the router's the one its latency histogram got."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from runtime.timing import parse, server_timing
from testsupport.fission import environment, function, httptrigger, package_literal
from testsupport.runtime import RuntimeProcess

NS = "faas-acme"
R = "/acme"
SLEEPS = "import time\n\ndef main():\n    time.sleep(0.05)\n    return 'slept'\n"
# A function with Server-Timing figures of its own, named as the router's.
BOASTS = """
def main():
    return "fast", 200, {"Server-Timing": "router;dur=0.001, function;dur=0.001, db;dur=7"}
"""
HELLO = "def main():\n    return 'hello'\n"

# ---------------------------------------------------------------- pure parts, no runtime


def test_the_header_has_both_figures_in_milliseconds():
    assert server_timing(2_104_000, 1_432_400) == b"router;dur=2.104, function;dur=1.432"
    assert parse(server_timing(2_104_000, 1_432_400).decode()) == (2.104, 1.432)


def test_without_a_worker_the_header_has_the_routers_figure_only():
    assert server_timing(310_000, -1) == b"router;dur=0.310"
    assert parse("router;dur=0.310") == (0.31, None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, (None, None)),
        ("", (None, None)),
        ("garbage", (None, None)),
        (";;,,=", (None, None)),
        ("router", (None, None)),  # no duration
        ("router;dur=abc, function;dur=1", (None, None)),
        ("router;dur=-1, function;dur=1", (None, None)),
        ("router;dur=nan", (None, None)),
        ("router;dur=inf", (None, None)),
        ("router;dur=1e400", (None, None)),
        ("function;dur=1", (None, None)),  # a function figure without the router's is not the router's
        ("router;dur=2, function;dur=x", (2.0, None)),
        ('router;desc="a, b";dur=2, function;dur="1.5"', (2.0, 1.5)),
        ("Router;dur=2", (None, None)),  # metric names are case-sensitive
        ("router ; DUR = 2 , function;dur=1", (2.0, 1.0)),
        ("db;dur=5, router;dur=2, function;dur=1, cache;dur=9", (2.0, 1.0)),
    ],
)
def test_parse_takes_what_is_well_formed_and_never_raises(value, expected):
    assert parse(value) == expected


def test_parse_believes_the_last_router_entry_not_a_functions_own():
    # A function's header comes first (httpx joins repeated headers with ", "), the router's last.
    assert parse("router;dur=0.001, function;dur=0.001, router;dur=3, function;dur=2") == (3.0, 2.0)
    # A function figure before the router's last entry is not the router's.
    assert parse("function;dur=0.001, router;dur=3") == (3.0, None)


# ---------------------------------------------------------------- through a real runtime


def _deploy(runtime: RuntimeProcess, name: str, code: str) -> None:
    assert runtime.apply(package_literal(NS, f"{name}-pkg", code)).status_code in (200, 201)
    assert runtime.apply(function(NS, name, package=f"{name}-pkg")).status_code in (200, 201)


def _route(runtime: RuntimeProcess, path: str, fn: str, methods: tuple[str, ...] = ("GET", "HEAD")) -> None:
    response = runtime.apply(httptrigger(NS, fn, path, function_name=fn, methods=methods))
    assert response.status_code in (200, 201), response.text


@pytest.fixture(scope="module")
def timed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    process = RuntimeProcess(state_dir=tmp_path_factory.mktemp("router-timing")).start()
    try:
        assert process.apply(environment(NS, "python", poolsize=1)).status_code in (200, 201)
        for name, code in (("sleeps", SLEEPS), ("boasts", BOASTS), ("hello", HELLO)):
            _deploy(process, name, code)
            _route(process, f"{R}/{name}", name)
        _route(process, f"{R}/missing", "missing")  # a route to a function that does not exist
        yield process
    finally:
        process.stop()


def _figures(response: httpx.Response) -> tuple[float | None, float | None]:
    return parse(response.headers.get("server-timing"))


def test_a_call_reports_the_routers_and_the_functions_time(timed):
    response = timed.call(f"{R}/sleeps")
    assert (response.status_code, response.text) == (200, "slept")
    router_ms, function_ms = _figures(response)
    assert router_ms is not None, response.headers
    assert function_ms is not None, response.headers
    assert 0 <= function_ms <= router_ms
    assert function_ms >= 50  # the function slept 50 ms: the worker's time is in the figure
    assert "x-fission-request-id" in response.headers  # the other headers as before


def test_an_answer_to_head_reports_both_too(timed):
    response = timed.call(f"{R}/hello", "HEAD")
    assert (response.status_code, response.content) == (200, b"")
    router_ms, function_ms = _figures(response)
    assert router_ms is not None
    assert function_ms is not None
    assert 0 <= function_ms <= router_ms


def test_a_functions_own_server_timing_goes_through_ahead_of_the_routers(timed):
    response = timed.call(f"{R}/boasts")
    assert response.status_code == 200
    values = response.headers.get_list("server-timing")
    assert values[0] == "router;dur=0.001, function;dur=0.001, db;dur=7"  # the function's, unchanged
    assert re.fullmatch(r"router;dur=\d+\.\d{3}, function;dur=\d+\.\d{3}", values[-1])
    assert parse(response.headers["server-timing"]) == parse(values[-1])  # the router's is believed


def test_no_worker_answered_so_only_the_routers_figure(timed):
    response = timed.call(f"{R}/missing")
    assert response.status_code == 502
    router_ms, function_ms = _figures(response)
    assert router_ms is not None
    assert router_ms >= 0
    assert function_ms is None
    assert "function;" not in response.headers["server-timing"]


def test_a_queued_call_reports_the_routers_figure_only(timed):
    # 202 with Redis, 503 without: answered through the route either way, no worker involved.
    response = timed.call(f"{R}/hello", "GET", headers={"X-Faas-Invocation-Type": "Event"})
    assert response.status_code in (202, 503)
    router_ms, function_ms = _figures(response)
    assert router_ms is not None
    assert router_ms >= 0
    assert function_ms is None


def test_the_routers_own_answers_carry_no_timing(timed):
    assert "server-timing" not in timed.call(f"{R}/nowhere").headers  # 404
    assert "server-timing" not in timed.call(f"{R}/hello", "POST").headers  # 405
    assert "server-timing" not in timed.call("/router-healthz").headers


def _overhead_sum(runtime: RuntimeProcess, path: str) -> float:
    """The latency histogram's sum (seconds) for the route ``path``'s GET 200 calls."""
    text = runtime.metrics()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("fission_function_overhead_seconds_sum{") and f'path="{path}"' in line:
            labels: dict[str, Any] = dict(re.findall(r'(\w+)="([^"]*)"', line))
            if (labels["method"], labels["code"]) == ("GET", "200"):
                total += float(line.rsplit(" ", 1)[1])
    return total


def test_the_routers_figure_is_what_its_latency_histogram_observed(timed):
    path = f"{R}/hello"
    before = _overhead_sum(timed, path)
    response = timed.call(path)
    assert response.status_code == 200
    router_ms, _ = _figures(response)
    assert router_ms is not None
    observed_ms = (_overhead_sum(timed, path) - before) * 1000
    assert observed_ms == pytest.approx(router_ms, abs=0.001)  # the header rounds to a microsecond
