"""Celery tasks for functions: thin, tenant passed explicitly as the schema name."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import Task, shared_task
from django.utils import timezone
from django_tenants.utils import schema_context

from functions.backends.base import TransientError
from functions.models import Deployment
from functions.services import builds, deployments
from tenants.selectors import tenant_queryset

log = logging.getLogger(__name__)


@shared_task(name="functions.build", acks_late=True, reject_on_worker_lost=True)
def build_task(schema: str, build_id: int) -> None:
    """Run a build. Safe to deliver twice: build_run claims queued -> running atomically."""
    with schema_context(schema):
        builds.build_run(build_id=build_id)


@shared_task(
    name="functions.deploy",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=8,
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
)
def deploy_task(self: Task[[str, int], None], schema: str, deployment_id: int) -> None:
    """Run or resume a deployment. ``acks_late`` is safe: deployment_run is idempotent (see
    it). Transient data-plane errors are retried with backoff and jitter, then fail it."""
    with schema_context(schema):
        try:
            deployments.deployment_run(deployment_id=deployment_id)
        except TransientError as exc:
            if self.request.retries < (self.max_retries or 0):
                raise self.retry(exc=exc) from exc
            deployments.deployment_fail(
                deployment_id=deployment_id, reason=f"the data plane kept failing: {exc}"
            )


@shared_task(
    name="functions.undeploy",
    acks_late=True,
    autoretry_for=(TransientError,),
    max_retries=8,
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
)
def undeploy_task(schema: str, function_name: str) -> None:
    """Remove a deleted function's objects from the data plane. Idempotent (deleting what is
    gone is a no-op)."""
    with schema_context(schema):
        deployments.function_undeploy(function_name=function_name)


@shared_task(name="functions.resume_stuck_deployments")
def resume_stuck_deployments() -> int:
    """Re-queue deployments that have not moved for 2 minutes (a lost task, a killed worker)."""
    cutoff, count = timezone.now() - timedelta(minutes=2), 0
    for schema in tenant_queryset().filter(state="ready").values_list("schema_name", flat=True):
        with schema_context(schema):
            stuck = Deployment.objects.exclude(state__in=deployments.FINAL).filter(updated_at__lt=cutoff)
            for deployment_id in stuck.values_list("pk", flat=True):
                deploy_task.delay(schema, deployment_id)
                count += 1
    return count
