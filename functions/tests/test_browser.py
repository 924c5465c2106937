"""A function's whole life in a real browser: Chromium (Playwright) against the ASGI server,
with the Celery worker building and deploying to the local runtime.

See ``portal/tests/test_browser.py`` for how Playwright, the server processes and the
database meet; its module-scoped Playwright fixtures are imported here by name, so
Playwright lives for this module only as well.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from django.db import connection, transaction
from django_tenants.utils import schema_context
from playwright.sync_api import Locator, Page, expect

from functions.models import Build, Deployment, Function
from functions.services import triggers
from functions.services.functions import draft_update_files, function_create
from portal.tests.test_browser import (  # the fixtures are found by name
    LIVE,
    PASSWORD,
    UI,
    WORKER,
    browser,  # noqa: F401
    browser_context_args,  # noqa: F401
    browser_type,  # noqa: F401
    browser_type_launch_args,  # noqa: F401
    login,
    mark_document,
    playwright,  # noqa: F401
    still_same_document,
)
from testsupport.fixtures import slow_password
from testsupport.processes import wait_until

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("allow_async_orm"),
]

# Typed line by line into CodeMirror, which indents after "def main():" by itself (by its
# default unit, two spaces).
CODE_LINES = [
    "from flask import request",
    "",
    "def main():",
    'name = request.args.get("name", "world")',
    'print("greeting " + name)',
    'return "Hello, " + name + "!"',
]
CODE = (
    "from flask import request\n"
    "\n"
    "def main():\n"
    '    name = request.args.get("name", "world")\n'
    '    print("greeting " + name)\n'
    '    return "Hello, " + name + "!"'
)


@contextmanager
def builds_held(schema_name: str) -> Iterator[None]:
    """Keep the worker from starting a build in the tenant until the block ends.

    Inserting a Build row waits for this transaction's SHARE lock on the table, so a
    deployment of an unbuilt draft stops at "building"; pages only read the table.
    """
    table = connection.ops.quote_name(Build._meta.db_table)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f'LOCK TABLE "{schema_name}".{table} IN SHARE MODE')
        yield


def form_of(page: Page, action: str) -> Locator:
    """The workspace tab's form that posts ``action`` (the one that adds: not a row's edit form)."""
    return (
        page.locator("form")
        .filter(has=page.locator(f"input[name='action'][value='{action}']"))
        .filter(has_not=page.locator("input[name='original']"))
    )


def open_tab(page: Page, name: str) -> None:
    """Click a workspace tab and wait until its panel is in (htmx swaps it in place)."""
    page.locator("#workspace-nav").get_by_role("link", name=name, exact=True).click()
    expect(page.locator("#workspace-nav [aria-current='page']")).to_have_text(name, timeout=UI)


def message(page: Page) -> Locator:
    """The page's flash message (``get_by_role("status")`` would also find the canary <output>)."""
    return page.locator(".messages [role='status']")


def type_code(page: Page, lines: list[str]) -> None:
    """Replace the editor's text by typing, as a person would (Escape closes any completion
    popup, so Enter makes a new line instead of accepting a suggestion)."""
    page.locator(".code-editor .cm-content").click()
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.press("Delete")
    for number, line in enumerate(lines):
        if number:
            page.keyboard.press("Escape")
            page.keyboard.press("Enter")
        page.keyboard.type(line)
    page.keyboard.press("Escape")


def send_test_call(page: Page, method: str, path: str) -> Locator:
    """Send a call from the function page's "Test call" panel; its result's element."""
    test_call = page.locator("article").filter(has=page.get_by_role("heading", name="Test call"))
    test_call.get_by_label("Method").select_option(method)
    test_call.get_by_label("Path").fill(path)
    test_call.get_by_role("button", name="Send").click()
    return test_call.locator("[data-invocation]")


def editor_text(page: Page) -> str:
    return str(page.evaluate("window.codeEditors['content'].state.doc.toString()"))


def test_create_edit_deploy_and_call_a_function(
    page: Page, live_server_url: str, world: Any, celery_worker_process: Any, runtime_session: Any, api: Any
) -> None:
    slow_password(world.bob, PASSWORD)
    login(page, live_server_url, world.bob)

    # the list, and the "New function" form
    page.goto(f"{live_server_url}/t/acme/functions/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Functions")
    page.get_by_label("Name").fill("greet")
    page.get_by_role("button", name="Create function").click()
    expect(page).to_have_url(f"{live_server_url}/t/acme/functions/greet/", timeout=UI)
    expect(message(page)).to_have_text("Function greet created with a hello-world draft.")
    expect(page.get_by_role("heading", level=1)).to_contain_text("greet")

    # the editor replaces the textarea; type the code into it and save the draft
    expect(page.locator(".code-editor")).to_have_count(1, timeout=UI)
    expect(page.locator("textarea[name='content']")).to_be_hidden()
    type_code(page, CODE_LINES)
    assert editor_text(page) == CODE
    assert page.locator("textarea[name='content']").input_value() == CODE
    page.get_by_role("button", name="Save", exact=True).click()
    expect(message(page)).to_have_text(re.compile(r"^Saved main\.py \(draft revision \d+\)\.$"), timeout=UI)
    expect(page.locator(".code-editor .cm-content")).to_contain_text('print("greeting " + name)')
    assert editor_text(page) == CODE
    with schema_context(world.acme.schema_name):
        saved = Function.objects.get(name="greet").draft.files["main.py"]
        assert saved == CODE  # CRLF from the textarea is normalised on save
        assert not Deployment.objects.exists()
    expect(page.locator("[data-function-state]")).to_have_text("not deployed yet")
    mark_document(page)  # from here on, tabs and forms change the page in place

    # the workspace's tabs: each its own URL, swapped in without a reload
    open_tab(page, "Triggers")
    expect(page).to_have_url(f"{live_server_url}/t/acme/functions/greet/triggers/")
    expect(page).to_have_title("greet · Triggers")
    assert still_same_document(page)

    # an HTTP trigger on the draft, GET only: adding it queues a deployment, which waits to
    # build until this page is subscribed to its events
    with builds_held(world.acme.schema_name):
        trigger = form_of(page, "trigger")
        trigger.get_by_label("Name", exact=True).fill("greet")
        trigger.get_by_label("Path", exact=True).fill("/greet")
        trigger.get_by_label("Target").select_option("draft")
        trigger.get_by_label("GET", exact=True).check()
        trigger.get_by_label("POST", exact=True).uncheck()
        trigger.get_by_role("button", name="Add trigger").click()
        expect(message(page)).to_have_text("Trigger greet added; redeploying.", timeout=UI)
        row = page.get_by_role("row").filter(has=page.locator("code", has_text="/acme/greet"))
        expect(row).to_have_count(1)
        methods = row.get_by_role("cell").nth(1)  # the row's edit form (closed) lists every method
        expect(methods).to_have_text("GET")
        expect(row.get_by_role("cell").nth(3)).to_have_text("draft")
        # the header says it is deploying, and the URL the trigger gave it
        expect(page.locator("[data-function-state]")).to_have_text(
            re.compile(r"^deploying \((queued|building)\)$")
        )
        expect(page.locator("[data-function-url='greet']")).to_have_count(1)

        open_tab(page, "Code")
        with schema_context(world.acme.schema_name):
            deployment = Deployment.objects.get()
        badge = page.locator(f"[data-deployment-state='{deployment.pk}']")
        expect(badge).to_have_text(re.compile(r"^(queued|building)$"))
        expect(page.locator("[data-connection]")).to_have_text("live", timeout=LIVE)

    # ...and goes live on this page, through its websocket
    expect(badge).to_have_text("live", timeout=WORKER)
    expect(badge).to_have_class(re.compile(r"\bstate-live\b"))
    expect(page.locator("[data-function-state]")).to_have_text("live")  # the header too
    steps = page.locator("[data-feed] li[data-kind='deployment.step']")
    expect(steps.first).to_contain_text(f"deployment {deployment.pk}: live")
    expect(steps.filter(has_text=f"deployment {deployment.pk}: applying")).to_have_count(1)
    # the table's Steps column says what the feed says, without a reload
    expect(page.locator(f"[data-deployment-steps='{deployment.pk}']")).to_contain_text("→ live")
    assert still_same_document(page)
    with schema_context(world.acme.schema_name):
        deployment.refresh_from_db()
    assert deployment.state == "live", deployment.steps

    # the "Test call" panel (htmx): status, body and the request's own log line
    open_tab(page, "Test")
    result = send_test_call(page, "GET", "/greet?name=web")
    expect(result.locator("[data-status]")).to_have_text("200", timeout=LIVE)
    expect(result.locator("[data-body]")).to_have_text("Hello, web!")
    expect(result.locator("[data-logs]")).to_contain_text("greeting web")
    # the duration split: the round trip, and what the router measured (its whole, the function's part)
    timing = result.locator("[data-timing]")
    split = r"Round trip [\d.]+ ms\s+\(through the portal\)\s+·\s+router [\d.]+ ms\s+·\s+function [\d.]+ ms"
    expect(timing).to_contain_text(re.compile(split))
    assert still_same_document(page)

    # headers that are not a JSON object: the last result gives way to why, in words
    test_call = page.locator("article").filter(has=page.get_by_role("heading", name="Test call"))
    test_call.get_by_label("Headers (JSON)").fill("[1]")
    test_call.get_by_role("button", name="Send").click()
    expect(test_call.locator("[data-invocation-problem]")).to_have_text(
        "Headers: Headers must be a JSON object of strings.", timeout=UI
    )
    expect(test_call.locator("[data-invocation]")).to_have_count(0)
    test_call.get_by_label("Headers (JSON)").fill("{}")

    # the history gained the call without a reload, and sends it again
    test_call.get_by_text("History").click()
    test_call.get_by_role("button", name="Send GET /greet?name=web again").first.click()
    expect(test_call.locator("[data-invocation] [data-body]")).to_have_text("Hello, web!", timeout=LIVE)
    expect(test_call.locator("[data-history]")).to_have_count(2)
    assert still_same_document(page)

    # the page says the function's real URL (it was added with the trigger), with a copy button
    url = page.locator("[data-function-url='greet'] code")
    expect(url).to_have_text(f"{runtime_session.router.rstrip('/')}/acme/greet")
    expect(page.locator("[data-function-url='greet']").get_by_role("button", name="Copy URL")).to_be_visible()

    # and the route itself, through the runtime's router
    response = httpx.get(runtime_session.router + "/acme/greet?name=curl", timeout=30)
    assert (response.status_code, response.text) == (200, "Hello, curl!")

    # a deployment queued elsewhere (the API) joins the table by itself, and goes live there
    queued = api(world.bob).post("/t/acme/api/v1/functions/greet/deployments/")
    assert queued.status_code == 202, queued.content
    other = queued.json()["id"]
    open_tab(page, "Code")
    expect(page.locator(f"[data-deployment-state='{other}']")).to_have_text("live", timeout=WORKER)
    expect(page.locator(f"[data-deployment-steps='{other}']")).to_contain_text("→ live")
    expect(page.locator("[data-deployments] tr").first).to_contain_text(str(other))
    assert still_same_document(page)


def test_a_time_trigger_and_an_asynchronous_call_from_the_page(
    page: Page, live_server_url: str, world: Any, celery_worker_process: Any, runtime_session: Any
) -> None:
    with schema_context(world.acme.schema_name):
        function = function_create(name="ticker")
        triggers.trigger_save(function=function, name="ticker", methods=["POST"], path="/ticker")
    slow_password(world.bob, PASSWORD)
    login(page, live_server_url, world.bob)
    page.goto(f"{live_server_url}/t/acme/functions/ticker/triggers/")

    form = form_of(page, "time_trigger")
    form.get_by_label("Name", exact=True).fill("nightly")
    form.get_by_label("Schedule").fill("30 2 * * *")
    form.get_by_role("button", name="Save time trigger").click()
    expect(message(page)).to_contain_text("Next fires (UTC):", timeout=UI)
    expect(message(page)).to_contain_text("02:30:00")
    row = page.locator("#time-triggers").get_by_role("row").filter(has_text="nightly")
    expect(row).to_contain_text("30 2 * * *")

    bad = form_of(page, "time_trigger")
    bad.get_by_label("Name", exact=True).fill("broken")
    bad.get_by_label("Schedule").fill("0 25 * * *")
    bad.get_by_role("button", name="Save time trigger").click()
    expect(page.locator(".messages")).to_contain_text("out of range 0-23", timeout=UI)
    # ...and under the schedule itself, with what was typed kept to be corrected
    bad = form_of(page, "time_trigger")
    expect(bad.locator("[data-field-error='cron']")).to_contain_text("out of range 0-23")
    expect(bad.get_by_label("Schedule")).to_have_value("0 25 * * *")

    # the row's Edit changes that trigger in place
    nightly = page.locator("#time-triggers").get_by_role("row").filter(has_text="nightly")
    nightly.get_by_role("button", name="Edit").click()
    edit = nightly.locator("form[data-edit-time-trigger='nightly']")
    expect(edit.get_by_label("Schedule")).to_have_value("30 2 * * *")
    edit.get_by_label("Schedule").fill("45 3 * * *")
    edit.get_by_role("button", name="Save time trigger nightly").click()
    expect(message(page)).to_contain_text("03:45:00", timeout=UI)
    expect(page.locator("#time-triggers").get_by_role("row").filter(has_text="nightly")).to_contain_text(
        "45 3 * * *"
    )

    # the row's own Delete removes that trigger, after asking (the form names its kind)
    nightly = page.locator("#time-triggers").get_by_role("row").filter(has_text="nightly")
    nightly.get_by_role("button", name="Delete").click()
    nightly.get_by_role("button", name="Yes, delete time trigger nightly").click()
    expect(message(page)).to_have_text("Trigger nightly deleted; redeploying.", timeout=UI)
    expect(page.locator("#time-triggers").get_by_role("row").filter(has_text="nightly")).to_have_count(0)

    def live() -> bool:
        with schema_context(world.acme.schema_name):
            return Deployment.objects.filter(function__name="ticker", state="live").exists()

    wait_until(live, timeout=WORKER / 1000, interval=0.2, message="the deployment did not go live")
    open_tab(page, "Test")
    test_call = page.locator("article").filter(has=page.get_by_role("heading", name="Test call"))
    test_call.get_by_label("Method").select_option("POST")
    test_call.get_by_label("Path").fill("/ticker")
    test_call.get_by_label("Invocation").select_option("Event")
    test_call.get_by_role("button", name="Send").click()
    expect(test_call.locator("[data-invocation] [data-status]")).to_have_text("202", timeout=LIVE)


def test_environment_variables_set_in_the_settings_form_reach_the_function(
    page: Page, live_server_url: str, world: Any, celery_worker_process: Any, runtime_session: Any
) -> None:
    reader = "import os\n\ndef main():\n    return os.environ.get('GREETING', '<unset>')\n"
    with schema_context(world.acme.schema_name):
        function = function_create(name="envy")
        draft_update_files(function=function, files={"main.py": reader})
        triggers.trigger_save(function=function, name="envy", methods=["GET"], path="/envy")
    slow_password(world.bob, PASSWORD)
    login(page, live_server_url, world.bob)
    page.goto(f"{live_server_url}/t/acme/functions/envy/configuration/")

    settings = form_of(page, "settings")
    settings.get_by_label("Environment variables").fill("GREETING=from the page\nPATH=/tmp")
    settings.get_by_role("button", name="Save settings").click()
    expect(page.locator(".messages")).to_contain_text("PATH is reserved for the platform", timeout=UI)
    expect(form_of(page, "settings").locator("[data-field-error='environment_variables']")).to_contain_text(
        "PATH is reserved for the platform"
    )

    settings = form_of(page, "settings")
    settings.get_by_label("Environment variables").fill("GREETING=from the page")
    settings.get_by_role("button", name="Save settings").click()
    expect(message(page)).to_have_text("Settings saved; redeploying.", timeout=UI)
    expect(form_of(page, "settings").get_by_label("Environment variables")).to_have_value(
        "GREETING=from the page"
    )

    def live() -> bool:
        with schema_context(world.acme.schema_name):
            deployments = Deployment.objects.filter(function__name="envy")
            return deployments.exists() and not deployments.exclude(state__in=("live", "failed")).exists()

    wait_until(live, timeout=WORKER / 1000, interval=0.2, message="the deployments did not finish")
    open_tab(page, "Test")
    result = send_test_call(page, "GET", "/envy")
    expect(result.locator("[data-status]")).to_have_text("200", timeout=LIVE)
    expect(result.locator("[data-body]")).to_have_text("from the page")


def test_secrets_and_config_maps_from_their_page(page: Page, live_server_url: str, world: Any) -> None:
    slow_password(world.bob, PASSWORD)
    login(page, live_server_url, world.bob)
    page.goto(f"{live_server_url}/t/acme/configuration/")

    secrets = page.locator("#secrets")
    secrets.locator("input[name='secret-name']").fill("db")
    secrets.get_by_label("Values").fill("password=browser-s3cr3t\nuser=app")
    secrets.get_by_role("button", name="Save secret").click()
    expect(message(page)).to_contain_text("Secret db saved", timeout=UI)
    row = page.locator("[data-secret='db']")
    expect(row).to_contain_text("password")
    expect(page.locator("body")).not_to_contain_text("browser-s3cr3t")
    expect(page.locator("#secrets").get_by_label("Values")).to_have_value("")  # never filled back in

    configmaps = page.locator("#configmaps")
    configmaps.locator("input[name='configmap-name']").fill("app")
    configmaps.get_by_label("Values").fill("mode=fast")
    configmaps.get_by_role("button", name="Save config map").click()
    expect(page.locator("[data-configmap='app']")).to_contain_text("mode=fast", timeout=UI)
    page.locator("[data-configmap='app']").get_by_role("button", name="Delete config map").click()
    expect(message(page)).to_have_text("ConfigMap app deleted.", timeout=UI)
    expect(page.locator("[data-configmap='app']")).to_have_count(0)
