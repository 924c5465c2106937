"""The Code tab's file tree in Chromium (issue 16): a file is added, edited and saved with
Ctrl-S, its syntax error marked in the editor on its line and said in words, renamed, and deleted
after confirming; leaving a file with unsaved edits asks first; a save refused because the draft
moved on keeps the text, offered back; a viewer reads the code and changes nothing. No console
error, and no serious accessibility violation, on the way."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import Dialog, Locator, Page, expect

from functions.models import Draft, Function
from functions.services import functions
from functions.tests.test_browser import message
from portal.tests.test_browser import (  # the fixtures are found by name
    PASSWORD,
    UI,
    browser,  # noqa: F401
    browser_context_args,  # noqa: F401
    browser_type,  # noqa: F401
    browser_type_launch_args,  # noqa: F401
    login,
    off_loop,
    playwright,  # noqa: F401
)
from testsupport.axe import ConsoleErrors, axe_violations
from testsupport.fixtures import slow_password

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("allow_async_orm"),
]


def _files(world: Any) -> dict[str, str]:
    with schema_context(world.acme.schema_name):
        return dict(Draft.objects.get(function=Function.objects.get(name="hello")).files)


def _tree_link(page: Page, path: str) -> Locator:
    return page.locator(f"[data-file-tree] a[data-file='{path}']")


def _type_lines(page: Page, lines: list[str]) -> None:
    """Replace the open file's text by typing, as a person would (Escape closes any completion
    popup, so Enter makes a new line instead of accepting a suggestion; the editor indents the
    line after a colon itself)."""
    page.locator(".code-editor .cm-content").click()
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.press("Delete")
    for number, line in enumerate(lines):
        if number:
            page.keyboard.press("Escape")
            page.keyboard.press("Enter")
        page.keyboard.type(line)
    page.keyboard.press("Escape")


def _open_as(page: Page, live_server_url: str, user: Any) -> ConsoleErrors:
    console = ConsoleErrors(page)
    slow_password(user, PASSWORD)
    login(page, live_server_url, user)
    page.goto(f"{live_server_url}/t/acme/functions/hello/")
    expect(page.locator("[data-code-panel] .code-editor")).to_have_count(1, timeout=UI)
    return console


def test_a_file_is_added_edited_renamed_and_deleted(
    page: Page, live_server_url: str, world: Any, hello: Any
) -> None:
    console = _open_as(page, live_server_url, world.bob)
    panel = page.locator("[data-code-panel]")
    expect(_tree_link(page, "main.py")).to_have_attribute("aria-current", "true")

    panel.get_by_label("New file").fill("lib/util.py")
    panel.get_by_role("button", name="Add file").click()
    expect(message(page)).to_have_text("Added lib/util.py (draft revision 2).", timeout=UI)
    expect(_tree_link(page, "lib/util.py")).to_have_attribute("aria-current", "true")
    expect(page).to_have_url(re.compile(r"\?file=lib(/|%2F)util\.py$"))
    expect(panel.locator("[data-code-file]")).to_have_text("lib/util.py")

    _type_lines(page, ["X = 1", "Y = = 2"])
    page.keyboard.press("ControlOrMeta+s")
    expect(message(page)).to_contain_text(
        "Saved lib/util.py (draft revision 3). It does not compile: lib/util.py, line 2", timeout=UI
    )
    assert _files(world)["lib/util.py"] == "X = 1\nY = = 2"
    # Marked in the editor on line 2 (a range and a gutter marker), and said in words under it.
    second_line = panel.locator(".cm-content .cm-line").nth(1)
    expect(second_line.locator(".cm-lintRange-error")).to_have_count(1)
    expect(panel.locator(".cm-content .cm-lintRange-error")).to_have_count(1)
    expect(panel.locator(".cm-gutter-lint .cm-lint-marker-error")).to_have_count(1)
    expect(panel.locator("[data-problems]")).to_contain_text("Line 2, column 5: invalid syntax")
    assert axe_violations(page) == []

    panel.get_by_label("Rename lib/util.py to").fill("lib/tools.py")
    panel.get_by_role("button", name="Rename", exact=True).click()
    expect(message(page)).to_have_text("Renamed lib/util.py to lib/tools.py (draft revision 4).", timeout=UI)
    expect(_tree_link(page, "lib/tools.py")).to_have_attribute("aria-current", "true")
    expect(_tree_link(page, "lib/util.py")).to_have_count(0)

    panel.get_by_role(
        "button", name="Delete lib/tools.py", exact=True
    ).click()  # asks first: nothing deleted yet
    assert "lib/tools.py" in _files(world)
    panel.get_by_role("button", name="Yes, delete lib/tools.py").click()
    expect(message(page)).to_have_text("Deleted lib/tools.py (draft revision 5).", timeout=UI)
    expect(panel.locator("[data-file-tree] a[data-file]")).to_have_count(1)
    expect(_tree_link(page, "main.py")).to_have_attribute("aria-current", "true")
    assert sorted(_files(world)) == ["main.py"]
    assert console.errors == []


def test_unsaved_edits_ask_before_another_file_or_tab_replaces_them(
    page: Page, live_server_url: str, world: Any, hello: Any
) -> None:
    with schema_context(world.acme.schema_name):
        functions.draft_file_add(function=hello, path="notes.txt")
    console = _open_as(page, live_server_url, world.bob)
    asked: list[str] = []
    answer = {"accept": False}

    def reply(dialog: Dialog) -> None:
        asked.append(f"{dialog.type}: {dialog.message}")
        dialog.accept() if answer["accept"] else dialog.dismiss()

    page.on("dialog", reply)
    _type_lines(page, ["def main():", "return 'edited'"])
    _tree_link(page, "notes.txt").click()
    expect(page.locator("[data-code-file]")).to_have_text("main.py")  # stayed, the edit kept
    assert asked == ["confirm: Your changes to main.py are not saved: leave them?"]
    expect(page.locator(".code-editor .cm-content")).to_contain_text("return 'edited'")

    page.locator("#workspace-nav").get_by_role("link", name="Test", exact=True).click()  # a tab: asks too
    assert len(asked) == 2
    expect(page.locator("[data-code-file]")).to_have_text("main.py")

    answer["accept"] = True
    _tree_link(page, "notes.txt").click()
    expect(page.locator("[data-code-file]")).to_have_text("notes.txt", timeout=UI)
    assert len(asked) == 3
    assert "return 'edited'" not in _files(world)["main.py"]  # left unsaved, as answered
    _tree_link(page, "main.py").click()  # nothing unsaved now: no question
    expect(page.locator("[data-code-file]")).to_have_text("main.py", timeout=UI)
    assert len(asked) == 3
    assert console.errors == []


def test_a_save_over_a_newer_draft_is_refused_and_the_text_offered_back(
    page: Page, live_server_url: str, world: Any, hello: Any
) -> None:
    console = _open_as(page, live_server_url, world.bob)
    _type_lines(page, ["def main():", "return 'mine'"])

    def someone_else_saves() -> None:
        with schema_context(world.acme.schema_name):
            functions.draft_file_save(
                function=hello, path="main.py", text="def main():\n    return 'theirs'\n", revision=1
            )

    off_loop(someone_else_saves)
    page.keyboard.press("ControlOrMeta+s")
    expect(page.locator(".messages [role='alert']")).to_contain_text(
        "The draft changed since you opened it (you had revision 1; it is now at 2)", timeout=UI
    )
    assert _files(world)["main.py"] == "def main():\n    return 'theirs'\n"  # not overwritten
    editor = page.locator(".code-editor .cm-content")
    expect(editor).to_contain_text("return 'theirs'")  # the draft as it is now
    offer = page.locator("[data-unsaved-offer='main.py']")
    expect(offer).to_contain_text("The text you last sent for main.py was not saved.")
    offer.get_by_role("button", name="Put my text back in the editor").click()
    expect(editor).to_contain_text("return 'mine'")
    page.keyboard.press("ControlOrMeta+s")  # now over revision 2: the person chose to
    expect(message(page)).to_have_text("Saved main.py (draft revision 3).", timeout=UI)
    assert "return 'mine'" in _files(world)["main.py"]
    expect(page.locator("[data-unsaved-offer]")).to_have_count(0)
    # Chromium notes the refusal's own status (409) on the console: that, and nothing else.
    refused = f"{live_server_url}/t/acme/functions/hello/?file=main.py"
    assert console.errors_besides(document=refused) == []


def test_an_empty_main_file_is_refused_in_place(
    page: Page, live_server_url: str, world: Any, hello: Any
) -> None:
    _open_as(page, live_server_url, world.bob)
    page.locator(".code-editor .cm-content").click()
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.press("Delete")
    page.keyboard.press("ControlOrMeta+s")
    expect(page.locator("[data-editor-error]")).to_have_text(
        "main.py is empty: write the function before saving it.", timeout=UI
    )
    assert "def main" in _files(world)["main.py"]


def test_a_viewer_reads_the_code_and_cannot_change_it(
    page: Page, live_server_url: str, world: Any, hello: Any
) -> None:
    console = _open_as(page, live_server_url, world.vera)
    panel = page.locator("[data-code-panel]")
    expect(panel.locator("form")).to_have_count(0)
    editor = panel.locator(".code-editor .cm-content")
    expect(editor).to_have_attribute("aria-readonly", "true")
    expect(editor).to_contain_text("def main():")
    editor.click()
    page.keyboard.type("# changed")
    expect(editor).not_to_contain_text("# changed")
    assert axe_violations(page) == []
    assert console.errors == []
