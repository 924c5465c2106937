"""Audit retention, run by Celery beat (``audit-prune`` in settings)."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from audit import services


@shared_task(name="audit.prune", ignore_result=True)
def audit_prune_task() -> None:
    """Remove records past ``PORTAL_AUDIT_RETENTION_DAYS`` (0: keep all). Idempotent: a second run
    finds nothing older to remove; each chain is pruned in a transaction of its own."""
    if settings.AUDIT_RETENTION_DAYS:
        services.prune(before=timezone.now() - timedelta(days=settings.AUDIT_RETENTION_DAYS))
