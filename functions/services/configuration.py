"""The tenant's Secrets and ConfigMaps (issue 14): named values that functions name in their
``secrets`` / ``configmaps`` settings and read as files where Fission puts them.

A Secret's values are encrypted at rest (core.crypto) and never shown again: only its keys are.
Deleting one that a function uses is a Conflict naming the functions; a saved one is applied by
the deployments of the functions that use it (changes.py queues them), and a deleted one is
removed from the data plane by a task after commit.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, connection, transaction

from core import notifier
from core.crypto import Keyring
from core.errors import Conflict, ValidationFailed
from dataplane.manifests import PORTAL_CONFIGMAP_SUFFIX, PORTAL_SECRET_SUFFIX
from functions import config, quotas, selectors, tasks
from functions.models import ConfigMap, Secret, TenantObject
from functions.services.common import Recording, full_clean, recorded
from tenants import secrets_keys

CODE_IN_USE = "in_use"
KINDS: dict[str, type[Secret] | type[ConfigMap]] = {"secrets": Secret, "configmaps": ConfigMap}


def object_settings(obj: TenantObject) -> dict[str, Any]:
    """What the audit trail records of a Secret or a ConfigMap: its keys, never a value."""
    keys = obj.keys if isinstance(obj, Secret) else getattr(obj, "data", {})
    return {"keys": sorted(keys)}


def _object_type(model: type[TenantObject]) -> str:
    return "secret" if model is Secret else "configmap"


def record_object_save(
    model: type[Secret] | type[ConfigMap], name: str
) -> AbstractContextManager[Recording[TenantObject]]:
    """The record of ``secret_save`` / ``configmap_save`` ("<type>.create" or "<type>.update";
    changes.*_save_and_deploy open it too). Locks the row, if there is one, until the
    transaction ends."""
    existing: TenantObject | None = _existing(model, name)
    object_type = _object_type(model)
    verb = "update" if existing is not None else "create"
    return recorded(
        f"{object_type}.{verb}",
        object_type=object_type,
        object_name=name,
        settings=object_settings,
        before=existing,
    )


@transaction.atomic
def secret_save(*, name: str, data: dict[str, str], user: str = "") -> Secret:
    """Create Secret ``name`` or replace all its values."""
    values = _checked(name, data, PORTAL_SECRET_SUFFIX, "secret")
    with record_object_save(Secret, name) as record:
        secret = _existing(Secret, name) or Secret(name=name, created_by=user)
        secret.set_values(values)
        _save(secret)
        quotas.enforce(what=f"secret {name}")  # a new one counts against the secrets quota
        _announce("secret.saved", secret.name, keys=secret.keys)
        record.done(secret)
    return secret


@transaction.atomic
def configmap_save(*, name: str, data: dict[str, str], user: str = "") -> ConfigMap:
    """Create ConfigMap ``name`` or replace all its values."""
    values = _checked(name, data, PORTAL_CONFIGMAP_SUFFIX, "config map")
    with record_object_save(ConfigMap, name) as record:
        configmap = _existing(ConfigMap, name) or ConfigMap(name=name, created_by=user)
        configmap.data = values
        _save(configmap)
        quotas.enforce(what=f"config map {name}")
        _announce("configmap.saved", configmap.name, keys=sorted(values))
        record.done(configmap)
    return configmap


@transaction.atomic
def delete(obj: TenantObject) -> None:
    """Delete ``obj`` (a Secret or a ConfigMap) unless a function uses it (Conflict naming them);
    its object leaves the data plane after commit."""
    setting = "secrets" if isinstance(obj, Secret) else "configmaps"
    model = KINDS[setting]
    if model.objects.select_for_update().filter(pk=obj.pk).first() is None:
        return  # deleted meanwhile, by a request that also removes it from the data plane
    users = usage(setting).get(obj.name, [])
    kind = model.__name__
    if users:
        raise Conflict(
            f"{kind} {obj.name} is used by {', '.join(users)}: take it out of their {setting} first "
            "(a published version an alias or trigger uses counts too).",
            detail={"functions": users},
            code=CODE_IN_USE,
        )
    object_type = _object_type(model)
    with recorded(
        f"{object_type}.delete",
        object_type=object_type,
        object_name=obj.name,
        settings=object_settings,
        before=obj,
    ):
        obj.delete()
    schema = connection.schema_name  # type: ignore[attr-defined]
    transaction.on_commit(lambda: tasks.tenant_object_undeploy_task.delay(schema, kind, obj.name))
    _announce(f"{kind.lower()}.deleted", obj.name)


def _announce(kind: str, name: str, **data: Any) -> None:
    """Tell the tenant's event stream, after the commit: names and keys only, never a value."""
    schema = connection.schema_name  # type: ignore[attr-defined]
    transaction.on_commit(lambda: notifier.tenant_event(schema, kind, name=name, **data))


def rotate_secrets(keyring: Keyring) -> int:
    """Re-encrypt this schema's Secrets under the keyring's first key (``manage.py secrets rotate``
    calls it in every tenant schema); how many were rewritten. No Secret changes its keys or
    values, so it writes no audit record of its own: the rotation is recorded once, by its caller
    (tenants/secrets_keys.py, "secrets-key.rotate")."""
    return secrets_keys.rotate_field(Secret.objects.all(), "ciphertext", keyring)


def usage(setting: str) -> dict[str, list[str]]:
    """Each name in functions' ``setting`` (``secrets`` or ``configmaps``) -> the functions that
    use it (sorted): those naming it now, and those with a deployed version published naming it."""
    return usages()[setting]


def usages() -> dict[str, dict[str, list[str]]]:
    """``usage`` of both settings (``selectors.object_usages``: two queries, whatever the number of
    functions)."""
    return selectors.object_usages()


def check_references(values: dict[str, Any]) -> None:
    """ValidationFailed naming each Secret or ConfigMap in ``values`` (function settings) that
    the tenant does not have."""
    detail: dict[str, list[str]] = {}
    for setting, model in KINDS.items():
        names = values.get(setting)
        if not isinstance(names, list):
            continue  # absent, or not a list: the model's validation says so
        present = set(model.objects.filter(name__in=names).values_list("name", flat=True))
        missing = [name for name in names if name not in present]
        if missing:
            detail[setting] = [f"No such {setting[:-1]}: {', '.join(missing)}."]
    if detail:
        raise ValidationFailed(
            "A function names a Secret or ConfigMap the tenant does not have.", detail=detail
        )


def _existing(model: type[Secret] | type[ConfigMap], name: str) -> Any:
    """The row named ``name``, locked until the transaction ends; None when there is none."""
    return model.objects.select_for_update().filter(name=name).first()


def _save(obj: Secret | ConfigMap) -> None:
    """Validate and save; a concurrent create of the same name is a Conflict, not an error."""
    full_clean(obj)
    try:
        with transaction.atomic():
            obj.save()
    except IntegrityError:
        raise Conflict(f"{obj.name} was created meanwhile.", detail={"name": ["Already taken."]}) from None


def _checked(name: str, data: object, reserved_suffix: str, what: str) -> dict[str, str]:
    if name.endswith(reserved_suffix):
        raise ValidationFailed(
            f"A {what} name may not end with {reserved_suffix!r}: the portal names its own so.",
            detail={"name": [f"Ends with {reserved_suffix!r}."]},
        )
    try:
        return config.check_object_data(data)
    except DjangoValidationError as exc:
        raise ValidationFailed("Invalid data.", detail={"data": exc.messages}) from exc
