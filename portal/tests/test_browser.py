"""End to end in a real browser: Chromium (Playwright) against the ASGI server process.

The server (``live_server_url``) and the Celery worker (``celery_worker_process``) are
separate processes, so every test commits its data (``transaction=True``) and gives its
users a password hashed with a hasher the server verifies (``slow_password``).

Playwright's sync API keeps an asyncio loop running in the test thread while it lives:

- Django's ORM is allowed there by ``allow_async_orm``;
- Playwright lives for this module only (the fixtures below override pytest-playwright's
  session-scoped ones), so the tests of later modules do not run beside that loop;
- ``async_to_sync`` (which the notifier uses to push events to websockets) refuses to run
  beside a running loop, and the notifier swallows that error: service calls whose events
  a page must receive run in a fresh thread (``off_loop``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from django.db import connection, connections, transaction
from playwright.sync_api import Browser, BrowserType, Page, Playwright, expect, sync_playwright

from tenants import services
from tenants.models import Membership, Tenant
from tenants.roles import Role
from testsupport.axe import refuse_csp_violations_in
from testsupport.fixtures import slow_password

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("allow_async_orm"),
]

PASSWORD = "correct horse battery staple"
UI = 10_000  # ms: a page reacting to a click
LIVE = 20_000  # ms: a websocket connecting, an event crossing Redis
WORKER = 60_000  # ms: a Celery task creating and migrating a schema

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# ------------------------------------------------------------------ browser and database


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Debian's Chromium, headless (extends pytest-playwright's command-line options)."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS, "headless": True}


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Playwright for this module only (pytest-playwright's lives for the session)."""
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser_type(playwright: Playwright, browser_name: str) -> BrowserType:
    return getattr(playwright, browser_name)


@pytest.fixture(scope="module")
def browser(browser_type: BrowserType, browser_type_launch_args: dict[str, Any]) -> Iterator[Browser]:
    """Chromium, whose every context fails its test on a Content-Security-Policy violation in any
    page it opened (testsupport.axe.refuse_csp_violations): every browser module uses this one."""
    browser = refuse_csp_violations_in(browser_type.launch(**browser_type_launch_args))
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def browser_context_args() -> dict[str, Any]:
    """Plain contexts (pytest-playwright's session-scoped one needs its session Playwright)."""
    return {}


# ------------------------------------------------------------------ helpers


def submit_login(page: Page, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def login(page: Page, base_url: str, user: Any, password: str = PASSWORD) -> None:
    """Sign in through the form and wait until the browser has left the sign-in page."""
    submit_login(page, base_url, user.username, password)
    expect(page).not_to_have_url(re.compile(r"/login/"), timeout=UI)


def heading(page: Page) -> Any:
    return page.get_by_role("heading", level=1)


def open_live(page: Page, url: str) -> None:
    """Open a page with a live feed and wait until its websocket is connected."""
    page.goto(url)
    expect(page.locator("[data-connection]")).to_have_text("live", timeout=LIVE)


def mark_document(page: Page) -> None:
    """Tag the current document, so ``still_same_document`` can tell that nothing reloaded it."""
    page.evaluate("window.__noReload = true")


def still_same_document(page: Page) -> bool:
    return bool(page.evaluate("window.__noReload === true"))


def off_loop(function: Callable[..., Any], /, **kwargs: Any) -> Any:
    """Call ``function`` in a fresh thread, away from Playwright's running event loop.

    There the notifier's ``async_to_sync`` works, so the events of the call reach the
    server's websockets through Redis. The thread's database connection is closed after.
    """

    def call() -> Any:
        try:
            return function(**kwargs)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result(timeout=30)


@contextmanager
def schema_held(schema_name: str) -> Iterator[None]:
    """Keep a tenant's provisioning from finishing until the block ends.

    An uncommitted ``CREATE SCHEMA`` of the same name makes the worker's own ``CREATE
    SCHEMA`` wait for this transaction; it is rolled back on leaving, and the worker
    then creates the schema itself. The web server never touches the schema meanwhile.
    """
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE SCHEMA "{schema_name}"')
        try:
            yield
        finally:
            transaction.set_rollback(True)


# ------------------------------------------------------------------ signing in


def test_sign_in_lands_on_the_only_tenant(page: Page, live_server_url: str, world: Any) -> None:
    slow_password(world.alice, PASSWORD)

    submit_login(page, live_server_url, "alice", "not-her-password")
    expect(page.get_by_role("alert")).to_have_text("Your username and password did not match.")
    expect(page).to_have_url(f"{live_server_url}/login/")

    login(page, live_server_url, world.alice)
    expect(page).to_have_url(f"{live_server_url}/t/acme/")
    expect(heading(page)).to_have_text("Acme")
    expect(page.get_by_role("link", name="alice")).to_be_visible()


def test_sign_in_returns_to_the_page_asked_for(page: Page, live_server_url: str, world: Any) -> None:
    slow_password(world.bob, PASSWORD)

    page.goto(f"{live_server_url}/t/acme/tokens/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/t/acme/tokens/$"))
    page.get_by_label("Username").fill("bob")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_url(f"{live_server_url}/t/acme/tokens/", timeout=UI)
    expect(heading(page)).to_have_text("API tokens")


def test_tenant_switcher_moves_to_the_other_tenant(page: Page, live_server_url: str, world: Any) -> None:
    Membership.objects.create(user=world.alice, tenant=world.globex, role=Role.VIEWER)
    slow_password(world.alice, PASSWORD)

    login(page, live_server_url, world.alice)
    expect(heading(page)).to_have_text("Your tenants")  # two tenants: no automatic redirect
    page.goto(f"{live_server_url}/t/acme/")
    switcher = page.locator("[data-tenant-switcher]")
    expect(switcher).to_have_value("acme")

    switcher.select_option("globex")

    expect(page).to_have_url(f"{live_server_url}/t/globex/", timeout=UI)
    expect(heading(page)).to_have_text("Globex")
    expect(page.locator("[data-tenant-switcher]")).to_have_value("globex")


# ------------------------------------------------------------------ tokens


def test_new_token_is_shown_once_and_works(page: Page, live_server_url: str, world: Any) -> None:
    slow_password(world.alice, PASSWORD)
    tokens_url = f"{live_server_url}/t/acme/tokens/"
    login(page, live_server_url, world.alice)
    page.goto(tokens_url)
    expect(page.locator("[data-new-token]")).to_have_count(0)

    page.get_by_label("Name").fill("ci-deploy")
    page.get_by_label("Role").select_option("developer")
    page.get_by_role("button", name="Create token").click()

    shown = page.locator("[data-new-token]")
    expect(shown).to_have_text(re.compile(r"^fpt_\S+$"), timeout=UI)
    secret = shown.inner_text().strip()

    page.goto(tokens_url)
    expect(page.locator("[data-new-token]")).to_have_count(0)
    assert secret not in page.content()
    row = page.get_by_role("row").filter(has_text="ci-deploy")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Developer")
    expect(row).to_contain_text("active")

    response = httpx.get(
        f"{live_server_url}/t/acme/api/v1/me/", headers={"Authorization": f"Bearer {secret}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "username": "alice",
        "tenant": "acme",
        "role": "developer",
        "token_role": "developer",
    }


# ------------------------------------------------------------------ live updates


def test_dashboard_feed_shows_new_tokens_and_members_live(
    page: Page, live_server_url: str, world: Any
) -> None:
    slow_password(world.alice, PASSWORD)
    login(page, live_server_url, world.alice)
    open_live(page, f"{live_server_url}/t/acme/")
    feed = page.locator("[data-feed]")
    expect(feed.locator("li[data-kind='tenant.state']")).to_contain_text("tenant acme is ready")
    mark_document(page)

    issued = off_loop(services.token_create, tenant=world.acme, user=world.bob, name="nightly", role="viewer")
    expect(feed.locator("li[data-kind='token.created']")).to_contain_text(
        f"token nightly ({issued.token.key_id}) created", timeout=LIVE
    )

    off_loop(services.membership_add, tenant=world.acme, username="carol", role="developer")
    expect(feed.locator("li[data-kind='member.added']")).to_contain_text(
        "member carol added as developer", timeout=LIVE
    )

    expect(feed.locator("li").first).to_have_attribute("data-kind", "member.added")  # newest first
    assert still_same_document(page)


def test_new_tenant_becomes_ready_live(
    page: Page, live_server_url: str, world: Any, celery_worker_process: Any
) -> None:
    slow_password(world.admin, PASSWORD)
    login(page, live_server_url, world.admin)
    page.goto(f"{live_server_url}/platform/tenants/")

    with schema_held("t_newco"):
        page.get_by_label("Slug").fill("newco")
        page.get_by_label("Name").fill("Newco")
        page.get_by_role("button", name="Create tenant").click()

        expect(page).to_have_url(f"{live_server_url}/platform/tenants/newco/", timeout=UI)
        expect(page.get_by_role("status")).to_have_text("Tenant newco is being provisioned.")
        expect(page.locator("[data-connection]")).to_have_text("live", timeout=LIVE)
        badge = page.locator("[data-tenant-state]")
        expect(badge).to_have_text("provisioning")
        mark_document(page)
        assert Tenant.objects.get(slug="newco").state == "provisioning"

    expect(badge).to_have_text("ready", timeout=WORKER)
    expect(badge).to_have_class(re.compile(r"\bstate-ready\b"))
    expect(page.locator("[data-feed] li[data-kind='tenant.state']").first).to_contain_text(
        "tenant newco is ready"
    )
    assert still_same_document(page)
    assert Tenant.objects.get(slug="newco").state == "ready"


# ------------------------------------------------------------------ isolation


def test_other_tenants_member_gets_404(page: Page, live_server_url: str, world: Any) -> None:
    slow_password(world.oscar, PASSWORD)
    login(page, live_server_url, world.oscar)
    expect(page).to_have_url(f"{live_server_url}/t/globex/")

    response = page.goto(f"{live_server_url}/t/acme/")
    assert response is not None
    assert response.status == 404
    expect(heading(page)).to_have_text("404")
    expect(page.locator("main")).not_to_contain_text("Acme")
    expect(page.locator("[data-tenant-switcher] option[value='acme']")).to_have_count(0)

    # ...exactly as for a tenant that does not exist
    unknown = page.goto(f"{live_server_url}/t/nosuch/")
    assert unknown is not None
    assert unknown.status == 404
    expect(heading(page)).to_have_text("404")
