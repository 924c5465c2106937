"""The long steps of a tenant's life, run by its Celery tasks: create and migrate the schema,
provision the namespace, follow a suspension, delete. Each is idempotent (see each docstring);
tasks.py retries them. The request side (tenants/services.py) records the wish and queues these.
"""

from __future__ import annotations

import dataclasses

from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context, schema_exists

from core import notifier
from dataplane.backends import get_backend
from tenants import lifecycle
from tenants.models import Tenant, TenantState
from tenants.selectors import tenant_quota


def tenant_set_state(tenant: Tenant, state: str, reason: str = "") -> None:
    """Record the tenant's new state (and why) and tell its members' pages."""
    tenant.state, tenant.state_reason, tenant.state_changed_at = state, reason, timezone.now()
    tenant.save(update_fields=["state", "state_reason", "state_changed_at"])
    schema, payload = tenant.schema_name, {"slug": tenant.slug, "state": state, "reason": reason}
    transaction.on_commit(lambda: notifier.tenant_event(schema, "tenant.state", **payload))


def tenant_provision(*, tenant_id: int) -> Tenant | None:
    """Create and migrate the tenant's schema, provision its namespace, then mark it ``ready``.

    Idempotent: each step is safe to repeat. The schema step claims the row
    (``select_for_update``) and skips a tenant that is no longer provisioning; a schema left
    half-made by a killed worker is migrated to completion. The data-plane step runs outside
    the transaction (it may retry for a while) and is an idempotent apply; its TransientError
    propagates for the task to retry. Returns None when the tenant is gone.
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
        tenant_set_state(tenant, TenantState.READY)
        return tenant


def _create_schema(tenant: Tenant) -> None:
    if not schema_exists(tenant.schema_name):
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE SCHEMA "{tenant.schema_name}"')
    call_command(
        "migrate_schemas", tenant=True, schema_name=tenant.schema_name, interactive=False, verbosity=0,
    )  # fmt: skip
    with schema_context(tenant.schema_name):
        lifecycle.schema_created()


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
    with schema_context(tenant.schema_name):
        if tenant.suspended:
            lifecycle.suspended()
        else:
            lifecycle.resumed()


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
        with connection.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA IF EXISTS "{tenant.schema_name}" CASCADE')
        Tenant.objects.filter(pk=tenant.pk).delete()
