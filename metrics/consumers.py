"""Live metrics and log tails at ``/t/<tenant>/ws/live/``: one socket, many subscriptions.

Client messages (JSON):
- ``{"type": "subscribe", "id": "a", "stream": "metrics", "function": "hello", "interval": 5,
  "range": "1h"}``, optionally with ``"by": "version"`` or ``"alias"`` (frames then carry a
  ``breakdown`` point per version or alias)
- ``{"type": "subscribe", "id": "b", "stream": "logs", "function": "hello", "version": "v2",
  "log_stream": "stderr", "request": "3f2a9c"}`` (every filter optional: the whole tenant by
  default; ``request`` keeps the requests whose id starts with it)
- ``{"type": "unsubscribe", "key": "..."}``, ``{"type": "ping"}``

Server frames: ``subscribed`` (with the ``key`` later frames carry), ``metrics``, ``logs``,
``error`` (``{"error": {"code", "message", "detail"}}``, the API's shape), ``pong``.

Access: the tenant's members (viewer and up) may watch. It is checked at connect, at every
client message, whenever the tenant's members or tokens change (the consumer listens to the
tenant's events) and every minute; a connection that lost it is closed with 4403. A function
is looked up in the tenant's own schema, so another tenant's function is simply not found.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from channels.db import database_sync_to_async
from django_tenants.utils import schema_context
from rest_framework import serializers

from core.errors import error_body
from core.names import NAME_RE, VERSION_RE
from core.notifier import tenant_events_group
from functions.models import Function
from metrics.hub import LogFilter, MetricsTopic
from metrics.live import hub
from metrics.logs import REQUEST_ID_MAX, STREAMS, filter_errors, fission_name
from metrics.selectors import SERIES_BREAKDOWNS, AliasRoutes, Breakdown, TimeRange, alias_routes
from tenants.consumers import CLOSE_NOT_FOUND, TenantSocket

INTERVALS = (1, 2, 5, 10, 30, 60)
MAX_SUBSCRIPTIONS = 20
OUTBOX_FRAMES = 256
RECHECK_S = 60.0
CLOSE_UNAVAILABLE = 1011
log = logging.getLogger(__name__)


class SubscribeSerializer(serializers.Serializer[dict[str, Any]]):
    id = serializers.CharField(max_length=64, required=False, default="", allow_blank=True)
    stream = serializers.ChoiceField(choices=("metrics", "logs"))
    function = serializers.RegexField(NAME_RE, required=False)
    interval = serializers.ChoiceField(choices=INTERVALS, default=5)
    range = serializers.ChoiceField(choices=[r.value for r in TimeRange], default=TimeRange.H1.value)
    version = serializers.RegexField(VERSION_RE, required=False)
    log_stream = serializers.ChoiceField(choices=STREAMS, required=False)
    request = serializers.CharField(max_length=REQUEST_ID_MAX, required=False)
    by = serializers.ChoiceField(choices=[b.value for b in SERIES_BREAKDOWNS], required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["stream"] == "metrics" and not attrs.get("function"):
            raise serializers.ValidationError({"function": ["A metrics subscription names a function."]})
        if attrs["stream"] == "metrics" and attrs.get("request"):
            raise serializers.ValidationError({"request": ["Only logs are kept by request."]})
        if attrs["stream"] != "metrics" and attrs.get("by"):
            raise serializers.ValidationError({"by": ["Only metrics break down by version or alias."]})
        slowest = TimeRange(attrs["range"]).min_live_interval_s
        if attrs["stream"] == "metrics" and int(attrs["interval"]) < slowest:
            raise serializers.ValidationError(
                {"interval": [f"At least {slowest} s for a {attrs['range']} range."]}
            )
        errors = filter_errors(function=attrs.get("function"), version=attrs.get("version"))
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class LiveConsumer(TenantSocket):
    async def connect(self) -> None:
        self.tenant = self.scope.get("tenant")
        self.subscriptions: dict[str, MetricsTopic | LogFilter] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.events_group = ""
        if self.tenant is None or not self.tenant.is_ready or await self._role() is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.outbox: asyncio.Queue[str] = asyncio.Queue(maxsize=OUTBOX_FRAMES)
        self.dropped = 0
        await self.accept()
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._send_forever()), loop.create_task(self._recheck_forever())]
        self.events_group = tenant_events_group(self.tenant.schema_name)
        await self.channel_layer.group_add(self.events_group, self.channel_name)

    async def disconnect(self, code: int) -> None:
        for task in self.tasks:
            task.cancel()
        for key in list(getattr(self, "subscriptions", {})):
            await self._unsubscribe(key)
        if self.events_group:
            with contextlib.suppress(Exception):
                await self.channel_layer.group_discard(self.events_group, self.channel_name)

    # -- what the hub calls ----------------------------------------------------------------------

    def deliver(self, frame: str) -> None:
        """Queue a frame; a client that does not keep up loses its oldest frames, never the hub."""
        if self.outbox.full():
            self.outbox.get_nowait()
            self.dropped += 1
        self.outbox.put_nowait(frame)

    async def _send_forever(self) -> None:
        while True:
            frame = await self.outbox.get()
            await self.send(text_data=frame)

    # -- client messages ---------------------------------------------------------------------------

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Never raises: a consumer that crashed would never run disconnect(), and the hub would
        go on polling for it. A database or Redis failure is an error frame; the client retries."""
        try:
            await self._handle(content)
        except Exception:
            log.exception("live socket message failed")
            request_id = str(content.get("id", ""))[:64] if isinstance(content, dict) else ""
            self._error(request_id, "unavailable", "The portal could not handle this message now; try again.")

    async def _handle(self, content: Any) -> None:
        if not await self._still_allowed():
            return
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "subscribe":
            await self._subscribe(content)
        elif kind == "unsubscribe":
            await self._unsubscribe(str(content.get("key", "")))
            self._reply({"type": "unsubscribed", "key": str(content.get("key", ""))})
        elif kind == "ping":
            self._reply({"type": "pong"})
        else:
            self._error("", "invalid", "Unknown message: send subscribe, unsubscribe or ping.")

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        try:
            await super().receive(text_data=text_data, bytes_data=bytes_data, **kwargs)
        except (ValueError, TypeError):
            self._error("", "malformed", "Messages are JSON objects.")

    async def _subscribe(self, content: dict[str, Any]) -> None:
        request = SubscribeSerializer(data=content)
        if not request.is_valid():
            self._error(
                str(content.get("id", ""))[:64], "invalid", "The subscription is invalid.", request.errors
            )
            return
        data = request.validated_data
        if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            self._error(data["id"], "too_many", f"At most {MAX_SUBSCRIPTIONS} subscriptions per connection.")
            return
        if data.get("function") and not await self._function_exists(data["function"]):
            self._error(data["id"], "not_found", f"There is no function {data['function']!r}.")
            return
        if data.get("by") == Breakdown.ALIAS.value:
            data["routes"] = await self._alias_routes(data["function"])
        topic = self._topic(data)
        # The reply first: the hub may hand over its last frame at once, and it must come after.
        self._reply({"type": "subscribed", "id": data["id"], "key": topic.key, "stream": data["stream"]})
        if topic.key not in self.subscriptions:
            self.subscriptions[topic.key] = topic
            if isinstance(topic, MetricsTopic):
                await hub().subscribe_metrics(topic, self)
            else:
                await hub().subscribe_logs(topic, self)

    def _topic(self, data: dict[str, Any]) -> MetricsTopic | LogFilter:
        assert self.tenant is not None
        schema, namespace = self.tenant.schema_name, self._namespace()
        function: str | None = data.get("function")
        if data["stream"] == "metrics":
            assert function is not None
            born = self.tenant.created_at.timestamp()
            return MetricsTopic(schema, namespace, function, int(data["interval"]), data["range"], born,
                                data.get("by", ""), data.get("routes", ()))  # fmt: skip
        version = data.get("version")
        fission = fission_name(function, version) if function and version else None
        return LogFilter(schema, namespace, function, fission, data.get("log_stream"), data.get("request"))

    def _namespace(self) -> str:
        assert self.tenant is not None
        return self.tenant.namespace

    async def _unsubscribe(self, key: str) -> None:
        topic = self.subscriptions.pop(key, None)
        if isinstance(topic, MetricsTopic):
            await hub().unsubscribe_metrics(topic, self)
        elif isinstance(topic, LogFilter):
            await hub().unsubscribe_logs(topic, self)

    def _reply(self, body: dict[str, Any]) -> None:
        self.deliver(json.dumps(body))

    def _error(self, request_id: str, code: str, message: str, detail: Any = None) -> None:
        self._reply({"type": "error", "id": request_id, **error_body(code, message, detail)})

    # -- access ----------------------------------------------------------------------------------

    async def event_push(self, message: dict[str, Any]) -> None:
        """The tenant's events: a member or token change may have taken this client's access."""
        kind = str((message.get("event") or {}).get("kind", ""))
        if kind.startswith(("member.", "token.", "tenant.")):
            await self._recheck()

    async def _recheck_forever(self) -> None:
        while True:
            await asyncio.sleep(RECHECK_S)  # also catches a token that expired meanwhile
            await self._recheck()

    async def _recheck(self) -> None:
        """Access again; when it cannot be checked (the database is away), the connection ends
        with 1011 and the page reconnects, to be checked again at connect."""
        try:
            await self._still_allowed()
        except Exception:
            log.warning("could not re-check a live socket's access; closing it", exc_info=True)
            await self.close(code=CLOSE_UNAVAILABLE)

    @database_sync_to_async
    def _function_exists(self, name: str) -> bool:
        assert self.tenant is not None
        with schema_context(self.tenant.schema_name):
            return Function.objects.filter(name=name).exists()

    @database_sync_to_async
    def _alias_routes(self, name: str) -> AliasRoutes:
        """Read once here, so the hub's polls need no database; a trigger added later shows
        after the page subscribes again."""
        assert self.tenant is not None
        with schema_context(self.tenant.schema_name):
            function = Function.objects.filter(name=name).first()
            return alias_routes(function) if function is not None else ()
