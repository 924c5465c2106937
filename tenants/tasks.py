"""Celery tasks for tenants: thin wrappers over idempotent services (CONVENTIONS.md 5).

Tenant tasks take the tenant's id, not a schema name: they run in the public schema.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import Task, shared_task
from django.db import DatabaseError

from dataplane.backends.base import BackendError
from dataplane.retry import TRANSIENT, backoff_s, retrying
from tenants import provisioning, selectors

log = logging.getLogger(__name__)

PROVISION_BACKOFF_MAX_S = 60


@shared_task(
    name="tenants.provision",
    bind=True,
    **retrying(retries=5, backoff_max_s=PROVISION_BACKOFF_MAX_S, automatic=False),
)
def tenant_provision_task(self: Task[[int], None], tenant_id: int) -> None:
    """Provision a tenant. ``acks_late`` is safe: tenant_provision claims the row and
    skips tenants that are no longer provisioning. Transient database errors are retried
    with backoff and jitter; anything else, or running out of retries, marks it failed."""
    try:
        provisioning.tenant_provision(tenant_id=tenant_id)
    except TRANSIENT as exc:
        if self.request.retries < (self.max_retries or 0):
            raise self.retry(
                exc=exc, countdown=backoff_s(self.request.retries, maximum=PROVISION_BACKOFF_MAX_S)
            ) from exc
        provisioning.tenant_mark_failed(
            tenant_id=tenant_id, reason=f"The data plane or database kept failing: {exc}"
        )
    except BackendError as exc:  # permanent: a missing permission, a refused object
        provisioning.tenant_mark_failed(tenant_id=tenant_id, reason=f"The data plane refused: {exc.message}")
    except DatabaseError as exc:
        log.exception("provisioning tenant %s failed", tenant_id)
        provisioning.tenant_mark_failed(tenant_id=tenant_id, reason=f"Database error: {exc}")


@shared_task(name="tenants.delete", **retrying(retries=10, backoff_max_s=120))
def tenant_delete_task(tenant_id: int) -> None:
    """Delete a tenant. Idempotent: tenant_delete does nothing once the row is gone."""
    provisioning.tenant_delete(tenant_id=tenant_id)


@shared_task(name="tenants.apply", **retrying(retries=10, backoff_max_s=120))
def tenant_apply_task(tenant_id: int) -> None:
    """Re-apply a tenant's quota and fences after a change. Idempotent (server-side apply)."""
    provisioning.tenant_reapply(tenant_id=tenant_id)


@shared_task(name="tenants.suspension", **retrying(retries=10, backoff_max_s=120))
def tenant_suspension_task(tenant_id: int) -> None:
    """Scale a suspended tenant to zero, or bring a resumed one back. Idempotent: it reads the
    flag when it runs."""
    provisioning.tenant_sync_suspension(tenant_id=tenant_id)


@shared_task(name="tenants.resume_stuck")
def tenants_resume_stuck() -> int:
    """Re-queue provisioning and deletion that has not moved for 2 minutes (a lost task).

    Safe to run at any time: both tasks are idempotent. Returns how many were re-queued.
    """
    stuck = selectors.tenants_stuck(older_than=timedelta(minutes=2))
    for tenant_id, state in stuck:
        task = tenant_delete_task if state == "deleting" else tenant_provision_task
        task.delay(tenant_id)
    return len(stuck)
