"""The audit page in a real browser: Chromium (Playwright) against the ASGI server. A change made
elsewhere appears at the top of the page without a reload; the filters narrow the rows, the
live ones included, and the export link keeps them.

See ``portal/tests/test_browser.py`` for how Playwright, the server process and the database
meet; its module-scoped Playwright fixtures are imported here by name.
"""

from __future__ import annotations

import json
import re
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
    off_loop,
    open_live,
    playwright,  # noqa: F401
    still_same_document,
)
from tenants.tests.test_audit_api import record
from testsupport.fixtures import slow_password

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("allow_async_orm"),
]


def test_a_change_appears_live_and_the_filters_narrow_the_rows(
    page: Page, live_server_url: str, world: Any
) -> None:
    slow_password(world.alice, PASSWORD)
    record(world.acme, "hello", by=world.alice, before={"memory_mb": 128}, after={"memory_mb": 256})
    login(page, live_server_url, world.alice)
    page.get_by_role("link", name="Audit", exact=True).click()
    expect(page).to_have_url(f"{live_server_url}/t/acme/audit/", timeout=UI)
    expect(page.get_by_role("heading", level=1)).to_have_text("Audit trail")
    open_live(page, f"{live_server_url}/t/acme/audit/")
    rows = page.locator("[data-audit-rows] tr")
    expect(rows.first).to_contain_text("hello")
    mark_document(page)

    # a change made elsewhere (bob, in a request of his own) is prepended as it commits
    made = off_loop(
        record, tenant=world.acme, name="hello/prod", action="alias.set", object_type="alias", by=world.bob,
        before={"weights": {"v1": 100}}, after={"weights": {"v1": 90, "v2": 10}}, agent="curl/8.5.0",
    )  # fmt: skip
    live = page.locator(f"[data-audit-rows] tr[data-record='{made.pk}']")
    expect(live).to_contain_text("alias.set", timeout=LIVE)
    expect(live).to_contain_text("bob")
    expect(live).to_contain_text("203.0.113.7")
    expect(live).to_contain_text('weights: {"v1":100} → {"v1":90,"v2":10}')
    expect(rows.first).to_have_attribute("data-record", str(made.pk))  # newest on top
    assert still_same_document(page)

    # filter by action: the form reloads the page with the rows that match, live ones too
    page.get_by_label("Action").fill("function.")
    page.get_by_label("Object type").select_option("function")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"/t/acme/audit/\?.*action=function\."), timeout=UI)
    expect(page.locator("[data-connection]")).to_have_text("live", timeout=LIVE)
    expect(rows.filter(has_text="hello/prod")).to_have_count(0)
    expect(rows.filter(has_text="function.update")).to_have_count(1)
    mark_document(page)
    off_loop(record, tenant=world.acme, name="ignored", action="alias.set", object_type="alias")
    shown = off_loop(record, tenant=world.acme, name="greet", action="function.create")
    expect(page.locator(f"tr[data-record='{shown.pk}']")).to_contain_text("greet", timeout=LIVE)
    expect(rows.filter(has_text="ignored")).to_have_count(0)  # pushed first, yet not shown
    assert still_same_document(page)

    # the export keeps the filters: JSON lines of the same records, oldest first
    href = page.locator("[data-export]").get_attribute("href")
    assert href is not None
    assert "action=function." in href
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    exported = httpx.get(f"{live_server_url}{href}", cookies=cookies, timeout=10)
    assert exported.status_code == 200
    assert exported.headers["content-type"] == "application/x-ndjson"
    names = [json.loads(line)["object_name"] for line in exported.text.splitlines()]
    assert names == ["hello", "greet"]
