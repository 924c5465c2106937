"""Time triggers and message-queue triggers: the event sources that call a function without an
HTTP caller. Each points at an alias, a version or the draft, as an HTTP trigger does."""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from core import notifier
from core.errors import ValidationFailed
from dataplane import manifests
from dataplane.backends import get_backend
from dataplane.backends.base import BackendError
from functions.models import Function, QueueKind, QueueTrigger, TargetKind, TimeTrigger
from functions.services.common import Recording, full_clean, recorded
from functions.services.triggers import METHODS, target_fields, target_settings
from runtime.schedule import InvalidSchedule, Schedule
from tenants.selectors import current_tenant

_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_VALUE = 4096
MAX_KEYS = 20


def upcoming(cron: str, count: int = 5, after: datetime | None = None) -> list[datetime]:
    """The next ``count`` fire times of a schedule (UTC); none for one no longer valid (saved
    under an older rule): it still lists, and its data plane refuses it with the reason."""
    try:
        return Schedule.parse(cron).upcoming(count, after or timezone.now())
    except InvalidSchedule:
        return []


def event_statuses(kind: str) -> dict[str, Any]:
    """The data plane's record of the tenant's triggers of ``kind`` (TimeTrigger or
    MessageQueueTrigger) by name; empty when it cannot be read now: the triggers still show, with
    an unknown status."""
    try:
        return get_backend().event_status(current_tenant().namespace, kind)
    except BackendError:
        return {}


def _check_cron(cron: str) -> str:
    try:
        Schedule.parse(cron)
    except InvalidSchedule as exc:
        raise ValidationFailed(f"The schedule is not valid: {exc}", detail={"cron": [str(exc)]}) from None
    return cron


def _check_call(method: str, subpath: str) -> None:
    if method not in METHODS:
        raise ValidationFailed("Unknown HTTP method.", detail={"method": [f"One of {METHODS}."]})
    try:
        manifests.check_subpath(subpath)
    except manifests.InvalidManifest as exc:
        raise ValidationFailed("The subpath is not valid.", detail={"subpath": [str(exc)]}) from None


def time_trigger_settings(trigger: TimeTrigger) -> dict[str, Any]:
    """What the audit trail records of a time trigger."""
    fields = ("name", "cron", "method", "subpath")
    return {**{field: getattr(trigger, field) for field in fields}, **target_settings(trigger)}


# A queue trigger's settings the audit trail records as they are. ``metadata`` (KEDA's, which
# may hold a broker's address with its password) and ``connection`` (the broker's secret keys)
# are recorded by their keys, and whether their values changed: never a value.
_QUEUE_FIELDS = (
    "name", "mq_type", "topic", "resp_topic", "error_topic", "max_retries", "content_type",
    "polling_interval", "cooldown_period", "min_replicas", "max_replicas",
)  # fmt: skip
_QUEUE_SECRET_FIELDS = ("metadata", "connection")
CHANGED = "changed"


def queue_trigger_settings(trigger: QueueTrigger) -> dict[str, Any]:
    """What the audit trail records of a queue trigger (values of metadata and connection never)."""
    keys = {f"{field}_keys": sorted(getattr(trigger, field) or {}) for field in _QUEUE_SECRET_FIELDS}
    return {**{field: getattr(trigger, field) for field in _QUEUE_FIELDS}, **keys, **target_settings(trigger)}


def _event_trigger_name(function: Function, name: str, trigger: TimeTrigger | QueueTrigger | None) -> str:
    """A new trigger is named as given, a changed one by its name before the change."""
    return f"{function.name}/{trigger.name if trigger is not None else name}"


def record_time_trigger_save(
    function: Function, name: str, trigger: TimeTrigger | None
) -> AbstractContextManager[Recording[TimeTrigger]]:
    """The record of ``time_trigger_save`` (changes.time_trigger_save_and_deploy opens it too)."""
    verb = "update" if trigger is not None else "create"
    return recorded(
        f"time-trigger.{verb}",
        object_type="time-trigger",
        object_name=_event_trigger_name(function, name, trigger),
        settings=time_trigger_settings,
        before=trigger,
    )


def record_queue_trigger_save(
    function: Function, name: str, trigger: QueueTrigger | None
) -> AbstractContextManager[Recording[QueueTrigger]]:
    """The record of ``queue_trigger_save`` (changes.queue_trigger_save_and_deploy opens it too).
    Whether metadata or connection changed is told by comparing with their values now, which
    the record never holds."""
    old = {field: dict(getattr(trigger, field) or {}) if trigger else {} for field in _QUEUE_SECRET_FIELDS}

    def settings(saved: QueueTrigger) -> dict[str, Any]:
        changed = {
            field: CHANGED for field in _QUEUE_SECRET_FIELDS if (getattr(saved, field) or {}) != old[field]
        }
        return {**queue_trigger_settings(saved), **changed}

    verb = "update" if trigger is not None else "create"
    return recorded(
        f"queue-trigger.{verb}",
        object_type="queue-trigger",
        object_name=_event_trigger_name(function, name, trigger),
        settings=settings,
        before=trigger,
    )


def record_event_trigger_delete(
    trigger: TimeTrigger | QueueTrigger,
) -> AbstractContextManager[Recording[TimeTrigger]] | AbstractContextManager[Recording[QueueTrigger]]:
    """The record of ``event_trigger_delete`` (changes.event_trigger_delete_and_deploy opens it too)."""
    name = _event_trigger_name(trigger.function, trigger.name, trigger)
    if isinstance(trigger, TimeTrigger):
        return recorded(
            "time-trigger.delete",
            object_type="time-trigger",
            object_name=name,
            settings=time_trigger_settings,
            before=trigger,
        )
    return recorded(
        "queue-trigger.delete",
        object_type="queue-trigger",
        object_name=name,
        settings=queue_trigger_settings,
        before=trigger,
    )


@transaction.atomic
def time_trigger_save(
    *, function: Function, name: str, cron: str, method: str = "POST", subpath: str = "/",
    target_kind: str = TargetKind.DRAFT, alias: str | None = None, version: int | None = None,
    trigger: TimeTrigger | None = None,
) -> TimeTrigger:  # fmt: skip
    """Create (``trigger`` None) or change a time trigger of ``function``."""
    _check_cron(cron.strip())
    _check_call(method, subpath)
    with record_time_trigger_save(function, name, trigger) as record:
        trigger = trigger or TimeTrigger(function=function)
        trigger.name, trigger.cron, trigger.method, trigger.subpath = name, cron.strip(), method, subpath
        trigger.target_kind = target_kind
        for key, value in target_fields(function, target_kind, alias, version).items():
            setattr(trigger, key, value)
        full_clean(trigger, exclude=["function", "alias", "version"])
        trigger.save()
        _announce(trigger, "trigger.saved")
        return record.done(trigger)


def _announce(trigger: TimeTrigger | QueueTrigger, kind: str) -> None:
    """Tell the function's live feed, once the change is committed."""
    schema = connection.schema_name  # type: ignore[attr-defined]
    data = {"trigger": trigger.name, "type": "time" if isinstance(trigger, TimeTrigger) else "queue"}
    function_id = trigger.function_id
    transaction.on_commit(lambda: notifier.function_event(schema, function_id, kind, **data))


def _strings(value: Any, field: str) -> dict[str, str]:
    """A small map of names to strings (KEDA metadata, a broker's secret keys)."""
    if not isinstance(value, dict) or len(value) > MAX_KEYS:
        raise ValidationFailed(
            f"{field} must be an object of at most {MAX_KEYS} keys.", detail={field: ["Invalid."]}
        )
    for key, item in value.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise ValidationFailed(
                f"{field} keys are letters, digits, '_', '.', '-'.", detail={field: [f"{key!r}"]}
            )
        if not isinstance(item, str) or len(item) > MAX_VALUE or "\x00" in item:
            raise ValidationFailed(
                f"{field} values are strings of at most {MAX_VALUE} characters, without NUL.",
                detail={field: [f"{key!r}"]},
            )
    return dict(value)


def _check_queue_kind(mq_type: str) -> None:
    if mq_type not in QueueKind.values:
        raise ValidationFailed(
            "Unknown message queue type.", detail={"mq_type": [f"One of {QueueKind.values}."]}
        )
    if mq_type == QueueKind.KAFKA and get_backend().name == "local":
        raise ValidationFailed(
            "Kafka triggers need a Kafka broker, which the local runtime does not run: it consumes NATS "
            "JetStream, RabbitMQ and Redis. Use the kubernetes backend (KEDA's Kafka scaler) for Kafka.",
            detail={"mq_type": ["Not available on the local runtime."]},
        )


@transaction.atomic
def queue_trigger_save(
    *, function: Function, name: str, mq_type: str, topic: str, trigger: QueueTrigger | None = None,
    target_kind: str = TargetKind.DRAFT, alias: str | None = None, version: int | None = None,
    metadata: dict[str, str] | None = None, connection: dict[str, str] | None = None, **fields: Any,
) -> QueueTrigger:  # fmt: skip
    """Create (``trigger`` None) or change a message-queue trigger of ``function``. ``connection``
    None keeps the stored one (it is never read back); ``{}`` clears it. ``fields``: the other
    model fields (resp_topic, error_topic, max_retries, content_type, polling_interval, ...)."""
    _check_queue_kind(mq_type)
    with record_queue_trigger_save(function, name, trigger) as record:
        trigger = trigger or QueueTrigger(function=function)
        trigger.name, trigger.mq_type, trigger.topic, trigger.target_kind = name, mq_type, topic, target_kind
        if metadata is not None:
            trigger.metadata = _strings(metadata, "metadata")
        if connection is not None:
            trigger.connection = _strings(connection, "connection")
        for key, value in fields.items():
            setattr(trigger, key, value)
        for key, value in target_fields(function, target_kind, alias, version).items():
            setattr(trigger, key, value)
        _check_replicas(trigger)
        full_clean(trigger, exclude=["function", "alias", "version"])
        trigger.save()
        _announce(trigger, "trigger.saved")
        return record.done(trigger)


def _check_replicas(trigger: QueueTrigger) -> None:
    if (
        trigger.max_replicas is not None
        and trigger.min_replicas is not None
        and trigger.max_replicas < trigger.min_replicas
    ):
        raise ValidationFailed(
            "Max replicas must be at least min replicas.", detail={"max_replicas": [">= min_replicas."]}
        )


@transaction.atomic
def event_trigger_delete(*, trigger: TimeTrigger | QueueTrigger) -> None:
    with record_event_trigger_delete(trigger):
        _announce(trigger, "trigger.deleted")
        trigger.delete()
