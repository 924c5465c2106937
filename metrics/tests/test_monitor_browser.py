"""The Monitor (a function's metrics page) in Chromium against the real runtime and Prometheus:
exact values in a tooltip beside the cursor, to the second; the per-version table kept live;
the active range clearly marked."""

from __future__ import annotations

import re
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


@pytest.fixture
def deployed(stack: Any, prometheus: Any, api: Any, world: Any) -> str:
    name = f"mon-{uuid.uuid4().hex[:6]}"
    create_function(api(world.alice), name, {"main.py": "def main():\n    return 'ok'\n"}, f"/{name}")
    deploy_and_wait(api(world.alice), name)
    return name


def _call(stack: Any, name: str, times: int) -> None:
    for _ in range(times):
        assert httpx.get(f"{stack.router}/acme/{name}", timeout=30).text == "ok"


def test_tooltip_live_version_table_and_marked_range(
    page: Page, live_server_url: str, world: Any, deployed: str, stack: Any
) -> None:
    _call(stack, deployed, 3)
    slow_password(world.vera, PASSWORD)
    login(page, live_server_url, world.vera)
    page.goto(f"{live_server_url}/t/acme/functions/{deployed}/metrics/?range=15m")
    section = page.locator("[data-metrics]")
    expect(section.locator("[data-connection]")).to_have_text("live", timeout=LIVE)
    draft_calls = section.locator("[data-breakdown] tbody tr", has_text="draft").locator("td").nth(1)
    expect(draft_calls).to_have_text("3", timeout=LIVE)
    mark_document(page)

    _call(stack, deployed, 2)
    expect(draft_calls).to_have_text("5", timeout=LIVE)  # the table follows the live stream
    assert still_same_document(page)

    over = section.locator("[data-chart='traffic'] .u-over")
    over.scroll_into_view_if_needed()  # below the workspace's header, maybe below the fold
    box = over.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] - 3, box["y"] + box["height"] / 2)
    tip = section.locator("[data-chart='traffic'] .chart-tooltip")
    expect(tip).to_be_visible(timeout=UI)
    expect(tip).to_contain_text(re.compile(r"\d{1,2}:\d{2}:\d{2}"))  # to the second
    expect(tip).to_contain_text(re.compile(r"calls: (\d+ calls|no calls)"))
    page.mouse.move(1, 1)
    expect(tip).to_be_hidden(timeout=UI)

    current = page.locator("nav[aria-label='Range'] [aria-current='page']")
    expect(current).to_have_text("15m")
    other = page.locator("nav[aria-label='Range'] a", has_text="1h")
    style = "e => [getComputedStyle(e).fontWeight, getComputedStyle(e).backgroundColor]"
    assert current.evaluate(style) != other.evaluate(style)  # marked, not just a plain link
