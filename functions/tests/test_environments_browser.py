"""The environments page in a real browser: Chromium (Playwright) against the ASGI server.

See ``portal/tests/test_browser.py`` for how Playwright, the server process and the database
meet; its module-scoped Playwright fixtures are imported here by name.
"""

from __future__ import annotations

from typing import Any

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import Locator, Page, expect

from functions.models import Environment
from functions.services import functions as function_services
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


def message(page: Page) -> Locator:
    return page.locator(".messages [role='status']")


def row(page: Page, name: str) -> Locator:
    return page.locator(f"tr[data-environment='{name}']")


def test_list_create_change_and_delete_environments(page: Page, live_server_url: str, world: Any) -> None:
    with schema_context(world.acme.schema_name):
        function_services.function_create(name="hello")  # on the default environment, "python"
    slow_password(world.bob, PASSWORD)
    login(page, live_server_url, world.bob)

    # from the functions list to the environments page
    page.goto(f"{live_server_url}/t/acme/functions/")
    page.get_by_role("link", name="environments").click()
    expect(page).to_have_url(f"{live_server_url}/t/acme/environments/", timeout=UI)
    expect(page.get_by_role("heading", level=1)).to_have_text("Environments")
    python = row(page, "python")
    expect(python.locator("[data-python]")).to_have_text("3.13")
    expect(python.locator("[data-image]")).to_have_text("ghcr.io/fission/python-env:latest")
    expect(python.locator("[data-poolsize]")).to_have_text("3")
    expect(python.locator("[data-functions]")).to_contain_text("1 (hello)")

    # a new environment on Python 3.12: its image is 3.12's
    page.get_by_label("Name").fill("py312")
    page.locator("select[name='runtime_version']").select_option("3.12")
    page.locator("input[name='poolsize']").fill("1")
    page.get_by_role("button", name="Create environment").click()
    expect(message(page)).to_have_text("Environment py312 created.", timeout=UI)
    created = row(page, "py312")
    expect(created.locator("[data-python]")).to_have_text("3.12")
    expect(created.locator("[data-image]")).to_have_text("ghcr.io/fission/python-env-3.12:latest")
    expect(created.locator("[data-poolsize]")).to_have_text("1")
    expect(created.locator("[data-functions]")).to_have_attribute("data-functions", "0")

    # its page: move it to 3.11, the image follows
    created.get_by_role("link", name="py312").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Python 3.12", timeout=UI)
    page.locator("select[name='runtime_version']").select_option("3.11")
    page.get_by_role("button", name="Save environment").click()
    expect(message(page)).to_contain_text("Environment py312 saved", timeout=UI)
    expect(page.get_by_role("heading", level=1)).to_contain_text("Python 3.11")
    expect(page.locator("input[name='image']")).to_have_value("ghcr.io/fission/python-env-3.11:latest")

    # an unused environment is deleted
    page.get_by_role("button", name="Delete environment").click()
    expect(message(page)).to_have_text("Environment py312 deleted.", timeout=UI)
    expect(page).to_have_url(f"{live_server_url}/t/acme/environments/")
    expect(row(page, "py312")).to_have_count(0)

    # one in use is not: the message names the function, and it stays
    row(page, "python").get_by_role("link", name="python").click()
    expect(page.locator("[data-users]")).to_contain_text("Used by hello.", timeout=UI)
    page.get_by_role("button", name="Delete environment").click()
    expect(message(page)).to_contain_text("Environment python is used by hello", timeout=UI)
    expect(message(page)).to_have_class("error")
    expect(page).to_have_url(f"{live_server_url}/t/acme/environments/python/")
    with schema_context(world.acme.schema_name):
        assert sorted(Environment.objects.values_list("name", flat=True)) == ["python"]
