"""The logs page in a real browser (Chromium through Playwright) against the real runtime: a
function that prints two lines and raises reads as one group per call, its traceback top to
bottom and marked stderr, live and in the search; a request's whole id links to its lines; its
first characters find it; and the date-time pickers speak the browser's time zone."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from portal.tests.test_browser import (  # the fixtures are found by name
    LIVE,
    PASSWORD,
    UI,
    browser,  # noqa: F401
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
CODE = "def main():\n    print('first line')\n    print('second line')\n    raise ValueError('it broke')\n"
# Far from UTC, and not by whole hours: a picker read as UTC (or the server's zone) shows.
ZONE = "Asia/Kolkata"
IN_ORDER = ["first line", "second line", "Traceback (most recent call last):", "ValueError: it broke"]


@pytest.fixture(scope="module")
def browser_context_args() -> dict[str, Any]:
    return {"timezone_id": ZONE}


@pytest.fixture
def failing(stack: Any, api: Any, world: Any) -> str:
    name = f"oops-{uuid.uuid4().hex[:6]}"
    create_function(api(world.alice), name, {"main.py": CODE}, f"/{name}")
    deploy_and_wait(api(world.alice), name)
    return name


def _call(stack: Any, name: str) -> str:
    """Call the function once (it fails: 500) and return the call's request id."""
    response = httpx.get(f"{stack.router}/acme/{name}", timeout=30)
    assert response.status_code == 500
    return response.headers["x-fission-request-id"]


def _expect_read_in_order(group: Locator) -> None:
    """Two printed lines, then the traceback top to bottom, each traceback line marked stderr."""
    lines = group.locator("ol.log-lines > li")
    expect(lines.last).to_contain_text("ValueError: it broke", timeout=UI)
    texts = [text.strip() for text in lines.locator("code").all_inner_texts()]
    positions = [next(i for i, text in enumerate(texts) if text.startswith(want)) for want in IN_ORDER]
    assert positions == sorted(positions), texts
    printed = lines.filter(has_text="first line")
    expect(printed).to_have_attribute("data-stream", "stdout")
    expect(printed).not_to_contain_text("stderr")
    traceback = lines.nth(positions[2])
    expect(traceback.locator(".stream-badge")).to_have_text("stderr")
    expect(traceback.locator(".stream-badge")).to_be_visible()
    expect(lines.filter(has_text="ValueError: it broke").locator(".stream-badge")).to_have_text("stderr")


def _console_errors(page: Page) -> list[str]:
    """What the page's scripts report as errors, from now on."""
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def _group(body: Locator, request_id: str) -> Locator:
    return body.locator(f'tr[data-log-group][data-request-id="{request_id}"]')


def _expect_one_group_each(body: Locator, newest_first: list[str]) -> None:
    """One group per call, each reading in order, the newest call above the older."""
    for request_id in newest_first:
        expect(_group(body, request_id)).to_have_count(1, timeout=UI)
        _expect_read_in_order(_group(body, request_id))
    order = body.locator("tr[data-log-group]").evaluate_all("rows => rows.map(r => r.dataset.requestId)")
    assert [rid for rid in order if rid in newest_first] == newest_first, order


def _local(moment: datetime) -> str:
    """What a person types in a date-time picker: their wall-clock time, to the second."""
    return moment.astimezone(ZoneInfo(ZONE)).strftime("%Y-%m-%dT%H:%M:%S")


def test_a_failing_call_reads_top_to_bottom_live_and_in_the_search(
    page: Page, live_server_url: str, world: Any, failing: str, stack: Any
) -> None:
    errors = _console_errors(page)
    slow_password(world.vera, PASSWORD)
    login(page, live_server_url, world.vera)
    page.goto(f"{live_server_url}/t/acme/logs/?function={failing}")  # the function page's link
    tail = page.locator("[data-log-tail]")
    expect(tail.locator("[data-connection]")).to_have_text("live", timeout=LIVE)
    mark_document(page)

    first, second = _call(stack, failing), _call(stack, failing)

    live = tail.locator("[data-log-lines]")
    _expect_one_group_each(live, [second, first])  # the newest call on top
    assert still_same_document(page)

    page.reload()
    results = page.locator("[data-log-results] tbody")
    _expect_one_group_each(results, [second, first])

    # the whole id shows, and leads to that request's lines only
    link = _group(results, first).get_by_role("link", name=first)
    expect(link).to_have_text(first)
    link.click()
    expect(page).to_have_url(re.compile(rf"\?request={first}$"), timeout=UI)
    only = page.locator("[data-log-results] tbody > tr[data-log-group]")
    expect(only).to_have_count(1, timeout=UI)
    expect(only.first).to_have_attribute("data-request-id", first)
    _expect_read_in_order(only.first)

    # the first characters someone copies off the screen find it too
    page.goto(f"{live_server_url}/t/acme/logs/")
    page.get_by_label("Request id").fill(second[:8])
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page).to_have_url(re.compile(rf"\?request={second[:8]}$"), timeout=UI)
    found = page.locator("[data-log-results] tbody > tr[data-log-group]")
    expect(found).to_have_count(1, timeout=UI)
    expect(found.first).to_have_attribute("data-request-id", second)
    assert errors == []


def test_the_date_time_pickers_and_quick_ranges_speak_the_browsers_time_zone(
    page: Page, live_server_url: str, world: Any, failing: str, stack: Any
) -> None:
    called = _call(stack, failing)
    errors = _console_errors(page)
    slow_password(world.vera, PASSWORD)
    login(page, live_server_url, world.vera)
    page.goto(f"{live_server_url}/t/acme/logs/?function={failing}")
    results = page.locator("[data-log-results] tbody")
    expect(_group(results, called)).to_have_count(1, timeout=UI)
    expect(page.get_by_label("Since")).to_have_attribute("type", "datetime-local")
    # Chromium may name the zone by an older alias (Asia/Calcutta)
    expect(page.locator("[data-time-zone]").first).to_contain_text(re.compile(r"in your time zone \(Asia/"))

    now = datetime.now().astimezone()
    until = page.get_by_label("Until")
    until.fill(_local(now - timedelta(hours=1)))  # an hour ago, on the person's own clock
    page.get_by_role("button", name="Search", exact=True).click()
    sent = (now - timedelta(hours=1)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    expect(page).to_have_url(re.compile(re.escape(f"until={quote(sent)}")), timeout=UI)  # in UTC
    expect(page.locator("[data-log-results]")).to_contain_text("No lines match.", timeout=UI)
    expect(until).to_have_value(_local(now - timedelta(hours=1)))  # still their clock after the search

    until.fill("")
    page.get_by_label("Since").fill(_local(now - timedelta(minutes=10)))
    page.get_by_role("button", name="Search", exact=True).click()
    expect(_group(results, called)).to_have_count(1, timeout=UI)

    page.get_by_label("Since").fill(_local(now + timedelta(minutes=10)))
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator("[data-log-results]")).to_contain_text("No lines match.", timeout=UI)

    page.get_by_role("button", name="Last 15 min").click()
    expect(page).to_have_url(re.compile(r"\?function=[\w-]+&last=15m$"), timeout=UI)
    expect(_group(results, called)).to_have_count(1, timeout=UI)
    expect(page.get_by_role("button", name="Last 15 min")).to_have_attribute("aria-pressed", "true")
    shown = datetime.strptime(page.get_by_label("Since").input_value(), "%Y-%m-%dT%H:%M:%S")
    expected = (datetime.now().astimezone(ZoneInfo(ZONE)) - timedelta(minutes=15)).replace(tzinfo=None)
    assert abs((shown - expected).total_seconds()) < 120  # the picker shows it on the person's clock

    page.goto(f"{live_server_url}/t/acme/logs/?since=yesterday")
    expect(page.locator("[data-form-errors]")).to_contain_text("Since must be a date and time")
    expect(page.get_by_label("Since")).to_have_attribute("aria-invalid", "true")
    assert [e for e in errors if "400 (Bad Request)" not in e] == []  # that page's status is no script error
