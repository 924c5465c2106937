"""HTTP triggers: a path (or prefix) under ``/<tenant>/`` pointing at an alias, a version or the draft."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from django.db import transaction

from core.errors import Conflict, ValidationFailed
from dataplane import manifests
from functions.models import Alias, Function, TargetKind, Trigger
from functions.services.common import Recording, full_clean, recorded
from functions.services.versions import version_get
from tenants.selectors import current_tenant

METHODS = ("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH")


def _check_path(path: str) -> None:
    """The manifests' own rule (dataplane.manifests.tenant_route), so that every path saved
    here can be deployed."""
    try:
        manifests.tenant_route(current_tenant().slug, path)
    except manifests.InvalidManifest as exc:
        raise ValidationFailed(
            "The path must start with '/', use URL characters and contain no '..' or '//'.",
            detail={"path": [str(exc)]},
        ) from None


def _check_methods(methods: list[str]) -> list[str]:
    if not methods or any(m not in METHODS for m in methods):
        raise ValidationFailed(
            "Choose at least one HTTP method.", detail={"methods": [f"Some of {METHODS}."]}
        )
    return sorted(set(methods))


def target_fields(function: Function, kind: str, alias: str | None, version: int | None) -> dict[str, Any]:
    """The target fields of any trigger (``Targeted``): an alias, a version or the draft."""
    if kind == TargetKind.ALIAS:
        if not alias:
            raise ValidationFailed("Which alias?", detail={"alias": ["Required."]})
        found = Alias.objects.filter(function=function, name=alias).first()
        if found is None:
            raise ValidationFailed("Unknown alias.", detail={"alias": [f"No alias {alias!r}."]})
        return {"alias": found, "version": None}
    if kind == TargetKind.VERSION:
        if version is None:
            raise ValidationFailed("Which version?", detail={"version": ["Required."]})
        return {"alias": None, "version": version_get(function=function, number=version)}
    if kind == TargetKind.DRAFT:
        return {"alias": None, "version": None}
    raise ValidationFailed("Unknown target.", detail={"target_kind": [f"One of {TargetKind.values}."]})


def target_settings(trigger: Any) -> dict[str, Any]:
    """What the audit trail records of any trigger's target (``Targeted``)."""
    alias = trigger.alias.name if trigger.alias_id else None
    version = trigger.version.number if trigger.version_id else None
    return {"target_kind": trigger.target_kind, "alias": alias, "version": version}


def trigger_settings(trigger: Trigger) -> dict[str, Any]:
    """What the audit trail records of an HTTP trigger."""
    fields = ("name", "methods", "path", "is_prefix", "keep_prefix")
    return {**{field: getattr(trigger, field) for field in fields}, **target_settings(trigger)}


def record_trigger_save(
    function: Function, name: str, trigger: Trigger | None
) -> AbstractContextManager[Recording[Trigger]]:
    """The record of ``trigger_save`` (changes.trigger_save_and_deploy opens it too): a new
    trigger is named as given, a changed one by its name before the change."""
    verb, named = ("update", trigger.name) if trigger is not None else ("create", name)
    return recorded(
        f"trigger.{verb}",
        object_type="trigger",
        object_name=f"{function.name}/{named}",
        settings=trigger_settings,
        before=trigger,
    )


def record_trigger_delete(trigger: Trigger) -> AbstractContextManager[Recording[Trigger]]:
    """The record of ``trigger_delete`` (changes.trigger_delete_and_deploy opens it too)."""
    return recorded(
        "trigger.delete",
        object_type="trigger",
        object_name=f"{trigger.function.name}/{trigger.name}",
        settings=trigger_settings,
        before=trigger,
    )


@transaction.atomic
def trigger_save(
    *, function: Function, name: str, methods: list[str], path: str, is_prefix: bool = False,
    keep_prefix: bool = False, target_kind: str = TargetKind.DRAFT, alias: str | None = None,
    version: int | None = None, trigger: Trigger | None = None,
) -> Trigger:  # fmt: skip
    """Create (``trigger`` None) or change a trigger of ``function``."""
    _check_path(path)
    taken = Trigger.objects.filter(path=path, is_prefix=is_prefix)
    if trigger is not None:
        taken = taken.exclude(pk=trigger.pk)
    if taken.exists():  # unique in the tenant (trigger_unique_path): said, not an IntegrityError
        other = taken.select_related("function").get()
        where = f"under {path}" if is_prefix else path
        said = f"Trigger {other.name} of {other.function.name} answers {where} already."
        raise Conflict(said, detail={"path": [said]})
    with record_trigger_save(function, name, trigger) as record:
        trigger = trigger or Trigger(function=function)
        trigger.name, trigger.path, trigger.methods = name, path, _check_methods(methods)
        trigger.is_prefix, trigger.keep_prefix, trigger.target_kind = is_prefix, keep_prefix, target_kind
        for key, value in target_fields(function, target_kind, alias, version).items():
            setattr(trigger, key, value)
        full_clean(trigger, exclude=["function", "alias", "version"])
        trigger.save()
        return record.done(trigger)


@transaction.atomic
def trigger_delete(*, trigger: Trigger) -> None:
    with record_trigger_delete(trigger):
        trigger.delete()
