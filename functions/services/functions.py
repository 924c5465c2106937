"""Environments, functions and their drafts."""

from __future__ import annotations

import io
import re
import tempfile
import zipfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import connection, transaction
from django.db.models import ProtectedError

from core.errors import Conflict, NotFound, ValidationFailed
from core.feedback import size_in_words
from functions import config, quotas, runtimes, selectors, starters, tasks
from functions.archives import (
    ArchiveLimits,
    check_path,
    inspect_zip,
    make_zip,
    python_module_name,
    read_member,
)
from functions.builder import CODE_REQUIREMENTS_REFUSED, REQUIREMENTS, check_requirements, single_file_name
from functions.models import Draft, Environment, Function
from functions.services import configuration
from functions.services.common import Recording, full_clean, recorded
from runtime.worker.loader import resolve_entrypoint

DEFAULT_ENVIRONMENT = "python"
# What a tenant sets on an environment (its name is chosen once, at creation).
ENVIRONMENT_FIELDS = ("runtime_version", "image", "builder_image", "poolsize", "memory_mb", "cpu_millis")
CODE_ENVIRONMENT_IN_USE = "environment_in_use"
MAX_DRAFT_FILE_BYTES = 512 * 1024
MAX_DRAFT_FILES = 50


def environment_settings(environment: Environment) -> dict[str, Any]:
    """What the audit trail records of an environment."""
    return {name: getattr(environment, name) for name in ENVIRONMENT_FIELDS}


@transaction.atomic
def environment_ensure_default() -> Environment:
    """The tenant's default Python environment. Idempotent (natural key: the name); made again
    on demand after it was deleted, and recorded only when it is made."""
    environment, created = Environment.objects.get_or_create(name=DEFAULT_ENVIRONMENT)
    if created:
        with recorded(
            "environment.create",
            object_type="environment",
            object_name=environment.name,
            settings=environment_settings,
        ) as record:
            record.done(environment)
    return environment


@transaction.atomic
def environment_create(*, name: str, **fields: Any) -> Environment:
    """A new environment (``fields``: those of ENVIRONMENT_FIELDS), its images following its
    version unless given (runtimes.follow). It reaches the data plane with the first function
    that deploys with it. Conflict when the name is taken."""
    if Environment.objects.filter(name=name).exists():
        raise Conflict("An environment with this name exists.", detail={"name": ["Already taken."]})
    opened = recorded(
        "environment.create", object_type="environment", object_name=name, settings=environment_settings
    )
    with opened as record:
        environment = Environment(name=name)
        _apply_environment(environment, fields)
        full_clean(environment)
        environment.save()
        quotas.enforce(what=f"environment {name}")  # as a change does (an unused one claims nothing yet)
        return record.done(environment)


def record_environment_update(environment: Environment) -> AbstractContextManager[Recording[Environment]]:
    """The record of ``environment_update`` (changes.environment_update_and_deploy opens it too)."""
    return recorded(
        "environment.update",
        object_type="environment",
        object_name=environment.name,
        settings=environment_settings,
        before=environment,
    )


@transaction.atomic
def environment_update(*, environment: Environment, **fields: Any) -> Environment:
    """Change ``fields`` (images follow a new version, runtimes.follow). The data plane learns of
    it when the functions using it deploy (changes.environment_update_and_deploy queues that).
    QuotaExceeded when the warm pool no longer fits: the change is rolled back."""
    with record_environment_update(environment) as record:
        _apply_environment(environment, fields)
        full_clean(environment)
        environment.save()
        quotas.enforce(what=f"environment {environment.name}")
        return record.done(environment)


@transaction.atomic
def environment_delete(*, environment: Environment) -> None:
    """Delete an environment no function deploys; its Fission Environment (and warm pool) is
    removed from the data plane by a task after commit. Conflict (code environment_in_use)
    naming the functions that use it otherwise. The default environment is no exception: the
    next function created without one makes it again."""
    schema, name = connection.schema_name, environment.name  # type: ignore[attr-defined]
    # The row lock makes concurrent deletes of one environment wait for each other.
    if Environment.objects.select_for_update().filter(pk=environment.pk).first() is None:
        return  # deleted meanwhile, by a request that also removes it from the data plane
    users = selectors.environment_usage().get(name, [])
    if users:
        raise _in_use(name, users)
    with recorded(
        "environment.delete",
        object_type="environment",
        object_name=name,
        settings=environment_settings,
        before=environment,
    ):
        try:
            environment.delete()
        except ProtectedError as exc:  # a function took it up since the check
            raise _in_use(name, sorted(str(f) for f in exc.protected_objects)) from None
    transaction.on_commit(lambda: tasks.environment_undeploy_task.delay(schema, name))


def _in_use(name: str, functions: list[str]) -> Conflict:
    return Conflict(
        f"Environment {name} is used by {', '.join(functions)}: move them to another environment "
        "or delete them first.",
        detail={"functions": functions},
        code=CODE_ENVIRONMENT_IN_USE,
    )


def _apply_environment(environment: Environment, fields: dict[str, Any]) -> None:
    unknown = set(fields) - set(ENVIRONMENT_FIELDS)
    if unknown:
        raise ValidationFailed(
            "Unknown fields.", detail={name: ["Unknown field."] for name in sorted(unknown)}
        )
    version = fields.get("runtime_version", environment.runtime_version)
    if version not in runtimes.VERSIONS:
        detail = {"runtime_version": [f"Choose one of {', '.join(runtimes.VERSIONS)}."]}
        raise ValidationFailed("The request has invalid fields.", detail=detail)
    for name, value in fields.items():
        setattr(environment, name, value)
    environment.image = runtimes.follow(environment.image or "", version)
    environment.builder_image = runtimes.follow(environment.builder_image or "", version, builder=True)


def function_settings(function: Function) -> dict[str, Any]:
    """What the audit trail records of a function: its environment and every setting of
    functions/config.py (plain configuration: Secrets and ConfigMaps are named, not read)."""
    return {"environment": function.environment.name, **config.current(function)}


@transaction.atomic
def function_create(
    *, name: str, environment: Environment | None = None, starter: str = starters.DEFAULT, **settings: Any
) -> Function:
    """A function whose draft is a starter's code (functions/starters.py: hello-world by
    default); not deployed until asked."""
    if starter not in starters.STARTERS:
        raise ValidationFailed(
            "No such starter.", detail={"starter": [f"One of: {', '.join(starters.STARTERS)}."]}
        )
    if Function.objects.filter(name=name).exists():
        raise Conflict("A function with this name exists.", detail={"name": ["Already taken."]})
    with recorded(
        "function.create", object_type="function", object_name=name, settings=function_settings
    ) as record:
        function = Function(name=name, environment=environment or environment_ensure_default())
        _apply_config(function, settings)
        full_clean(function)
        function.save()
        quotas.enforce_function_count()
        Draft.objects.create(function=function, files=dict(starters.STARTERS[starter].files))
        return record.done(function)


def record_function_update(function: Function) -> AbstractContextManager[Recording[Function]]:
    """The record of ``function_update`` (changes.function_update_and_deploy opens it too)."""
    return recorded(
        "function.update",
        object_type="function",
        object_name=function.name,
        settings=function_settings,
        before=function,
    )


@transaction.atomic
def function_update(*, function: Function, **settings: Any) -> Function:
    """Change settings; the draft picks them up at the next deployment, versions never do."""
    with record_function_update(function) as record:
        if "environment" in settings:
            function.environment = settings.pop("environment")
        _apply_config(function, settings)
        full_clean(function)
        function.save()
        return record.done(function)


def _apply_config(function: Function, values: dict[str, Any]) -> None:
    unknown = set(values) - set(config.NAMES)
    if unknown:
        raise ValidationFailed(
            "Unknown fields.", detail={name: ["Unknown field."] for name in sorted(unknown)}
        )
    configuration.check_references(values)
    for name, value in values.items():
        setattr(function, name, value)


def _check_files(files: dict[str, str]) -> None:
    if not files or len(files) > MAX_DRAFT_FILES:
        raise ValidationFailed("A draft has 1 to 50 files.", detail={"files": ["1 to 50 files."]})
    for path, text in files.items():
        parts = path.split("/")
        if path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts):
            raise ValidationFailed("Invalid file path.", detail={"files": [f"{path}: use a relative path."]})
        if len(text.encode()) > MAX_DRAFT_FILE_BYTES:
            raise ValidationFailed("File too large.", detail={"files": [f"{path}: at most 512 KiB."]})
    if REQUIREMENTS in files:
        check_requirements(files[REQUIREMENTS])  # refused now, not only when it is built


def _check_archive_requirements(data: bytes, limits: ArchiveLimits) -> None:
    """An uploaded zip's requirements.txt is held to the build's rules at upload time."""
    raw = read_member(data, REQUIREMENTS, limits)
    if raw is None:
        return
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        message = f"{REQUIREMENTS} is not UTF-8 text."
        detail = {"requirements": [message]}
        raise ValidationFailed(message, detail=detail, code=CODE_REQUIREMENTS_REFUSED) from None
    check_requirements(text)


def draft_settings(draft: Draft) -> dict[str, Any]:
    """What the audit trail records of a draft: its revision and file names, never the code."""
    return {
        "revision": draft.revision,
        "files": sorted(draft.files or {}),
        "archive_name": draft.archive_name,
    }


def record_draft_update(function: Function) -> AbstractContextManager[Recording[Draft]]:
    """The record of a new draft ("function.code": draft_update_files, draft_upload and
    changes.draft_update_and_deploy). Locks the draft until the transaction ends."""
    draft = Draft.objects.select_for_update().get(function=function)
    return recorded(
        "function.code",
        object_type="function",
        object_name=function.name,
        settings=draft_settings,
        before=draft,
    )


@transaction.atomic
def draft_update_files(*, function: Function, files: dict[str, str]) -> Draft:
    """Replace the draft with inline files (the editor). Bumps the draft's revision."""
    _check_files(files)
    with record_draft_update(function) as record:
        draft = Draft.objects.select_for_update().get(function=function)
        draft.files, draft.archive, draft.archive_name = files, None, ""
        draft.revision += 1
        draft.save()
        return record.done(draft)


@transaction.atomic
def draft_upload(*, function: Function, filename: str, data: bytes) -> Draft:
    """Replace the draft with an upload: one ``.py`` file, or a ``.zip`` (checked, not unpacked)."""
    if filename.endswith(".py"):
        python_module_name(filename)  # refuses names Python could not import
        try:
            text = data.decode()
        except UnicodeDecodeError:
            raise ValidationFailed("A .py file must be UTF-8.", detail={"file": ["Not UTF-8."]}) from None
        # The file keeps its name and deploys alone (functions.builder.single_file_name): as in
        # Fission, only the function part of the entrypoint is used, so `greet.hello` and `hello`
        # both call hello() of greet.py.
        return draft_update_files(function=function, files={filename: text})
    if not filename.endswith(".zip"):
        raise ValidationFailed("Upload one .py file or a .zip.", detail={"file": ["Use .py or .zip."]})
    limits = ArchiveLimits()
    inspect_zip(data, limits)
    _check_archive_requirements(data, limits)
    with record_draft_update(function) as record:
        draft = Draft.objects.select_for_update().get(function=function)
        draft.files, draft.archive, draft.archive_name = {}, data, filename
        draft.revision += 1
        draft.save()
        return record.done(draft)


# ---------------------------------------------------------------- the draft's files, one at a time
# The code panel's file tree (functions/code_panel.py) edits a draft file by file, inline files and
# an uploaded zip's members alike: a zip stays a zip (rewritten reproducibly, its binary members
# kept as they are), inline files stay inline files under _check_files' rules. Each change is
# the same record as draft_update_files' ("function.code") and bumps the revision.

EDITABLE_BYTES = 1024 * 1024  # larger files are listed, not edited in the browser
MAX_PATH_CHARS = 200
EMPTY_MAIN_FILE = "{path} is empty: write the function before saving it."
CODE_DRAFT_CHANGED = "draft_changed"
_PATH_CHARS = re.compile(r"[A-Za-z0-9._/-]+")


@dataclass(frozen=True, order=True)
class DraftFile:
    """A file of a draft as the file tree lists it: its path and size in bytes."""

    path: str
    size: int


def draft_listing(draft: Draft) -> list[DraftFile]:
    """Every file of the draft (its inline files, or its zip's members; folders are implied by
    the paths), sorted by path. Reads no member of a zip."""
    if draft.archive:
        entries = inspect_zip(bytes(draft.archive))
        return sorted(DraftFile(entry.name, entry.size) for entry in entries if not entry.is_dir)
    return sorted(DraftFile(path, len(text.encode())) for path, text in draft.files.items())


def draft_file_bytes(draft: Draft, path: str) -> bytes | None:
    """The content of one file of the draft; None when it has no file ``path``."""
    if draft.archive:
        return read_member(bytes(draft.archive), path)
    text = draft.files.get(path)
    return None if text is None else text.encode()


def draft_file_text(data: bytes) -> str | None:
    """A file's content as the editor's text; None when it is not UTF-8, or holds a NUL (which a
    page cannot carry in a textarea): a binary file."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text else text


def draft_main_file(function: Function, paths: list[str]) -> str | None:
    """The file the entrypoint runs, among ``paths``: a lone top-level ``.py`` file (it deploys as
    that file, builder.single_file_name), else the entrypoint's module (``main.main`` is
    ``main.py``; ``pkg.mod.func`` is ``pkg/mod.py`` or ``pkg/mod/__init__.py``). None when the
    draft does not have it."""
    single = single_file_name(dict.fromkeys(paths, ""))
    if single is not None:
        return single
    module = resolve_entrypoint(function.entrypoint)[0].replace(".", "/")
    return next((path for path in (f"{module}.py", f"{module}/__init__.py") if path in paths), None)


def draft_path(raw: str) -> str:
    """A new file's path, normalised (``./lib//util.py`` is ``lib/util.py``). ValidationFailed,
    in words, for an empty, absolute or too long path, a backslash, ``..``, or a character other
    than letters, digits, ``.``, ``_``, ``-`` and ``/`` between folders."""
    if "\\" in raw:
        raise _bad_path(raw, "use '/' between folders, not '\\'.")
    if raw.startswith("/"):
        raise _bad_path(raw, "use a path inside the draft (lib/util.py), not an absolute one.")
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise _bad_path(raw, "'..' is not allowed: a file stays inside the draft.")
    path = "/".join(parts)
    if not path:
        raise _bad_path(raw, "give the file a name, such as util.py or lib/util.py.")
    if len(path) > MAX_PATH_CHARS:
        raise _bad_path(path, f"a path has at most {MAX_PATH_CHARS} characters ({len(path)} here).")
    if not _PATH_CHARS.fullmatch(path):
        raise _bad_path(raw, "use letters, digits, '.', '_' and '-' in names, and '/' between folders.")
    return path


def _bad_path(raw: str, why: str) -> ValidationFailed:
    shown = raw if len(raw) <= 60 else raw[:60] + "…"  # what was sent may be long: its start names it
    message = f"The path {shown!r} is refused: {why}"
    return ValidationFailed(message, detail={"path": [message]}, code="invalid_path")


@transaction.atomic
def draft_file_save(*, function: Function, path: str, text: str, revision: int) -> Draft:
    """Replace the text of the draft's file ``path`` (the editor's Save). Conflict (code
    ``draft_changed``) when the draft is past ``revision``, the one the editor loaded: someone
    saved meanwhile, and nothing is overwritten. NotFound for no such file; ValidationFailed for an
    empty main file (draft_main_file), a text over EDITABLE_BYTES, or what _check_files refuses."""

    def save(contents: dict[str, bytes]) -> None:
        _editable(contents[_existing(contents, path)], path)
        if not text.strip() and path == draft_main_file(function, list(contents)):
            message = EMPTY_MAIN_FILE.format(path=path)
            raise ValidationFailed(message, detail={"content": [message]}, code="required")
        data = text.encode()
        if len(data) > EDITABLE_BYTES:
            message = f"{path} would be {size_in_words(len(data))}; the editor saves at most 1 MiB."
            raise ValidationFailed(message, detail={"content": [message]})
        contents[path] = data

    return _draft_files_change(function, revision, save)


@transaction.atomic
def draft_file_add(*, function: Function, path: str, revision: int | None = None) -> Draft:
    """Add an empty file at ``path`` (draft_path's rules). Conflict when the path is taken, or
    clashes with a folder (``lib`` while ``lib/x.py`` exists) or a file used as a folder."""

    new = draft_path(path)

    def add(contents: dict[str, bytes]) -> None:
        _free(contents, new)
        contents[new] = b""

    return _draft_files_change(function, revision, add)


@transaction.atomic
def draft_file_rename(*, function: Function, path: str, new_path: str, revision: int | None = None) -> Draft:
    """Move the file ``path`` to ``new_path`` (draft_path's rules), its content unchanged.
    NotFound for no such file; Conflict when ``new_path`` is taken or clashes with a folder."""
    new = draft_path(new_path)

    def rename(contents: dict[str, bytes]) -> None:
        _existing(contents, path)
        if new == path:
            message = f"{path} already has that name: give it another."
            raise ValidationFailed(message, detail={"new_path": [message]})
        content = contents.pop(path)
        _free(contents, new)
        contents[new] = content

    return _draft_files_change(function, revision, rename)


@transaction.atomic
def draft_file_delete(*, function: Function, path: str, revision: int | None = None) -> Draft:
    """Remove the file ``path``. NotFound for no such file; ValidationFailed for the draft's last
    file (a draft always has one: upload another draft instead)."""

    def delete(contents: dict[str, bytes]) -> None:
        del contents[_existing(contents, path)]
        if not contents:
            message = f"{path} is the draft's only file: add another first, or upload a new draft."
            raise ValidationFailed(message, detail={"path": [message]})

    return _draft_files_change(function, revision, delete)


def _draft_files_change(
    function: Function, revision: int | None, change: Callable[[dict[str, bytes]], None]
) -> Draft:
    """Apply ``change`` to the locked draft's files (path -> bytes) and store them in the draft's
    own form, one revision up, under the record of draft_update_files. The revision guard: a
    draft no longer at ``revision`` (when given) is refused before anything is read."""
    with record_draft_update(function) as record:
        draft = Draft.objects.select_for_update().get(function=function)
        if revision is not None and draft.revision != revision:
            message = (
                f"The draft changed since you opened it (you had revision {revision}; it is now at "
                f"{draft.revision}): someone saved it meanwhile, and nothing was overwritten. Copy your "
                "changes, reload the page, and apply them again."
            )
            raise Conflict(message, detail={"revision": [message]}, code=CODE_DRAFT_CHANGED)
        contents = draft_contents(draft)
        change(contents)
        if draft.archive:
            draft.archive = _zip_of(contents)
        else:
            draft.files = {path: data.decode() for path, data in sorted(contents.items())}
            _check_files(draft.files)
        draft.revision += 1
        draft.save()
        return record.done(draft)


def draft_contents(draft: Draft) -> dict[str, bytes]:
    """Every file of the draft, path -> bytes (an uploaded zip is read whole: it was checked, and
    so bounded, when it was uploaded)."""
    if not draft.archive:
        return {path: text.encode() for path, text in draft.files.items()}
    with zipfile.ZipFile(io.BytesIO(bytes(draft.archive))) as archive:
        return {check_path(m.orig_filename): archive.read(m) for m in archive.infolist() if not m.is_dir()}


def _zip_of(contents: dict[str, bytes]) -> bytes:
    """The draft's zip again (archives.make_zip: reproducible), held to the upload's rules."""
    with tempfile.TemporaryDirectory(prefix="draft-") as folder:
        root = Path(folder)
        for path, data in contents.items():  # each path was checked (check_path or draft_path)
            target = root.joinpath(*path.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        data = make_zip(root)
    limits = ArchiveLimits()
    inspect_zip(data, limits)
    _check_archive_requirements(data, limits)
    return data


def _existing(contents: dict[str, bytes], path: str) -> str:
    if path not in contents:
        message = f"The draft has no file {path!r} (renamed or deleted meanwhile?): reload the page."
        raise NotFound(message, detail={"path": [message]})
    return path


def _editable(data: bytes, path: str) -> None:
    """ValidationFailed unless the file is text the editor opens: UTF-8 without NUL, at most
    EDITABLE_BYTES (a binary member of a zip is renamed or deleted, never overwritten by text)."""
    binary = draft_file_text(data) is None
    if binary or len(data) > EDITABLE_BYTES:
        why = "is not text (not UTF-8)" if binary else f"has {size_in_words(len(data))}, over 1 MiB"
        message = f"{path} {why}: it is not edited in the browser. Rename or delete it, or upload it again."
        raise ValidationFailed(message, detail={"path": [message]}, code="not_editable")


def _free(contents: dict[str, bytes], path: str) -> None:
    """Conflict unless ``path`` can be created: not a file already, not a folder of files, and no
    folder of it is a file."""
    if path in contents:
        message = f"There is already a file {path}: open it, or choose another path."
    elif any(other.startswith(f"{path}/") for other in contents):
        message = f"{path} is a folder of the draft: choose another path."
    else:
        folder = next((p for p in _folders(path) if p in contents), None)
        if folder is None:
            return
        message = f"{folder} is a file, so it cannot be a folder of {path}."
    raise Conflict(message, detail={"path": [message]}, code="path_taken")


def _folders(path: str) -> list[str]:
    """``a/b/c.py`` -> ``["a", "a/b"]``."""
    parts = path.split("/")
    return ["/".join(parts[:end]) for end in range(1, len(parts))]
