"""The function workspace in Chromium: tabs that change in place (each its own URL, the back
button included), a refused form that says why under its field without a reload, an HTTP trigger
edited from its row, and the header's URL following the change; no console error on the way."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import Page, expect

from functions.models import Trigger
from functions.tests.test_browser import form_of, message, open_tab
from portal.tests.test_browser import (  # the fixtures are found by name
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
from testsupport.axe import ConsoleErrors
from testsupport.fixtures import slow_password

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("allow_async_orm"),
]

# Each tab, its URL under the function, and something only its panel shows.
TABS = [
    ("Test", "test/", "[data-test-call]"),
    ("Monitor", "metrics/", "nav[aria-label='Range']"),
    ("Logs", "logs/", "form[data-log-filters]"),
    ("Versions and aliases", "versions/", "#rollouts"),
    ("Triggers", "triggers/", "#time-triggers"),
    ("Configuration", "configuration/", "#delete-function"),
    ("Code", "", "section.deployments"),
]


def test_tabs_change_in_place_and_the_back_button_returns(
    page: Page, live_server_url: str, world: Any, hello: Any
) -> None:
    slow_password(world.bob, PASSWORD)
    login(page, live_server_url, world.bob)
    console = ConsoleErrors(page)
    base = f"{live_server_url}/t/acme/functions/hello/"
    page.goto(base)
    mark_document(page)
    for label, path, shows in TABS:
        open_tab(page, label)
        expect(page).to_have_url(base + path)
        expect(page).to_have_title(f"hello · {label}")
        expect(page.locator(f"#tab-panel {shows}")).to_have_count(1, timeout=UI)
        expect(page.locator("#workspace-nav [aria-current='page']")).to_have_count(1)
    assert still_same_document(page)

    page.go_back()  # from Code back to Configuration
    expect(page).to_have_url(base + "configuration/", timeout=UI)
    expect(page.locator("#tab-panel #delete-function")).to_have_count(1, timeout=UI)
    expect(page.locator("#workspace-nav [aria-current='page']")).to_have_text("Configuration")
    assert console.errors == []


def test_a_refused_trigger_says_why_under_its_field_and_an_edit_changes_the_url(
    page: Page, live_server_url: str, world: Any, hello: Any
) -> None:
    with schema_context(world.acme.schema_name):
        Trigger.objects.create(function=hello, name="web", path="/web", methods=["GET"])
    slow_password(world.bob, PASSWORD)
    login(page, live_server_url, world.bob)
    console = ConsoleErrors(page)
    page.goto(f"{live_server_url}/t/acme/functions/hello/triggers/")
    mark_document(page)
    expect(page.locator("[data-function-url='web'] code")).to_contain_text("/acme/web")
    state = page.locator("[data-function-state]")
    expect(state).to_have_text("not deployed yet")
    expect(state).to_have_attribute("data-deployment", "0")

    add = form_of(page, "trigger")
    add.get_by_label("Name", exact=True).fill("other")
    add.get_by_label("Path", exact=True).fill("no-slash")
    add.get_by_role("button", name="Add trigger").click()
    add = form_of(page, "trigger")
    expect(add.locator("[data-field-error='path']")).to_contain_text("must start with '/'", timeout=UI)
    expect(add.get_by_label("Path", exact=True)).to_have_value("no-slash")  # kept, to correct
    expect(add.get_by_label("Path", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(page.locator(".messages [role='alert']")).to_contain_text("must start with")
    assert still_same_document(page)

    row = page.locator("tr").filter(has=page.locator("form[data-edit-trigger='web']"))
    row.get_by_role("button", name="Edit").click()
    edit = row.locator("form[data-edit-trigger='web']")
    expect(edit.get_by_label("Path", exact=True)).to_have_value("/web")
    edit.get_by_label("Path", exact=True).fill("/site")
    edit.get_by_role("button", name="Save trigger web").click()
    expect(message(page)).to_have_text("Trigger web changed; redeploying.", timeout=UI)
    # the header's URL follows (swapped out of band with the panel), still without a reload
    expect(page.locator("[data-function-url='web'] code")).to_contain_text("/acme/site")
    # and so does its state: the edit's deployment, deploying or (a fast worker) already live
    expect(state).to_have_attribute("data-deployment", re.compile(r"^[1-9][0-9]*$"))
    expect(state).to_have_text(re.compile(r"^(deploying.*|live)$"))
    assert still_same_document(page)
    with schema_context(world.acme.schema_name):
        assert Trigger.objects.get().path == "/site"
    assert console.errors == []


def test_viewers_get_no_edit_or_delete(page: Page, live_server_url: str, world: Any, hello: Any) -> None:
    with schema_context(world.acme.schema_name):
        Trigger.objects.create(function=hello, name="web", path="/web", methods=["GET"])
    slow_password(world.vera, PASSWORD)
    login(page, live_server_url, world.vera)
    page.goto(f"{live_server_url}/t/acme/functions/hello/triggers/")
    expect(page.locator("#tab-panel").get_by_role("cell", name="web", exact=True)).to_have_count(
        1, timeout=UI
    )
    expect(page.locator("#tab-panel").get_by_role("button", name="Edit")).to_have_count(0)
    expect(page.locator("#tab-panel").get_by_role("button", name="Delete")).to_have_count(0)
    open_tab(page, "Configuration")
    expect(page.locator("[data-settings-read-only]")).to_be_visible()
