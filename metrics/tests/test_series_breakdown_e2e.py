"""Series per version and per alias end to end: a function with two versions, an alias that
splits its calls between them and one that sends all to v2, real calls through the router, and
a real Prometheus scraping the runtime every second. The lines must add up to the calls each
version answered and each alias' paths received."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from django_tenants.utils import schema_context

from functions.models import Function
from metrics import live, selectors
from metrics.hub import MetricsTopic
from metrics.selectors import Breakdown, TimeRange
from testsupport.e2e import create_function, deploy_and_wait, functions_api
from testsupport.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]
V1 = "def main():\n    return 'v1'\n"
V2 = """from flask import request

def main():
    if request.args.get("fail"):
        return "boom", 500
    return "v2"
"""
LIVE_CALLS, LIVE_FAILING, BETA_CALLS, BETA_FAILING = 16, 6, 3, 1


@dataclass
class Canary:
    name: str  # new in each test: the runtime's counters outlive a test's tenant
    router: str


def deploy_canary(client: Any, name: str) -> None:
    """``name`` with v1 and v2; alias ``live`` (v1, 50% to v2) on ``/<name>``, alias ``beta``
    (v2) on ``/<name>-beta``, alias ``idle`` that no trigger serves; the draft on
    ``/<name>-draft``; deployed."""
    api = functions_api()
    create_function(client, name, {"main.py": V1}, f"/{name}-draft")
    deploy_and_wait(client, name)
    assert client.post(f"{api}/{name}/versions/", {}, format="json").json()["number"] == 1
    assert client.put(f"{api}/{name}/code/", {"files": {"main.py": V2}}, format="json").status_code == 200
    deploy_and_wait(client, name)
    assert client.post(f"{api}/{name}/versions/", {}, format="json").json()["number"] == 2
    for alias in (
        {"name": "live", "version": 1, "canary_version": 2, "canary_weight": 50},
        {"name": "beta", "version": 2},
        {"name": "idle", "version": 1},
    ):
        assert client.post(f"{api}/{name}/aliases/", alias, format="json").status_code == 200
    for trigger, path, target in (
        (f"{name}-live", f"/{name}", "live"),
        (f"{name}-beta", f"/{name}-beta", "beta"),
    ):
        body = {"name": trigger, "methods": ["GET"], "path": path, "target_kind": "alias", "alias": target}
        assert client.post(f"{api}/{name}/triggers/", body, format="json").status_code == 201
    deploy_and_wait(client, name)


@pytest.fixture
def canary(stack: Any, prometheus: Any, api: Any, world: Any) -> Canary:
    name = f"cn-{uuid.uuid4().hex[:6]}"
    deploy_canary(api(world.alice), name)
    return Canary(name, stack.router)


def _call(canary: Canary) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]]]:
    """Calls through both aliases: (calls, errors) per version, as the answers say which version
    served each call, and per alias."""
    by_version: Counter[tuple[str, str]] = Counter()
    by_alias: Counter[tuple[str, str]] = Counter()
    with httpx.Client(base_url=f"{canary.router}/acme", timeout=30) as client:
        for alias, path, plain, failing in (
            ("live", f"/{canary.name}", LIVE_CALLS, LIVE_FAILING),
            ("beta", f"/{canary.name}-beta", BETA_CALLS, BETA_FAILING),
        ):
            for query in [""] * plain + ["?fail=1"] * failing:
                response = client.get(path + query)
                version = "v2" if response.status_code == 500 else response.text
                assert version in ("v1", "v2"), response.text
                failed = "errors" if response.status_code >= 400 else "ok"
                by_version[(version, failed)] += 1
                by_alias[(alias, failed)] += 1

    def summed(counts: Counter[tuple[str, str]]) -> dict[str, tuple[int, int]]:
        keys = sorted({key for key, _ in counts})
        return {key: (counts[(key, "ok")] + counts[(key, "errors")], counts[(key, "errors")]) for key in keys}

    return summed(by_version), summed(by_alias)


def _sums(found: selectors.SeriesBreakdown) -> dict[str, tuple[int, int]]:
    """(calls, errors) of each line that counted any."""
    sums = {
        line.key: (
            sum(int(v or 0) for _, v in line.points["calls"]),
            sum(int(v or 0) for _, v in line.points["errors"]),
        )
        for line in found.lines
    }
    return {key: counts for key, counts in sums.items() if counts != (0, 0)}


def _complete(found: selectors.SeriesBreakdown) -> bool:
    """Every step with calls has its p95 too (a scrape can land between the queries)."""
    return all(
        p95 is not None
        for line in found.lines
        for (_, calls), (_, p95) in zip(line.points["calls"], line.points["p95"], strict=True)
        if calls
    )


def _series(world: Any, name: str, by: Breakdown) -> selectors.SeriesBreakdown:
    with schema_context(world.acme.schema_name):
        function = Function.objects.get(name=name)
        return selectors.function_series_breakdown(function, time_range=TimeRange.M5, by=by)


def test_lines_per_version_and_per_alias_add_up_to_the_calls(canary: Canary, world: Any, api: Any) -> None:
    per_version, per_alias = _call(canary)
    assert set(per_version) == {"v1", "v2"}  # 22 calls split 50/50: both versions served some

    def drawn(by: Breakdown, expected: dict[str, tuple[int, int]]) -> selectors.SeriesBreakdown | None:
        found = _series(world, canary.name, by)
        return found if _sums(found) == expected and _complete(found) else None

    versions = wait_until(
        lambda: drawn(Breakdown.VERSION, per_version), timeout=60, interval=0.5,
        message=f"the lines per version never matched the calls {per_version}",
    )  # fmt: skip
    assert {line.key for line in versions.lines} <= {"v1", "v2", "draft"}  # the draft got no calls
    assert [line.key for line in versions.lines if line.key != "draft"] == ["v1", "v2"]
    aliases = wait_until(
        lambda: drawn(Breakdown.ALIAS, per_alias), timeout=60, interval=0.5,
        message=f"the lines per alias never matched the calls {per_alias}",
    )  # fmt: skip
    assert [line.key for line in aliases.lines] == ["beta", "live"]  # idle: no trigger, no line

    for found in (versions, aliases):
        assert found.step_s == TimeRange.M5.step_s
        for line in found.lines:
            times = [t for t, _ in line.points["calls"]]
            assert times == [found.start + i * found.step_s for i in range(len(times))]
            assert times[-1] == found.end
            for (_, calls), (_, errors), (_, rate), (_, p95) in zip(
                *(line.points[m] for m in ("calls", "errors", "error_rate", "p95")), strict=True
            ):
                if calls:
                    assert rate == round(errors / calls, 4)
                    assert p95 is not None
                    assert p95 > 0  # milliseconds of a real call
                else:
                    assert (errors, rate, p95) == (0, None, None)  # no calls: no latency, never 0


def test_the_api_and_the_live_point_carry_the_same_lines(canary: Canary, world: Any, api: Any) -> None:
    per_version, per_alias = _call(canary)
    vera = api(world.vera)
    url = f"/t/acme/api/v1/functions/{canary.name}/metrics/series/?range=5m"

    def answered(by: str, expected: dict[str, tuple[int, int]]) -> dict[str, Any] | None:
        body = vera.get(f"{url}&by={by}").json()
        sums = {
            line["key"]: (
                sum(v for _, v in line["series"]["calls"]),
                sum(v for _, v in line["series"]["errors"]),
            )
            for line in body["lines"]
        }
        # The totals are queries of their own: a scrape may land between them and the lines'.
        totals = sum(v for _, v in body["series"]["calls"])
        lines_match = {k: v for k, v in sums.items() if v != (0, 0)} == expected
        return body if lines_match and totals == sum(c for c, _ in expected.values()) else None

    body = wait_until(lambda: answered("alias", per_alias), timeout=60, interval=0.5,
                      message="the API's lines per alias (and totals) never matched the calls")  # fmt: skip
    assert (body["function"], body["range"], body["by"], body["step_s"]) == (canary.name, "5m", "alias", 5)
    assert [line["key"] for line in body["lines"]] == ["beta", "live"]
    assert set(body["lines"][0]["series"]) == {"calls", "errors", "error_rate", "p95"}
    assert sum(v for _, v in body["series"]["calls"]) == sum(
        c for c, _ in per_alias.values()
    )  # the totals too
    body = wait_until(lambda: answered("version", per_version), timeout=60, interval=0.5,
                      message="the API's lines per version never matched the calls")  # fmt: skip
    assert body["by"] == "version"
    plain = vera.get(url).json()
    assert (plain["by"], plain["lines"]) == (None, [])

    # The live stream's point over a step of 24 h (600 s): every call of this test is in it.
    with schema_context(world.acme.schema_name):
        routes = selectors.alias_routes(Function.objects.get(name=canary.name))
    born = world.acme.created_at.timestamp()
    for by, routes_of, expected in (("version", (), per_version), ("alias", routes, per_alias)):
        topic = MetricsTopic(world.acme.schema_name, "faas-acme", canary.name, 60, "24h", born, by, routes_of)
        point = live.poll(topic)["breakdown"]
        counted = {key: (round(p["calls"] or 0), round(p["errors"] or 0)) for key, p in point.items()}
        assert {k: v for k, v in counted.items() if v != (0, 0)} == expected, (by, point)
        for key in expected:
            assert point[key]["p95"] is not None
            assert point[key]["p95"] > 0
            assert point[key]["error_rate"] == round(expected[key][1] / expected[key][0], 4)
    assert time.time() - born < 600  # the premise of the point above
