"""The Code tab's file tree (issue 16): a draft's files, inline or an uploaded zip's, edited one
at a time. The services' rules (paths, clashes, the last file, an empty main file, binary files,
the revision guard) each refuse in words and change nothing; every change is one audit record and
one revision. The file operations (functions/code_panel.py: CODE_ACTIONS) are called as the
Code tab's dispatcher calls them, with a request from RequestFactory; the page's own access rules
(a viewer, another tenant) go through the real URL, and so does one run of the dispatcher (it
needs CODE_ACTIONS merged into views.ACTIONS and the panel in the Code tab). The panel's markup
is rendered from code_context."""

from __future__ import annotations

import html
import io
import json
import re
import secrets
import zipfile
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import pytest
from django.contrib.messages.storage.fallback import FallbackStorage
from django.template.loader import render_to_string
from django.test import RequestFactory
from django_tenants.utils import tenant_context

from audit.models import AuditRecord
from core.errors import Conflict, NotFound, ValidationFailed
from functions import code_panel
from functions.models import Deployment, Draft, Function
from functions.services import functions
from functions.tests.test_audit_records import Trail

pytestmark = pytest.mark.django_db

BINARY = bytes(range(256)) * 4  # not UTF-8
BROKEN = "def helper():\n    return (1,\n"  # '(' was never closed: line 2, column 12


@pytest.fixture
def trail(world: Any) -> Iterator[Trail]:
    with tenant_context(world.acme):
        yield Trail(world.acme)


def _draft(function: Function) -> Draft:
    return Draft.objects.get(function=function)


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _members(draft: Draft) -> dict[str, bytes]:
    assert draft.archive is not None
    with zipfile.ZipFile(io.BytesIO(bytes(draft.archive))) as archive:
        return {m.filename: archive.read(m) for m in archive.infolist() if not m.is_dir()}


def _uploaded(function: Function) -> Draft:
    """The draft as an uploaded zip: main.py, lib/util.py, a binary file and a 1.5 MiB text."""
    members = {
        "main.py": b"from lib.util import helper\n\ndef main():\n    return helper()\n",
        "lib/util.py": b"def helper():\n    return 'hi'\n",
        "assets/logo.bin": BINARY,
        "data/big.txt": secrets.token_hex(768 * 1024).encode(),  # 1.5 MiB that hardly compresses
    }
    return functions.draft_upload(function=function, filename="code.zip", data=_zip(members))


# ---------------------------------------------------------------- the services' rules


def test_each_change_is_one_record_and_one_revision(trail: Trail, hello: Function) -> None:
    with trail.one("function.code", "hello") as found:
        draft = functions.draft_file_add(function=hello, path="./lib//util.py")
    assert draft.files == {"main.py": draft.files["main.py"], "lib/util.py": ""}
    assert found[0].changes == {"revision": [1, 2], "files": [["main.py"], ["lib/util.py", "main.py"]]}
    with trail.one("function.code", "hello") as found:
        draft = functions.draft_file_save(function=hello, path="lib/util.py", text="X = 1\n", revision=2)
    assert draft.files["lib/util.py"] == "X = 1\n"
    assert found[0].changes == {"revision": [2, 3]}  # the names, never the code
    with trail.one("function.code", "hello") as found:
        functions.draft_file_rename(function=hello, path="lib/util.py", new_path="lib/tools.py", revision=3)
    assert found[0].changes["files"] == [["lib/util.py", "main.py"], ["lib/tools.py", "main.py"]]
    with trail.one("function.code", "hello") as found:
        draft = functions.draft_file_delete(function=hello, path="lib/tools.py", revision=4)
    assert sorted(draft.files) == ["main.py"]
    assert (_draft(hello).revision, found[0].changes["revision"]) == (5, [4, 5])


def test_a_stale_revision_is_refused_and_nothing_changes(trail: Trail, hello: Function) -> None:
    before = dict(_draft(hello).files)
    functions.draft_file_add(function=hello, path="other.py")  # someone else: revision 2
    with trail.none(), pytest.raises(Conflict) as refused:
        functions.draft_file_save(
            function=hello, path="main.py", text="def main():\n    return 2\n", revision=1
        )
    assert refused.value.code == functions.CODE_DRAFT_CHANGED
    assert (
        "The draft changed since you opened it (you had revision 1; it is now at 2)" in refused.value.message
    )
    assert "reload the page" in refused.value.message
    for change in (
        lambda: functions.draft_file_rename(function=hello, path="main.py", new_path="app.py", revision=1),
        lambda: functions.draft_file_delete(function=hello, path="other.py", revision=1),
    ):
        with trail.none(), pytest.raises(Conflict):
            change()
    draft = _draft(hello)
    assert (draft.revision, draft.files) == (2, {**before, "other.py": ""})


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("../evil.py", "'..' is not allowed"),
        ("lib/../../evil.py", "'..' is not allowed"),
        ("/etc/passwd", "not an absolute one"),
        ("lib\\util.py", "use '/' between folders"),
        ("", "give the file a name"),
        ("./", "give the file a name"),
        ("a" * 201, "at most 200 characters (201 here)"),
        ("my file.py", "use letters, digits"),
        ("naïve.py", "use letters, digits"),
        ("nul\x00.py", "use letters, digits"),
        ("a:b.py", "use letters, digits"),
    ],
)
def test_bad_paths_are_refused_in_words(trail: Trail, hello: Function, raw: str, words: str) -> None:
    with trail.none(), pytest.raises(ValidationFailed) as refused:
        functions.draft_file_add(function=hello, path=raw)
    assert refused.value.message.startswith("The path ")
    assert words in refused.value.message
    with trail.none(), pytest.raises(ValidationFailed):
        functions.draft_file_rename(function=hello, path="main.py", new_path=raw, revision=1)
    assert (_draft(hello).revision, sorted(_draft(hello).files)) == (1, ["main.py"])


def test_a_path_is_stored_normalised() -> None:
    assert functions.draft_path("./lib//util.py/") == "lib/util.py"
    assert functions.draft_path("a/./b-c_d.1.py") == "a/b-c_d.1.py"


def test_clashes_the_last_file_and_missing_files_are_refused(trail: Trail, hello: Function) -> None:
    functions.draft_file_add(function=hello, path="lib/util.py")
    add, rename = functions.draft_file_add, functions.draft_file_rename
    save, delete = functions.draft_file_save, functions.draft_file_delete
    refusals: list[tuple[Any, type[Exception], str]] = [
        (lambda: add(function=hello, path="main.py"), Conflict, "There is already a file main.py"),
        (lambda: add(function=hello, path="lib"), Conflict, "lib is a folder of the draft"),
        (lambda: add(function=hello, path="main.py/x.py"), Conflict, "main.py is a file"),
        (lambda: rename(function=hello, path="lib/util.py", new_path="main.py", revision=2),
         Conflict, "There is already a file main.py"),
        (lambda: rename(function=hello, path="main.py", new_path="./main.py", revision=2),
         ValidationFailed, "main.py already has that name"),
        (lambda: save(function=hello, path="gone.py", text="x", revision=2),
         NotFound, "The draft has no file 'gone.py'"),
        (lambda: delete(function=hello, path="gone.py", revision=2), NotFound, "no file"),
    ]  # fmt: skip
    for change, error, words in refusals:
        with trail.none(), pytest.raises(error) as refused:
            change()
        assert words in str(refused.value)
    functions.draft_file_delete(function=hello, path="lib/util.py", revision=2)
    with trail.none(), pytest.raises(ValidationFailed) as refused:
        functions.draft_file_delete(function=hello, path="main.py", revision=3)
    assert "main.py is the draft's only file" in refused.value.message
    assert (_draft(hello).revision, sorted(_draft(hello).files)) == (3, ["main.py"])


def test_an_empty_main_file_is_refused_and_an_empty_module_is_kept(trail: Trail, hello: Function) -> None:
    with trail.none(), pytest.raises(ValidationFailed) as refused:
        functions.draft_file_save(function=hello, path="main.py", text="  \n", revision=1)
    assert refused.value.message == functions.EMPTY_MAIN_FILE.format(path="main.py")
    functions.draft_file_add(function=hello, path="lib/__init__.py")
    draft = functions.draft_file_save(function=hello, path="lib/__init__.py", text="", revision=2)
    assert draft.files["lib/__init__.py"] == ""


def test_the_main_file_is_the_one_the_entrypoint_runs(trail: Trail, hello: Function) -> None:
    assert functions.draft_main_file(hello, ["greet.py"]) == "greet.py"  # deployed as the file alone
    assert functions.draft_main_file(hello, ["main.py", "requirements.txt"]) == "main.py"
    assert functions.draft_main_file(hello, ["app.py", "lib.py"]) is None
    hello.entrypoint = "pkg.handlers.main"
    assert functions.draft_main_file(hello, ["main.py", "pkg/handlers.py"]) == "pkg/handlers.py"
    assert (
        functions.draft_main_file(hello, ["main.py", "pkg/handlers/__init__.py"])
        == "pkg/handlers/__init__.py"
    )


def test_inline_limits_still_hold(trail: Trail, hello: Function) -> None:
    with trail.none(), pytest.raises(ValidationFailed) as refused:
        functions.draft_file_save(function=hello, path="main.py", text="x = 1\n" * 100_000, revision=1)
    assert "at most 512 KiB" in str(refused.value.detail)
    functions.draft_file_add(function=hello, path="requirements.txt")
    with trail.none(), pytest.raises(ValidationFailed):
        functions.draft_file_save(
            function=hello, path="requirements.txt", text="--index-url http://x\n", revision=2
        )


def test_an_uploaded_zip_stays_a_zip_and_keeps_its_binary_files(trail: Trail, hello: Function) -> None:
    uploaded = _uploaded(hello)
    with trail.one("function.code", "hello") as found:
        draft = functions.draft_file_save(
            function=hello,
            path="lib/util.py",
            text="def helper():\n    return 'hey'\n",
            revision=uploaded.revision,
        )
    assert found[0].changes == {"revision": [uploaded.revision, uploaded.revision + 1]}
    assert (draft.archive_name, draft.files) == ("code.zip", {})
    members = _members(draft)
    assert members["lib/util.py"] == b"def helper():\n    return 'hey'\n"
    assert members["assets/logo.bin"] == BINARY
    assert members["data/big.txt"] == _members(uploaded)["data/big.txt"]
    draft = functions.draft_file_rename(
        function=hello, path="assets/logo.bin", new_path="static/logo.bin", revision=draft.revision
    )
    draft = functions.draft_file_add(function=hello, path="lib/__init__.py")
    draft = functions.draft_file_delete(function=hello, path="data/big.txt", revision=draft.revision)
    assert sorted(_members(draft)) == ["lib/__init__.py", "lib/util.py", "main.py", "static/logo.bin"]
    assert _members(draft)["static/logo.bin"] == BINARY
    assert [entry.path for entry in functions.draft_listing(draft)] == sorted(_members(draft))


def test_a_binary_or_huge_file_is_not_edited(trail: Trail, hello: Function) -> None:
    draft = _uploaded(hello)
    for path, words in (("assets/logo.bin", "is not text (not UTF-8)"), ("data/big.txt", "over 1 MiB")):
        with trail.none(), pytest.raises(ValidationFailed) as refused:
            functions.draft_file_save(function=hello, path=path, text="text now", revision=draft.revision)
        assert words in refused.value.message
        assert "it is not edited in the browser" in refused.value.message
    assert _members(_draft(hello))["assets/logo.bin"] == BINARY


# ---------------------------------------------------------------- the actions (CODE_ACTIONS)


def _post(user: Any, data: dict[str, str]) -> Any:
    """A POST to the Code tab as its dispatcher receives it (signed in, with message storage)."""
    request = RequestFactory().post("/t/acme/functions/hello/", data)
    request.user = user
    request.session = {}  # type: ignore[assignment]
    request._messages = FallbackStorage(request)  # type: ignore[attr-defined]
    return request


def _act(user: Any, function: Function, **data: str) -> tuple[str, Any]:
    request = _post(user, data)
    said = code_panel.CODE_ACTIONS[data["action"]](request, Function.objects.get(pk=function.pk))
    return said, request


def test_the_actions_change_files_and_keep_the_changed_file_open(
    world: Any, trail: Trail, hello: Function
) -> None:
    said, request = _act(world.bob, hello, action="file_add", path="lib//util.py")
    assert (said, request.selected_file) == ("Added lib/util.py (draft revision 2).", "lib/util.py")
    said, request = _act(world.bob, hello, action="file_save", path="lib/util.py", revision="2",
                         content="def helper():\r\n    return 1\r\n")  # fmt: skip
    assert (said, request.selected_file) == ("Saved lib/util.py (draft revision 3).", "lib/util.py")
    assert _draft(hello).files["lib/util.py"] == "def helper():\n    return 1\n"  # as the API stores it
    said, request = _act(
        world.bob, hello, action="file_rename", path="lib/util.py", new_path="lib/tools.py", revision="3"
    )
    assert (said, request.selected_file) == (
        "Renamed lib/util.py to lib/tools.py (draft revision 4).",
        "lib/tools.py",
    )
    said, request = _act(world.bob, hello, action="file_delete", path="lib/tools.py", revision="4")
    assert said == "Deleted lib/tools.py (draft revision 5)."
    assert not hasattr(request, "selected_file")  # the main file opens next
    assert sorted(_draft(hello).files) == ["main.py"]


def test_a_save_says_what_does_not_compile(world: Any, trail: Trail, hello: Function) -> None:
    _act(world.bob, hello, action="file_add", path="lib.py")
    said, _ = _act(world.bob, hello, action="file_save", path="lib.py", revision="2", content=BROKEN)
    compiles = "It does not compile: lib.py, line 2: '(' was never closed (see the code panel)."
    assert said == f"Saved lib.py (draft revision 3). {compiles}"


def test_save_and_deploy_is_one_record_with_its_deployment(
    world: Any, trail: Trail, hello: Function, django_capture_on_commit_callbacks: Any
) -> None:
    with trail.one("function.code", "hello") as found, django_capture_on_commit_callbacks(execute=False):
        said, _ = _act(world.bob, hello, action="file_save", path="main.py", revision="1", deploy="1",
                       content="def main():\n    return 2\n")  # fmt: skip
    assert said == "Saved main.py (draft revision 2); deploying."
    deployment = Deployment.objects.get(function=hello)
    assert (deployment.cause, deployment.requested_by) == ("deploy from the editor", "bob")
    assert found[0].effects == [f"deployment.create hello#{deployment.pk}"]
    assert found[0].changes == {"revision": [1, 2]}


def test_a_stale_save_and_deploy_saves_and_deploys_nothing(world: Any, trail: Trail, hello: Function) -> None:
    functions.draft_file_add(function=hello, path="other.py")
    with trail.none(), pytest.raises(Conflict) as refused:
        _act(
            world.bob, hello, action="file_save", path="main.py", revision="1", deploy="1", content="x = 1\n"
        )
    assert refused.value.status == 409
    assert not Deployment.objects.filter(function=hello).exists()
    assert _draft(hello).files["main.py"] != "x = 1\n"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"action": "file_save", "path": "main.py", "content": "x = 1\n"}, "which revision of the draft"),
        (
            {"action": "file_save", "path": "main.py", "content": "x = 1\n", "revision": "two"},
            "which revision",
        ),
        ({"action": "file_save", "path": "main.py", "revision": "1"}, "the editor's text did not arrive"),
        ({"action": "file_save", "content": "x = 1\n", "revision": "1"}, "Choose a file first"),
        ({"action": "file_delete", "path": "main.py"}, "which revision of the draft"),
        ({"action": "file_rename", "path": "main.py", "revision": "1"}, "give the file a name"),
        ({"action": "file_add"}, "give the file a name"),
    ],
)
def test_incomplete_forms_are_refused_in_words(
    world: Any, trail: Trail, hello: Function, data: dict[str, str], words: str
) -> None:
    with trail.none(), pytest.raises(ValidationFailed) as refused:
        _act(world.bob, hello, **data)
    assert words in refused.value.message
    assert _draft(hello).revision == 1


# ---------------------------------------------------------------- the page's access rules


def _post_page(client: Any, tenant: str, **data: str) -> Any:
    return client.post(f"/t/{tenant}/functions/hello/?file=main.py", data)


def test_a_viewer_reads_the_files_and_changes_none(world: Any, client: Any, hello: Function) -> None:
    client.force_login(world.vera)
    for data in (
        {"action": "file_save", "path": "main.py", "revision": "1", "content": "x = 1\n"},
        {"action": "file_add", "path": "x.py"},
        {"action": "file_rename", "path": "main.py", "new_path": "x.py", "revision": "1"},
        {"action": "file_delete", "path": "main.py", "revision": "1"},
    ):
        response = _post_page(client, "acme", **data)
        assert response.status_code == 403
        assert b"Your role does not allow this." in response.content
    with tenant_context(world.acme):
        assert (_draft(hello).revision, sorted(_draft(hello).files)) == (1, ["main.py"])
        assert not AuditRecord.objects.filter(tenant_id=world.acme.pk, action="function.code").exists()


def test_another_tenant_cannot_touch_the_files(world: Any, client: Any, hello: Function) -> None:
    client.force_login(world.oscar)  # globex's admin
    data = {"action": "file_delete", "path": "main.py", "revision": "1"}
    assert _post_page(client, "acme", **data).status_code == 404  # not a member: not even there
    assert _post_page(client, "globex", **data).status_code == 404  # globex has no hello
    with tenant_context(world.acme):
        assert (_draft(hello).revision, sorted(_draft(hello).files)) == (1, ["main.py"])


def test_the_code_tab_runs_the_file_operations_and_keeps_the_file_open(
    world: Any, client: Any, hello: Function
) -> None:
    """Through the Code tab's dispatcher (views.ACTIONS with CODE_ACTIONS merged in)."""
    client.force_login(world.bob)
    added = client.post("/t/acme/functions/hello/", {"action": "file_add", "path": "lib/util.py"})
    assert added.status_code == 302
    assert unquote(added["Location"]) == "/t/acme/functions/hello/?file=lib/util.py"
    page = client.get(added["Location"]).content.decode()
    assert 'data-file="lib/util.py" aria-current="true"' in page
    assert "Added lib/util.py (draft revision 2)." in page
    stale = {"action": "file_save", "path": "lib/util.py", "revision": "1", "content": "x = 1\n"}
    refused = client.post("/t/acme/functions/hello/?file=lib/util.py", stale)
    assert refused.status_code == 409
    assert (
        "The draft changed since you opened it (you had revision 1; it is now at 2)"
        in refused.content.decode()
    )
    with tenant_context(world.acme):
        assert (_draft(hello).revision, _draft(hello).files["lib/util.py"]) == (2, "")


def test_a_refused_file_operation_is_shown_again_as_sent(world: Any, client: Any, hello: Function) -> None:
    """The path sent to add or rename stays in its field with the refusal under it; a refused
    save's text is shown (to copy) to a browser without JavaScript, the draft unchanged."""
    client.force_login(world.bob)
    url = "/t/acme/functions/hello/?file=main.py"
    added = client.post(url, {"action": "file_add", "path": "../evil.py"})
    assert added.status_code == 400
    page = added.content.decode()
    field = re.search(r'<input id="file-add-path"[^>]*>', page)
    assert field is not None
    assert 'value="../evil.py"' in field[0]
    assert 'aria-invalid="true"' in field[0]
    shown = html.unescape(page)
    assert """data-field-error="path"><small class="field-error">The path '../evil.py' is refused""" in shown
    rename = {"action": "file_rename", "path": "main.py", "new_path": "a\\b.py", "revision": "1"}
    renamed = client.post(url, rename)
    assert renamed.status_code == 400
    field = re.search(r'<input id="file-rename-path"[^>]*>', renamed.content.decode())
    assert field is not None
    assert 'value="a\\b.py"' in field[0]
    assert 'aria-invalid="true"' in field[0]
    assert 'data-field-error="new_path"' in renamed.content.decode()
    with tenant_context(world.acme):
        functions.draft_file_add(function=hello, path="other.py")  # someone else's change: revision 2
    sent = "def main():\n    return 'mine'\n"
    saved = client.post(url, {"action": "file_save", "path": "main.py", "revision": "1", "content": sent})
    assert saved.status_code == 409
    page = saved.content.decode()
    kept = re.search(r'<noscript><div class="field-error" data-sent-text>.*?</noscript>', page, re.S)
    assert kept is not None
    assert "return 'mine'" in html.unescape(kept[0])
    with tenant_context(world.acme):
        assert "mine" not in _draft(hello).files["main.py"]
        assert _draft(hello).revision == 2


# ---------------------------------------------------------------- the panel


def _panel(function: Function, selected: str | None, can_edit: bool = True) -> tuple[dict[str, Any], str]:
    function = Function.objects.select_related("environment", "draft").get(pk=function.pk)
    context = code_panel.code_context(function, selected=selected, can_edit=can_edit)
    return context, render_to_string("functions/_code_panel.html", context)


def test_the_panel_lists_every_file_and_opens_the_chosen_one(trail: Trail, hello: Function) -> None:
    functions.draft_file_add(function=hello, path="lib/util.py")
    functions.draft_file_add(function=hello, path="requirements.txt")
    context, html = _panel(hello, "lib/util.py")
    assert re.findall(r'data-file="([^"]+)"', html) == ["lib/util.py", "main.py", "requirements.txt"]
    assert re.findall(r'href="([^"]+)" data-file="[^"]+" aria-current="true"', html) == [
        "/functions/hello/?file=lib/util.py"  # under /t/<tenant>/ in a request
    ]
    assert re.search(
        r'<li class="folder"><span class="folder-name">lib/</span>\s*<ul>\s*<li><a [^>]*'
        r'data-file="lib/util.py"',
        html,
    )
    assert 'name="content"' in html
    assert 'data-code-editor="python"' in html
    assert 'name="revision" value="3"' in html
    assert 'data-empty="' not in html  # only the main file may not be empty
    for action in ("file_save", "file_add", "file_rename", "file_delete", "upload", "deploy"):
        assert f'name="action" value="{action}"' in html
    assert context["upload_form"].fields["file"]
    _, html = _panel(hello, None)
    assert re.search(r'data-file="main.py" aria-current="true"', html)
    assert 'data-empty="main.py is empty: write the function before saving it."' in html
    _, html = _panel(hello, "requirements.txt")
    assert 'data-code-editor="text"' in html


def test_a_viewer_gets_the_code_read_only_and_no_forms(trail: Trail, hello: Function) -> None:
    _, html = _panel(hello, None, can_edit=False)
    assert "<form" not in html
    assert re.search(r"<textarea [^>]*readonly[^>]*data-code-editor=\"python\"", html)
    assert "def main():" in html


def test_a_missing_file_opens_the_main_one_and_says_so(trail: Trail, hello: Function) -> None:
    context, html = _panel(hello, "gone.py")
    assert context["code_open"]["path"] == "main.py"
    assert "The draft has no file gone.py (renamed or deleted meanwhile?): main.py is open instead." in html


def test_binary_and_huge_files_are_listed_and_said_not_editable(trail: Trail, hello: Function) -> None:
    _uploaded(hello)
    _, html = _panel(hello, "assets/logo.bin")
    assert "uploaded code.zip" in html
    assert re.findall(r'data-file="([^"]+)"', html) == [
        "assets/logo.bin",
        "data/big.txt",
        "lib/util.py",
        "main.py",
    ]
    assert "assets/logo.bin is not text (not UTF-8: a binary file?)" in html
    assert "<textarea" not in html
    assert 'value="file_save"' not in html
    assert 'value="file_rename"' in html
    assert 'value="file_delete"' in html
    _, html = _panel(hello, "data/big.txt")
    assert (
        "data/big.txt has 1.5 MiB: a file over 1 MiB is listed and deployed, not edited in the browser."
        in html
    )
    assert "(too large to edit)" in html


def test_compile_problems_are_said_and_handed_to_the_editor(trail: Trail, hello: Function) -> None:
    functions.draft_file_add(function=hello, path="lib.py")
    functions.draft_file_save(function=hello, path="lib.py", text=BROKEN, revision=2)
    context, html = _panel(hello, "lib.py")
    assert context["code_lint"] == [{"line": 2, "column": 12, "message": "'(' was never closed"}]
    lint = re.search(r'<script id="code-lint" type="application/json">(.*?)</script>', html)
    assert lint is not None
    assert json.loads(lint.group(1)) == context["code_lint"]
    assert "lib.py does not compile with Python" in html
    assert "Line 2, column 12: &#x27;(&#x27; was never closed" in html
    _, html = _panel(hello, "main.py")  # the problem of another file: listed, with a link to it
    assert 'data-problem="lib.py:2"><a href="/functions/hello/?file=lib.py">lib.py</a>, line 2:' in html
    assert "data-problems" not in html


def test_an_uploaded_zip_is_checked_too(trail: Trail, hello: Function) -> None:
    draft = _uploaded(hello)
    functions.draft_file_save(function=hello, path="lib/util.py", text=BROKEN, revision=draft.revision)
    context, _ = _panel(hello, "lib/util.py")
    assert context["code_lint"] == [{"line": 2, "column": 12, "message": "'(' was never closed"}]
