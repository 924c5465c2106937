"""Metrics and logs pages: members only, plain notices when Prometheus or the log store is away,
filters checked, and the rest of the portal unaffected."""

from __future__ import annotations

import html
import time
from typing import Any
from unittest import mock

import pytest
import redis
from django.conf import settings

from runtime.logs import stream_name

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_prometheus")]


FIGURES = "/t/acme/functions/hello/metrics/figures/?range=1h&amp;view=total"


def test_the_monitor_tab_never_waits_for_prometheus(world: Any, client: Any, hello: None) -> None:
    """The tab answers with its pickers and a loader of its figures (htmx, or a link without
    JavaScript); it asks Prometheus nothing itself."""
    client.force_login(world.vera)
    with mock.patch("metrics.selectors.prometheus", side_effect=AssertionError("asked Prometheus")):
        page = client.get("/t/acme/functions/hello/metrics/").content.decode()
    assert f'<div id="metrics-figures" hx-get="{FIGURES}" hx-trigger="load" hx-target="this"' in page
    assert f'<noscript><p><a href="{FIGURES}">' in page
    assert "data-metrics-unavailable" not in page
    assert "data-view-switch" in page


def test_without_prometheus_the_figures_say_so(world: Any, client: Any, hello: None) -> None:
    client.force_login(world.vera)
    url = html.unescape(FIGURES)
    loaded = client.get(url, headers={"HX-Request": "true", "HX-Target": "metrics-figures"})
    assert loaded.status_code == 200
    fragment = loaded.content.decode()
    assert fragment.count('id="metrics-figures"') == 1  # what replaces the loader
    assert "HX-Target" in loaded["Vary"]
    assert "<html" not in fragment
    assert "Metrics are unavailable right now" in fragment
    assert "data-chart" not in fragment
    whole = client.get(url).content.decode()  # without JavaScript: the tab, its figures in place
    assert "<html" in whole
    assert "data-metrics-unavailable" in whole
    assert 'aria-current="page">Monitor</a>' in whole
    assert client.get("/t/acme/functions/hello/").status_code == 200  # the function page still works


def test_without_prometheus_the_top_functions_panel_says_so(world: Any, client: Any, hello: None) -> None:
    client.force_login(world.vera)
    overview = client.get("/t/acme/")
    assert b'hx-get="/t/acme/metrics/top/"' in overview.content  # loaded after the page, never blocking it
    panel = client.get("/t/acme/metrics/top/?range=24h")
    assert panel.status_code == 200
    assert b"data-metrics-unavailable" in panel.content


def test_metrics_pages_are_for_members_only(world: Any, client: Any, hello: None) -> None:
    client.force_login(world.oscar)
    monitor = "/t/acme/functions/hello/metrics/"
    for path in (monitor, f"{monitor}figures/", "/t/acme/metrics/top/", "/t/acme/logs/"):
        assert client.get(path).status_code == 404
    client.force_login(world.vera)
    assert client.get("/t/acme/functions/nope/metrics/").status_code == 404
    client.logout()
    assert client.get("/t/acme/logs/").status_code == 302


def _print(namespace: str, function: str, message: str) -> None:
    client = redis.Redis.from_url(settings.REDIS_URL)
    fields = {"time": f"{time.time():.6f}", "namespace": namespace, "function": function,
              "request_id": "req-9", "stream": "stdout", "message": message}  # fmt: skip
    client.xadd(stream_name(namespace), fields)  # type: ignore[arg-type]
    client.close()


def test_the_logs_page_searches_and_offers_the_live_tail(world: Any, client: Any, hello: None) -> None:
    redis.Redis.from_url(settings.REDIS_URL).delete(stream_name("faas-acme"))
    _print("faas-acme", "hello-v1", "<script>alert(1)</script> printed")
    _print("faas-acme", "other-v1", "not this one")
    _print("faas-globex", "hello-v1", "globex's line")
    client.force_login(world.vera)
    page = client.get("/t/acme/logs/?function=hello&q=PRINTED")
    assert page.status_code == 200
    text = page.content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; printed" in text  # escaped, never markup
    assert "not this one" not in text
    assert "globex" not in text.split("<h1>Logs</h1>", 1)[1].split("data-log-tail", 1)[1]
    assert 'data-log-tail data-live-url="/t/acme/ws/live/" data-function="hello"' in text


def test_bad_log_filters_are_400_and_say_why(world: Any, client: Any, hello: None) -> None:
    client.force_login(world.vera)
    page = client.get("/t/acme/logs/?version=v2")
    assert page.status_code == 400
    assert b"A version belongs to a function" in page.content
    assert client.get("/t/acme/logs/?since=not-a-time").status_code == 400
    backwards = client.get("/t/acme/logs/?since=2026-12-02+10:00&until=2026-12-01+10:00")
    assert backwards.status_code == 400
    assert b"until must be after since" in backwards.content


def test_without_redis_the_logs_page_says_so(world: Any, client: Any, hello: None, settings: Any) -> None:
    client.force_login(world.vera)
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    page = client.get("/t/acme/logs/")
    assert page.status_code == 200
    assert b"data-logs-unavailable" in page.content
