"""The worker side of a deployment: the stored state machine (queued, building, applying,
waiting, live | failed) that a Celery task drives. It applies a function's manifests to the data
plane, waits until they are ready and, last, has the data plane load the code (``specialize``):
it is live only when the code serves. The request side (deployments.py) records and queues it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from audit import services as audit
from core import notifier
from dataplane import manifests
from dataplane.backends import get_backend
from dataplane.backends.base import CapturesNotRecorded, ObjectRef, PermanentError
from functions import builder, quotas, selectors
from functions.models import (
    FINAL_DEPLOYMENT_STATES,
    Build,
    BuildState,
    ConfigMap,
    Deployment,
    DeploymentState,
    Environment,
    Function,
    Secret,
    TargetKind,
)
from functions.runs.builds import build_new, build_run
from functions.specs import archive_ref, environment_spec, function_spec, spec_from_config
from tenants.selectors import current_tenant

FUNCTION_LABEL = manifests.FUNCTION_LABEL
# Deletion order: what calls a function first (routes, schedules, consumers and the consumers'
# broker secrets), then the functions, then their packages.
KINDS = ("HTTPTrigger", "TimeTrigger", "MessageQueueTrigger", "Secret", "Function", "ConfigMap", "Package")
# A deployment ends: after this many runs (Celery's retries of a transient error, and the beat
# task's resumes of a lost one), or when it is this old and still not live.
MAX_ATTEMPTS = 8
DEADLINE = timedelta(minutes=30)


def deployment_name(deployment: Deployment) -> str:
    """A deployment as the audit trail names it: ``<function>#<id>``."""
    return f"{deployment.function.name}#{deployment.pk}"


@transaction.atomic
def record_step(
    deployment: Deployment, state: str | None, message: str, *, retry_at: datetime | None = None
) -> bool:
    """Move ``deployment`` to ``state`` and note the step, unless it has ended (False: nothing
    written). The row is locked while it is checked and written (an atomic claim), so a
    deployment ends once, whatever workers, retries and resumes reach its end, and never moves
    again after: ending it (live or failed) is recorded in the audit trail ("deployment.finish",
    system) in the same transaction, exactly once."""
    row = Deployment.objects.select_for_update().filter(pk=deployment.pk).values("state", "steps").first()
    if row is None or row["state"] in FINAL_DEPLOYMENT_STATES:
        return False
    deployment.steps = row["steps"]  # as stored: another run may have added steps meanwhile
    state = state or row["state"]  # None: a note on the step it is at, as stored now
    if state not in FINAL_DEPLOYMENT_STATES:
        _save_step(deployment, state, message, retry_at=retry_at)
        return True
    name, before = deployment_name(deployment), {"state": row["state"]}
    with audit.change("deployment.finish", object_type="deployment", object_name=name, before=before) as done:
        _save_step(deployment, state, message)
        done.after = {"state": state}
    return True


def _save_step(deployment: Deployment, state: str, message: str, *, retry_at: datetime | None = None) -> None:
    step = {"state": state, "at": timezone.now().isoformat(), "message": message[:2000]}
    if retry_at is not None:
        step["retry_at"] = retry_at.isoformat()
    deployment.state = state
    deployment.steps = [*deployment.steps, step]
    if state in FINAL_DEPLOYMENT_STATES:
        deployment.finished_at = timezone.now()
        deployment.reason = message if state == DeploymentState.FAILED else ""
    deployment.save(update_fields=["state", "steps", "finished_at", "reason", "updated_at"])
    schema = connection.schema_name  # type: ignore[attr-defined]
    function_id, data = deployment.function_id, {"deployment": deployment.pk, **step}
    transaction.on_commit(lambda: notifier.function_event(schema, function_id, "deployment.step", **data))
    if (state == DeploymentState.QUEUED and len(deployment.steps) == 1) or state in FINAL_DEPLOYMENT_STATES:
        # The tenant's overview follows each deployment's start and end (not every step).
        named = {**data, "function": deployment.function.name}
        transaction.on_commit(lambda: notifier.tenant_event(schema, "deployment.step", **named))


def deployment_run(*, deployment_id: int) -> Deployment | None:
    """Run (or resume) a deployment. Idempotent: a finished one is left alone, and every step
    is safe to repeat (the build is reused, apply is create-or-replace), so a worker killed
    half-way leaves nothing to undo. ``TransientError`` propagates for the task to retry; a
    PermanentError, a failed build or a quota refusal fails it with the reason. A deployment
    already run MAX_ATTEMPTS times, or older than DEADLINE, fails without running.

    One deployment per function at a time (a PostgreSQL advisory lock on the function), so
    two changes in a row do not build the same draft twice or race on stale objects.
    """
    function_id = Deployment.objects.filter(pk=deployment_id).values_list("function_id", flat=True).first()
    if function_id is None:
        return None
    with _function_lock(function_id):
        return _run(deployment_id)


def _lock_key(function_id: int) -> str:
    return f"{connection.schema_name}.deploy.{function_id}"  # type: ignore[attr-defined]


@contextmanager
def _function_lock(function_id: int) -> Iterator[None]:
    """Held for the whole run, on the worker's database session: a killed worker's session
    ends and lets it go, which is how ``deployments_to_resume`` tells a lost run from a slow one."""
    key = _lock_key(function_id)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(hashtext(%s))", [key])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [key])


def _nobody_runs(function_id: int) -> bool:
    """True when no worker holds the function's deployment lock (taken and let go at once)."""
    key = _lock_key(function_id)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [key])
        if not cursor.fetchone()[0]:
            return False
        cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [key])
    return True


# A deployment that has not moved for this long is resumed: one a worker had started, once no
# worker holds its lock and its retry (if one is due) is late; one never started after
# LOST_AFTER (its task may sit in a busy queue, or have been lost with a worker that had only
# reserved it).
ABANDONED_AFTER = timedelta(seconds=20)
LOST_AFTER = timedelta(minutes=2)


def deployments_to_resume() -> list[int]:
    """The unfinished deployments of the current schema that no worker is running and no
    retry will pick up: lost with a killed worker, or a task that never arrived. Each gets a
    step saying it is resumed; re-queueing one is safe (deployment_run is idempotent)."""
    now = timezone.now()
    quiet = Deployment.objects.exclude(state__in=FINAL_DEPLOYMENT_STATES).filter(
        updated_at__lt=now - ABANDONED_AFTER
    )
    resumed = []
    for deployment in quiet.order_by("pk"):
        if _resumable(deployment, now):
            started = deployment.attempts > 0
            record_step(deployment, None, "resumed: no worker was running it" if started else "queued again")
            resumed.append(deployment.pk)
    return resumed


def _resumable(deployment: Deployment, now: datetime) -> bool:
    """A deployment never started may sit in a busy queue: only a long silence counts. One a
    worker started is resumed once no session holds its lock, unless its retry is due later
    (a long build holds the lock all along, however quiet its row)."""
    if deployment.attempts == 0:
        return deployment.updated_at < now - LOST_AFTER
    last = deployment.steps[-1] if deployment.steps else {}
    retry_due = datetime.fromisoformat(last["retry_at"]) if "retry_at" in last else None
    if retry_due is not None and retry_due > now - ABANDONED_AFTER:
        return False
    return _nobody_runs(deployment.function_id)


def deployment_retry_later(*, deployment_id: int, delay_s: float, error: str) -> None:
    """Note on the deployment that a transient error is retried in ``delay_s`` (the step
    carries when, so the resume sweep leaves a deployment waiting for its retry alone)."""
    deployment = Deployment.objects.filter(pk=deployment_id).first()
    if deployment is not None:
        retry_at = timezone.now() + timedelta(seconds=delay_s)
        message = f"retrying in {delay_s:.0f} s: {error}"
        record_step(deployment, None, message, retry_at=retry_at)


def _run(deployment_id: int) -> Deployment | None:
    deployment = Deployment.objects.select_related("function__environment").filter(pk=deployment_id).first()
    if deployment is None or deployment.state in FINAL_DEPLOYMENT_STATES:
        return deployment
    refusal = _refusal(deployment)
    if refusal:
        record_step(deployment, DeploymentState.FAILED, refusal)
        return deployment
    Deployment.objects.filter(pk=deployment.pk).update(attempts=F("attempts") + 1)
    function = deployment.function
    try:
        build = _ensure_build(deployment, function)
        _check_quota(function, build)  # the quota may have changed since the request
        if not record_step(deployment, DeploymentState.APPLYING, "applying the manifests"):
            return deployment  # ended meanwhile (deployment_fail): nothing more to do
        names = _apply(function, build)
        record_step(deployment, DeploymentState.WAITING, f"waiting for {', '.join(names) or 'routes'}")
        get_backend().wait_ready(_namespace(), names, timeout_s=60)
        # Last: the code must load where it runs, or the deployment is not live (LoadFailed).
        checked = get_backend().specialize(_namespace(), names, request_id=f"deploy-{deployment.pk}")
    except (PermanentError, builder.BuildFailed, manifests.InvalidManifest) as exc:
        # InvalidManifest: an object stored before a rule existed (the API checks it now).
        record_step(deployment, DeploymentState.FAILED, str(exc))
        return deployment
    except quotas.QuotaExceeded as exc:
        record_step(deployment, DeploymentState.FAILED, exc.message)
        return deployment
    record_step(deployment, DeploymentState.LIVE, f"serving ({checked})")
    return deployment


def _refusal(deployment: Deployment) -> str:
    """Why this run must not start ("" when it may): the bounds above, or a suspension that came
    after the deployment was queued (a suspended tenant stays at zero)."""
    if deployment.attempts >= MAX_ATTEMPTS:
        return f"gave up after {MAX_ATTEMPTS} attempts"
    if timezone.now() - deployment.created_at > DEADLINE:
        return f"gave up: not live after {DEADLINE.total_seconds() / 60:.0f} minutes"
    if current_tenant().suspended:
        return "the tenant is suspended"
    return ""


def deployment_fail(*, deployment_id: int, reason: str) -> None:
    deployment = Deployment.objects.select_related("function").filter(pk=deployment_id).first()
    if deployment is not None and deployment.state not in FINAL_DEPLOYMENT_STATES:
        record_step(deployment, DeploymentState.FAILED, reason)


def _ensure_build(deployment: Deployment, function: Function) -> Build:
    build = selectors.build_current(function=function)
    if build is not None:
        return build
    record_step(deployment, DeploymentState.BUILDING, "building the draft")
    build = build_new(function=function)
    Deployment.objects.filter(pk=deployment.pk).update(build=build)
    build = build_run(build_id=build.pk) or build
    if build.state != BuildState.SUCCEEDED:
        raise builder.BuildFailed(build.log, f"the build failed: {build.reason}")
    return build


def _check_quota(function: Function, draft_build: Build) -> None:
    quotas.enforce(deploying=function, what=f"deploying {function.name}")
    versions = selectors.referenced_versions(function=function)
    quotas.enforce_package_size([draft_build, *(v.build for v in versions)])


def _namespace() -> str:
    return current_tenant().namespace


def desired_objects(function: Function, draft_build: Build | None) -> list[dict[str, Any]]:
    """Every Fission object the function needs now: environment, the draft and each version
    referenced by an alias or trigger, and the triggers with their weights."""
    tenant, schema, namespace = current_tenant(), connection.schema_name, _namespace()  # type: ignore[attr-defined]
    slug = tenant.slug
    versions = [(v, spec_from_config(v.config)) for v in selectors.referenced_versions(function=function)]
    # The function's environment, and those its referenced versions were published with.
    names = {function.environment.name, *(spec.environment for _, spec in versions)}
    objects = [
        manifests.environment_manifest(namespace, environment_spec(environment), tenant=slug)
        for environment in Environment.objects.filter(name__in=names)
    ]
    draft = function_spec(function) if draft_build is not None else None
    specs = ([draft] if draft is not None else []) + [spec for _, spec in versions]
    objects += tenant_objects(
        {n for spec in specs for n in spec.secrets}, {n for spec in specs for n in spec.configmaps}
    )
    if draft is not None and draft_build is not None:
        objects += manifests.version_manifests(
            namespace, function.name, None, draft, archive_ref(draft_build, schema), tenant=slug
        )
    for version, spec in versions:
        objects += manifests.version_manifests(
            namespace, function.name, version.number, spec, archive_ref(version.build, schema), tenant=slug
        )
    for trigger in function.triggers.select_related("alias__version", "alias__canary_version", "version"):
        trigger_spec = manifests.TriggerSpec(
            name=trigger.name, methods=tuple(trigger.methods), path=trigger.path, is_prefix=trigger.is_prefix,
            keep_prefix=trigger.keep_prefix, target=_weights(function, trigger),
        )  # fmt: skip
        objects.append(manifests.httptrigger_manifest(namespace, slug, trigger_spec, function=function.name,
                                                      capture=capture_policy(function)))  # fmt: skip
    return objects + event_objects(function)


def capture_policy(function: Function) -> manifests.CapturePolicy | None:
    """What the function's routes capture of failed calls for replay (None: capture is off)."""
    if not function.capture_codes:
        return None
    return manifests.CapturePolicy(
        function=function.name,
        codes=tuple(function.capture_codes),
        max_requests=function.capture_max_requests,
        max_body_bytes=function.capture_max_body_bytes,
        retention_s=settings.REPLAY_RETENTION_HOURS * 3600,
    )


def tenant_objects(secrets: set[str], configmaps: set[str]) -> list[dict[str, Any]]:
    """The tenant's Secrets and ConfigMaps named here, as the data plane takes them (one that is
    gone is left out: the Function's reference to it then fails the deployment, naming it)."""
    namespace, slug = _namespace(), current_tenant().slug
    objects = [
        manifests.tenant_secret_manifest(namespace, secret.name, secret.values(), tenant=slug)
        for secret in Secret.objects.filter(name__in=secrets)
    ]
    return objects + [
        manifests.tenant_configmap_manifest(namespace, configmap.name, configmap.data, tenant=slug)
        for configmap in ConfigMap.objects.filter(name__in=configmaps)
    ]


def event_objects(function: Function) -> list[dict[str, Any]]:
    """The function's TimeTriggers and MessageQueueTriggers (with their brokers' Secrets)."""
    namespace, slug = _namespace(), current_tenant().slug
    related = ("alias__version", "version")
    objects = [
        manifests.timetrigger_manifest(
            namespace, slug, time_trigger_spec(function, trigger), function=function.name
        )
        for trigger in function.time_triggers.select_related(*related)
    ]
    for trigger in function.queue_triggers.select_related(*related):
        spec = queue_trigger_spec(function, trigger)
        objects += manifests.queuetrigger_manifests(namespace, slug, spec, function=function.name)
    return objects


def single_target(function: Function, trigger: Any) -> str:
    """The one Fission function a time or queue trigger calls: Fission's timer and connectors read
    no weights, so an alias in a canary split calls its main version."""
    if trigger.target_kind == TargetKind.ALIAS:
        return manifests.fission_name(function.name, trigger.alias.version.number)
    if trigger.target_kind == TargetKind.VERSION:
        return manifests.fission_name(function.name, trigger.version.number)
    return manifests.fission_name(function.name, None)


def time_trigger_spec(function: Function, trigger: Any) -> manifests.TimeTriggerSpec:
    return manifests.TimeTriggerSpec(
        name=trigger.name, cron=trigger.cron, method=trigger.method, subpath=trigger.subpath,
        target=single_target(function, trigger),
    )  # fmt: skip


def queue_trigger_spec(function: Function, trigger: Any) -> manifests.QueueTriggerSpec:
    return manifests.QueueTriggerSpec(
        name=trigger.name, mq_type=trigger.mq_type, topic=trigger.topic,
        target=single_target(function, trigger),
        resp_topic=trigger.resp_topic, error_topic=trigger.error_topic, max_retries=trigger.max_retries,
        content_type=trigger.content_type, polling_interval=trigger.polling_interval,
        cooldown_period=trigger.cooldown_period, min_replicas=trigger.min_replicas,
        max_replicas=trigger.max_replicas, metadata=trigger.metadata, connection=trigger.connection,
    )  # fmt: skip


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
    for kind in ("HTTPTrigger", "TimeTrigger", "MessageQueueTrigger", "Function"):
        for ref in backend.list_objects(namespace, kind, managed):
            backend.delete(ObjectRef(kind, namespace, ref.name))
    present = {ref.name for ref in backend.list_objects(namespace, "Environment", managed)}
    slug = current_tenant().slug
    backend.apply([
        manifests.environment_manifest(namespace, replace(environment_spec(env), poolsize=0), tenant=slug)
        for env in Environment.objects.filter(name__in=present)
    ])  # fmt: skip


def function_undeploy(*, function_name: str) -> None:
    """Remove every object of a (deleted) function from the data plane, and the failed requests
    it captured for replay (where the data plane keeps any)."""
    backend, namespace = get_backend(), _namespace()
    for kind in KINDS:
        for ref in backend.list_objects(namespace, kind, {FUNCTION_LABEL: function_name}):
            backend.delete(ObjectRef(kind, namespace, ref.name))
    if not Function.objects.filter(name=function_name).exists():  # not one created again since
        with contextlib.suppress(CapturesNotRecorded):
            backend.captures_delete(namespace, function_name, None)
