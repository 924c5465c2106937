"""Versions (immutable), and aliases that point at one version or split between two."""

from __future__ import annotations

from dataclasses import asdict

from django.db import transaction
from django.db.models import Max

from core.errors import Conflict, NotFound, ValidationFailed
from functions import config
from functions.models import Alias, Function, Version
from functions.selectors import build_current
from functions.services.common import full_clean
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
    return Version.objects.create(
        function=function, number=number, build=build, config=frozen, description=description, created_by=user
    )


def version_get(*, function: Function, number: int) -> Version:
    version = Version.objects.filter(function=function, number=number).first()
    if version is None:
        raise NotFound(f"Version {number} does not exist.", detail={"version": [str(number)]})
    return version


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
    alias = Alias.objects.filter(function=function, name=name).first() or Alias(function=function, name=name)
    alias.version = version_get(function=function, number=version)
    alias.canary_version = version_get(function=function, number=canary_version) if canary_version else None
    alias.canary_weight = canary_weight if canary_version else 0
    full_clean(alias, exclude=["function"])
    alias.save()
    return alias


@transaction.atomic
def alias_delete(*, alias: Alias) -> None:
    if alias.triggers.exists() or alias.timetriggers.exists() or alias.queuetriggers.exists():
        raise Conflict("Triggers use this alias: point them elsewhere first.", code="in_use")
    alias.delete()
