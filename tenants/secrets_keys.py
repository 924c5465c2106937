"""The stored secrets' key: checked at start-up, and rotated across every tenant schema.

``verify`` opens the one key-check row (``SecretsKeyCheck``, a known plaintext written at the
first start): a ``PORTAL_SECRETS_KEYS`` without the key the stored secrets were encrypted with
fails start-up with a message naming the variable, not the first secret read.

``rotate`` re-encrypts every stored secret under the first key. The tenants app cannot import
the apps that keep secrets in a tenant's schema (docs/architecture.md), so each registers a
rotation here (``register_rotation``, from the composition root, portal/apps.py), called once
per tenant schema inside it. The check row is rotated last: once it is under the first key,
every rotation before it has finished, and ``verify`` says so (``KeyStatus.current``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django_tenants.utils import get_public_schema_name, schema_context, schema_exists

from audit import services as audit
from core.crypto import VARIABLE, Keyring, WrongKey
from tenants.models import SecretsKeyCheck
from tenants.selectors import tenant_queryset

CHECK_PLAINTEXT = b"faas-portal: PORTAL_SECRETS_KEYS opens the stored secrets"

# Re-encrypts its rows of the current schema under ``keyring``'s first key; returns how many.
Rotation = Callable[[Keyring], int]
_rotations: list[Rotation] = []


@dataclass(frozen=True)
class KeyStatus:
    key: int  # the position (1-based) in PORTAL_SECRETS_KEYS of the key the check row is under
    created: bool  # the check row was written now (the first start)

    @property
    def current(self) -> bool:
        """Under the first key: no rotation pending, the keys after the first may be dropped."""
        return self.key == 1


@dataclass
class RotationReport:
    rows: dict[str, int] = field(default_factory=dict)  # rows re-encrypted, per tenant schema

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def register_rotation(rotation: Rotation) -> None:
    """Add an app's rotation. Idempotent: registering the same function twice keeps one.

    It runs inside each tenant schema, in a transaction, and must not lose a secret written
    while it runs: ``rotate_field`` re-encrypts with a guard on the old ciphertext."""
    if rotation not in _rotations:
        _rotations.append(rotation)


def verify() -> KeyStatus:
    """Open the check row, writing it (under the first key) when there is none yet.

    Raises ``ImproperlyConfigured`` naming PORTAL_SECRETS_KEYS when the variable is missing or
    malformed, or when none of its keys opens the row. Idempotent: the row is created once
    (its primary key is fixed, so a concurrent first start gets the other's row)."""
    keyring = Keyring.from_settings()
    with schema_context(get_public_schema_name()):
        check, created = SecretsKeyCheck.objects.get_or_create(
            pk=1, defaults={"token": keyring.encrypt(CHECK_PLAINTEXT)}
        )
    key = _opening_key(keyring, check.token)
    if key is None:
        raise ImproperlyConfigured(
            f"{VARIABLE} does not hold the key the stored secrets were encrypted with (none of its "
            f"{keyring.size} key(s) opens the key check written at the first start, "
            f"{check.created_at:%Y-%m-%d %H:%M} UTC): give back that key, after the new one "
            "if you are rotating (README, Configuration)"
        )
    return KeyStatus(key=key, created=created)


def rotate() -> RotationReport:
    """Re-encrypt every stored secret under the first key of PORTAL_SECRETS_KEYS: each
    registered rotation in every tenant schema, then the check row.

    Refuses (``ImproperlyConfigured``) before touching anything when the keys do not open the
    check row. Idempotent: every run leaves each token under the first key, so a run that
    stopped half-way is finished by running it again (each schema is one transaction). The
    platform's audit record is written with the check row, once every schema is done: it counts
    the secrets this run re-encrypted, and names no key."""
    status = verify()
    keyring = Keyring.from_settings()
    report = RotationReport()
    for schema in _tenant_schemas():
        with schema_context(schema), transaction.atomic():
            report.rows[schema] = sum(rotation(keyring) for rotation in _rotations)
    with schema_context(get_public_schema_name()), transaction.atomic(), _rotation_change(status) as done:
        rotate_field(SecretsKeyCheck.objects.all(), "token", keyring)
        SecretsKeyCheck.objects.filter(pk=1).update(rotated_at=timezone.now())
        done.after = {"key": 1, "re_encrypted": report.total, "tenant_schemas": len(report.rows)}
    return report


def _rotation_change(status: KeyStatus) -> AbstractContextManager[audit.Change]:
    """The rotation's record, in the platform's chain; ``key`` is the position in the variable
    of the key the secrets were under (a position, never the key)."""
    return audit.change(
        "secrets-key.rotate",
        object_type="secrets-key",
        object_name=VARIABLE,
        before={"key": status.key},
        platform=True,
    )


def rotate_field(rows: QuerySet[Any], name: str, keyring: Keyring) -> int:
    """Re-encrypt the binary field ``name`` of ``rows`` under the first key; returns how many rows
    were rewritten. Each row is an atomic compare-and-swap on its old ciphertext: a row written
    meanwhile (already under the first key) is left as its writer left it, never overwritten."""
    rewritten = 0
    for pk, token in rows.values_list("pk", name).iterator():
        if token is None:
            continue
        old = bytes(token)
        rewritten += rows.filter(pk=pk, **{name: old}).update(**{name: keyring.rotate(old)})
    return rewritten


def _opening_key(keyring: Keyring, token: bytes | memoryview) -> int | None:
    """The position of the key that opens the check row to its known plaintext, if any does."""
    try:
        key = keyring.opening_key(token)
    except WrongKey:
        return None
    return key if keyring.decrypt(token) == CHECK_PLAINTEXT else None


def _tenant_schemas() -> list[str]:
    """Every tenant schema that exists (a tenant still provisioning may have none yet)."""
    schemas = tenant_queryset().order_by("schema_name").values_list("schema_name", flat=True)
    return [schema for schema in schemas if schema_exists(schema)]
