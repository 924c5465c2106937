"""Plan and apply a spec folder: declarative (the folder says what should be), idempotent (a
second apply of the same folder finds every object unchanged and writes nothing: no draft
revision, no deployment, no audit record) and all or nothing (one transaction).

Every write goes through the services (validation, quotas, audit, notifications as for any other
change); the deployments of the functions that changed are queued last and run after commit.
A dry run is the very same apply, rolled back: it finds every error a real one would.
Ownership: ``SpecObject`` rows name what a folder (its deployment-config uid) created, as
Fission's ``spec apply`` tracks it, so that ``delete`` removes only those objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from core.errors import DomainError
from functions.fission_spec import folder as spec_folder
from functions.fission_spec.folder import SpecErrors, SpecFolder
from functions.fission_spec.objects import ORDER, Desired, desired_objects
from functions.models import Environment, Function, QueueTrigger, SpecObject, TimeTrigger, Trigger
from functions.services import deployments, events, functions, triggers
from functions.services.triggers import target_settings

CREATE, UPDATE, DELETE, UNCHANGED = "create", "update", "delete", "unchanged"
MODELS: dict[str, Any] = {"Environment": Environment, "Function": Function, "HTTPTrigger": Trigger,
                          "TimeTrigger": TimeTrigger, "MessageQueueTrigger": QueueTrigger}  # fmt: skip
# A portal field's name in the Fission object, for errors the services raise.
SPEC_FIELDS = {
    "environment": "spec.environment.name", "entrypoint": "spec.package.functionName",
    "executor": "spec.InvokeStrategy.ExecutionStrategy.ExecutorType",
    "min_scale": "spec.InvokeStrategy.ExecutionStrategy.MinScale",
    "max_scale": "spec.InvokeStrategy.ExecutionStrategy.MaxScale",
    "target_cpu": "spec.InvokeStrategy.ExecutionStrategy.TargetCPUPercent",
    "requests_per_pod": "spec.requestsPerPod", "timeout_s": "spec.functionTimeout",
    "idle_timeout_s": "spec.idletimeout", "memory_mb": "spec.resources", "cpu_millis": "spec.resources",
    "runtime_version": "spec.runtime.image", "image": "spec.runtime.image",
    "builder_image": "spec.builder.image",
    "path": "spec.relativeurl", "methods": "spec.methods", "mq_type": "spec.messageQueueType",
    "resp_topic": "spec.respTopic", "error_topic": "spec.errorTopic", "max_retries": "spec.maxRetries",
    "content_type": "spec.contentType", "polling_interval": "spec.pollingInterval",
    "cooldown_period": "spec.cooldownPeriod", "min_replicas": "spec.minReplicaCount",
    "max_replicas": "spec.maxReplicaCount", "files": "spec.package", "requirements": "spec.package",
}  # fmt: skip


@dataclass
class Step:
    """One line of the plan: what happens to one object."""

    action: str
    kind: str
    name: str
    file: str | None
    desired: Desired | None = None

    def shown(self) -> dict[str, Any]:
        return {"action": self.action, "kind": self.kind, "name": self.name, "file": self.file}


@dataclass
class Outcome:
    """The answer of spec/apply/ (the shared API contract)."""

    dry_run: bool
    plan: list[Step]
    deployments: list[int] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(step.action != UNCHANGED for step in self.plan)

    def shown(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "changed": self.changed,
                "plan": [step.shown() for step in self.plan], "deployments": self.deployments}  # fmt: skip


class _DryRun(Exception):
    """Raised at the end of a dry run to roll everything back."""


def spec_apply(*, data: bytes, dry_run: bool = False, delete: bool = False, user: str = "") -> Outcome:
    """Apply the spec folder zipped in ``data``. ValidationFailed (400) naming file and field, or
    another DomainError (409, quota), when anything is refused: then nothing changed at all."""
    folder = spec_folder.parse(spec_folder.read_zip(data))
    errors = SpecErrors()
    wanted = desired_objects(folder, errors)
    errors.raise_if_any()
    outcome = Outcome(dry_run=dry_run, plan=[])
    try:
        with transaction.atomic():
            outcome.plan = _plan(folder, wanted, delete=delete)
            outcome.deployments = _apply(folder, outcome.plan, user)
            if dry_run:
                raise _DryRun
    except _DryRun:
        outcome.deployments = []
    return outcome


# --- plan -----------------------------------------------------------------------------------------


def current_fields(kind: str, obj: Any) -> dict[str, Any]:
    """An existing object's fields, under the names ``Desired.fields`` uses."""
    if kind == "Environment":
        return functions.environment_settings(obj)
    if kind == "Function":
        return functions.function_settings(obj)
    own = {"function": obj.function.name, **target_settings(obj)}
    if kind == "HTTPTrigger":
        return {**own, **{f: getattr(obj, f) for f in ("methods", "path", "is_prefix", "keep_prefix")}}
    if kind == "TimeTrigger":
        return {**own, **{f: getattr(obj, f) for f in ("cron", "method", "subpath")}}
    names = ("mq_type", "topic", "resp_topic", "error_topic", "max_retries", "content_type",
             "polling_interval",
             "cooldown_period", "min_replicas", "max_replicas", "metadata")  # fmt: skip
    return {**own, **{f: getattr(obj, f) for f in names}}


def _existing(kind: str, name: str) -> Any:
    return MODELS[kind].objects.filter(name=name).first()


def _plan(folder: SpecFolder, wanted: list[Desired], *, delete: bool) -> list[Step]:
    steps = [Step(_action(d), d.kind, d.name, d.file, d) for d in sorted(wanted, key=lambda d: ORDER[d.kind])]
    if delete:
        kept = {(d.kind, d.name) for d in wanted}
        owned = SpecObject.objects.filter(spec_uid=folder.uid).order_by("kind", "name")
        gone = [o for o in owned if (o.kind, o.name) not in kept and _existing(o.kind, o.name) is not None]
        steps += [Step(DELETE, o.kind, o.name, None) for o in sorted(gone, key=lambda o: -ORDER[o.kind])]
    return steps


def _action(desired: Desired) -> str:
    existing = _existing(desired.kind, desired.name)
    if existing is None:
        return CREATE
    same = current_fields(desired.kind, existing) == desired.fields
    if desired.kind == "Function":
        same = same and functions.draft_contents(existing.draft) == desired.code
    return UNCHANGED if same else UPDATE


# --- apply ----------------------------------------------------------------------------------------


def _apply(folder: SpecFolder, plan: list[Step], user: str) -> list[int]:
    """Carry out ``plan`` (inside the caller's transaction); the ids of the deployments queued."""
    touched: set[str] = set()
    for step in plan:
        if step.action in (CREATE, UPDATE):
            assert step.desired is not None
            _write(step)
            touched |= _deploys(step.desired)
            if step.action == CREATE:
                # A row left by an object deleted by other means is taken over (natural key).
                SpecObject.objects.update_or_create(kind=step.kind, name=step.name,
                                                    defaults={"spec_uid": folder.uid})  # fmt: skip
        elif step.action == DELETE:
            touched.add(_delete(step))
            SpecObject.objects.filter(kind=step.kind, name=step.name).delete()
    return _deploy(touched, folder, user)


def _write(step: Step) -> None:
    desired = step.desired
    assert desired is not None
    _refiled(desired.file, lambda: WRITERS[step.kind](desired, step.action == CREATE))


def _deploys(desired: Desired) -> set[str]:
    """The functions a change of ``desired`` redeploys (an environment's: those that use it)."""
    if desired.kind == "Environment":
        return set(Function.objects.filter(environment__name=desired.name).values_list("name", flat=True))
    return {desired.function or desired.name}


def _deploy(touched: set[str], folder: SpecFolder, user: str) -> list[int]:
    cause = f"spec {folder.name or folder.uid} applied"
    queued = Function.objects.filter(name__in=touched).order_by("name")
    return [deployments.deployment_create(function=fn, cause=cause, user=user).pk for fn in queued]


def _refiled(file: str, write: Callable[[], Any]) -> Any:
    """``write()``, its DomainError's detail moved under ``file`` with Fission's field names."""
    try:
        return write()
    except DomainError as exc:
        if isinstance(exc.detail, dict) and file in exc.detail:
            raise  # already said in the contract's terms (folder.refuse)
        detail = exc.detail if isinstance(exc.detail, dict) else {"spec": [exc.message]}
        exc.detail = {file: {SPEC_FIELDS.get(k, k): v for k, v in detail.items()}}
        exc.message = f"{file}: {exc.message}"
        raise


def _environment(desired: Desired, create: bool) -> None:
    if create:
        functions.environment_create(name=desired.name, **desired.fields)
    else:
        functions.environment_update(environment=Environment.objects.get(name=desired.name), **desired.fields)


def _function(desired: Desired, create: bool) -> None:
    fields = dict(desired.fields)
    environment = Environment.objects.filter(name=fields.pop("environment")).first()
    if environment is None:
        raise spec_folder.refuse(
            desired.file, "spec.environment.name", "No such Environment here or in the folder."
        )
    if create:
        function = functions.function_create(name=desired.name, environment=environment, **fields)
    else:
        function = Function.objects.get(name=desired.name)
        if functions.function_settings(function) != desired.fields:
            function = functions.function_update(function=function, environment=environment, **fields)
    if functions.draft_contents(function.draft) != desired.code:
        functions.draft_update_files(function=function, files=_texts(desired))


def _texts(desired: Desired) -> dict[str, str]:
    try:
        return {path: data.decode("utf-8") for path, data in desired.code.items()}
    except UnicodeDecodeError:
        raise spec_folder.refuse(
            desired.file, "spec.package", "The portal keeps UTF-8 source files only."
        ) from None


def _owner(desired: Desired, existing: Any) -> tuple[Function, Any]:
    """The trigger's function, and the trigger itself (None when new)."""
    function = Function.objects.filter(name=desired.fields["function"]).first()
    if function is None:
        raise spec_folder.refuse(
            desired.file, "spec.functionref.name", "No such Function here or in the folder."
        )
    if existing is not None and existing.function_id != function.pk:
        said = f"It belongs to {existing.function.name}: delete it there first."
        raise spec_folder.refuse(desired.file, "spec.functionref.name", said)
    return function, existing


def _trigger_fields(desired: Desired) -> dict[str, Any]:
    return {k: v for k, v in desired.fields.items() if k != "function"}


def _http_trigger(desired: Desired, create: bool) -> None:
    function, trigger = _owner(desired, None if create else Trigger.objects.get(name=desired.name))
    triggers.trigger_save(function=function, name=desired.name, trigger=trigger, **_trigger_fields(desired))


def _time_trigger(desired: Desired, create: bool) -> None:
    function, trigger = _owner(desired, None if create else TimeTrigger.objects.get(name=desired.name))
    events.time_trigger_save(
        function=function, name=desired.name, trigger=trigger, **_trigger_fields(desired)
    )


def _queue_trigger(desired: Desired, create: bool) -> None:
    function, trigger = _owner(desired, None if create else QueueTrigger.objects.get(name=desired.name))
    events.queue_trigger_save(
        function=function, name=desired.name, trigger=trigger, **_trigger_fields(desired)
    )


WRITERS: dict[str, Callable[[Desired, bool], None]] = {
    "Environment": _environment, "Function": _function, "HTTPTrigger": _http_trigger,
    "TimeTrigger": _time_trigger, "MessageQueueTrigger": _queue_trigger,
}  # fmt: skip


def _delete(step: Step) -> str:
    """Delete the object of ``step``; the function whose deployment follows ("" for none)."""
    obj = _existing(step.kind, step.name)
    if step.kind == "Environment":
        functions.environment_delete(environment=obj)
        return ""
    if step.kind == "Function":
        deployments.function_delete(function=obj)
        return ""
    function_name = str(obj.function.name)
    if step.kind == "HTTPTrigger":
        triggers.trigger_delete(trigger=obj)
    else:
        events.event_trigger_delete(trigger=obj)
    return function_name
