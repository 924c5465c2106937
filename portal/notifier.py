"""Server pushes to websocket groups, with typed payloads (CONVENTIONS.md 9).

Groups are named ``<schema>.<kind>.<id>``. Pushing is best effort: a Redis hiccup must
never fail the write that triggered it, so errors are logged and swallowed.
"""

from __future__ import annotations

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


def tenant_events_group(schema_name: str) -> str:
    return f"{schema_name}.events.tenant"


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
