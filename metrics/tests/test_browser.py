"""Metrics and logs in a real browser (Chromium through Playwright): the charts with live
totals, the tenant's top functions, and a printed line appearing on the logs page by itself."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from portal.tests.test_browser import (  # the fixtures are found by name
    LIVE,
    PASSWORD,
    UI,
    browser,  # noqa: F401
    browser_context_args,  # noqa: F401
    browser_type,  # noqa: F401
    browser_type_launch_args,  # noqa: F401
    login,
    mark_document,
    playwright,  # noqa: F401
    still_same_document,
)
from testsupport.e2e import create_function, deploy_and_wait
from testsupport.fixtures import slow_password

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("allow_async_orm"),
]
CODE = "def main():\n    print('page line')\n    return 'ok'\n"


@pytest.fixture
def deployed(stack: Any, prometheus: Any, api: Any, world: Any) -> str:
    name = f"web-{uuid.uuid4().hex[:6]}"
    create_function(api(world.alice), name, {"main.py": CODE}, f"/{name}")
    deploy_and_wait(api(world.alice), name)
    return name


def test_the_logs_page_shows_a_printed_line_by_itself(
    page: Page, live_server_url: str, world: Any, deployed: str, stack: Any
) -> None:
    slow_password(world.vera, PASSWORD)
    login(page, live_server_url, world.vera)
    page.goto(f"{live_server_url}/t/acme/logs/?function={deployed}")
    tail = page.locator("[data-log-tail]")
    expect(tail.locator("[data-connection]")).to_have_text("live", timeout=LIVE)
    mark_document(page)

    assert httpx.get(f"{stack.router}/acme/{deployed}", timeout=30).text == "ok"

    expect(tail.locator("[data-log-lines] tr").first).to_contain_text("page line", timeout=UI)
    expect(tail.locator("[data-log-lines] tr").first).to_contain_text(deployed)
    assert still_same_document(page)
    page.reload()  # and the search finds it too
    expect(page.locator("[data-log-results]")).to_contain_text("page line", timeout=UI)


def test_charts_and_live_totals_and_the_top_functions(
    page: Page, live_server_url: str, world: Any, deployed: str, stack: Any
) -> None:
    for _ in range(4):
        assert httpx.get(f"{stack.router}/acme/{deployed}", timeout=30).text == "ok"
    slow_password(world.vera, PASSWORD)
    login(page, live_server_url, world.vera)
    page.goto(f"{live_server_url}/t/acme/functions/{deployed}/metrics/?range=15m")
    section = page.locator("[data-metrics]")
    expect(section.locator("[data-connection]")).to_have_text("live", timeout=LIVE)
    expect(section.locator("[data-chart] canvas")).to_have_count(3, timeout=UI)  # uPlot drew three charts
    expect(section.locator("[data-total='calls']")).to_have_text("4", timeout=LIVE)

    for _ in range(2):
        assert httpx.get(f"{stack.router}/acme/{deployed}", timeout=30).text == "ok"
    expect(section.locator("[data-total='calls']")).to_have_text("6", timeout=LIVE)  # the live stream

    page.goto(f"{live_server_url}/t/acme/")
    top = page.locator("#top-functions [data-top='calls']")
    expect(top).to_contain_text(deployed, timeout=UI)
    expect(top).to_contain_text("6")
