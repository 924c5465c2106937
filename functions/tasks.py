"""Celery tasks for functions: thin, tenant passed explicitly as the schema name."""

from __future__ import annotations

import logging

from celery import Task, shared_task
from django.db import DatabaseError
from django_tenants.utils import schema_context

from dataplane.backends import get_backend
from dataplane.backends.base import ObjectRef
from dataplane.retry import TRANSIENT, backoff_s, retrying
from functions.models import ConfigMap, Environment, Secret
from functions.runs import builds as build_runs
from functions.runs import deployments as deployment_runs
from tenants.selectors import current_tenant, tenant_queryset

log = logging.getLogger(__name__)

DEPLOY_BACKOFF_MAX_S = 60


@shared_task(name="functions.build", acks_late=True, reject_on_worker_lost=True)
def build_task(schema: str, build_id: int) -> None:
    """Run a build. Safe to deliver twice: build_run claims queued -> running atomically."""
    with schema_context(schema):
        build_runs.build_run(build_id=build_id)


@shared_task(
    name="functions.deploy",
    bind=True,
    **retrying(retries=deployment_runs.MAX_ATTEMPTS - 1, backoff_max_s=DEPLOY_BACKOFF_MAX_S, automatic=False),
)
def deploy_task(self: Task[[str, int], None], schema: str, deployment_id: int) -> None:
    """Run or resume a deployment; it ends live or failed, never waiting forever.

    ``acks_late`` is safe: deployment_run is idempotent (see it). A transient data-plane or
    database error is retried with backoff and jitter, then fails the deployment with the last
    error; a permanent one fails it inside deployment_run. Anything else is a bug: logged, and the
    deployment fails saying so rather than being resumed forever."""
    with schema_context(schema):
        try:
            deployment_runs.deployment_run(deployment_id=deployment_id)
        except TRANSIENT as exc:
            if self.request.retries < (self.max_retries or 0):
                delay = backoff_s(self.request.retries, maximum=DEPLOY_BACKOFF_MAX_S)
                try:  # a note only: the retry is scheduled whatever becomes of it
                    deployment_runs.deployment_retry_later(
                        deployment_id=deployment_id, delay_s=delay, error=str(exc)
                    )
                except DatabaseError:  # the error being retried may be the database's own
                    log.warning("could not note the retry of deployment %s", deployment_id, exc_info=True)
                raise self.retry(exc=exc, countdown=delay) from exc
            reason = f"the data plane kept failing: {exc}"
            deployment_runs.deployment_fail(deployment_id=deployment_id, reason=reason)
        except Exception as exc:  # a bug: the deployment must still end, and the traceback is logged
            log.exception("deployment %s in %s stopped", deployment_id, schema)
            reason = f"an internal error stopped the deployment ({type(exc).__name__}); it was logged"
            deployment_runs.deployment_fail(deployment_id=deployment_id, reason=reason)


@shared_task(name="functions.undeploy", **retrying(retries=8, backoff_max_s=60))
def undeploy_task(schema: str, function_name: str) -> None:
    """Remove a deleted function's objects from the data plane. Idempotent (deleting what is
    gone is a no-op)."""
    with schema_context(schema):
        deployment_runs.function_undeploy(function_name=function_name)


@shared_task(name="functions.environment_undeploy", **retrying(retries=8, backoff_max_s=60))
def environment_undeploy_task(schema: str, environment_name: str) -> None:
    """Remove a deleted environment's Fission Environment (and so its warm pool) from the data
    plane. Idempotent: deleting what is gone is a no-op. Nothing is removed when an environment
    of that name exists again by the time this runs: its functions' deployments apply it."""
    with schema_context(schema):
        if not Environment.objects.filter(name=environment_name).exists():
            ref = ObjectRef("Environment", current_tenant().namespace, environment_name)
            get_backend().delete(ref)


@shared_task(name="functions.tenant_object_undeploy", **retrying(retries=8, backoff_max_s=60))
def tenant_object_undeploy_task(schema: str, kind: str, name: str) -> None:
    """Remove a deleted Secret or ConfigMap of the tenant (``kind``) from the data plane.
    Idempotent; nothing is removed when one of that name exists again by the time this runs."""
    model: type[Secret] | type[ConfigMap] = Secret if kind == "Secret" else ConfigMap
    with schema_context(schema):
        if not model.objects.filter(name=name).exists():
            get_backend().delete(ObjectRef(kind, current_tenant().namespace, name))


@shared_task(name="functions.resume_stuck_deployments")
def resume_stuck_deployments() -> int:
    """Beat: re-queue the deployments no worker is running (deployment_runs.deployments_to_resume:
    a killed worker's within about 20 s, a lost task within 2 minutes). Each resume counts as an
    attempt: a deployment resumed too often fails (deployment_run)."""
    count = 0
    for schema in tenant_queryset().filter(state="ready").values_list("schema_name", flat=True):
        with schema_context(schema):
            for deployment_id in deployment_runs.deployments_to_resume():
                deploy_task.delay(schema, deployment_id)
                count += 1
    return count
