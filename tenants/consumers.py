"""Websocket consumers of tenant events (``/t/<tenant>/ws/events/``) and of the audit trails
(``/t/<tenant>/ws/audit/`` for the tenant's admins, ``/ws/platform/audit/`` for platform admins)."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django_tenants.utils import schema_context

from audit.selectors import as_tenant_sees
from core.notifier import TenantEvent, audit_group, platform_audit_group, tenant_events_group
from tenants.access import connection_role, platform_admin_now
from tenants.models import Tenant
from tenants.roles import Role, at_least

# Close codes (4000-4999 are the application's): the browser can tell them apart.
CLOSE_NOT_FOUND = 4404
CLOSE_REVOKED = 4403


class GroupSocket(AsyncJsonWebsocketConsumer):
    """A socket joined to one group (``group``, set at connect): it answers ``ping`` and forwards
    each push, as ``shown``, for as long as ``_still_allowed`` holds (it closes the socket when
    not), which it asks on every client message and before every push."""

    group: str = ""

    async def _still_allowed(self) -> bool:
        raise NotImplementedError

    def shown(self, event: dict[str, Any]) -> dict[str, Any]:
        return event

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if await self._still_allowed() and isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"kind": "pong", "data": {}})

    async def event_push(self, message: dict[str, Any]) -> None:
        if await self._still_allowed():
            await self.send_json(self.shown(message["event"]))


class TenantSocket(GroupSocket):
    """A websocket inside one tenant (``scope["tenant"]``, set by tenants.ws), whose access is read
    again whenever it is asked for (tenants/access.py), and which closes with 4403 once lost."""

    tenant: Tenant | None = None
    # The role a socket needs, at connect and for as long as it stays open.
    needed: Role = Role.VIEWER

    async def _role(self) -> Role | None:
        assert self.tenant is not None
        return await database_sync_to_async(connection_role)(
            self.scope["user"], self.tenant.pk, self.scope.get("token")
        )

    async def _still_allowed(self) -> bool:
        if not at_least(await self._role(), self.needed):
            await self.close(code=CLOSE_REVOKED)
            return False
        return True


class TenantEventsConsumer(TenantSocket):
    """Streams a tenant's events (provisioning state, members, tokens) to its members.

    On connect it sends the tenant's current state, so a page never misses a change that
    happened before it subscribed. Access is checked at connect, on every client message
    and before forwarding each event, so a removed member or revoked token stops receiving.
    """

    async def connect(self) -> None:
        self.tenant = self.scope.get("tenant")
        if self.tenant is None or await self._role() is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.group = tenant_events_group(self.tenant.schema_name)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json(await self._snapshot())

    @database_sync_to_async
    def _snapshot(self) -> dict[str, Any]:
        assert self.tenant is not None
        with schema_context("public"):
            tenant = Tenant.objects.get(pk=self.tenant.pk)
        data = {"slug": tenant.slug, "state": tenant.state, "reason": tenant.state_reason}
        return TenantEvent(kind="tenant.state", data={**data, "suspended": tenant.suspended}).__dict__


class TenantAuditConsumer(TenantSocket):
    """New records of the tenant's audit trail, for its admins: each as ``audit.recorded`` with
    the record as the API shows it to them. A member below admin is refused with 4403, anyone
    else with 4404 (as for a tenant that does not exist); the role is read again on every
    message and before every push, and a socket that lost it is closed with 4403."""

    needed = Role.ADMIN

    async def connect(self) -> None:
        self.tenant = self.scope.get("tenant")
        role = await self._role() if self.tenant is not None else None
        if role is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        if not at_least(role, self.needed):
            await self.close(code=CLOSE_REVOKED)
            return
        assert self.tenant is not None
        self.group = audit_group(self.tenant.schema_name)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    def shown(self, event: dict[str, Any]) -> dict[str, Any]:
        return {**event, "data": as_tenant_sees(event["data"])}


class PlatformAuditConsumer(GroupSocket):
    """New records of the platform's audit trail, for platform admins (``/ws/platform/audit/``).

    Outside any tenant: the gate (tenants/ws.py) still applies its Origin and token rules and
    resolves no tenant; this consumer checks the platform admin itself, at connect (4403 for
    anyone else), on every message and before every push (4403 once lost)."""

    async def _allowed(self) -> bool:
        user, token = self.scope["user"], self.scope.get("token")
        return bool(await database_sync_to_async(platform_admin_now)(user, token))

    async def _still_allowed(self) -> bool:
        if not await self._allowed():
            await self.close(code=CLOSE_REVOKED)
            return False
        return True

    async def connect(self) -> None:
        if not await self._still_allowed():
            return
        self.group = platform_audit_group()
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
