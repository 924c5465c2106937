"""Deployments: a stored state machine (queued, building, applying, waiting, live | failed)
that applies a function's manifests to the data plane and waits until it serves."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from functions import builder, manifests
from functions.backends import get_backend
from functions.backends.base import ObjectRef, PermanentError
from functions.models import (
    Build,
    BuildState,
    Deployment,
    DeploymentState,
    Environment,
    Function,
    TargetKind,
    Version,
)
from functions.services import quotas
from functions.services.builds import build_create, build_current, build_run
from functions.services.common import current_tenant
from functions.services.specs import archive_ref, environment_spec, function_spec, spec_from_config
from portal import notifier

FINAL = (DeploymentState.LIVE, DeploymentState.FAILED)
FUNCTION_LABEL = manifests.FUNCTION_LABEL
KINDS = ("HTTPTrigger", "Function", "Package")  # deletion order: routes first


@transaction.atomic
def deployment_create(*, function: Function, cause: str, user: str = "") -> Deployment:
    quotas.enforce(deploying=function, what=f"deploying {function.name}")
    deployment = Deployment.objects.create(function=function, cause=cause[:200], requested_by=user)
    _record(deployment, DeploymentState.QUEUED, f"queued: {cause}")
    from functions import tasks

    schema = connection.schema_name  # type: ignore[attr-defined]
    transaction.on_commit(lambda: tasks.deploy_task.delay(schema, deployment.pk))
    return deployment


def _record(deployment: Deployment, state: str, message: str) -> None:
    step = {"state": state, "at": timezone.now().isoformat(), "message": message[:2000]}
    deployment.state = state
    deployment.steps = [*deployment.steps, step]
    if state in FINAL:
        deployment.finished_at = timezone.now()
        deployment.reason = message if state == DeploymentState.FAILED else ""
    deployment.save(update_fields=["state", "steps", "finished_at", "reason", "updated_at"])
    schema = connection.schema_name  # type: ignore[attr-defined]
    event = notifier.TenantEvent(kind="deployment.step", data={"deployment": deployment.pk, **step})
    transaction.on_commit(lambda: notifier.push(f"{schema}.functions.{deployment.function_id}", event))


def deployment_run(*, deployment_id: int) -> Deployment | None:
    """Run (or resume) a deployment. Idempotent: a finished one is left alone, and every step
    is safe to repeat (the build is reused, apply is create-or-replace), so a worker killed
    half-way leaves nothing to undo. ``TransientError`` propagates for the task to retry.

    One deployment per function at a time (a PostgreSQL advisory lock on the function), so
    two changes in a row do not build the same draft twice or race on stale objects.
    """
    function_id = Deployment.objects.filter(pk=deployment_id).values_list("function_id", flat=True).first()
    if function_id is None:
        return None
    with _function_lock(function_id):
        return _run(deployment_id)


@contextmanager
def _function_lock(function_id: int) -> Iterator[None]:
    key = f"{connection.schema_name}.deploy.{function_id}"  # type: ignore[attr-defined]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(hashtext(%s))", [key])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [key])


def _run(deployment_id: int) -> Deployment | None:
    deployment = Deployment.objects.select_related("function__environment").filter(pk=deployment_id).first()
    if deployment is None or deployment.state in FINAL:
        return deployment
    Deployment.objects.filter(pk=deployment.pk).update(attempts=deployment.attempts + 1)
    function = deployment.function
    if current_tenant().suspended:  # queued before the suspension: a suspended tenant stays at zero
        _record(deployment, DeploymentState.FAILED, "the tenant is suspended")
        return deployment
    try:
        build = _ensure_build(deployment, function)
        _check_quota(function, build)  # the quota may have changed since the request
        _record(deployment, DeploymentState.APPLYING, "applying the manifests")
        names = _apply(function, build)
        _record(deployment, DeploymentState.WAITING, f"waiting for {', '.join(names) or 'routes'}")
        get_backend().wait_ready(_namespace(), names, timeout_s=60)
    except (PermanentError, builder.BuildFailed) as exc:
        _record(deployment, DeploymentState.FAILED, str(exc))
        return deployment
    except quotas.QuotaExceeded as exc:
        _record(deployment, DeploymentState.FAILED, exc.message)
        return deployment
    _record(deployment, DeploymentState.LIVE, "serving")
    return deployment


def deployment_fail(*, deployment_id: int, reason: str) -> None:
    deployment = Deployment.objects.filter(pk=deployment_id).first()
    if deployment is not None and deployment.state not in FINAL:
        _record(deployment, DeploymentState.FAILED, reason)


def _ensure_build(deployment: Deployment, function: Function) -> Build:
    build = build_current(function=function)
    if build is not None:
        return build
    _record(deployment, DeploymentState.BUILDING, "building the draft")
    build = build_create(function=function, enqueue=False)
    Deployment.objects.filter(pk=deployment.pk).update(build=build)
    build = build_run(build_id=build.pk) or build
    if build.state != BuildState.SUCCEEDED:
        raise builder.BuildFailed(build.log, f"the build failed: {build.reason}")
    return build


def _check_quota(function: Function, draft_build: Build) -> None:
    quotas.enforce(deploying=function, what=f"deploying {function.name}")
    versions = referenced_versions(function)
    quotas.enforce_package_size([draft_build, *(v.build for v in versions)])


def _namespace() -> str:
    return manifests.namespace_for(current_tenant().slug, settings.TENANT_NAMESPACE_PREFIX)


def desired_objects(function: Function, draft_build: Build | None) -> list[dict[str, Any]]:
    """Every Fission object the function needs now: environment, the draft and each version
    referenced by an alias or trigger, and the triggers with their weights."""
    tenant, schema, namespace = current_tenant(), connection.schema_name, _namespace()  # type: ignore[attr-defined]
    slug = tenant.slug
    objects = [manifests.environment_manifest(namespace, environment_spec(function.environment), tenant=slug)]
    if draft_build is not None:
        draft = function_spec(function)
        objects += manifests.version_manifests(
            namespace, function.name, None, draft, archive_ref(draft_build, schema), tenant=slug
        )
    for version in referenced_versions(function):
        spec, archive = spec_from_config(version.config), archive_ref(version.build, schema)
        objects += manifests.version_manifests(
            namespace, function.name, version.number, spec, archive, tenant=slug
        )
    for trigger in function.triggers.select_related("alias__version", "alias__canary_version", "version"):
        trigger_spec = manifests.TriggerSpec(
            name=trigger.name, methods=tuple(trigger.methods), path=trigger.path, is_prefix=trigger.is_prefix,
            keep_prefix=trigger.keep_prefix, target=_weights(function, trigger),
        )  # fmt: skip
        objects.append(manifests.httptrigger_manifest(namespace, slug, trigger_spec, function=function.name))
    return objects


def referenced_versions(function: Function) -> list[Version]:
    numbers: set[int] = set()
    for alias in function.aliases.select_related("version", "canary_version"):
        numbers.update(alias.weights())
    numbers.update(function.triggers.filter(version__isnull=False).values_list("version__number", flat=True))
    return list(Version.objects.select_related("build").filter(function=function, number__in=numbers))


def _weights(function: Function, trigger: Any) -> dict[str, int]:
    if trigger.target_kind == TargetKind.ALIAS:
        return {manifests.fission_name(function.name, n): w for n, w in trigger.alias.weights().items()}
    if trigger.target_kind == TargetKind.VERSION:
        return {manifests.fission_name(function.name, trigger.version.number): 100}
    return {manifests.fission_name(function.name, None): 100}


def _apply(function: Function, draft_build: Build) -> list[str]:
    """Apply the desired objects, then delete the function's objects no longer desired."""
    backend, namespace = get_backend(), _namespace()
    objects = desired_objects(function, draft_build)
    backend.apply(objects)
    wanted = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for kind in KINDS:
        for ref in backend.list_objects(namespace, kind, {FUNCTION_LABEL: function.name}):
            if (ref.kind, ref.name) not in wanted:
                backend.delete(ObjectRef(kind, namespace, ref.name))
    return [o["metadata"]["name"] for o in objects if o["kind"] == "Function"]


def tenant_scale_to_zero() -> None:
    """Remove every route and Function of the tenant from the data plane and empty its warm
    pools: nothing answers, nothing runs. Packages stay, so resuming needs no rebuild."""
    backend, namespace = get_backend(), _namespace()
    managed = {manifests.MANAGED_BY_LABEL: manifests.MANAGED_BY}
    for kind in ("HTTPTrigger", "Function"):
        for ref in backend.list_objects(namespace, kind, managed):
            backend.delete(ObjectRef(kind, namespace, ref.name))
    present = {ref.name for ref in backend.list_objects(namespace, "Environment", managed)}
    slug = current_tenant().slug
    backend.apply([
        manifests.environment_manifest(namespace, replace(environment_spec(env), poolsize=0), tenant=slug)
        for env in Environment.objects.filter(name__in=present)
    ])  # fmt: skip


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
            failed = Deployment.objects.create(function=function, cause=cause[:200])
            _record(failed, DeploymentState.FAILED, exc.message)
    return queued


def function_undeploy(*, function_name: str) -> None:
    """Remove every object of a (deleted) function from the data plane."""
    backend, namespace = get_backend(), _namespace()
    for kind in KINDS:
        for ref in backend.list_objects(namespace, kind, {FUNCTION_LABEL: function_name}):
            backend.delete(ObjectRef(kind, namespace, ref.name))


@transaction.atomic
def function_delete(*, function: Function) -> None:
    """Delete the function; its data-plane objects are removed by a task after commit."""
    from functions import tasks

    schema, name = connection.schema_name, function.name  # type: ignore[attr-defined]
    # Versions and aliases protect what they point at; a whole function goes in this order.
    function.triggers.all().delete()
    function.aliases.all().delete()
    function.versions.all().delete()
    function.delete()
    transaction.on_commit(lambda: tasks.undeploy_task.delay(schema, name))
