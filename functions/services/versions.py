"""Versions (immutable), and aliases that point at one version or split between two."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from django.db import transaction
from django.db.models import Max

from core.errors import Conflict, NotFound, ValidationFailed
from functions import config, diffs
from functions.models import Alias, Build, Draft, Environment, Function, Version
from functions.selectors import build_current, draft_settings, version_of, version_source
from functions.services.common import Recording, full_clean, recorded
from functions.services.configuration import check_references
from functions.services.functions import draft_settings as draft_record
from functions.services.functions import function_settings

CODE_UNCHANGED = "unchanged"
CODE_ENVIRONMENT_GONE = "environment_gone"


@transaction.atomic
def version_publish(*, function: Function, description: str = "", user: str = "") -> Version:
    """Freeze the built draft into version N+1. Needs a succeeded build of the current draft.
    Conflict (code ``unchanged``, naming it) when the draft is identical to the latest version:
    the same build or archive (sha256) and the same configuration; nothing is written then.

    The function row is locked so two publishes cannot take the same number.
    """
    Function.objects.select_for_update().filter(pk=function.pk).first()
    build = build_current(function=function)
    if build is None:
        raise Conflict(
            "Build or deploy the current draft first: it has no successful build.", code="not_built"
        )
    frozen = config.frozen(draft_settings(function=function))
    latest = Version.objects.select_related("build").filter(function=function).order_by("-number").first()
    if latest is not None and _identical(latest, build, frozen):
        raise Conflict(
            f"The draft is identical to version {latest.number} (the same code and configuration): "
            "change the code or a setting to publish a new version.",
            code=CODE_UNCHANGED,
            detail={"version": latest.number},
        )
    number = (Version.objects.filter(function=function).aggregate(n=Max("number"))["n"] or 0) + 1
    name = f"{function.name}/v{number}"
    opened = recorded("version.publish", object_type="version", object_name=name, settings=version_settings)
    with opened as record:
        version = Version.objects.create(
            function=function,
            number=number,
            build=build,
            config=frozen,
            description=description,
            created_by=user,
        )
        return record.done(version)


def _identical(version: Version, build: Build, frozen: dict[str, Any]) -> bool:
    """Whether ``version`` holds what publishing ``build`` with ``frozen`` would: the same build,
    or an archive of the same sha256, and no setting that differs (read as today's settings)."""
    same_code = version.build_id == build.pk or (bool(build.sha256) and version.build.sha256 == build.sha256)
    return same_code and not diffs.config_diff(version.settings, config.thawed(frozen))


def version_settings(version: Version) -> dict[str, Any]:
    """What the audit trail records of a version: its number, build and description (if any)."""
    described = {"description": version.description} if version.description else {}
    return {"number": version.number, "build": version.build_id, **described}


def version_get(*, function: Function, number: int) -> Version:
    version = Version.objects.filter(function=function, number=number).first()
    if version is None:
        raise NotFound(f"Version {number} does not exist.", detail={"version": [str(number)]})
    return version


def alias_settings(alias: Alias) -> dict[str, Any]:
    """What the audit trail records of an alias: its version(s) and their weights."""
    canary = alias.canary_version.number if alias.canary_version is not None else None
    weights = {str(number): weight for number, weight in alias.weights().items()}
    return {"version": alias.version.number, "canary_version": canary, "weights": weights}


def record_alias_set(function: Function, name: str) -> AbstractContextManager[Recording[Alias]]:
    """The record of ``alias_set`` (changes.alias_set_and_deploy opens it too)."""
    before = (
        Alias.objects.filter(function=function, name=name).select_related("version", "canary_version").first()
    )
    return recorded(
        "alias.set",
        object_type="alias",
        object_name=f"{function.name}/{name}",
        settings=alias_settings,
        before=before,
    )


def record_alias_delete(alias: Alias) -> AbstractContextManager[Recording[Alias]]:
    """The record of ``alias_delete`` (changes.alias_delete_and_deploy opens it too)."""
    return recorded(
        "alias.delete",
        object_type="alias",
        object_name=f"{alias.function.name}/{alias.name}",
        settings=alias_settings,
        before=alias,
    )


@transaction.atomic
def alias_set(
    *, function: Function, name: str, version: int, canary_version: int | None = None, canary_weight: int = 0
) -> Alias:
    """Create or change an alias. ``canary_weight`` % of calls go to ``canary_version``."""
    if canary_version is None and canary_weight:
        raise ValidationFailed(
            "A canary weight needs a canary version.", detail={"canary_weight": ["Set canary_version."]}
        )
    if canary_version is not None and canary_version == version:
        raise ValidationFailed(
            "The canary must be another version.", detail={"canary_version": ["Same as version."]}
        )
    if not 0 <= canary_weight <= 100:
        raise ValidationFailed("Weights are 0 to 100.", detail={"canary_weight": ["0 to 100."]})
    with record_alias_set(function, name) as record:
        alias = Alias.objects.select_for_update().filter(function=function, name=name).first() or Alias(
            function=function, name=name
        )
        refuse_if_held(alias)
        return record.done(alias_point(alias, version=version, canary_version=canary_version,
                                       canary_weight=canary_weight))  # fmt: skip


def alias_point(alias: Alias, *, version: int, canary_version: int | None, canary_weight: int) -> Alias:
    """Point ``alias`` (new or not) at ``version``, ``canary_weight`` % to ``canary_version``, and
    save it. No hold check and no record: alias_set's, and a rollout's steps (the rollout is
    recorded itself) call it."""
    alias.version = version_get(function=alias.function, number=version)
    alias.canary_version = (
        version_get(function=alias.function, number=canary_version) if canary_version else None
    )
    alias.canary_weight = canary_weight if canary_version else 0
    full_clean(alias, exclude=["function"])
    alias.save()
    return alias


def refuse_if_held(alias: Alias) -> None:
    """Conflict when a rollout is moving ``alias``: only that rollout changes it meanwhile."""
    if alias.pk is not None and alias.held_by_rollout is not None:
        raise Conflict(
            f"Rollout {alias.held_by_rollout} is moving alias {alias.name}: promote or abort it first.",
            code="rollout_running",
            detail={"rollout": alias.held_by_rollout},
        )


@transaction.atomic
def alias_delete(*, alias: Alias) -> None:
    refuse_if_held(alias)
    if alias.triggers.exists() or alias.timetriggers.exists() or alias.queuetriggers.exists():
        raise Conflict("Triggers use this alias: point them elsewhere first.", code="in_use")
    with record_alias_delete(alias):
        alias.delete()


# ---------------------------------------------------------------- restoring a version into the draft


def restored_settings(draft: Draft) -> dict[str, Any]:
    """What the audit trail records of a restore: the draft (revision, file names, never the
    code) and the function's settings, which the restore both replace."""
    return {**draft_record(draft), **function_settings(draft.function)}


def record_version_restore(function: Function, number: int) -> AbstractContextManager[Recording[Draft]]:
    """The record of ``version_restore`` ("version.restore" of ``<function>/v<number>``;
    changes.version_restore_and_deploy opens it too). Locks the draft until the transaction ends."""
    draft = Draft.objects.select_for_update().get(function=function)
    draft.function = function
    return recorded(
        "version.restore",
        object_type="version",
        object_name=f"{function.name}/v{number}",
        settings=restored_settings,
        before=draft,
    )


@transaction.atomic
def version_restore(*, function: Function, number: int) -> Draft:
    """Put version ``number``'s code (its files, or its uploaded zip) and configuration (its
    environment and every setting) back into the draft, whose revision goes up by one. The
    draft is not built or deployed (changes.version_restore_and_deploy also deploys it).

    NotFound for a version that does not exist; Conflict when its code was not kept
    (selectors.version_source) or its environment is gone; ValidationFailed when it names a
    Secret or ConfigMap the tenant no longer has. Nothing is written then."""
    with record_version_restore(function, number) as record:
        version = version_of(function=function, number=number)
        source = version_source(version)
        values = version.settings
        environment = _environment_of(version, values["environment"])
        check_references(values)
        function.environment = environment
        for name in config.NAMES:
            setattr(function, name, values[name])
        full_clean(function)
        function.save()
        draft = Draft.objects.select_for_update().get(function=function)
        draft.files, draft.archive = dict(source.files), source.archive
        draft.archive_name = source.archive_name
        draft.revision += 1
        draft.save()
        draft.function = function
        return record.done(draft)


def _environment_of(version: Version, name: str) -> Environment:
    environment = Environment.objects.filter(name=name).first()
    if environment is None:
        raise Conflict(
            f"Version {version.number} was published on environment {name}, which no longer exists: "
            "create it again to restore this version.",
            code=CODE_ENVIRONMENT_GONE,
            detail={"environment": [name]},
        )
    return environment
