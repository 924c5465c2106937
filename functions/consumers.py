"""Live function events (deployment steps, build log lines) at ``/t/<tenant>/ws/functions/<name>/``."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django_tenants.utils import schema_context

from core import notifier
from functions.models import Function
from tenants.access import connection_role
from tenants.consumers import CLOSE_NOT_FOUND, CLOSE_REVOKED


class FunctionEventsConsumer(AsyncJsonWebsocketConsumer):
    """Members of the tenant (viewer and up) watch one function's deployments.

    The function is looked up inside the tenant's own schema, so another tenant's function of
    the same name is simply not there; access is re-checked per message and per event.
    """

    group = ""

    async def connect(self) -> None:
        function_id = await self._function_id()
        if function_id is None or not await self._allowed():
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.group = notifier.function_group(self.scope["tenant"].schema_name, function_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not await self._allowed():
            await self.close(code=CLOSE_REVOKED)
        elif isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"kind": "pong", "data": {}})

    async def event_push(self, message: dict[str, Any]) -> None:
        if await self._allowed():
            await self.send_json(message["event"])
        else:
            await self.close(code=CLOSE_REVOKED)

    async def _allowed(self) -> bool:
        tenant = self.scope.get("tenant")
        if tenant is None:
            return False
        role = await database_sync_to_async(connection_role)(
            self.scope["user"], tenant.pk, self.scope.get("token")
        )
        return role is not None

    @database_sync_to_async
    def _function_id(self) -> int | None:
        tenant = self.scope.get("tenant")
        if tenant is None or not tenant.is_ready:
            return None
        with schema_context(tenant.schema_name):
            name = self.scope["url_route"]["kwargs"]["name"]
            return Function.objects.filter(name=name).values_list("pk", flat=True).first()
