"""The code editor in Chromium: Ctrl-S saves the draft, and leaving with edits not saved asks
first (the browser's own "leave site?" dialog), while a saved draft leaves freely."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import Dialog, Page, expect

from functions.models import Function
from functions.tests.test_browser import message, open_tab
from portal.tests.test_browser import (  # the fixtures are found by name
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


def _type_at_the_end(page: Page, text: str) -> None:
    page.locator(".code-editor .cm-content").click()
    page.keyboard.press("ControlOrMeta+End")
    page.keyboard.press("Enter")
    page.keyboard.type(text)


def test_ctrl_s_saves_and_unsaved_edits_ask_before_leaving(
    page: Page, live_server_url: str, world: Any, hello: Any
) -> None:
    slow_password(world.bob, PASSWORD)
    login(page, live_server_url, world.bob)
    url = f"{live_server_url}/t/acme/functions/hello/"
    page.goto(url)
    expect(page.locator(".code-editor")).to_have_count(1, timeout=UI)

    dialogs: list[str] = []

    def stay(dialog: Dialog) -> None:
        dialogs.append(dialog.type)
        dialog.dismiss()

    page.on("dialog", stay)
    _type_at_the_end(page, "# first edit")
    tabs = page.locator("#workspace-nav")
    tabs.get_by_role("link", name="Monitor").click()  # a tab swaps the panel in place: it asks
    expect(page).to_have_url(url)  # stayed: the edit is still there
    assert dialogs == ["confirm"]
    page.get_by_role("banner").get_by_role("link", name="Functions").click()  # leaving the page
    expect(page).to_have_url(url)
    assert dialogs == ["confirm", "beforeunload"]
    expect(page.locator(".code-editor .cm-content")).to_contain_text("# first edit")

    page.keyboard.press("ControlOrMeta+s")
    expect(message(page)).to_have_text(re.compile(r"^Saved main\.py \(draft revision \d+\)\.$"), timeout=UI)
    with schema_context(world.acme.schema_name):
        assert "# first edit" in Function.objects.get(name="hello").draft.files["main.py"]

    tabs.get_by_role("link", name="Monitor").click()  # nothing unsaved: no question
    expect(page).to_have_url(f"{url}metrics/", timeout=UI)
    assert dialogs == ["confirm", "beforeunload"]


def test_the_canary_weight_slider_says_its_value_and_a_trigger_is_deleted_after_asking(
    page: Page, live_server_url: str, world: Any, hello: Any
) -> None:
    from functions.models import Trigger

    with schema_context(world.acme.schema_name):
        Trigger.objects.create(function=hello, name="web", path="/web", methods=["GET"])
    slow_password(world.bob, PASSWORD)
    login(page, live_server_url, world.bob)
    page.goto(f"{live_server_url}/t/acme/functions/hello/versions/")
    slider = page.locator("input[name='canary_weight']")
    slider.fill("35")  # a range input takes fill(), as a person dragging it
    expect(page.locator("#canary-out")).to_have_text("35")
    open_tab(page, "Triggers")

    row = page.get_by_role("row").filter(has_text="/acme/web")
    row.get_by_role("button", name="Delete", exact=True).click()  # asks; nothing is deleted yet
    with schema_context(world.acme.schema_name):
        assert Trigger.objects.filter(name="web").exists()
    row.get_by_role("button", name="Yes, delete trigger web").click()
    expect(message(page)).to_have_text("Trigger web deleted; redeploying.", timeout=UI)
    with schema_context(world.acme.schema_name):
        assert not Trigger.objects.filter(name="web").exists()


def test_a_saved_test_event_is_kept_and_loaded_back_into_the_form(
    page: Page, live_server_url: str, world: Any, hello: Any
) -> None:
    slow_password(world.bob, PASSWORD)
    login(page, live_server_url, world.bob)
    page.goto(f"{live_server_url}/t/acme/functions/hello/test/")
    panel = page.locator("article").filter(has=page.get_by_role("heading", name="Test call"))
    panel.get_by_label("Method").select_option("POST")
    panel.get_by_label("Path").fill("/orders?src=test")
    panel.get_by_label("Headers (JSON)").fill('{"Content-Type": "application/json"}')
    panel.get_by_label("Body").fill('{"id": 7}')
    panel.get_by_label("Event name").fill("order-created")
    panel.get_by_role("button", name="Save as event").click()
    expect(panel.locator("[data-saved-said]")).to_have_text(
        "Saved as order-created: anyone in the tenant can send it again.", timeout=UI
    )

    page.reload()  # kept: and loaded back into a fresh form
    panel = page.locator("article").filter(has=page.get_by_role("heading", name="Test call"))
    panel.locator("[data-saved-event-picker]").select_option("order-created")
    expect(panel.get_by_label("Method")).to_have_value("POST")
    expect(panel.get_by_label("Path")).to_have_value("/orders?src=test")
    expect(panel.get_by_label("Headers (JSON)")).to_have_value('{"Content-Type": "application/json"}')
    expect(panel.get_by_label("Body")).to_have_value('{"id": 7}')

    panel.get_by_label("Event name").fill("Not A Name")
    panel.get_by_role("button", name="Save as event").click()
    expect(panel.locator("[data-saved-said][role='alert']")).to_contain_text("Event name:", timeout=UI)
