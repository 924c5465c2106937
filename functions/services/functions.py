"""Environments, functions and their drafts."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from django.db import connection, transaction
from django.db.models import ProtectedError

from core.errors import Conflict, ValidationFailed
from functions import config, quotas, runtimes, selectors, starters, tasks
from functions.archives import ArchiveLimits, inspect_zip, python_module_name, read_member
from functions.builder import CODE_REQUIREMENTS_REFUSED, REQUIREMENTS, check_requirements
from functions.models import Draft, Environment, Function
from functions.services import configuration
from functions.services.common import Recording, full_clean, recorded

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
