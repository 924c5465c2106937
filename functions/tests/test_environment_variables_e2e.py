"""Environment variables end to end on the local runtime: set through the API, read by the
function's code with ``os.environ``, changed by a redeploy, and kept by a published version."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from testsupport.e2e import create_function, deploy_and_wait, functions_api

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]
API = functions_api()

READER = """\
import os


def main():
    return "%s %s" % (os.environ.get("GREETING", "<unset>"), os.environ.get("OTHER", "<unset>"))
"""


@pytest.mark.parametrize("executor", ["poolmgr", "newdeploy"])
def test_a_function_reads_its_variables_and_a_version_keeps_its_own(
    world: Any, api: Any, stack: Any, executor: str
) -> None:
    alice = api(world.alice)
    create_function(alice, "env", {"main.py": READER}, "/env")
    settings = {"executor": executor, "environment_variables": {"GREETING": "hi"}}
    assert alice.patch(f"{API}/env/", settings, format="json").status_code == 200
    deploy_and_wait(alice, "env")
    assert _call(stack, "/acme/env") == "hi <unset>"

    assert alice.post(f"{API}/env/versions/", {"description": "hi"}, format="json").status_code == 201
    assert alice.post(f"{API}/env/aliases/", {"name": "live", "version": 1}, format="json").status_code == 200
    trigger = {
        "name": "env-live",
        "methods": ["GET"],
        "path": "/env-live",
        "target_kind": "alias",
        "alias": "live",
    }
    assert alice.post(f"{API}/env/triggers/", trigger, format="json").status_code == 201
    changed = {"environment_variables": {"GREETING": "hello", "OTHER": "x"}}
    assert alice.patch(f"{API}/env/", changed, format="json").status_code == 200
    deploy_and_wait(alice, "env")

    assert _call(stack, "/acme/env") == "hello x"  # the draft: its workers re-specialized
    assert _call(stack, "/acme/env-live") == "hi <unset>"  # version 1 keeps what it was published with
    assert alice.get(f"{API}/env/versions/1/").json()["config"]["environment_variables"] == {"GREETING": "hi"}


def _call(stack: Any, path: str) -> str:
    response = httpx.get(f"{stack.router}{path}", timeout=30)
    assert response.status_code == 200, response.text
    return response.text
