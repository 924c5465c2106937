"""Members, API tokens and the quota page in a real browser: Chromium (Playwright) against the
ASGI server. A new member's one-time password is shown once in its own box with a copy button
(never in the message banner) and must be replaced at the first sign-in; a new token is copied
with a button; removing a member and revoking a token ask first; quotas are named in words.

See ``portal/tests/test_browser.py`` for how Playwright, the server process and the database
meet; its module-scoped Playwright fixtures are imported here by name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Locator, Page, expect

from portal.tests.test_browser import (  # the fixtures are found by name
    PASSWORD,
    UI,
    browser,  # noqa: F401
    browser_type,  # noqa: F401
    browser_type_launch_args,  # noqa: F401
    heading,
    login,
    off_loop,
    playwright,  # noqa: F401
)
from tenants import services
from tenants.models import ApiToken, Membership, PasswordChangeRequired, Tenant
from testsupport.fixtures import slow_password

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("allow_async_orm"),
]

NEW_PASSWORD = "a much better secret 42"


@pytest.fixture(scope="module")
def browser_context_args() -> dict[str, Any]:
    """The copy buttons write the clipboard; the tests read it back."""
    return {"permissions": ["clipboard-read", "clipboard-write"]}


@pytest.fixture
def console_errors(page: Page) -> Iterator[list[str]]:
    """The page's console errors: every test ends with none."""
    errors: list[str] = []

    def record(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", record)
    yield errors
    assert errors == []


def banner(page: Page) -> Locator:
    return page.locator(".messages [role='status']")


def clipboard(page: Page) -> str:
    return str(page.evaluate("navigator.clipboard.readText()"))


def fetch_json(page: Page, path: str) -> dict[str, Any]:
    """GET ``path`` from the page, with its session cookie: ``{"status", "body"}``."""
    script = (
        "async (path) => { const r = await fetch(path); return {status: r.status, body: await r.json()}; }"
    )
    return dict(page.evaluate(script, path))


# ------------------------------------------------------------------ members


def invite(page: Page, base_url: str, email: str, role: str) -> None:
    page.goto(f"{base_url}/t/acme/members/")
    page.get_by_label("Email").fill(email)
    page.get_by_label(re.compile(r"^Role(?! of)")).select_option(role)  # not a member's "Role of ..."
    page.get_by_role("button", name="Make invitation link").click()


def test_an_invitation_link_is_shown_once_in_its_box_copied_and_joins_its_holder(
    page: Page, live_server_url: str, world: Any, console_errors: list[str]
) -> None:
    slow_password(world.alice, PASSWORD)
    login(page, live_server_url, world.alice)

    invite(page, live_server_url, "carol@example.org", "developer")

    box = page.locator("[data-one-time-link]")
    expect(box).to_contain_text("Invitation link for carol@example.org", timeout=UI)
    secret = box.locator("[data-secret]")
    expect(secret).to_have_text(re.compile(rf"^{re.escape(live_server_url)}/invitations/fpi_\S+/$"))
    link = secret.inner_text().strip()
    expect(banner(page)).to_have_text("Invitation for carol@example.org made: send them the link below.")
    expect(banner(page)).not_to_contain_text(link)

    box.get_by_role("button", name="Copy link").click()
    expect(box.locator("[data-copy-status]")).to_have_text("Copied", timeout=UI)
    assert clipboard(page) == link

    page.reload()
    expect(heading(page)).to_have_text("Members")
    expect(page.locator("[data-one-time-link]")).to_have_count(0)
    assert link not in page.content()
    expect(page.locator("tr[data-invitation='carol@example.org']")).to_contain_text("Developer")

    chromium = page.context.browser
    assert chromium is not None
    carol_context: BrowserContext = chromium.new_context()  # her own cookies: nobody is signed in
    carol = carol_context.new_page()
    try:
        carol.goto(link)
        expect(heading(carol)).to_have_text("Join Acme")
        carol.get_by_label("Username").fill("carol")
        carol.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
        carol.get_by_label("Password again").fill(NEW_PASSWORD)
        carol.get_by_role("button", name="Create account and join").click()
        expect(carol).to_have_url(f"{live_server_url}/t/acme/", timeout=UI)
        expect(banner(carol)).to_have_text("You joined Acme as Developer.")
        assert fetch_json(carol, "/t/acme/api/v1/me/")["body"]["role"] == "developer"
        carol.goto(link)  # used up
        expect(heading(carol)).to_have_text("This invitation link does not work")
    finally:
        carol_context.close()
    page.reload()
    expect(page.locator("tr[data-member='carol']")).to_be_visible()
    expect(page.locator("tr[data-invitation]")).to_have_count(0)


def test_the_new_member_must_change_the_password_at_first_sign_in(
    page: Page, live_server_url: str, world: Any, console_errors: list[str]
) -> None:
    """A user made with a one-time password (services.membership_add, which no page offers
    since invitations) is held on the password change page until they choose their own."""
    new = off_loop(services.membership_add, tenant=world.acme, username="carol", role="viewer")
    password = new.initial_password
    slow_password(new.membership.user, password)  # hashed as the live server checks it

    chromium = page.context.browser
    assert chromium is not None
    carol_context: BrowserContext = chromium.new_context()  # her own cookies
    carol = carol_context.new_page()
    try:
        carol.goto(f"{live_server_url}/login/")
        carol.get_by_label("Username").fill("carol")
        carol.get_by_label("Password").fill(password)
        carol.get_by_role("button", name="Sign in").click()

        # held on the password change page, whatever she asks for
        expect(carol).to_have_url(f"{live_server_url}/account/password/", timeout=UI)
        expect(heading(carol)).to_have_text("Change your password")
        expect(carol.locator("[data-password-change-required]")).to_contain_text(
            "You signed in with a one-time password."
        )
        for path in ("/t/acme/", "/t/acme/functions/", "/t/acme/tokens/"):
            carol.goto(f"{live_server_url}{path}")
            expect(carol).to_have_url(f"{live_server_url}/account/password/", timeout=UI)
        refused = fetch_json(carol, "/t/acme/api/v1/me/")
        assert refused["status"] == 403
        assert refused["body"]["error"]["code"] == "password_change_required"

        # a wrong current password changes nothing
        carol.get_by_label("Old password").fill("not it")
        carol.get_by_label(re.compile(r"^New password:?$")).fill(NEW_PASSWORD)
        carol.get_by_label("New password confirmation").fill(NEW_PASSWORD)
        carol.get_by_role("button", name="Change password").click()
        expect(carol.locator(".errorlist")).to_contain_text("Your old password was entered incorrectly")
        carol.goto(f"{live_server_url}/t/acme/")
        expect(carol).to_have_url(f"{live_server_url}/account/password/", timeout=UI)

        carol.get_by_label("Old password").fill(password)
        carol.get_by_label(re.compile(r"^New password:?$")).fill(NEW_PASSWORD)
        carol.get_by_label("New password confirmation").fill(NEW_PASSWORD)
        carol.get_by_role("button", name="Change password").click()

        expect(carol).to_have_url(f"{live_server_url}/t/acme/", timeout=UI)  # her only tenant
        expect(banner(carol)).to_have_text("Your password was changed.")
        carol.goto(f"{live_server_url}/t/acme/functions/")
        expect(heading(carol)).to_have_text(re.compile("Functions"))
        assert fetch_json(carol, "/t/acme/api/v1/me/")["status"] == 200
        assert not PasswordChangeRequired.objects.filter(user__username="carol").exists()
    finally:
        carol_context.close()


def test_removing_a_member_asks_first(
    page: Page, live_server_url: str, world: Any, console_errors: list[str]
) -> None:
    slow_password(world.alice, PASSWORD)
    login(page, live_server_url, world.alice)
    page.goto(f"{live_server_url}/t/acme/members/")
    bob = page.locator("tr[data-member='bob']")
    confirm = bob.get_by_role("button", name="Yes, remove bob")
    expect(confirm).to_be_hidden()

    bob.get_by_role("button", name="Remove", exact=True).click()  # the <summary>: opens the question only
    expect(confirm).to_be_visible()
    expect(bob).to_contain_text("bob loses access to Acme")
    assert Membership.objects.filter(user=world.bob, tenant=world.acme).exists()

    confirm.click()
    expect(banner(page)).to_have_text("bob removed.", timeout=UI)
    expect(page.locator("tr[data-member='bob']")).to_have_count(0)
    assert not Membership.objects.filter(user=world.bob, tenant=world.acme).exists()


def test_a_role_is_changed_with_its_button(
    page: Page, live_server_url: str, world: Any, console_errors: list[str]
) -> None:
    slow_password(world.alice, PASSWORD)
    login(page, live_server_url, world.alice)
    page.goto(f"{live_server_url}/t/acme/members/")

    page.get_by_label("Role of vera", exact=True).select_option("developer")
    page.get_by_role("button", name="Set role of vera").click()

    expect(banner(page)).to_have_text("vera is now Developer.", timeout=UI)
    assert Membership.objects.get(user=world.vera, tenant=world.acme).role == "developer"


# ------------------------------------------------------------------ tokens


def test_a_new_token_is_copied_with_its_button_and_revoking_asks_first(
    page: Page, live_server_url: str, world: Any, console_errors: list[str]
) -> None:
    slow_password(world.alice, PASSWORD)
    login(page, live_server_url, world.alice)
    page.goto(f"{live_server_url}/t/acme/tokens/")
    page.get_by_label("Name").fill("ci-deploy")
    page.get_by_role("button", name="Create token").click()

    shown = page.locator("[data-new-token]")
    expect(shown).to_have_text(re.compile(r"^fpt_\S+$"), timeout=UI)
    page.get_by_role("button", name="Copy token").click()
    expect(page.locator("[data-copy-status='new-token']")).to_have_text("Copied", timeout=UI)
    assert clipboard(page) == shown.inner_text().strip()

    row = page.get_by_role("row").filter(has_text="ci-deploy")
    confirm = row.get_by_role("button", name="Yes, revoke ci-deploy")
    expect(confirm).to_be_hidden()
    row.get_by_role("button", name="Revoke", exact=True).click()  # the <summary>: opens the question only
    expect(confirm).to_be_visible()
    expect(row.locator("[data-token-status]")).to_have_text("active")
    assert ApiToken.objects.get(name="ci-deploy").revoked_at is None

    confirm.click()
    expect(row.locator("[data-token-status]")).to_have_text("revoked", timeout=UI)
    assert ApiToken.objects.get(name="ci-deploy").revoked_at is not None


# ------------------------------------------------------------------ the quota


def test_quotas_are_named_in_words(
    page: Page, live_server_url: str, world: Any, console_errors: list[str]
) -> None:
    slow_password(world.vera, PASSWORD)
    login(page, live_server_url, world.vera)
    page.goto(f"{live_server_url}/t/acme/quota/")

    table = page.get_by_role("table")
    expect(table.get_by_role("rowheader", name="HTTP triggers")).to_be_visible()
    expect(table.get_by_role("rowheader", name="Message queue triggers")).to_be_visible()
    memory = page.locator("tr[data-quota='memory_limits']")
    expect(memory.get_by_role("rowheader")).to_have_text("Memory limit, all pods")
    expect(memory).to_contain_text("16384 MiB")
    expect(page.get_by_text("httptriggers")).to_have_count(0)
    expect(page.get_by_text("memory_limits")).to_have_count(0)


def test_the_platform_quota_form_is_labelled_in_words_and_saves(
    page: Page, live_server_url: str, world: Any, console_errors: list[str]
) -> None:
    slow_password(world.admin, PASSWORD)
    login(page, live_server_url, world.admin)
    page.goto(f"{live_server_url}/platform/tenants/acme/")

    expect(page.get_by_label("HTTP triggers")).to_have_value("50")
    expect(page.get_by_label("Memory limit, all pods (bytes, e.g. 512Mi or 4Gi)")).to_have_value("16Gi")
    page.get_by_label("Pods", exact=True).fill("12")
    page.get_by_role("button", name="Save quota").click()

    expect(banner(page)).to_have_text("Quota of acme saved; applying it.", timeout=UI)
    assert Tenant.objects.get(slug="acme").quota == {"pods": 12}
