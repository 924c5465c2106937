"""Server pushes to websocket groups, with typed payloads (CONVENTIONS.md 9).

Groups are named ``<schema>.<kind>.<id>``. Pushing is best effort: a Redis hiccup must
never fail the write that triggered it, so errors are logged and swallowed.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TenantEvent:
    """One event of a tenant's activity feed: ``tenant.state``, ``member.*``, ``token.*``."""

    kind: str
    data: dict[str, Any]
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())


# Every group name: ``<schema>.<kind>.<id>``, so a tenant's groups never meet another's.
def tenant_events_group(schema_name: str) -> str:
    """The tenant's activity feed: state, members, tokens, quota."""
    return f"{schema_name}.events.tenant"


def function_group(schema_name: str, function_id: int) -> str:
    """One function's page: its builds' logs and its deployments' steps."""
    return f"{schema_name}.functions.{function_id}"


def metrics_group(schema_name: str, topic_key: str) -> str:
    """Subscribers of one live metrics topic. The key is hashed so the name stays under the
    channel layer's 100 characters whatever the function's name."""
    digest = hashlib.blake2s(topic_key.encode(), digest_size=8).hexdigest()
    return f"{schema_name}.metrics.{digest}"


def audit_group(schema_name: str) -> str:
    """New records of a tenant's audit trail, for its admins."""
    return f"{schema_name}.audit.tenant"


def platform_audit_group() -> str:
    """New records of the platform's audit trail, for platform admins."""
    return "public.audit.platform"


def push(group: str, event: TenantEvent) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, {"type": "event.push", "event": asdict(event)})
    except Exception:
        log.warning("could not push %s to %s", event.kind, group, exc_info=True)


def tenant_event(schema_name: str, kind: str, **data: Any) -> None:
    push(tenant_events_group(schema_name), TenantEvent(kind=kind, data=data))


def function_event(schema_name: str, function_id: int, kind: str, **data: Any) -> None:
    push(function_group(schema_name, function_id), TenantEvent(kind=kind, data=data))


def audit_event(schema_name: str | None, record: dict[str, Any], *, platform: bool) -> None:
    """A new audit record, to its tenant's trail (``schema_name``) and, for a platform change,
    to the platform's."""
    event = TenantEvent(kind="audit.recorded", data=record)
    if schema_name is not None:
        push(audit_group(schema_name), event)
    if platform:
        push(platform_audit_group(), event)
