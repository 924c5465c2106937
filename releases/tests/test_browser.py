"""The rollouts panel in a real browser: started from the form, moved on by the engine in another
process, and the panel follows each change live over the function's websocket (no reload)."""

from __future__ import annotations

from typing import Any

import pytest
from django_tenants.utils import schema_context
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
    playwright,  # noqa: F401
    still_same_document,
)
from releases.models import Rollout
from releases.services import rollouts as services
from releases.tests.test_api import _two_versions
from testsupport.fixtures import slow_password

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("allow_async_orm"),
]


def _pause(schema: str, pk: int) -> None:
    with schema_context(schema):
        services.rollout_pause(rollout=Rollout.objects.get(pk=pk), user="engine-test")


def test_start_a_rollout_and_watch_it_change_live(page: Page, live_server_url: str, world: Any) -> None:
    _two_versions(world.acme)
    slow_password(world.bob, PASSWORD)
    login(page, live_server_url, world.bob)
    page.goto(f"{live_server_url}/t/acme/functions/hello/versions/")
    panel = page.locator("[data-rollouts-panel]")
    panel.get_by_text("Start a rollout").click()
    panel.get_by_label("Weights").fill("10, 50, 100")
    panel.get_by_label("Step interval (s)").fill("600")
    panel.get_by_role("button", name="Start rollout").click()
    running = panel.locator("[data-rollout-state='running']")
    expect(running).to_contain_text("step 1 of 3: 10% to v2", timeout=UI)
    expect(running.locator("[data-decision='step']")).to_contain_text("step 1 of 3: 10% to v2, 90% to v1")
    expect(page.locator("[data-connection]")).to_have_text("live", timeout=LIVE)
    mark_document(page)

    with schema_context(world.acme.schema_name):
        pk = Rollout.objects.get().pk
    off_loop(_pause, schema=world.acme.schema_name, pk=pk)  # as the engine or another user would
    paused = panel.locator(f"[data-rollout='{pk}'][data-rollout-state='paused']")
    expect(paused).to_be_visible(timeout=LIVE)
    expect(paused.locator("[data-decision='paused']")).to_contain_text("paused by engine-test")
    assert still_same_document(page)

    page.once("dialog", lambda dialog: dialog.accept())
    paused.get_by_role("button", name="Abort").click()
    expect(panel.locator(f"[data-rollout='{pk}'][data-rollout-state='aborted']")).to_be_attached(timeout=UI)
    expect(panel).to_contain_text("aborted by bob")
    assert still_same_document(page)
    with schema_context(world.acme.schema_name):
        assert Rollout.objects.get(pk=pk).state == "aborted"


def test_a_bad_form_says_why_in_the_panel(page: Page, live_server_url: str, world: Any) -> None:
    _two_versions(world.acme)
    slow_password(world.bob, PASSWORD)
    login(page, live_server_url, world.bob)
    page.goto(f"{live_server_url}/t/acme/functions/hello/versions/")
    panel = page.locator("[data-rollouts-panel]")
    panel.get_by_text("Start a rollout").click()
    panel.get_by_label("Weights").fill("50, 10, 100")
    panel.get_by_role("button", name="Start rollout").click()
    expect(panel.locator("[data-rollout-error]")).to_contain_text(
        "each weight is higher than the one before", timeout=UI
    )
    with schema_context(world.acme.schema_name):
        assert not Rollout.objects.exists()
