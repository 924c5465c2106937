"""The long steps of a tenant's life, run by its Celery tasks: create the schema (a copy of the
template schema that migrate_schemas keeps current: tenants/schemas.py), provision the namespace,
follow a suspension, delete. Each is idempotent (see each docstring);
tasks.py retries them. The request side (tenants/services.py) records the wish and queues these.
"""

from __future__ import annotations

import dataclasses
from contextlib import AbstractContextManager
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context, schema_exists

from audit import services as audit
from core import notifier
from dataplane.backends import get_backend
from tenants import lifecycle, schemas
from tenants.models import Tenant, TenantState
from tenants.selectors import tenant_quota


@transaction.atomic
def tenant_set_state(tenant: Tenant, state: str, reason: str = "") -> None:
    """Record the tenant's new state (and why), with its audit record (the platform's doing, in
    its chain), and tell its members' pages. Called by a service, the record is its effect."""
    with audit_tenant_change("tenant.state", tenant, state_snapshot(tenant)) as done:
        tenant.state, tenant.state_reason, tenant.state_changed_at = state, reason, timezone.now()
        tenant.save(update_fields=["state", "state_reason", "state_changed_at"])
        done.after = state_snapshot(tenant)
    schema, payload = tenant.schema_name, {"slug": tenant.slug, "state": state, "reason": reason}
    transaction.on_commit(lambda: notifier.tenant_event(schema, "tenant.state", **payload))


def audit_tenant_change(
    action: str, tenant: Tenant, before: dict[str, Any] | None = None
) -> AbstractContextManager[audit.Change]:
    """The audit record of a change of ``tenant``: the platform's (its chain), shown to the tenant
    too. It runs in the public schema, so the tenant is named, not found from the connection."""
    return audit.change(
        action, object_type="tenant", object_name=tenant.slug, before=before, tenant=tenant, platform=True
    )


def state_snapshot(tenant: Tenant) -> dict[str, Any]:
    return {"state": tenant.state, "reason": tenant.state_reason}


def tenant_provision(*, tenant_id: int) -> Tenant | None:
    """Create the tenant's schema with every migration applied (a copy of the template schema,
    ``tenants.schemas.schema_create``), provision its namespace, then mark it ``ready``.

    Idempotent: each step is safe to repeat. The schema step claims the row
    (``select_for_update``) and skips a tenant that is no longer provisioning; a schema left
    half-made by a killed worker is migrated to completion. The data-plane step runs outside
    the transaction (it may retry for a while) and is an idempotent apply; its TransientError
    propagates for the task to retry. The last step fills the schema (the lifecycle's hooks,
    idempotent) and marks the tenant ready: one audit record. Returns None when the tenant is gone.
    """
    with transaction.atomic():
        tenant = Tenant.objects.select_for_update().filter(pk=tenant_id).first()
        if tenant is None or tenant.state != TenantState.PROVISIONING:
            return tenant
        _create_schema(tenant)
    connection.set_schema_to_public()  # type: ignore[attr-defined]
    tenant_apply_data_plane(tenant=tenant)
    with transaction.atomic():
        tenant = Tenant.objects.select_for_update().filter(pk=tenant_id).first()
        if tenant is None or tenant.state != TenantState.PROVISIONING:
            return tenant
        _fill_and_mark_ready(tenant)
        return tenant


def _create_schema(tenant: Tenant) -> None:
    # A new schema is a copy of the template (tenants/schemas.py: a fraction of the time of
    # migrating it); one that exists (a retry) is migrated to completion, a no-op when current.
    if schema_exists(tenant.schema_name):
        schemas.migrate_schema(tenant.schema_name)
    else:
        schemas.schema_create(tenant.schema_name)


def _fill_and_mark_ready(tenant: Tenant) -> None:
    # The schema's defaults are made with the state change so that they are its record's effects
    # (the provisioning is one action of the platform), not records of their own.
    with audit_tenant_change("tenant.state", tenant, state_snapshot(tenant)) as done:
        with schema_context(tenant.schema_name):
            lifecycle.schema_created()
        tenant_set_state(tenant, TenantState.READY)
        done.after = state_snapshot(tenant)


def tenant_apply_data_plane(*, tenant: Tenant) -> None:
    """Apply the tenant's namespace, quota and fences. A suspended tenant gets ``pods: 0``, so
    nothing of it can start again until it is resumed."""
    quota = tenant_quota(tenant)
    if tenant.suspended:
        quota = dataclasses.replace(quota, pods=0)
    get_backend().provision_tenant(tenant.slug, quota, internet_egress=tenant.internet_egress)


@transaction.atomic
def tenant_mark_failed(*, tenant_id: int, reason: str) -> None:
    """Record why provisioning failed; only a tenant still provisioning changes."""
    tenant = Tenant.objects.select_for_update().filter(pk=tenant_id).first()
    if tenant is not None and tenant.state == TenantState.PROVISIONING:
        tenant_set_state(tenant, TenantState.FAILED, reason[:2000])


def tenant_sync_suspension(*, tenant_id: int) -> None:
    """Make the data plane match the tenant's ``suspended`` flag as it is now (so two quick
    toggles end in the last one's state): suspended, its quota allows no pods and its functions
    and routes are removed; resumed, the quota is restored and live functions are redeployed."""
    tenant = Tenant.objects.filter(pk=tenant_id, state=TenantState.READY).first()
    if tenant is None:
        return
    tenant_apply_data_plane(tenant=tenant)
    applied = "suspended" if tenant.suspended else "resumed"
    recorded = audit_tenant_change("tenant.state", tenant)
    # One record for the whole of it: the redeployments a resume queues are its effects.
    with schema_context(tenant.schema_name), transaction.atomic(), recorded as done:
        if tenant.suspended:
            lifecycle.suspended()
        else:
            lifecycle.resumed()
        done.after = {"data_plane": applied}


def tenant_reapply(*, tenant_id: int) -> None:
    tenant = Tenant.objects.filter(pk=tenant_id, state=TenantState.READY).first()
    if tenant is not None:
        tenant_apply_data_plane(tenant=tenant)


def tenant_delete(*, tenant_id: int) -> None:
    """Remove the tenant from the data plane, then drop its schema and its rows.

    Idempotent: a missing tenant is a no-op. The data plane goes first so a slug reused
    later can never inherit old routes; its transient errors propagate for a retry.
    """
    tenant = Tenant.objects.filter(pk=tenant_id, state=TenantState.DELETING).first()
    if tenant is None:
        return
    get_backend().delete_namespace(tenant.namespace)
    with transaction.atomic():
        tenant = Tenant.objects.select_for_update().filter(pk=tenant_id).first()
        if tenant is None or tenant.state != TenantState.DELETING:
            return
        # The record keeps the tenant's id and slug: records have no foreign key to outlive.
        with audit_tenant_change("tenant.deleted", tenant, {"state": tenant.state}):
            with connection.cursor() as cursor:
                cursor.execute(f'DROP SCHEMA IF EXISTS "{tenant.schema_name}" CASCADE')
            Tenant.objects.filter(pk=tenant.pk).delete()
