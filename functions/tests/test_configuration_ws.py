"""What functions put on the tenant's event stream (its overview's live activity), for that
tenant's members only: a Secret's or ConfigMap's change with its name and keys, never a value;
each deployment's start and end with its function's name."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from django_tenants.utils import schema_context

from functions.models import Secret
from functions.services import configuration
from tenants.tests.test_consumers import _bearer, _connect

pytestmark = pytest.mark.django_db(transaction=True)
MARKER = "ws-s3cr3t-MARKER"


def _save_and_delete(schema: str) -> None:
    with schema_context(schema):
        configuration.secret_save(name="db", data={"password": MARKER})
        configuration.delete(Secret.objects.get(name="db"))


async def test_secret_events_carry_names_and_keys_never_values(world, token_for):
    acme_token = await sync_to_async(token_for)(world.vera, world.acme, "viewer")
    globex_token = await sync_to_async(token_for)(world.oscar, world.globex, "admin")
    acme, _, _ = await _connect("/t/acme/ws/events/", _bearer(acme_token))
    globex, _, _ = await _connect("/t/globex/ws/events/", _bearer(globex_token))
    await acme.receive_json_from(timeout=5)
    await globex.receive_json_from(timeout=5)

    await sync_to_async(_save_and_delete)(world.acme.schema_name)
    saved = await acme.receive_json_from(timeout=5)
    deleted = await acme.receive_json_from(timeout=5)
    assert (saved["kind"], saved["data"]) == ("secret.saved", {"name": "db", "keys": ["password"]})
    assert (deleted["kind"], deleted["data"]) == ("secret.deleted", {"name": "db"})
    assert MARKER not in json.dumps([saved, deleted])
    assert await globex.receive_nothing(timeout=0.5)
    await acme.disconnect()
    await globex.disconnect()


def _deployment_lifecycle(schema: str) -> None:
    from functions.models import DeploymentState
    from functions.runs import deployments as deployment_runs
    from functions.services import deployments
    from functions.services.functions import function_create

    with schema_context(schema):
        deployment = deployments.deployment_create(function=function_create(name="feed"), cause="test")
        deployment_runs.record_step(deployment, DeploymentState.APPLYING, "applying")  # not on the overview
        deployment_runs.record_step(deployment, DeploymentState.LIVE, "serving")


async def test_the_overview_follows_each_deployments_start_and_end(world, token_for, monkeypatch):
    from functions import tasks

    monkeypatch.setattr(tasks.deploy_task, "delay", lambda *args: None)  # no worker: steps by hand
    acme_token = await sync_to_async(token_for)(world.vera, world.acme, "viewer")
    globex_token = await sync_to_async(token_for)(world.oscar, world.globex, "admin")
    acme, _, _ = await _connect("/t/acme/ws/events/", _bearer(acme_token))
    globex, _, _ = await _connect("/t/globex/ws/events/", _bearer(globex_token))
    await acme.receive_json_from(timeout=5)
    await globex.receive_json_from(timeout=5)

    await sync_to_async(_deployment_lifecycle)(world.acme.schema_name)
    shown = [await acme.receive_json_from(timeout=5) for _ in range(2)]
    assert [(e["kind"], e["data"]["function"], e["data"]["state"]) for e in shown] == [
        ("deployment.step", "feed", "queued"), ("deployment.step", "feed", "live")]  # fmt: skip
    assert await acme.receive_nothing(timeout=0.5)
    assert await globex.receive_nothing(timeout=0.5)
    await acme.disconnect()
    await globex.disconnect()
