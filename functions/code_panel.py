"""The Code tab's panel: the draft as a file tree, one file open in the editor, its compile
problems, and the file operations the tab's dispatcher runs (``CODE_ACTIONS``: save, add,
rename, delete; upload and deploy stay the page's own ``upload`` and ``deploy``).

A draft is inline files or an uploaded zip; both are listed and edited alike
(functions.services.functions: ``draft_file_*``). A file opens in the editor when it is UTF-8
text of at most 1 MiB; any other is listed, renamed and deleted, not opened.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.core.cache import cache
from django.http import HttpRequest
from django.urls import reverse

from core.errors import DomainError, ValidationFailed
from core.feedback import size_in_words
from functions import compilecheck, forms, runtimes, selectors
from functions.models import Draft, Function
from functions.services import changes, functions
from functions.services.functions import EDITABLE_BYTES, DraftFile

Node = dict[str, Any]


def code_context(function: Function, *, selected: str | None, can_edit: bool) -> dict[str, Any]:
    """What ``functions/_code_panel.html`` shows: the tree with ``selected`` open (the main file,
    draft_main_file, when it is not given or not in the draft), the open file, the problems."""
    draft = function.draft
    listing = functions.draft_listing(draft)
    paths = [entry.path for entry in listing]
    main = functions.draft_main_file(function, paths)
    path = selected if selected in paths else _first(paths, main)
    problems = _problems(function)
    here = [problem for problem in problems if problem.file == path]
    return {
        "draft": draft,
        "upload_form": forms.UploadForm(),
        "code_can_edit": can_edit,
        "code_tree": _tree(listing, path, function),
        "code_open": _opened(function, listing, path, main),
        "code_missing": selected if selected and selected not in paths else "",
        "code_python": function.environment.runtime_version,
        "code_problems": here,
        "code_other_problems": _elsewhere(problems, path, function),
        "code_lint": [{"line": p.line, "column": p.column, "message": p.message} for p in here],
    }


def _first(paths: list[str], main: str | None) -> str | None:
    """The file opened when none is asked for: the main file, else the first ``.py``, else the
    first file."""
    python = [path for path in paths if path.endswith(".py")]
    return main or next(iter(python or paths), None)


def file_url(function: Function, path: str) -> str:
    """The Code tab with ``path`` open."""
    tab = reverse("function-detail", kwargs={"name": function.name})
    return f"{tab}?{urlencode({'file': path}, safe='/')}"


def _tree(listing: list[DraftFile], current: str | None, function: Function) -> list[Node]:
    """The files as nested folders: a folder ``{"name", "path", "children"}``, a file
    ``{"name", "path", "url", "current", "size"}`` (``children`` None), in path order."""
    root: Node = {"children": []}
    folders: dict[str, Node] = {"": root}
    for entry in listing:
        parent = ""
        parts = entry.path.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder not in folders:
                folders[folder] = {"name": parts[depth - 1], "path": folder, "children": []}
                folders[parent]["children"].append(folders[folder])
            parent = folder
        file = {"name": parts[-1], "path": entry.path, "url": file_url(function, entry.path),
                "current": entry.path == current, "size": entry.size, "children": None,
                "too_large": entry.size > EDITABLE_BYTES}  # fmt: skip
        folders[parent]["children"].append(file)
    return list(root["children"])


def _opened(function: Function, listing: list[DraftFile], path: str | None, main: str | None) -> Node | None:
    """The open file: ``text`` to edit, or None with ``why_not`` in words (binary, too large)."""
    if path is None:
        return None
    size = next(entry.size for entry in listing if entry.path == path)
    is_main = path == main
    opened: Node = {
        "path": path, "url": file_url(function, path), "size": size_in_words(size), "is_main": is_main,
        "language": "python" if path.endswith(".py") else "text", "text": None, "why_not": "",
        "empty_message": functions.EMPTY_MAIN_FILE.format(path=path) if is_main else "",
    }  # fmt: skip
    if size > EDITABLE_BYTES:
        opened["why_not"] = (
            f"{path} has {size_in_words(size)}: a file over {size_in_words(EDITABLE_BYTES)} is listed and "
            "deployed, not edited in the browser."
        )
        return opened
    text = functions.draft_file_text(functions.draft_file_bytes(function.draft, path) or b"")
    if text is None:
        opened["why_not"] = (
            f"{path} is not text (not UTF-8: a binary file?): it is deployed as uploaded, and can be "
            "renamed or deleted here, not edited."
        )
    opened["text"] = text
    return opened


def _elsewhere(problems: list[compilecheck.Problem], path: str | None, function: Function) -> list[Node]:
    """The problems of the files not open, each with a link that opens its file."""
    return [
        {"problem": problem, "url": file_url(function, problem.file)}
        for problem in problems
        if problem.file != path
    ]


def _problems(function: Function) -> list[compilecheck.Problem]:
    """What does not compile: selectors.draft_problems for inline files; for an uploaded zip, its
    ``.py`` files checked the same way (cached per revision and Python), since the editor now
    edits them too (draft_problems leaves a zip to its build)."""
    draft = function.draft
    if not draft.archive:
        return selectors.draft_problems(function=function)
    version = function.environment.runtime_version
    key = f"draft-zip-problems:{function.pk}:{draft.revision}:{version}"
    found = cache.get(key)
    if found is None:
        sources = {
            path: data.decode("utf-8", "replace")
            for path, data in functions.draft_contents(draft).items()
            if path.endswith(".py") and len(data) <= EDITABLE_BYTES
        }
        try:
            report = compilecheck.check(sources, runtimes.interpreter(version))
        except compilecheck.CheckUnavailable:
            return []  # the build says why
        found = [problem.as_dict() for problem in report.problems]
        cache.set(key, found, timeout=24 * 3600)
    return [compilecheck.Problem(**problem) for problem in found]


def refused_context(request: HttpRequest, error: DomainError | None) -> dict[str, Any]:
    """What a refused file operation shows again: the path sent to add or rename, with the
    refusal under its field (``code_add`` / ``code_rename``), or the text of a refused save
    (``code_sent``: shown without JavaScript; static/src/editor.js offers it back)."""
    action = request.POST.get("action", "") if request.method == "POST" else ""
    if error is None or action not in CODE_ACTIONS:
        return {}
    sent = {"message": error.message}
    if action == "file_add":
        return {"code_add": {**sent, "value": request.POST.get("path", "")}}
    if action == "file_rename":
        return {"code_rename": {**sent, "value": request.POST.get("new_path", "")}}
    if action == "file_save" and request.POST.get("content") is not None:
        return {"code_sent": {"path": request.POST.get("path", ""), "text": request.POST["content"]}}
    return {}


# ---------------------------------------------------------------- the file operations (POST)


def _user(request: HttpRequest) -> str:
    return str(getattr(request.user, "username", ""))


def _posted_path(request: HttpRequest, field: str = "path") -> str:
    path = request.POST.get(field, "")
    if not path:
        raise ValidationFailed(
            "Choose a file first: the form did not say which.", detail={field: ["Required."]}
        )
    return path


def _revision(request: HttpRequest) -> int:
    """The draft revision the page was showing (the revision guard of the file operations)."""
    raw = request.POST.get("revision", "")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        message = "The form did not say which revision of the draft it changes: reload the page."
        raise ValidationFailed(message, detail={"revision": [message]})
    return int(raw)


def file_save(request: HttpRequest, function: Function) -> str:
    """``path``'s new text (``content``), over the ``revision`` the editor loaded; with
    ``deploy`` set, deployed in the same transaction."""
    path, revision = _posted_path(request), _revision(request)
    content = request.POST.get("content")
    if content is None:
        raise ValidationFailed("Nothing to save: the editor's text did not arrive. Reload the page.")
    text = content.replace("\r\n", "\n")  # browsers post a textarea's lines CRLF-separated
    if request.POST.get("deploy"):
        draft = changes.draft_file_save_and_deploy(
            function=function, path=path, text=text, revision=revision, user=_user(request)
        )
        said = f"Saved {path} (draft revision {draft.revision}); deploying."
    else:
        draft = functions.draft_file_save(function=function, path=path, text=text, revision=revision)
        said = f"Saved {path} (draft revision {draft.revision})."
    request.selected_file = path  # type: ignore[attr-defined]
    return said + _compile_note(function, draft)


def _compile_note(function: Function, draft: Draft) -> str:
    function.draft = draft  # the saved draft, whose problems are said
    problems = _problems(function)
    return f" It does not compile: {problems[0].summary} (see the code panel)." if problems else ""


def file_add(request: HttpRequest, function: Function) -> str:
    """An empty file at ``path``, opened next."""
    path = functions.draft_path(request.POST.get("path", ""))
    draft = functions.draft_file_add(function=function, path=path)
    request.selected_file = path  # type: ignore[attr-defined]
    return f"Added {path} (draft revision {draft.revision})."


def file_rename(request: HttpRequest, function: Function) -> str:
    """``path`` moved to ``new_path``, over ``revision``; opened under its new name."""
    path, revision = _posted_path(request), _revision(request)
    new_path = functions.draft_path(request.POST.get("new_path", ""))
    draft = functions.draft_file_rename(function=function, path=path, new_path=new_path, revision=revision)
    request.selected_file = new_path  # type: ignore[attr-defined]
    return f"Renamed {path} to {new_path} (draft revision {draft.revision})."


def file_delete(request: HttpRequest, function: Function) -> str:
    """``path`` removed, over ``revision``; the main file opens next."""
    path, revision = _posted_path(request), _revision(request)
    draft = functions.draft_file_delete(function=function, path=path, revision=revision)
    return f"Deleted {path} (draft revision {draft.revision})."


CODE_ACTIONS: dict[str, Callable[[HttpRequest, Function], str]] = {
    "file_save": file_save,
    "file_add": file_add,
    "file_rename": file_rename,
    "file_delete": file_delete,
}
