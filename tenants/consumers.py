"""Websocket consumers of tenant events (``/t/<tenant>/ws/events/``)."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django_tenants.utils import schema_context

from core.notifier import TenantEvent, tenant_events_group
from tenants.access import connection_role
from tenants.models import Tenant
from tenants.roles import Role

# Close codes (4000-4999 are the application's): the browser can tell them apart.
CLOSE_NOT_FOUND = 4404
CLOSE_REVOKED = 4403


class TenantSocket(AsyncJsonWebsocketConsumer):
    """A websocket inside one tenant (``scope["tenant"]``, set by tenants.ws), whose access is read
    again whenever it is asked for (tenants/access.py), and which closes with 4403 once lost."""

    tenant: Tenant | None = None

    async def _role(self) -> Role | None:
        assert self.tenant is not None
        return await database_sync_to_async(connection_role)(
            self.scope["user"], self.tenant.pk, self.scope.get("token")
        )

    async def _still_allowed(self) -> bool:
        if await self._role() is None:
            await self.close(code=CLOSE_REVOKED)
            return False
        return True


class TenantEventsConsumer(TenantSocket):
    """Streams a tenant's events (provisioning state, members, tokens) to its members.

    On connect it sends the tenant's current state, so a page never misses a change that
    happened before it subscribed. Access is checked at connect, on every client message
    and before forwarding each event, so a removed member or revoked token stops receiving.
    """

    group: str = ""

    async def connect(self) -> None:
        self.tenant = self.scope.get("tenant")
        if self.tenant is None or await self._role() is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.group = tenant_events_group(self.tenant.schema_name)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json(await self._snapshot())

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not await self._still_allowed():
            return
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"kind": "pong", "data": {}})

    async def event_push(self, message: dict[str, Any]) -> None:
        if await self._still_allowed():
            await self.send_json(message["event"])

    @database_sync_to_async
    def _snapshot(self) -> dict[str, Any]:
        assert self.tenant is not None
        with schema_context("public"):
            tenant = Tenant.objects.get(pk=self.tenant.pk)
        data = {"slug": tenant.slug, "state": tenant.state, "reason": tenant.state_reason}
        return TenantEvent(kind="tenant.state", data={**data, "suspended": tenant.suspended}).__dict__
