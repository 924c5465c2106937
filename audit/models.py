"""The audit trail: one row per change, append-only, chained by hash (audit/chain.py).

The table is in the public schema and keeps no foreign key: a record outlives the user, the
token and the tenant it names (the database refuses to delete it, migrations 0002).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import models

# The chain of the platform's own changes (tenant lifecycle, quotas, platform tokens); every
# other chain is a tenant's, keyed by the tenant's id.
PLATFORM_CHAIN = 0


class ActorType(models.TextChoices):
    USER = "user", "User"
    TOKEN = "token", "API token"
    SYSTEM = "system", "System"


class AuditRecord(models.Model):
    chain: models.BigIntegerField[int, int] = models.BigIntegerField()
    seq: models.BigIntegerField[int, int] = models.BigIntegerField()
    at: models.DateTimeField[datetime, datetime] = models.DateTimeField()
    # The tenant the change concerns (null: the platform itself); a platform change of a tenant
    # (its creation, suspension, quota) is in the platform's chain and shown to the tenant too.
    tenant_id: models.BigIntegerField[int | None, int | None] = models.BigIntegerField(null=True)
    tenant_slug: models.CharField[str, str] = models.CharField(max_length=40, blank=True)
    actor_type: models.CharField[str, str] = models.CharField(max_length=8, choices=ActorType.choices)
    actor_user_id: models.BigIntegerField[int | None, int | None] = models.BigIntegerField(null=True)
    actor_name: models.CharField[str, str] = models.CharField(max_length=150)
    token_id: models.CharField[str, str] = models.CharField(max_length=16, blank=True)
    ip: models.CharField[str, str] = models.CharField(max_length=45, blank=True)  # normalised (context.py)
    user_agent: models.CharField[str, str] = models.CharField(max_length=512, blank=True)
    object_type: models.CharField[str, str] = models.CharField(max_length=32)
    object_name: models.CharField[str, str] = models.CharField(max_length=200)
    action: models.CharField[str, str] = models.CharField(max_length=48)
    # {"field": [before, after]} for each setting that changed: names, versions, never values.
    changes: models.JSONField[dict[str, Any], dict[str, Any]] = models.JSONField(default=dict)
    # What the change set off, e.g. ["deployment 12 queued"].
    effects: models.JSONField[list[str], list[str]] = models.JSONField(default=list)
    prev_hash: models.CharField[str, str] = models.CharField(max_length=64)
    hash: models.CharField[str, str] = models.CharField(max_length=64, unique=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chain", "seq"], name="auditrecord_chain_seq")]
        indexes = [
            models.Index(fields=["tenant_id", "-id"], name="auditrecord_tenant_id"),
            models.Index(fields=["chain", "-id"], name="auditrecord_chain_id"),
            models.Index(fields=["at"], name="auditrecord_at"),
        ]

    def __str__(self) -> str:
        return f"audit {self.chain}#{self.seq} {self.action} {self.object_name}"
