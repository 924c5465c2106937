"""Live function events over websockets, through the whole ASGI stack."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing.websocket import WebsocketCommunicator
from django_tenants.utils import schema_context

from core import notifier
from functions.services import functions as function_services
from portal.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


def _create(world):
    with schema_context(world.acme.schema_name):
        return function_services.function_create(name="hello")


async def _connect(path: str, token: str) -> tuple[WebsocketCommunicator, bool]:
    ws = WebsocketCommunicator(application, path, headers=[(b"authorization", f"Bearer {token}".encode())])
    connected, _ = await ws.connect(timeout=5)
    return ws, connected


async def test_members_receive_deployment_steps(world, token_for):
    function = await sync_to_async(_create)(world)
    secret = await sync_to_async(token_for)(world.vera, world.acme, "viewer")
    ws, connected = await _connect("/t/acme/ws/functions/hello/", secret)
    assert connected
    event = notifier.TenantEvent(kind="deployment.step", data={"deployment": 1, "state": "live"})
    await sync_to_async(notifier.push)(f"{world.acme.schema_name}.functions.{function.pk}", event)
    received = await ws.receive_json_from(timeout=5)
    assert (received["kind"], received["data"]["state"]) == ("deployment.step", "live")
    await ws.disconnect()


async def test_outsiders_and_unknown_functions_are_refused(world, token_for):
    await sync_to_async(_create)(world)
    oscar = await sync_to_async(token_for)(world.oscar, world.globex, "admin")
    vera = await sync_to_async(token_for)(world.vera, world.acme, "viewer")
    _, connected = await _connect("/t/acme/ws/functions/hello/", oscar)
    assert not connected
    _, connected = await _connect("/t/globex/ws/functions/hello/", oscar)  # not in globex's schema
    assert not connected
    _, connected = await _connect("/t/acme/ws/functions/nosuch/", vera)
    assert not connected
