"""HTTP triggers: a path (or prefix) under ``/<tenant>/`` pointing at an alias, a version or the draft."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from core.errors import ValidationFailed
from dataplane import manifests
from functions.models import Alias, Function, TargetKind, Trigger
from functions.services.common import full_clean
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


@transaction.atomic
def trigger_save(
    *, function: Function, name: str, methods: list[str], path: str, is_prefix: bool = False,
    keep_prefix: bool = False, target_kind: str = TargetKind.DRAFT, alias: str | None = None,
    version: int | None = None, trigger: Trigger | None = None,
) -> Trigger:  # fmt: skip
    """Create (``trigger`` None) or change a trigger of ``function``."""
    _check_path(path)
    trigger = trigger or Trigger(function=function)
    trigger.name, trigger.path, trigger.methods = name, path, _check_methods(methods)
    trigger.is_prefix, trigger.keep_prefix, trigger.target_kind = is_prefix, keep_prefix, target_kind
    for key, value in target_fields(function, target_kind, alias, version).items():
        setattr(trigger, key, value)
    full_clean(trigger, exclude=["function", "alias", "version"])
    trigger.save()
    return trigger


@transaction.atomic
def trigger_delete(*, trigger: Trigger) -> None:
    trigger.delete()
