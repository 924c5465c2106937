"""Every page of the portal, in Chromium, as its users see it: axe-core finds no serious or
critical accessibility violation, and the JavaScript console stays free of errors.

The pages are visited with data in them (a function with code, a trigger, a version and an
alias; members; a token), as a tenant admin, a platform admin and a signed-out visitor."""

from __future__ import annotations

from typing import Any

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import Page

from functions.models import Build, BuildState, Deployment, DeploymentState, Draft
from functions.services import functions, triggers, versions
from portal.tests.test_browser import (  # the fixtures are found by name
    browser,  # noqa: F401
    browser_context_args,  # noqa: F401
    browser_type,  # noqa: F401
    browser_type_launch_args,  # noqa: F401
    login,
    playwright,  # noqa: F401
)
from testsupport.axe import ConsoleErrors, axe_violations
from testsupport.fixtures import slow_password

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("allow_async_orm"),
]

TENANT_PAGES = [
    "/t/acme/",
    "/t/acme/functions/",
    "/t/acme/functions/hello/",
    "/t/acme/functions/hello/compare/?base=v1&head=draft",
    "/t/acme/functions/hello/test/",
    "/t/acme/functions/hello/metrics/",
    "/t/acme/functions/hello/metrics/?view=version",
    "/t/acme/functions/hello/metrics/figures/",  # the Monitor tab with its figures, without JavaScript
    "/t/acme/functions/hello/logs/",
    "/t/acme/functions/hello/versions/",
    "/t/acme/functions/hello/triggers/",
    "/t/acme/functions/hello/configuration/",
    "/t/acme/environments/",
    "/t/acme/configuration/",
    "/t/acme/logs/",
    "/t/acme/members/",
    "/t/acme/tokens/",
    "/t/acme/quota/",
    "/t/acme/audit/",
    "/t/acme/functions/no-such-function/",
    "/account/password/",
]
PLATFORM_PAGES = ["/platform/tenants/", "/platform/tenants/acme/", "/platform/audit/"]


@pytest.fixture
def furnished(world: Any) -> Any:
    """acme with a function that has code, an HTTP trigger, a published version and an alias."""
    for user in (world.alice, world.admin):
        slow_password(user, "correct horse battery staple")
    with schema_context(world.acme.schema_name):
        hello = functions.function_create(name="hello")
        triggers.trigger_save(function=hello, name="hello", methods=["GET"], path="/hello")
        revision = Draft.objects.get(function=hello).revision
        Build.objects.create(
            function=hello, draft_revision=revision, state=BuildState.SUCCEEDED, sha256="a" * 64,
            python_version=hello.environment.runtime_version, source_files=dict(hello.draft.files),
        )  # fmt: skip
        Deployment.objects.create(function=hello, state=DeploymentState.LIVE, cause="fixture")
        versions.version_publish(function=hello, description="first")
        versions.alias_set(function=hello, name="live", version=1)
    return world


def _checked(page: Page, url: str) -> tuple[list[dict[str, Any]], list[str]]:
    """axe's findings and the console's errors, less Chromium's note of the document's own
    status (a 404 page is answered 404 on purpose; anything else the page loads still counts)."""
    console = ConsoleErrors(page)
    page.goto(url)
    page.wait_for_load_state("networkidle")
    return axe_violations(page), console.errors_besides(document=page.url)


@pytest.mark.parametrize("path", TENANT_PAGES)
def test_tenant_pages_have_no_serious_violations_nor_console_errors(
    page: Page, live_server_url: str, furnished: Any, path: str
) -> None:
    login(page, live_server_url, furnished.alice)
    violations, errors = _checked(page, f"{live_server_url}{path}")
    assert violations == [], violations
    assert errors == [], errors


@pytest.mark.parametrize("path", PLATFORM_PAGES)
def test_platform_pages_have_no_serious_violations_nor_console_errors(
    page: Page, live_server_url: str, furnished: Any, path: str
) -> None:
    login(page, live_server_url, furnished.admin)
    violations, errors = _checked(page, f"{live_server_url}{path}")
    assert violations == [], violations
    assert errors == [], errors


def test_the_sign_in_page_has_no_serious_violations_nor_console_errors(
    page: Page, live_server_url: str
) -> None:
    violations, errors = _checked(page, f"{live_server_url}/login/")
    assert violations == [], violations
    assert errors == [], errors


def test_the_check_finds_what_it_looks_for(page: Page, live_server_url: str) -> None:
    """The checks can fail: an image without text and a thrown error are reported."""
    page.goto(f"{live_server_url}/login/")
    console = ConsoleErrors(page)
    page.evaluate("() => { const b = document.createElement('button'); document.body.append(b); }")
    page.evaluate("() => setTimeout(() => { throw new Error('boom'); })")
    page.wait_for_timeout(200)
    assert "button-name" in [v["id"] for v in axe_violations(page)]
    assert any("boom" in e for e in console.errors), console.errors
