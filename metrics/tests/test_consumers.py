"""The live socket through the whole ASGI stack (gate, auth, tenant): subscriptions checked one
by one, log lines from the runtime's Redis stream, other tenants' streams out of reach, and a
revoked token cut off."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async
from channels.testing.websocket import WebsocketCommunicator
from django.conf import settings
from django_tenants.utils import schema_context

from portal.asgi import application
from runtime.logs import stream_name
from tenants import services as tenant_services
from tenants.models import ApiToken

pytestmark = pytest.mark.django_db(transaction=True)
LIVE = "/t/{}/ws/live/"


def _bearer(secret: str) -> tuple[bytes, bytes]:
    return (b"authorization", f"Bearer {secret}".encode())


async def _connect(tenant: str, secret: str) -> tuple[WebsocketCommunicator, bool, Any]:
    ws = WebsocketCommunicator(application, LIVE.format(tenant), headers=[_bearer(secret)])
    connected, code = await ws.connect(timeout=5)
    return ws, connected, code


async def _reply(ws: WebsocketCommunicator, message: dict[str, Any]) -> dict[str, Any]:
    await ws.send_json_to(message)
    reply: dict[str, Any] = await ws.receive_json_from(timeout=5)
    return reply


def _function(tenant: Any, name: str) -> None:
    from functions.services.functions import function_create

    with schema_context(tenant.schema_name):
        function_create(name=name)


def _print(namespace: str, function: str, message: str, *, stream: str = "stdout") -> None:
    """What the runtime's log collector appends when a worker prints."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    fields = {"time": f"{time.time():.6f}", "namespace": namespace, "function": function,
              "request_id": "req-7", "stream": stream, "message": message}  # fmt: skip
    client.xadd(stream_name(namespace), fields)  # type: ignore[arg-type]
    client.close()


async def test_an_outsider_cannot_open_another_tenants_socket(world, token_for):
    oscar = await sync_to_async(token_for)(world.oscar, world.globex, "admin")
    _, connected, code = await _connect("acme", oscar)
    assert (connected, code) == (False, 4404)
    _, connected, code = await _connect("nowhere", oscar)
    assert (connected, code) == (False, 4404)  # the same as for a tenant that does not exist


async def test_each_subscription_is_checked(world, token_for):
    await sync_to_async(_function)(world.acme, "hello")
    vera = await sync_to_async(token_for)(world.vera, world.acme, "viewer")
    ws, connected, _ = await _connect("acme", vera)
    assert connected

    bad = await _reply(
        ws, {"type": "subscribe", "id": "1", "stream": "metrics", "function": "hello", "interval": 7}
    )
    assert (bad["type"], bad["id"], bad["error"]["code"]) == ("error", "1", "invalid")
    assert "interval" in bad["error"]["detail"]
    missing = await _reply(ws, {"type": "subscribe", "id": "2", "stream": "metrics", "function": "nope"})
    assert (missing["error"]["code"], missing["id"]) == ("not_found", "2")
    nameless = await _reply(ws, {"type": "subscribe", "id": "3", "stream": "metrics"})
    assert "function" in nameless["error"]["detail"]
    unknown = await _reply(ws, {"type": "dance"})
    assert unknown["error"]["code"] == "invalid"
    await ws.send_to(text_data="{not json")
    assert (await ws.receive_json_from(timeout=5))["error"]["code"] == "malformed"
    assert (await _reply(ws, {"type": "ping"}))["type"] == "pong"
    ok = await _reply(ws, {"type": "subscribe", "id": "4", "stream": "logs", "function": "hello"})
    assert ok == {"type": "subscribed", "id": "4", "key": "logs:hello:*:*", "stream": "logs"}
    await ws.disconnect()


async def test_log_lines_stream_to_members_and_stay_in_their_tenant(world, token_for):
    await sync_to_async(_function)(world.acme, "hello")
    await sync_to_async(_function)(world.globex, "hello")
    vera = await sync_to_async(token_for)(world.vera, world.acme, "viewer")
    oscar = await sync_to_async(token_for)(world.oscar, world.globex, "admin")
    acme_ws, _, _ = await _connect("acme", vera)
    globex_ws, _, _ = await _connect("globex", oscar)
    assert (await _reply(acme_ws, {"type": "subscribe", "stream": "logs", "function": "hello"}))[
        "type"
    ] == "subscribed"
    assert (await _reply(globex_ws, {"type": "subscribe", "stream": "logs"}))["type"] == "subscribed"

    await sync_to_async(_print)("faas-acme", "hello-v2", "acme's secret")
    await sync_to_async(_print)("faas-acme", "other-draft", "another function")
    frame = await acme_ws.receive_json_from(timeout=5)
    assert frame["type"] == "logs"
    assert [(r["function"], r["version"], r["message"], r["request_id"]) for r in frame["records"]] == [
        ("hello", "v2", "acme's secret", "req-7")
    ]
    await sync_to_async(_print)("faas-globex", "hello-draft", "globex's own")
    own = await globex_ws.receive_json_from(timeout=5)
    assert [r["message"] for r in own["records"]] == ["globex's own"]  # and never acme's line
    assert await globex_ws.receive_nothing(timeout=0.3)
    await acme_ws.disconnect()
    await globex_ws.disconnect()


async def test_another_tenants_function_cannot_be_subscribed(world, token_for):
    await sync_to_async(_function)(world.acme, "payroll")
    oscar = await sync_to_async(token_for)(world.oscar, world.globex, "admin")
    ws, _, _ = await _connect("globex", oscar)
    for stream in ("metrics", "logs"):
        reply = await _reply(ws, {"type": "subscribe", "stream": stream, "function": "payroll"})
        assert reply["error"]["code"] == "not_found"
    await ws.disconnect()


async def test_a_revoked_token_is_cut_off(world, token_for):
    secret = await sync_to_async(token_for)(world.vera, world.acme, "viewer")
    ws, connected, _ = await _connect("acme", secret)
    assert connected
    assert (await _reply(ws, {"type": "subscribe", "stream": "logs"}))["type"] == "subscribed"

    def revoke() -> None:
        key_id = secret.split("_")[1]
        tenant_services.token_revoke(token=ApiToken.objects.get(key_id=key_id))

    await sync_to_async(revoke)()
    closed = await ws.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 4403}
    await ws.disconnect()


async def test_metrics_without_prometheus_say_so(world, token_for, no_prometheus):
    await sync_to_async(_function)(world.acme, "hello")
    vera = await sync_to_async(token_for)(world.vera, world.acme, "viewer")
    ws, _, _ = await _connect("acme", vera)
    subscribed = await _reply(
        ws, {"type": "subscribe", "stream": "metrics", "function": "hello", "interval": 1, "range": "5m"}
    )
    assert subscribed["key"] == "metrics:hello:1:5m"
    frame = await ws.receive_json_from(timeout=5)
    assert frame["type"] == "metrics"
    assert frame["error"]["code"] == "metrics_unavailable"
    await ws.disconnect()


async def test_a_deactivated_user_is_cut_off_at_the_next_message(world, token_for):
    secret = await sync_to_async(token_for)(world.vera, world.acme, "viewer")
    ws, connected, _ = await _connect("acme", secret)
    assert connected

    def deactivate() -> None:
        world.vera.is_active = False
        world.vera.save(update_fields=["is_active"])

    await sync_to_async(deactivate)()
    await ws.send_json_to({"type": "ping"})
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
    await ws.disconnect()


async def test_long_ranges_need_slower_polls(world, token_for):
    await sync_to_async(_function)(world.acme, "hello")
    vera = await sync_to_async(token_for)(world.vera, world.acme, "viewer")
    ws, _, _ = await _connect("acme", vera)
    subscription = {
        "type": "subscribe",
        "stream": "metrics",
        "function": "hello",
        "range": "7d",
        "interval": 5,
    }
    refused = await _reply(ws, subscription)
    assert refused["error"]["detail"] == {"interval": ["At least 60 s for a 7d range."]}
    assert (await _reply(ws, subscription | {"interval": 60}))["type"] == "subscribed"
    await ws.disconnect()


async def test_a_demoted_platform_admin_is_cut_off(world):
    from django.test import Client

    def session_cookie() -> tuple[bytes, bytes]:
        client = Client()
        client.force_login(world.admin)
        return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())

    cookie = await sync_to_async(session_cookie)()
    ws = WebsocketCommunicator(
        application, LIVE.format("acme"), headers=[cookie, (b"origin", b"http://127.0.0.1")]
    )
    connected, _ = await ws.connect(timeout=5)
    assert connected  # platform admins act as admin in every tenant

    def demote() -> None:
        world.admin.is_superuser = False
        world.admin.save(update_fields=["is_superuser"])

    await sync_to_async(demote)()
    await ws.send_json_to({"type": "ping"})
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
    await ws.disconnect()
