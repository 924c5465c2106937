"""The tenant events websocket, through the whole ASGI stack (Origin gate, auth, tenant)."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing.websocket import WebsocketCommunicator
from django.test import Client

from portal.asgi import application
from tenants import services
from tenants.models import ApiToken

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://127.0.0.1:8000")


def _session_cookie(user: Any) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


def _bearer(secret: str) -> tuple[bytes, bytes]:
    return (b"authorization", f"Bearer {secret}".encode())


async def _connect(path: str, *headers: tuple[bytes, bytes]) -> tuple[WebsocketCommunicator, bool, Any]:
    communicator = WebsocketCommunicator(application, path, headers=list(headers))
    connected, code = await communicator.connect(timeout=5)
    return communicator, connected, code


async def test_token_client_gets_the_current_state_on_connect(world, token_for):
    secret = await sync_to_async(token_for)(world.vera, world.acme, "viewer")
    ws, connected, _ = await _connect("/t/acme/ws/events/", _bearer(secret))
    assert connected
    snapshot = await ws.receive_json_from(timeout=5)
    assert snapshot["kind"] == "tenant.state"
    assert snapshot["data"]["state"] == "ready"
    await ws.send_json_to({"type": "ping"})
    assert (await ws.receive_json_from(timeout=5))["kind"] == "pong"
    await ws.disconnect()


async def test_session_needs_an_allowed_origin(world):
    cookie = await sync_to_async(_session_cookie)(world.bob)
    ws, connected, _ = await _connect("/t/acme/ws/events/", cookie, ORIGIN)
    assert connected
    await ws.disconnect()
    _, connected, _ = await _connect("/t/acme/ws/events/", cookie)  # no Origin: not a browser
    assert not connected
    _, connected, _ = await _connect("/t/acme/ws/events/", cookie, (b"origin", b"http://evil.example"))
    assert not connected


async def test_a_session_on_a_one_time_password_gets_no_live_feed(world, token_for):
    """As pages and the API: the browser session waits for the password change; a token does not."""
    from tenants.models import PasswordChangeRequired

    await sync_to_async(PasswordChangeRequired.objects.create)(user=world.bob)
    cookie = await sync_to_async(_session_cookie)(world.bob)
    _, connected, _ = await _connect("/t/acme/ws/events/", cookie, ORIGIN)
    assert not connected
    secret = await sync_to_async(token_for)(world.bob, world.acme, "viewer")
    ws, connected, _ = await _connect("/t/acme/ws/events/", _bearer(secret))
    assert connected
    await ws.disconnect()


async def test_anonymous_is_refused(world):
    _, connected, _ = await _connect("/t/acme/ws/events/", ORIGIN)
    assert not connected


async def test_outsider_cannot_subscribe_and_cannot_tell_it_exists(world, token_for):
    secret = await sync_to_async(token_for)(world.oscar, world.globex, "admin")
    cookie = await sync_to_async(_session_cookie)(world.oscar)
    for headers in ((_bearer(secret),), (cookie, ORIGIN)):
        _, connected, code = await _connect("/t/acme/ws/events/", *headers)
        _, connected_unknown, code_unknown = await _connect("/t/nosuch/ws/events/", *headers)
        assert not connected
        assert not connected_unknown
        assert code == code_unknown


async def test_events_reach_members_of_that_tenant_only(world, token_for):
    acme_secret = await sync_to_async(token_for)(world.vera, world.acme, "viewer")
    globex_secret = await sync_to_async(token_for)(world.oscar, world.globex, "admin")
    acme, _, _ = await _connect("/t/acme/ws/events/", _bearer(acme_secret))
    globex, _, _ = await _connect("/t/globex/ws/events/", _bearer(globex_secret))
    await acme.receive_json_from(timeout=5)
    await globex.receive_json_from(timeout=5)

    await sync_to_async(services.membership_add)(tenant=world.acme, username="newbie", role="viewer")
    event = await acme.receive_json_from(timeout=5)
    assert (event["kind"], event["data"]) == ("member.added", {"username": "newbie", "role": "viewer"})
    assert await globex.receive_nothing(timeout=0.5)
    await acme.disconnect()
    await globex.disconnect()


async def test_revoked_token_is_disconnected(world, token_for):
    secret = await sync_to_async(token_for)(world.bob, world.acme, "developer")
    ws, connected, _ = await _connect("/t/acme/ws/events/", _bearer(secret))
    assert connected
    await ws.receive_json_from(timeout=5)
    token = await sync_to_async(ApiToken.objects.get)(user=world.bob)
    await sync_to_async(services.token_revoke)(token=token)
    await ws.send_json_to({"type": "ping"})
    output = await ws.receive_output(timeout=5)
    while output["type"] == "websocket.send":  # the revocation event may come first
        output = await ws.receive_output(timeout=5)
    assert output["type"] == "websocket.close"
    assert output["code"] == 4403
