"""The Content-Security-Policy (portal/settings.py, django-csp): the same strict policy on every
kind of answer, pages and their errors, the API and its docs, static files; no template that
would need it relaxed; and, in Chromium, the API docs working under it and the browser tests' guard
(testsupport.axe.refuse_csp_violations) failing a test whose page breaks it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from playwright.sync_api import Page, expect

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
from testsupport.axe import CspViolations
from testsupport.fixtures import slow_password

HEADER = "Content-Security-Policy"
POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
}
NONCE = re.compile(r"^'nonce-[A-Za-z0-9+/]{22}==?'$")
TEMPLATES = Path(settings.BASE_DIR) / "templates"
# What a template must not hold: a <script> that runs (a JSON data block does not), an event
# handler attribute (onclick=...), a style attribute or element, htmx's evaluated attributes
# (hx-on*, "js:" values, trigger filters [...]) and javascript: URLs.
INLINE = {
    "inline script": re.compile(r"<script\b(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I),
    "event handler": re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.I),
    "style attribute": re.compile(r"<[a-z][^>]*\sstyle\s*=", re.I),
    "style element": re.compile(r"<style\b", re.I),
    "htmx hx-on": re.compile(r"\s(data-)?hx-on[:-]", re.I),
    "htmx js: value": re.compile(r"\s(data-)?hx-(vals|vars|headers)\s*=\s*['\"]\s*(js|javascript):", re.I),
    "htmx trigger filter": re.compile(r"\s(data-)?hx-trigger\s*=\s*['\"][^'\"]*\[", re.I),
    "javascript: URL": re.compile(r"=\s*['\"]?\s*javascript:", re.I),
}


def policy_of(response: Any) -> dict[str, list[str]]:
    """The answer's policy, directive by directive (django-csp's order varies by process)."""
    header = response.headers.get(HEADER)
    assert header, f"no {HEADER} on {response.status_code} {getattr(response, 'url', '')}"
    directives = (part.split() for part in header.split(";") if part.strip())
    return {name: sources for name, *sources in directives}


def assert_strict(response: Any) -> None:
    assert policy_of(response) == POLICY


# ------------------------------------------------------------------ the header on every answer


@pytest.mark.django_db
def test_pages_signed_in_and_out_and_the_sign_in_page_carry_the_policy(world: Any, client: Any) -> None:
    assert_strict(client.get("/login/"))
    signed_out = client.get("/t/acme/")
    assert signed_out.status_code == 302
    assert_strict(signed_out)
    client.force_login(world.bob)
    for path in ("/t/acme/", "/t/acme/functions/", "/t/acme/tokens/", "/account/password/"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert_strict(response)


@pytest.mark.django_db
def test_htmx_partials_carry_the_policy(world: Any, client: Any, hello: Any) -> None:
    client.force_login(world.bob)
    panel = client.get(
        "/t/acme/functions/hello/triggers/", headers={"HX-Request": "true", "HX-Target": "tab-panel"}
    )
    assert panel.status_code == 200
    assert b"<html" not in panel.content  # the panel alone
    assert_strict(panel)
    top = client.get("/t/acme/metrics/top/", headers={"HX-Request": "true"})
    assert top.status_code == 200
    assert_strict(top)


@pytest.mark.django_db
def test_only_the_workspace_page_adds_a_style_nonce_for_the_editor(
    world: Any, client: Any, hello: Any
) -> None:
    """CodeMirror's <style> needs it (static/src/editor.js); the page hands it over on the
    element outside the tab panel, and it is this answer's own nonce."""
    client.force_login(world.bob)
    page = client.get("/t/acme/functions/hello/")
    assert page.status_code == 200
    policy = policy_of(page)
    nonce = policy.pop("style-src")[1]
    assert NONCE.match(nonce)
    assert policy == {name: sources for name, sources in POLICY.items() if name != "style-src"}
    assert f'data-workspace nonce="{nonce[7:-1]}" data-csp-nonce'.encode() in page.content
    again = policy_of(client.get("/t/acme/functions/hello/"))["style-src"][1]
    assert again != nonce  # fresh for every answer


@pytest.mark.django_db
def test_errors_carry_the_policy(world: Any, client: Any, hello: Any) -> None:
    client.force_login(world.vera)  # a viewer of acme
    for path in ("/t/acme/functions/nope/", "/t/no-such-tenant/", "/t/globex/"):  # known, unknown, hidden
        response = client.get(path)
        assert response.status_code == 404, path
        assert_strict(response)
    forbidden = client.post("/t/acme/functions/", {"name": "x"})
    assert forbidden.status_code == 403
    assert_strict(forbidden)
    with override_settings(MAX_REQUEST_BYTES=2048):
        big = SimpleUploadedFile("big.zip", b"PK" + b"\0" * 5000)
        too_large = client.post("/t/acme/functions/hello/", {"action": "upload", "file": big})
    assert too_large.status_code == 413
    assert_strict(too_large)


@pytest.mark.django_db
def test_the_api_its_errors_and_its_docs_carry_the_policy(world: Any, api: Any, client: Any) -> None:
    ok = api(world.bob).get("/t/acme/api/v1/functions/")
    assert ok.status_code == 200
    assert_strict(ok)
    refused = api().get("/t/acme/api/v1/functions/")
    assert refused.status_code == 401
    assert_strict(refused)
    for path in ("/api/schema/", "/api/docs/", "/api/docs/?script="):
        response = client.get(path)
        assert response.status_code == 200, path
        assert_strict(response)


@pytest.mark.django_db
def test_the_api_docs_page_holds_no_inline_script_nor_style(client: Any) -> None:
    swagger = client.get("/api/docs/").content.decode()
    assert '<script src="/api/docs/?script="></script>' in swagger  # the split view's own script
    assert "<style" not in swagger
    assert not INLINE["inline script"].search(swagger)


@pytest.mark.django_db
def test_static_files_carry_the_policy_too(client: Any) -> None:
    """WhiteNoise answers them from inside Django's middleware, after CSPMiddleware."""
    assert_strict(client.get("/favicon.svg"))


# ------------------------------------------------------------------ templates


def _findings(text: str) -> list[str]:
    return [kind for kind, pattern in INLINE.items() if pattern.search(text)]


def test_the_scan_finds_each_kind_of_inline_code() -> None:
    assert _findings('<script>alert(1)</script><script type="module">x</script>') == ["inline script"]
    assert _findings('<button type="button" onclick="go()">') == ["event handler"]
    assert _findings('<input\n  value="x" onInput="go()">') == ["event handler"]
    assert _findings('<article style="max-width: 3rem">') == ["style attribute"]
    assert _findings("<style>body { margin: 0 }</style>") == ["style element"]
    assert _findings('<div hx-on:click="go()">') == ["htmx hx-on"]
    assert _findings("<div hx-vals='js:{a: 1}'>") == ["htmx js: value"]
    assert _findings('<div hx-trigger="keyup[ctrlKey]">') == ["htmx trigger filter"]
    assert _findings('<a href="javascript:go()">') == ["javascript: URL"]
    allowed = (
        '<script src="/static/dist/main.js" defer></script><script type="application/json" id="x">[]</script>'
        '<div data-shows="x" hx-trigger="load, rollout-changed from:body" class="online">'
    )
    assert _findings(allowed) == []


def test_no_template_holds_inline_code_or_styles() -> None:
    found = {
        str(path.relative_to(TEMPLATES)): kinds
        for path in sorted(TEMPLATES.rglob("*.html"))
        if (kinds := _findings(path.read_text()))
    }
    assert len(list(TEMPLATES.rglob("*.html"))) > 40  # the scan sees the templates
    assert found == {}


# ------------------------------------------------------------------ in Chromium


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("allow_async_orm")
def test_the_api_docs_work_under_the_policy(page: Page, live_server_url: str, world: Any) -> None:
    """Swagger UI renders the portal's operations and opens one with nothing refused (the
    guard fails the test at teardown otherwise)."""
    slow_password(world.bob, PASSWORD)
    login(page, live_server_url, world.bob)
    page.goto(f"{live_server_url}/api/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("faas-portal API", timeout=UI)
    expect(page.locator(".opblock-summary-path").first).to_be_visible(timeout=UI)
    page.locator(".opblock-summary").first.click()
    expect(page.locator(".opblock-body").first).to_be_visible(timeout=UI)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("allow_async_orm")
def test_a_page_that_breaks_the_policy_fails_its_test(page: Page, live_server_url: str, world: Any) -> None:
    """The guard itself: a refused inline style is reported when the context closes, with the
    directive and the page; a context whose pages broke nothing closes quietly."""
    chromium = page.context.browser  # the module's Chromium, as every browser test's
    assert chromium is not None
    quiet = chromium.new_context()
    quiet.new_page().goto(f"{live_server_url}/login/")
    quiet.close()

    context = chromium.new_context()
    broken = context.new_page()
    broken.goto(f"{live_server_url}/login/")
    broken.evaluate("document.head.insertAdjacentHTML('beforeend', '<style>body { color: red }</style>')")
    expect(broken.get_by_role("heading", name="Sign in")).to_be_visible()
    with pytest.raises(CspViolations) as refused:
        context.close()
    assert "style-src" in str(refused.value)
    assert f"{live_server_url}/login/" in str(refused.value)
