"""The function workspace in Chromium: tabs that change in place (each its own URL, the back
button included), a refused form that says why under its field without a reload, an HTTP trigger
edited from its row, and the header's URL following the change; no console error on the way."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import Page, Route, expect

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
    base, console = _open_hello_as_bob(page, live_server_url, world)
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


def test_a_tab_chosen_while_the_monitor_loads_its_figures_stays_chosen(
    page: Page, live_server_url: str, world: Any, hello: Any
) -> None:
    """The Monitor tab loads its figures after it shows (they ask Prometheus, which may be slow):
    that load fills the loader alone, and a tab chosen before it answers stays chosen. (The
    loader used to inherit the panel's target: its answer was the whole tab again, and it put the
    Monitor back over the tab the user had chosen, with the nav naming one tab and the URL another.)"""
    held: list[Route] = []
    page.route("**/metrics/figures/**", lambda route: held.append(route))  # answered when the test says so
    base, console = _open_hello_as_bob(page, live_server_url, world)
    open_tab(page, "Monitor")
    _wait_until(page, lambda: len(held) == 1)
    assert held[0].request.headers.get("hx-target") == "metrics-figures"

    open_tab(page, "Logs")
    expect(page).to_have_url(base + "logs/")
    with page.expect_response("**/metrics/figures/**"):
        held[0].continue_()
    page.evaluate("() => new Promise((settled) => setTimeout(settled, 100))")  # htmx's swap and settle
    expect(page).to_have_url(base + "logs/")
    expect(page.locator("#workspace-nav [aria-current='page']")).to_have_text("Logs")
    expect(page.locator("#tab-panel form[data-log-filters]")).to_have_count(1)
    expect(page.locator("[data-metrics-figures], [data-metrics-loading]")).to_have_count(0)
    assert still_same_document(page)
    assert console.errors == []


def test_the_monitor_figures_fill_their_loader_and_nothing_else(
    page: Page, live_server_url: str, world: Any, hello: Any
) -> None:
    _, console = _open_hello_as_bob(page, live_server_url, world)
    open_tab(page, "Monitor")
    page.evaluate("document.querySelector('#tab-panel').dataset.probe = 'kept'")
    figures = page.locator("#tab-panel [data-metrics-figures]")
    expect(figures.locator("[data-metrics-unavailable]")).to_have_count(1, timeout=UI)  # no Prometheus here
    expect(page.locator("#tab-panel[data-probe='kept']")).to_have_count(1)  # the panel itself stayed
    expect(page.locator("[data-metrics-loading]")).to_have_count(0)
    expect(page.locator("#tab-panel nav[aria-label='Range']")).to_have_count(1)
    assert still_same_document(page)
    assert console.errors == []


def _open_hello_as_bob(page: Page, live_server_url: str, world: Any) -> tuple[str, ConsoleErrors]:
    """Bob (a developer of acme) logged in on function hello's page, the document marked; its URL
    and the console's errors from then on."""
    slow_password(world.bob, PASSWORD)
    login(page, live_server_url, world.bob)
    console = ConsoleErrors(page)
    base = f"{live_server_url}/t/acme/functions/hello/"
    page.goto(base)
    mark_document(page)
    return base, console


def _wait_until(page: Page, condition: Callable[[], bool]) -> None:
    """Let Playwright dispatch events (routes, responses) until ``condition`` holds."""
    for _ in range(200):
        if condition():
            return
        page.wait_for_timeout(25)
    raise AssertionError("the condition did not hold within 5 s")
