"""Series per version and per alias, without Prometheus: how a step's line is made, the API's
``by`` checked (400 in the one error shape, 404 across tenants, 503 past the checks), the page's
view switch, and the live subscription ``by`` a version or an alias.

With a real Prometheus scraping the real runtime: test_series_breakdown_e2e.py."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django_tenants.utils import schema_context

from functions.models import Build, BuildState, Draft, Function, TargetKind, Trigger
from metrics import selectors
from metrics.hub import MetricsTopic
from testsupport.fixtures import error_of
from testsupport.matrix import assert_access

SERIES = "/t/{t}/api/v1/functions/hello/metrics/series/"


def _published(world: Any) -> Function:
    """``hello`` in acme with versions 1 and 2, alias ``live`` (v1, 20% to v2) served on two
    paths, alias ``beta`` (v2) on one, and alias ``idle`` that no trigger serves."""
    from functions.services import functions, versions

    with schema_context(world.acme.schema_name):
        function = functions.function_create(name="hello")
        for sha in ("a", "b"):  # another archive each time: a new version
            Build.objects.create(
                function=function, draft_revision=Draft.objects.get(function=function).revision,
                state=BuildState.SUCCEEDED, sha256=sha * 64,
                python_version=function.environment.runtime_version,
            )  # fmt: skip
            versions.version_publish(function=function)
        live = versions.alias_set(
            function=function, name="live", version=1, canary_version=2, canary_weight=20
        )
        beta = versions.alias_set(function=function, name="beta", version=2)
        versions.alias_set(function=function, name="idle", version=1)
        for name, path, alias in (("l1", "/hello", live), ("l2", "/hello/b", live), ("b", "/beta", beta)):
            Trigger.objects.create(function=function, name=name, methods=["GET"], path=path,
                                   target_kind=TargetKind.ALIAS, alias=alias)  # fmt: skip
        Trigger.objects.create(function=function, name="d", methods=["GET"], path="/draft")
        return function


# --- a line's steps ------------------------------------------------------------------------------


def test_a_step_without_calls_has_no_error_rate_and_no_latency_never_zero() -> None:
    raw: dict[str, dict[float, float | None]] = {
        "calls": {10.0: 4.0, 20.0: 0.0}, "errors": {10.0: 1.0, 20.0: 0.0}, "p95": {10.0: 0.25, 20.0: None},
    }  # fmt: skip
    line = selectors._line("v2", raw, [10.0, 20.0, 30.0])
    assert line.key == "v2"
    assert line.points == {
        "calls": [(10.0, 4), (20.0, 0), (30.0, 0)],
        "errors": [(10.0, 1), (20.0, 0), (30.0, 0)],
        "error_rate": [(10.0, 0.25), (20.0, None), (30.0, None)],
        "p95": [(10.0, 250.0), (20.0, None), (30.0, None)],
    }


def test_a_quantile_without_calls_in_its_step_is_dropped_and_errors_never_exceed_calls() -> None:
    # The errors query saw a scrape the calls query had not: never a rate above 100%.
    raw: dict[str, dict[float, float | None]] = {
        "calls": {10.0: 2.0}, "errors": {10.0: 3.0}, "p95": {10.0: 0.1, 20.0: 0.2},
    }  # fmt: skip
    line = selectors._line("live", raw, [10.0, 20.0])
    assert line.points["error_rate"] == [(10.0, 1.0), (20.0, None)]
    assert line.points["p95"] == [(10.0, 100.0), (20.0, None)]


def test_lines_are_ordered_versions_by_number_then_the_draft_aliases_by_name() -> None:
    keys = ["draft", "v10", "v2", "beta", "live", "v1"]
    assert sorted(keys, key=selectors._line_order) == ["v1", "v2", "v10", "beta", "draft", "live"]


def test_an_alias_line_is_the_routes_of_its_triggers_and_an_alias_without_one_has_none(world: Any) -> None:
    function = _published(world)
    with schema_context(world.acme.schema_name):
        assert selectors.alias_routes(function) == (
            ("beta", ("/acme/beta",)),
            ("live", ("/acme/hello", "/acme/hello/b")),
        )


def test_a_breakdown_is_by_version_or_alias_only(world: Any, hello: Any) -> None:
    from core.errors import ValidationFailed

    with schema_context(world.acme.schema_name):
        function = Function.objects.get(name="hello")
        for by, narrowing in ((selectors.Breakdown.PATH, {}), (selectors.Breakdown.ALIAS, {"path": "/x"})):
            with pytest.raises(ValidationFailed) as refused:
                selectors.function_series_breakdown(
                    function, time_range=selectors.TimeRange.H1, by=by, **narrowing
                )
            assert "by" in refused.value.detail


# --- the API ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [("by=path", "by"), ("by=day", "by"), ("by=VERSION", "by"), ("by=alias&alias=live", "by"),
     ("by=alias&path=/hello", "by"), ("by=version&range=2h", "range")],
)  # fmt: skip
def test_a_bad_by_is_400_in_the_error_shape(
    api: Any, world: Any, hello: Any, no_prometheus: str, query: str, field: str
) -> None:
    response = api(world.vera).get(SERIES.format(t="acme") + "?" + query)
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert (error["code"], field in error["detail"]) == ("invalid", True)


@pytest.mark.parametrize("by", ["version", "alias"])
def test_series_by_need_membership_and_hide_other_tenants(
    api: Any, world: Any, hello: Any, no_prometheus: str, by: str
) -> None:
    # Past the access checks Prometheus is away: 503 in the error shape, never a 500.
    url_in = lambda tenant: SERIES.format(t=tenant) + f"?by={by}"  # noqa: E731
    assert_access(world, api, url_in, "get", None, allowed="vera", ok=503, refused={})
    response = api(world.vera).get(url_in("acme"))
    assert error_of(response)["code"] == "metrics_unavailable"
    # globex has no function hello: acme's does not show through
    assert api(world.oscar).get(SERIES.format(t="globex") + f"?by={by}").status_code == 404


def test_by_a_version_of_a_missing_function_or_version_is_404(
    api: Any, world: Any, hello: Any, no_prometheus: str
) -> None:
    vera = api(world.vera)
    assert vera.get("/t/acme/api/v1/functions/nope/metrics/series/?by=version").status_code == 404
    assert vera.get(SERIES.format(t="acme") + "?by=version&version=v9").status_code == 404


def test_the_openapi_document_describes_by_and_lines() -> None:
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator(urlconf="portal.urls_schema").get_schema(request=None, public=True)
    operation = schema["paths"]["/t/{tenant}/api/v1/functions/{function_name}/metrics/series/"]["get"]
    by = next(p for p in operation["parameters"] if p["name"] == "by")
    assert by["schema"]["enum"] == ["version", "alias"]
    answer = schema["components"]["schemas"]["FunctionSeries"]["properties"]
    assert {"by", "lines"} <= set(answer)
    line = schema["components"]["schemas"]["LinePoints"]["properties"]
    assert set(line) == {"calls", "errors", "error_rate", "p95"}


# --- the page -----------------------------------------------------------------------------------


def test_the_page_offers_the_three_views_and_keeps_the_view_across_ranges(
    client: Any, world: Any, hello: Any, no_prometheus: str
) -> None:
    client.force_login(world.vera)
    page = client.get("/t/acme/functions/hello/metrics/?view=version&range=15m")
    assert page.status_code == 200
    text = page.content.decode()
    assert "data-view-switch" in text
    assert 'href="?range=1h&amp;view=version"' in text  # a range keeps the view
    assert 'hx-get="/t/acme/functions/hello/metrics/figures/?range=15m&amp;view=version"' in text
    figures = client.get("/t/acme/functions/hello/metrics/figures/?view=version&range=15m").content.decode()
    assert "data-metrics-unavailable" in figures  # Prometheus is away: a notice and no charts
    assert "data-chart" not in figures
    bogus = client.get("/t/acme/functions/hello/metrics/?view=%3Cscript%3E").content.decode()
    assert 'href="?range=1h&amp;view=total"' in bogus  # an unknown view is the totals
    assert "view=<" not in bogus


# --- the live stream ----------------------------------------------------------------------------


def test_a_topic_by_version_or_alias_is_its_own_stream() -> None:
    base = MetricsTopic("t_acme", "faas-acme", "hello", 5, "1h")
    by_version = MetricsTopic("t_acme", "faas-acme", "hello", 5, "1h", by="version")
    routes = (("live", ("/acme/hello",)),)
    by_alias = MetricsTopic("t_acme", "faas-acme", "hello", 5, "1h", by="alias", routes=routes)
    other_routes = MetricsTopic(
        "t_acme", "faas-acme", "hello", 5, "1h", by="alias", routes=(("live", ("/acme/other",)),)
    )
    assert base.key == "metrics:hello:5:1h"
    assert by_version.key == "metrics:hello:5:1h:version"
    assert by_alias.key.startswith("metrics:hello:5:1h:alias:")
    assert len({t.group for t in (base, by_version, by_alias, other_routes)}) == 4


@pytest.mark.django_db(transaction=True)
async def test_a_live_subscription_by_alias_reads_the_routes_and_checks_by(
    world: Any, token_for: Any, no_prometheus: str
) -> None:
    from metrics.live import hub
    from metrics.tests.test_consumers import _connect, _reply

    await sync_to_async(_published)(world)
    vera = await sync_to_async(token_for)(world.vera, world.acme, "viewer")
    ws, _, _ = await _connect("acme", vera)
    subscription = {
        "type": "subscribe",
        "stream": "metrics",
        "function": "hello",
        "interval": 5,
        "range": "1h",
    }
    refused = await _reply(ws, subscription | {"by": "path"})
    assert (refused["type"], list(refused["error"]["detail"])) == ("error", ["by"])
    refused = await _reply(ws, {"type": "subscribe", "stream": "logs", "by": "version"})
    assert (refused["type"], list(refused["error"]["detail"])) == ("error", ["by"])

    subscribed = await _reply(ws, subscription | {"by": "alias"})
    assert subscribed["key"].startswith("metrics:hello:5:1h:alias:")
    [topic] = [t for t in hub().metrics if t.key == subscribed["key"]]
    assert topic.routes == (("beta", ("/acme/beta",)), ("live", ("/acme/hello", "/acme/hello/b")))
    frame = await ws.receive_json_from(timeout=5)  # polled at once: Prometheus is away
    assert (frame["key"], frame["error"]["code"]) == (subscribed["key"], "metrics_unavailable")
    by_version = await _reply(ws, subscription | {"by": "version"})
    assert by_version["key"] == "metrics:hello:5:1h:version"
    await ws.disconnect()
