"""The metrics page's view switch in a real browser (Chromium through Playwright): per version
and per alias, one line per version or alias on each chart, named in its legend, kept live."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from metrics.tests.test_series_breakdown_e2e import deploy_canary
from portal.tests.test_browser import (  # the fixtures are found by name
    LIVE,
    PASSWORD,
    UI,
    browser,  # noqa: F401
    browser_context_args,  # noqa: F401
    browser_type,  # noqa: F401
    browser_type_launch_args,  # noqa: F401
    login,
    playwright,  # noqa: F401
)
from testsupport.fixtures import slow_password

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("allow_async_orm"),
]
LINE_CHARTS = ("calls", "error_rate", "p95")


@pytest.fixture
def canary(stack: Any, prometheus: Any, api: Any, world: Any) -> str:
    name = f"cn-{uuid.uuid4().hex[:6]}"
    deploy_canary(api(world.alice), name)
    return name


def _legend(page: Page, chart: str) -> Any:
    return page.locator(f"[data-metrics] [data-chart='{chart}'] .u-legend .u-series .u-label")


def test_the_per_version_view_names_each_version_in_each_charts_legend(
    page: Page, live_server_url: str, world: Any, canary: str, stack: Any
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    with httpx.Client(base_url=f"{stack.router}/acme", timeout=30) as client:
        answers = {client.get(f"/{canary}").text for _ in range(20)}  # alias live: v1 and v2
        assert client.get(f"/{canary}-beta").text == "v2"
    assert answers == {"v1", "v2"}
    slow_password(world.vera, PASSWORD)
    login(page, live_server_url, world.vera)
    page.goto(f"{live_server_url}/t/acme/functions/{canary}/metrics/?range=15m")
    section = page.locator("[data-metrics]")
    expect(section.locator("[data-chart] canvas")).to_have_count(3, timeout=UI)  # the totals' charts

    page.locator("[data-view-switch] a[data-view='version']").click()
    expect(page).to_have_url(f"{live_server_url}/t/acme/functions/{canary}/metrics/?range=15m&view=version")
    expect(section.locator("[data-connection]")).to_have_text("live", timeout=LIVE)
    # The page drew from Prometheus at once, or the live frames bring the lines: either way, each
    # chart's legend ends up naming both versions.
    for chart in LINE_CHARTS:
        expect(_legend(page, chart)).to_contain_text(["v1", "v2"], timeout=LIVE)
    expect(section).to_have_attribute("data-lines", "v1 v2", timeout=LIVE)
    expect(section).to_have_attribute("data-last-frame", re.compile(r"^[0-9.]+$"), timeout=LIVE)
    frame = section.get_attribute("data-last-frame")
    assert frame is not None
    expect(section).not_to_have_attribute("data-last-frame", frame, timeout=LIVE)  # the next one came
    expect(section.locator("[data-chart] canvas")).to_have_count(3)

    page.locator("[data-view-switch] a[data-view='alias']").click()
    for chart in LINE_CHARTS:
        expect(_legend(page, chart)).to_contain_text(["beta", "live"], timeout=LIVE)
    expect(page.locator("[data-metrics]")).to_have_attribute("data-lines", "beta live", timeout=LIVE)
    expect(page.locator("[data-breakdown] tbody tr")).to_have_count(2)  # the per-version table stays
    assert errors == []
