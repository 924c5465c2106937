"""The request side of deployments: record a deployment and queue it (the worker side is
deployment_runs.py, driven by functions/tasks.py), and the writes that end in one."""

from __future__ import annotations

from django.db import connection, transaction

from audit import services as audit
from functions import quotas, tasks
from functions.models import Deployment, DeploymentState, Function
from functions.runs import deployments as deployment_runs
from functions.services.common import recorded
from functions.services.functions import function_settings


@transaction.atomic
def deployment_create(*, function: Function, cause: str, user: str = "") -> Deployment:
    """A queued deployment of ``function``; a task runs it after commit. Inside another change
    (a function's settings, an alias...) it is listed among that change's effects."""
    with audit.change("deployment.create", object_type="deployment", object_name=function.name) as done:
        quotas.enforce(deploying=function, what=f"deploying {function.name}")
        deployment = _deployment_new(function, cause, user, done)
        deployment_runs.record_step(deployment, DeploymentState.QUEUED, f"queued: {cause}")
    schema = connection.schema_name  # type: ignore[attr-defined]
    transaction.on_commit(lambda: tasks.deploy_task.delay(schema, deployment.pk))
    return deployment


def _deployment_new(function: Function, cause: str, user: str, done: audit.Change) -> Deployment:
    deployment = Deployment.objects.create(function=function, cause=cause[:200], requested_by=user)
    done.object_name = deployment_runs.deployment_name(deployment)
    done.after = {"cause": deployment.cause, "target": function.name}
    return deployment


def tenant_redeploy(*, cause: str) -> int:
    """Queue a deployment of every function that was live (after a resume). A function that no
    longer fits the quota gets a failed deployment saying so. Returns how many were queued."""
    queued = 0
    for function in Function.objects.filter(deployments__state=DeploymentState.LIVE).distinct():
        try:
            with transaction.atomic():
                deployment_create(function=function, cause=cause)
            queued += 1
        except quotas.QuotaExceeded as exc:
            _deployment_refused(function, cause, exc.message)
    return queued


@transaction.atomic
def _deployment_refused(function: Function, cause: str, reason: str) -> None:
    """A deployment that failed before it was queued: one record, its finish an effect of it."""
    with audit.change("deployment.create", object_type="deployment", object_name=function.name) as done:
        failed = _deployment_new(function, cause, "", done)
        deployment_runs.record_step(failed, DeploymentState.FAILED, reason)


@transaction.atomic
def function_delete(*, function: Function) -> None:
    """Delete the function; its data-plane objects are removed by a task after commit."""
    schema, name = connection.schema_name, function.name  # type: ignore[attr-defined]
    with recorded(
        "function.delete",
        object_type="function",
        object_name=name,
        settings=function_settings,
        before=function,
    ):
        # Versions and aliases protect what they point at; a whole function goes in this order.
        for triggers in (function.triggers, function.time_triggers, function.queue_triggers):
            triggers.all().delete()
        function.aliases.all().delete()
        function.versions.all().delete()
        function.delete()
    transaction.on_commit(lambda: tasks.undeploy_task.delay(schema, name))


def tenant_resumed() -> int:
    """Bring a resumed tenant's live functions back (the tenant lifecycle's ``resumed`` hook)."""
    return tenant_redeploy(cause="tenant resumed")
