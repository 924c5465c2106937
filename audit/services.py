"""Writing the audit trail (CONVENTIONS.md 2): one record per change, in the change's own
transaction, so there is no change without its record and no record without its change.

A service wraps its change in ``change(...)``. The outermost ``change`` of a transaction is the
action the caller asked for and writes the one record; a ``change`` opened inside it (a service
that calls another) writes nothing of its own and is listed in the outer record's ``effects``.
So every request, task or command that changes something leaves exactly one record per action.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import get_public_schema_name, get_tenant_model

from audit import chain
from audit.context import current_actor
from audit.models import PLATFORM_CHAIN, AuditRecord
from audit.selectors import as_dict
from core import notifier

# pg_advisory_xact_lock(class, chain): appends to one chain are serialised until commit.
_LOCK_CLASS = 0x4155  # "AU"
_PRUNE_SETTING = "faas_portal.audit_prune_before"


class TenantLike(Protocol):
    """A tenant as the trail needs it (tenants.models.Tenant is one)."""

    @property
    def pk(self) -> Any: ...
    @property
    def slug(self) -> str: ...
    @property
    def schema_name(self) -> str: ...


@dataclass
class Change:
    """One change being made. The service sets ``after`` (and may rename the object, e.g. once a
    new row has its id) before the block ends."""

    action: str
    object_type: str
    object_name: str
    before: dict[str, Any]
    after: dict[str, Any] = field(default_factory=dict)
    effects: list[str] = field(default_factory=list)
    tenant: TenantLike | None = None
    platform: bool = False


_open: ContextVar[Change | None] = ContextVar("audit_change", default=None)


@contextmanager
def change(
    action: str,
    *,
    object_type: str,
    object_name: str,
    before: Mapping[str, Any] | None = None,
    tenant: TenantLike | None = None,
    platform: bool = False,
) -> Iterator[Change]:
    """Record the change made in the block, when the block ends without an error.

    ``tenant`` defaults to the connection's tenant schema; ``platform`` puts the record in the
    platform's chain (a platform admin's change of a tenant, or of the platform). Must run inside
    ``transaction.atomic``: the record commits or rolls back with the change.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("audit.change runs inside the change's transaction")
    current = Change(action, object_type, object_name, dict(before or {}), tenant=tenant, platform=platform)
    outer = _open.get()
    bound = _open.set(current)
    try:
        yield current
    finally:
        _open.reset(bound)
    if outer is None:
        _write(current)
    elif (current.action, current.object_name) != (outer.action, outer.object_name):
        outer.effects.append(f"{current.action} {current.object_name}")


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """``{field: [before, after]}`` for each field whose value differs (absent: None)."""
    old, new = _plain(dict(before)), _plain(dict(after))
    return {
        name: [old.get(name), new.get(name)]
        for name in sorted(set(old) | set(new))
        if old.get(name) != new.get(name)
    }


def _plain(value: Any) -> Any:
    """As JSON keeps it (what the hash covers once it is read back): times and decimals as text."""
    return json.loads(json.dumps(value, default=str))


def _write(done: Change) -> AuditRecord:
    tenant = _tenant_of(done)
    chain_id = PLATFORM_CHAIN if done.platform else _tenant_id(tenant)
    _lock(chain_id)
    last = AuditRecord.objects.filter(chain=chain_id).order_by("-seq").values_list("seq", "hash").first()
    actor = current_actor()
    fields: dict[str, Any] = {
        "chain": chain_id, "seq": (last[0] + 1) if last else 1, "at": timezone.now(),
        "tenant_id": tenant.pk if tenant else None, "tenant_slug": tenant.slug if tenant else "",
        "actor_type": actor.type, "actor_user_id": actor.user_id, "actor_name": actor.name,
        "token_id": actor.token_id, "ip": actor.ip, "user_agent": actor.user_agent,
        "object_type": done.object_type, "object_name": done.object_name[:200], "action": done.action,
        "changes": diff(done.before, done.after), "effects": done.effects,
        "prev_hash": last[1] if last else chain.GENESIS,
    }  # fmt: skip
    record = AuditRecord.objects.create(**fields, hash=chain.digest(fields))
    schema, shown = (tenant.schema_name if tenant else None), as_dict(record)
    transaction.on_commit(lambda: notifier.audit_event(schema, shown, platform=done.platform))
    return record


def _tenant_of(done: Change) -> TenantLike | None:
    if done.tenant is not None or done.platform:
        return done.tenant
    schema = str(getattr(connection, "schema_name", get_public_schema_name()))
    tenant = get_tenant_model().objects.filter(schema_name=schema).first()
    if tenant is None or schema == get_public_schema_name():
        raise RuntimeError(f"{done.action}: a tenant's change outside the tenant's schema")
    return tenant


def _tenant_id(tenant: TenantLike | None) -> int:
    if tenant is None:
        raise RuntimeError("a tenant's change needs its tenant")
    return int(tenant.pk)


def _lock(chain_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_CLASS, chain_id])


# ---------------------------------------------------------------- retention


def prune(*, before: datetime) -> dict[int, int]:
    """Remove every record older than ``before``, chain by chain, each chain in a transaction of
    its own that also appends an ``audit.pruned`` record naming the last record removed (the
    anchor ``chain.anchor_break`` checks). Returns ``{chain: records removed}``; idempotent."""
    chains = AuditRecord.objects.filter(at__lt=before).values_list("chain", flat=True).distinct()
    return {chain_id: _prune_chain(chain_id, before) for chain_id in sorted(set(chains))}


@transaction.atomic
def _prune_chain(chain_id: int, before: datetime) -> int:
    _lock(chain_id)
    doomed = AuditRecord.objects.filter(chain=chain_id, at__lt=before)
    last = doomed.order_by("-seq").values("seq", "hash", "tenant_id", "tenant_slug").first()
    if last is None:
        return 0
    with connection.cursor() as cursor:
        # The append-only trigger lets this transaction, and only it, delete rows older than this.
        cursor.execute("SELECT set_config(%s, %s, true)", [_PRUNE_SETTING, before.isoformat()])
    removed, _ = doomed.delete()
    tenant = _PrunedTenant(chain_id, last["tenant_slug"]) if chain_id != PLATFORM_CHAIN else None
    name = f"chain {chain_id}"
    with change(chain.PRUNED, object_type="audit", object_name=name, tenant=tenant,
                platform=chain_id == PLATFORM_CHAIN) as pruned:  # fmt: skip
        pruned.after = {"through_seq": last["seq"], "through_hash": last["hash"], "removed": removed,
                        "before": before.isoformat()}  # fmt: skip
    return removed


@dataclass(frozen=True)
class _PrunedTenant:
    """A tenant chain's identity for its prune record: the tenant may be gone, its chain is not."""

    pk: int
    slug: str

    @property
    def schema_name(self) -> str:
        schemas = get_tenant_model().objects.filter(pk=self.pk).values_list("schema_name", flat=True)
        return str(schemas.first() or "")
