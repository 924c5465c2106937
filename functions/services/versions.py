"""Versions (immutable), and aliases that point at one version or split between two."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import asdict
from typing import Any

from django.db import transaction
from django.db.models import Max

from core.errors import Conflict, NotFound, ValidationFailed
from functions import config
from functions.models import Alias, Function, Version
from functions.selectors import build_current
from functions.services.common import Recording, full_clean, recorded
from functions.specs import function_spec


@transaction.atomic
def version_publish(*, function: Function, description: str = "", user: str = "") -> Version:
    """Freeze the built draft into version N+1. Needs a succeeded build of the current draft.

    The function row is locked so two publishes cannot take the same number.
    """
    Function.objects.select_for_update().filter(pk=function.pk).first()
    build = build_current(function=function)
    if build is None:
        raise Conflict(
            "Build or deploy the current draft first: it has no successful build.", code="not_built"
        )
    number = (Version.objects.filter(function=function).aggregate(n=Max("number"))["n"] or 0) + 1
    frozen = config.frozen(asdict(function_spec(function)))
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
        alias = Alias.objects.filter(function=function, name=name).first() or Alias(
            function=function, name=name
        )
        alias.version = version_get(function=function, number=version)
        alias.canary_version = (
            version_get(function=function, number=canary_version) if canary_version else None
        )
        alias.canary_weight = canary_weight if canary_version else 0
        full_clean(alias, exclude=["function"])
        alias.save()
        return record.done(alias)


@transaction.atomic
def alias_delete(*, alias: Alias) -> None:
    if alias.triggers.exists() or alias.timetriggers.exists() or alias.queuetriggers.exists():
        raise Conflict("Triggers use this alias: point them elsewhere first.", code="in_use")
    with record_alias_delete(alias):
        alias.delete()
