"""Reading the audit trail: a tenant's, the platform's, filtered; and checking the chains."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet

from audit import chain
from audit.models import PLATFORM_CHAIN, AuditRecord

# What a reader sees of a record, in this order: everything but the chain's bookkeeping
# (``prev_hash`` stays inside; ``hash`` is shown so a copy can be checked against the database).
FIELDS = (
    "id", "at", "tenant_slug", "actor_type", "actor_name", "token_id", "ip", "user_agent",
    "object_type", "object_name", "action", "changes", "effects", "chain", "seq", "hash",
)  # fmt: skip


# Every object_type a record may have (docs/audit.md): what a filter offers.
OBJECT_TYPES = (
    "tenant", "member", "invitation", "token", "secrets-key", "environment", "function", "build", "version",
    "alias", "trigger", "time-trigger", "queue-trigger", "secret", "configmap", "deployment", "invocation",
    "dead-letter", "audit",
)  # fmt: skip


def as_dict(record: AuditRecord) -> dict[str, Any]:
    values = {name: getattr(record, name) for name in FIELDS}
    values["at"] = record.at.isoformat()
    return values


def as_tenant_sees(values: dict[str, Any]) -> dict[str, Any]:
    """A record as a tenant's admins see it (API, export, page, websocket): a platform change of
    their tenant (creation, suspension, quota) keeps who made it, not the platform admin's
    address and browser, which are not the tenant's business."""
    if values["chain"] == PLATFORM_CHAIN:
        return {**values, "ip": "", "user_agent": ""}
    return values


@dataclass(frozen=True)
class Filters:
    """What a reader narrows a trail to; each one given is required (and)."""

    actor: str = ""  # a username, "system", or a token id
    object_type: str = ""
    object_name: str = ""  # the start of the name: "hello" finds hello and hello/prod
    action: str = ""  # exact ("function.update") or a prefix ending in "." ("function.")
    since: datetime | None = None
    until: datetime | None = None


def tenant_trail(tenant_id: int, filters: Filters = Filters()) -> QuerySet[AuditRecord]:
    """A tenant's records, newest first: its own chain and the platform's changes of it."""
    return _filtered(AuditRecord.objects.filter(tenant_id=tenant_id), filters)


def platform_trail(filters: Filters = Filters()) -> QuerySet[AuditRecord]:
    """The platform's chain, newest first: tenants created, suspended, re-quotaed, deleted."""
    return _filtered(AuditRecord.objects.filter(chain=PLATFORM_CHAIN), filters)


def _filtered(records: QuerySet[AuditRecord], filters: Filters) -> QuerySet[AuditRecord]:
    if filters.actor:
        records = records.filter(Q(actor_name=filters.actor) | Q(token_id=filters.actor))
    if filters.object_type:
        records = records.filter(object_type=filters.object_type)
    if filters.object_name:
        records = records.filter(object_name__startswith=filters.object_name)
    if filters.action:
        exact = not filters.action.endswith(".")
        records = records.filter(**{"action" if exact else "action__startswith": filters.action})
    if filters.since:
        records = records.filter(at__gte=filters.since)
    if filters.until:
        records = records.filter(at__lt=filters.until)
    return records.order_by("-id")


def verify() -> tuple[int, list[chain.Break]]:
    """Check every chain: (records checked, the first break of each chain that has one)."""
    checked, found = 0, []
    for chain_id in AuditRecord.objects.values_list("chain", flat=True).distinct().order_by("chain"):
        count, problem = _verify_chain(chain_id)
        checked += count
        if problem is not None:
            found.append(problem)
    return checked, found


def _verify_chain(chain_id: int) -> tuple[int, chain.Break | None]:
    rows = AuditRecord.objects.filter(chain=chain_id).order_by("seq")
    values = rows.values("id", "hash", *chain.HASHED)
    first = values.first()
    prunes = list(values.filter(action=chain.PRUNED))
    anchor = chain.anchor_break(first, prunes) if first else None
    found = anchor or next(chain.breaks(values.iterator(chunk_size=2000)), None)
    return rows.count(), found
