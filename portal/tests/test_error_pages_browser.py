"""Errors where they happen, in a real browser: Chromium (Playwright) against the ASGI server.

Each test asserts what the person sees: the portal's framed error pages (an unknown function,
an oversized upload), the favicon, field errors in words under their field (never a Python
dict), an over-long name refused rather than cut, and an empty editor refused with a message.
See ``portal/tests/test_browser.py`` for how Playwright, the server process and the database
meet; its module-scoped Playwright fixtures are imported here by name.
"""

from __future__ import annotations

from typing import Any

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import Locator, Page, expect

from functions.models import Function
from functions.services import functions as function_services
from functions.services.functions import EMPTY_MAIN_FILE
from portal.tests.test_browser import (  # the fixtures are found by name
    PASSWORD,
    UI,
    browser,  # noqa: F401
    browser_context_args,  # noqa: F401
    browser_type,  # noqa: F401
    browser_type_launch_args,  # noqa: F401
    heading,
    login,
    mark_document,
    off_loop,
    playwright,  # noqa: F401
    still_same_document,
)
from testsupport.fixtures import slow_password

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("allow_async_orm"),
]


def _create_hello(schema_name: str) -> None:
    with schema_context(schema_name):
        function_services.function_create(name="hello")


def _signed_in(page: Page, live_server_url: str, world: Any) -> None:
    off_loop(_create_hello, schema_name=world.acme.schema_name)  # its events away from Playwright's loop
    slow_password(world.bob, PASSWORD)
    login(page, live_server_url, world.bob)


def in_frame(page: Page) -> Locator:
    """The portal's header with the tenant's navigation and the signed-in user."""
    return page.locator("header.topbar")


def test_an_unknown_function_is_the_portals_404_page(page: Page, live_server_url: str, world: Any) -> None:
    _signed_in(page, live_server_url, world)

    response = page.goto(f"{live_server_url}/t/acme/functions/nope/")

    assert response is not None
    assert response.status == 404
    expect(heading(page)).to_have_text("404")
    expect(page.locator("main")).to_contain_text("Page not found")
    expect(page.locator("main")).to_contain_text("/t/acme/functions/nope/")
    expect(in_frame(page).get_by_role("link", name="Functions")).to_be_visible()
    expect(in_frame(page).get_by_role("link", name="bob")).to_be_visible()
    expect(page.locator("main")).not_to_contain_text("Traceback")


def test_an_oversized_upload_is_the_portals_413_page_saying_the_limit(
    page: Page, live_server_url: str, world: Any
) -> None:
    _signed_in(page, live_server_url, world)
    page.goto(f"{live_server_url}/t/acme/functions/hello/")
    upload = page.locator("form").filter(has=page.locator("input[name='action'][value='upload']"))
    expect(upload).to_contain_text("at most 10 MiB")  # said before the upload, too

    upload.locator("input[type=file]").set_input_files(
        {"name": "big.zip", "mimeType": "application/zip", "buffer": b"PK" + b"\0" * (20 * 1024 * 1024)}
    )
    # Sent in place (htmx); the answer is not a panel but the framed 413, which takes the page.
    with page.expect_response(lambda r: r.request.method == "POST", timeout=60_000) as answer:
        upload.get_by_role("button", name="Upload", exact=True).click()

    assert answer.value.status == 413
    expect(heading(page)).to_have_text("413")
    expect(page.locator("main")).to_contain_text("Too large to accept")
    expect(page.locator("main")).to_contain_text("at most 10 MiB")
    expect(in_frame(page).get_by_role("link", name="Functions")).to_be_visible()
    page.get_by_role("link", name="Back to the page").click()
    expect(heading(page)).to_contain_text("hello", timeout=UI)
    with schema_context(world.acme.schema_name):
        assert Function.objects.get(name="hello").draft.archive_name == ""


def test_the_favicon_is_linked_and_served(page: Page, live_server_url: str, world: Any) -> None:
    page.goto(f"{live_server_url}/login/")
    href = page.locator("link[rel=icon]").get_attribute("href")
    assert href == "/favicon.svg"

    svg = page.request.get(f"{live_server_url}{href}")
    assert svg.status == 200
    assert svg.headers["content-type"].startswith("image/svg+xml")
    ico = page.request.get(f"{live_server_url}/favicon.ico")
    assert ico.status == 200
    assert ico.body()[:4] == b"\0\0\1\0"  # an icon resource


def test_a_refused_name_is_said_under_the_field_in_words(
    page: Page, live_server_url: str, world: Any
) -> None:
    _signed_in(page, live_server_url, world)
    page.goto(f"{live_server_url}/t/acme/functions/")

    page.get_by_label("Name").fill("hello")  # taken
    page.get_by_role("button", name="Create function").click()

    under_name = page.locator("#id_name + [role=alert]")
    expect(under_name).to_have_text("Already taken.", timeout=UI)
    expect(page.get_by_label("Name")).to_have_attribute("aria-invalid", "true")
    banner = page.locator(".messages article.error")
    expect(banner).to_have_text("A function with this name exists. Name: Already taken.")
    border = banner.evaluate("element => getComputedStyle(element).borderLeftColor")
    assert border not in ("rgba(0, 0, 0, 0)", "rgb(0, 0, 0)"), "an error must look like one"
    assert "{'" not in page.locator("body").inner_text()


def test_an_80_character_name_is_refused_with_the_limit(page: Page, live_server_url: str, world: Any) -> None:
    _signed_in(page, live_server_url, world)
    page.goto(f"{live_server_url}/t/acme/functions/")
    name = page.get_by_label("Name")

    name.fill("a" * 80)
    expect(name).to_have_value("a" * 80)  # not cut to 40 by the browser
    page.get_by_role("button", name="Create function").click()

    expect(page.locator("#id_name + [role=alert]")).to_contain_text(
        "a name has at most 40 characters (this one has 80)", timeout=UI
    )
    with schema_context(world.acme.schema_name):
        assert list(Function.objects.values_list("name", flat=True)) == ["hello"]


def test_saving_an_empty_editor_says_why_not(page: Page, live_server_url: str, world: Any) -> None:
    _signed_in(page, live_server_url, world)
    page.goto(f"{live_server_url}/t/acme/functions/hello/")
    expect(page.locator(".code-editor")).to_have_count(1, timeout=UI)
    mark_document(page)

    page.locator(".code-editor .cm-content").click()
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.press("Delete")
    page.get_by_role("button", name="Save", exact=True).click()

    alert = page.locator("[data-editor-error='content']")
    expect(alert).to_have_text(EMPTY_MAIN_FILE.format(path="main.py"), timeout=UI)
    expect(alert).to_have_attribute("role", "alert")
    assert still_same_document(page)  # refused in place: nothing was sent
    with schema_context(world.acme.schema_name):
        assert "def main" in Function.objects.get(name="hello").draft.files["main.py"]

    page.keyboard.type("def main():\n    return 'hi'")
    expect(alert).to_be_hidden()
