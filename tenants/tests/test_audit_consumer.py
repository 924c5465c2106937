"""The audit trails' websockets, through the whole ASGI stack (Origin gate, auth, tenant): a new
record reaches the tenant's admins (or the platform's) and nobody else."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing.websocket import WebsocketCommunicator

from portal.asgi import application
from tenants.models import Membership
from tenants.roles import Role
from tenants.tests.test_audit_api import record
from tenants.tests.test_consumers import ORIGIN, _bearer, _session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

TENANT = "/t/{t}/ws/audit/"
PLATFORM = "/ws/platform/audit/"


async def _connect(path: str, *headers: tuple[bytes, bytes]) -> tuple[WebsocketCommunicator, bool, Any]:
    communicator = WebsocketCommunicator(application, path, headers=list(headers))
    connected, code = await communicator.connect(timeout=5)
    return communicator, connected, code


async def _as(user: Any, path: str) -> tuple[WebsocketCommunicator, bool, Any]:
    cookie = await sync_to_async(_session_cookie)(user)
    return await _connect(path, cookie, ORIGIN)


async def _recorded(ws: WebsocketCommunicator) -> dict[str, Any]:
    event = await ws.receive_json_from(timeout=5)
    assert event["kind"] == "audit.recorded", event
    return dict(event["data"])


async def test_a_new_record_reaches_the_tenant_admin_and_no_other_tenant(world):
    alice, connected, _ = await _as(world.alice, TENANT.format(t="acme"))
    assert connected
    oscar, connected, _ = await _as(world.oscar, TENANT.format(t="globex"))
    assert connected

    made = await sync_to_async(record)(
        world.acme, "hello", by=world.alice, before={"memory_mb": 128}, after={"memory_mb": 256}
    )
    shown = await _recorded(alice)
    assert (shown["id"], shown["object_name"], shown["action"]) == (made.pk, "hello", "function.update")
    assert (shown["actor_name"], shown["ip"], shown["changes"]) == (
        "alice",
        "203.0.113.7",
        {"memory_mb": [128, 256]},
    )
    assert await oscar.receive_nothing(timeout=0.5)

    await sync_to_async(record)(world.globex, "globex-only")
    assert (await _recorded(oscar))["object_name"] == "globex-only"
    assert await alice.receive_nothing(timeout=0.5)

    await alice.send_json_to({"type": "ping"})
    assert (await alice.receive_json_from(timeout=5))["kind"] == "pong"
    await alice.disconnect()
    await oscar.disconnect()


async def test_a_platform_change_reaches_the_tenant_without_the_platform_admins_address(world):
    alice, connected, _ = await _as(world.alice, TENANT.format(t="acme"))
    root, root_connected, _ = await _as(world.admin, PLATFORM)
    assert connected
    assert root_connected
    made = await sync_to_async(record)(
        world.acme, "acme", object_type="tenant", action="tenant.update", platform=True,
        by=world.admin, ip="198.51.100.9", agent="Firefox/140",
    )  # fmt: skip
    to_tenant, to_platform = await _recorded(alice), await _recorded(root)
    assert to_tenant["id"] == to_platform["id"] == made.pk
    assert (to_tenant["ip"], to_tenant["user_agent"]) == ("", "")
    assert (to_platform["ip"], to_platform["user_agent"]) == ("198.51.100.9", "Firefox/140")
    await alice.disconnect()
    await root.disconnect()


async def test_members_below_admin_and_outsiders_are_refused(world, token_for):
    path = TENANT.format(t="acme")
    for persona in (world.bob, world.vera):
        _, connected, code = await _as(persona, path)
        assert (connected, code) == (False, 4403)
    developer_token = await sync_to_async(token_for)(world.alice, world.acme, "developer")
    _, connected, code = await _connect(path, _bearer(developer_token))
    assert (connected, code) == (False, 4403)  # alice, but with a developer's token
    # oscar: exactly as for a tenant that does not exist
    _, connected, code = await _as(world.oscar, path)
    _, connected_unknown, code_unknown = await _as(world.oscar, TENANT.format(t="nosuch"))
    assert (connected, code) == (connected_unknown, code_unknown) == (False, 4404)
    _, connected, _ = await _connect(path, ORIGIN)  # anonymous
    assert not connected
    cookie = await sync_to_async(_session_cookie)(world.alice)
    _, connected, _ = await _connect(path, cookie, (b"origin", b"http://evil.example"))
    assert not connected  # the gate's Origin rule holds here too


async def test_an_admin_demoted_while_connected_is_closed(world):
    ws, connected, _ = await _as(world.alice, TENANT.format(t="acme"))
    assert connected
    await sync_to_async(Membership.objects.filter(user=world.alice, tenant=world.acme).update)(
        role=Role.DEVELOPER
    )
    await sync_to_async(record)(world.acme, "hello")  # the push checks the role first
    output = await ws.receive_output(timeout=5)
    assert (output["type"], output.get("code")) == ("websocket.close", 4403)


async def test_the_platform_socket_is_for_platform_admins_only(world, token_for):
    from tenants.services import token_create

    for persona in (world.alice, world.oscar):
        _, connected, code = await _as(persona, PLATFORM)
        assert (connected, code) == (False, 4403)
    _, connected, _ = await _connect(PLATFORM, ORIGIN)  # anonymous
    assert not connected
    _, connected, _ = await _connect(PLATFORM)  # no Origin and no token: the gate refuses
    assert not connected
    tenant_token = await sync_to_async(token_for)(world.admin, world.acme, "admin")
    _, connected, code = await _connect(PLATFORM, _bearer(tenant_token))
    assert (connected, code) == (False, 4403)  # a tenant's token, even a platform admin's

    issued = await sync_to_async(token_create)(
        tenant=None, user=world.admin, name="ops", role="platform_admin"
    )
    ws, connected, _ = await _connect(PLATFORM, _bearer(issued.secret))
    assert connected
    own = await sync_to_async(record)(
        None, "ops-token", object_type="token", action="token.create", platform=True
    )
    await sync_to_async(record)(world.acme, "hello")  # a tenant's own change: not the platform's
    shown = await _recorded(ws)
    assert (shown["id"], shown["chain"]) == (own.pk, 0)
    assert await ws.receive_nothing(timeout=0.5)

    await sync_to_async(world.admin.__class__.objects.filter(pk=world.admin.pk).update)(is_superuser=False)
    await ws.send_json_to({"type": "ping"})
    output = await ws.receive_output(timeout=5)
    assert (output["type"], output.get("code")) == ("websocket.close", 4403)
