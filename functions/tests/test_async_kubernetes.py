"""Asynchronous invocation on the kubernetes backend, end to end: the portal (this process, on the
fake API server) accepts, its dispatcher (``manage.py async_dispatcher``, a real process) calls
through a router, and the portal's API shows, redrives and purges the dead letters.

The local runtime's router stands in for Fission's (it speaks the same protocol): it holds
functions of the same names at the same routes, with the test's code. The portal reads the
Function and HTTPTrigger objects it deployed to the fake, as it would read a cluster's. What a
function did is read from the runtime's log stream (each line carries its request id)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from django.conf import settings
from django_tenants.utils import schema_context

from dataplane.backends.k8s_async import KEYS, FissionCaller
from functions.models import DeploymentState
from functions.runs import deployments as deployment_runs
from functions.services import deployments, triggers
from functions.services import functions as function_services
from portal import up
from runtime.events.asynchronous.records import Event
from runtime.logs import stream_name
from testsupport.e2e import functions_api
from testsupport.fake_kubernetes import FakeKubernetes
from testsupport.fission import environment, function, httptrigger, package_literal
from testsupport.processes import ROOT, stop_process, wait_until
from testsupport.runtime import RuntimeProcess, _gated_processes
from testsupport.services import require

pytestmark = pytest.mark.django_db
NS, OTHER_NS = "faas-acme", "faas-globex"
API, OTHER_API = functions_api(), functions_api("globex")

# Says what it ran; fails for a body that asks it to.
FLAKY = """
from flask import request

def main():
    body = request.get_data(as_text=True)
    print("attempt " + body)
    if "fail" in body:
        return "broken " + body, 500
    return "ok " + body
"""
FIXED = FLAKY.replace('    if "fail" in body:\n        return "broken " + body, 500\n', "")
ECHO = """
import json
from flask import request

def main():
    print(json.dumps({"method": request.method, "path": request.path, "body": request.get_data(as_text=True),
                      "headers": {k.lower(): v for k, v in request.headers.items()}}))
    return "seen"
"""
# Waits for SIGUSR1 (a sandboxed function sees no host file): the test decides when a call ends.
GATED = """
import signal

def main():
    print("started")
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    signal.sigtimedwait({signal.SIGUSR1}, 60)
    print("finished")
    return "done"
"""


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    """The local runtime, standing in for Fission's router."""
    require("redis")
    process = RuntimeProcess(state_dir=tmp_path_factory.mktemp("fission-router") / "runtime").start()
    yield process
    process.stop()


def _portal_keys() -> list[bytes]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    return list(client.scan_iter(match=KEYS.prefix + "*"))


@pytest.fixture
def cluster(
    kubernetes_portal: FakeKubernetes, router: RuntimeProcess, settings: Any
) -> Iterator[FakeKubernetes]:
    """The portal on the kubernetes backend, its router the runtime's, its queue empty."""
    settings.KUBERNETES_ROUTER_URL = router.router
    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in _portal_keys():
        client.delete(key)
    yield kubernetes_portal
    for key in _portal_keys():
        client.delete(key)


class Dispatcher:
    """``manage.py async_dispatcher`` in a process of its own, on the test's cluster and router."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Dispatcher:
        env = dict(
            os.environ, PORTAL_BACKEND="kubernetes", KUBECONFIG=settings.KUBECONFIG, KUBERNETES_CONTEXT="",
            KUBERNETES_ROUTER_URL=settings.KUBERNETES_ROUTER_URL, REDIS_URL=settings.REDIS_URL,
            PYTHONUNBUFFERED="1",
        )  # fmt: skip
        command = [sys.executable, "manage.py", "async_dispatcher", "--backoff-ms", "20"]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        wait_until(lambda: "dispatching through" in self.text() or self.process.poll() is not None)
        assert self.process.poll() is None, self.text()[-3000:]
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


@pytest.fixture
def dispatcher(cluster: FakeKubernetes, tmp_path: Path) -> Iterator[Dispatcher]:
    process = Dispatcher(tmp_path / "dispatcher.log").start()
    yield process
    process.stop()


def deploy(tenant: Any, name: str, code: str, router: RuntimeProcess, *, namespace: str = NS,
           concurrency: int = 3, **config: Any) -> None:  # fmt: skip
    """Function ``name`` with a trigger ``/<name>`` on its draft, deployed to the fake cluster by
    the portal (as the worker would), and the same names with ``code`` on the stand-in router."""
    with schema_context(tenant.schema_name):
        created = function_services.function_create(name=name, concurrency=concurrency, **config)
        triggers.trigger_save(function=created, name=name, methods=["GET", "POST"], path=f"/{name}")
        deployment = deployments.deployment_create(function=created, cause="test")
        result = deployment_runs.deployment_run(deployment_id=deployment.pk)
        assert result is not None
        assert result.state == DeploymentState.LIVE, result.reason
    root = "/" + namespace.removeprefix("faas-")
    fission = f"{name}-draft"
    for obj in (
        environment(namespace, "python", poolsize=2),
        package_literal(namespace, fission, code),
        function(namespace, fission, package=fission, concurrency=concurrency),
        httptrigger(namespace, name, f"{root}/{name}", function_name=fission),
    ):
        response = router.apply(obj)
        assert response.status_code in (200, 201), response.text


def invoke(client: Any, name: str, body: str = "", **call: Any) -> dict[str, Any]:
    payload = {"method": "POST", "path": f"/{name}", "body": body, "invocation_type": "Event", **call}
    response = client.post(f"{API}/{name}/invoke/", payload, format="json")
    assert response.status_code == 201, response.content
    return dict(response.json())


def accept(client: Any, name: str, body: str = "", **call: Any) -> str:
    """An asynchronous call through the portal's API: its request id."""
    invocation = invoke(client, name, body, **call)
    assert invocation["status"] == 202, invocation
    assert json.loads(invocation["response_body"]) == {"requestId": invocation["request_id"]}
    return str(invocation["request_id"])


def output(namespace: str, name: str) -> dict[str, list[str]]:
    """What the function printed on the stand-in router, per request id."""
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    lines: dict[str, list[str]] = defaultdict(list)
    entries = cast(list[tuple[str, dict[str, str]]], client.xrange(stream_name(namespace)))
    for _, record in entries:
        if record["function"] == name and record["stream"] == "stdout":
            lines[record["request_id"]].append(record["message"])
    return lines


def dead_letters(client: Any, name: str, api: str = API, **params: Any) -> dict[str, Any]:
    response = client.get(f"{api}/{name}/dead-letters/", params)
    assert response.status_code == 200, response.content
    return dict(response.json())


def test_an_event_is_accepted_at_once_and_called_through_the_router_as_a_call_would_be(
    dispatcher: Dispatcher, world: Any, api: Callable[..., Any], router: RuntimeProcess
) -> None:
    deploy(world.acme, "echo", ECHO, router)
    bob = api(world.bob)
    request_id = accept(bob, "echo", "payload", headers={"X-Custom": "yes"})

    [line] = wait_until(lambda: output(NS, "echo-draft").get(request_id), timeout=30)
    seen = json.loads(line)
    assert (seen["method"], seen["path"], seen["body"]) == ("POST", "/", "payload")
    assert (seen["headers"]["x-custom"], seen["headers"]["x-fission-request-id"]) == ("yes", request_id)
    assert seen["headers"]["x-fission-function-name"] == "echo-draft"
    assert "x-faas-invocation-type" not in seen["headers"]

    missing = invoke(bob, "echo", path="/nosuch")
    assert (missing["status"], missing["response_body"]) == (404, "not found\n")  # as a call: not queued
    sync = bob.post(f"{API}/echo/invoke/", {"method": "POST", "path": "/echo", "body": "now"}, format="json")
    assert (sync.json()["status"], sync.json()["response_body"]) == (200, "seen")
    assert dead_letters(bob, "echo")["total"] == 0


def test_failures_are_retried_dead_lettered_redriven_and_purged_per_tenant(
    dispatcher: Dispatcher, world: Any, api: Callable[..., Any], router: RuntimeProcess
) -> None:
    deploy(world.acme, "flaky", FLAKY, router, async_retries=1)
    bob = api(world.bob)
    bodies = ["job-1", "job-2", "fail-a", "fail-b", "fail-c"]
    accepted = {body: accept(bob, "flaky", body) for body in bodies}

    page = wait_until(lambda: (found := dead_letters(bob, "flaky"))["total"] == 3 and found, timeout=60)
    letters = {item["request"]["body"]: item for item in page["items"]}
    assert set(letters) == {"fail-a", "fail-b", "fail-c"}
    for body, letter in letters.items():
        assert letter["requestId"] == accepted[body]
        assert (letter["target"], letter["function"]) == ("draft", "flaky-draft")
        assert (letter["condition"], letter["attempts"]) == ("RetriesExhausted", 2)  # 1 + async_retries
        assert letter["error"] == {"status": 500, "body": f"broken {body}", "truncated": False}
        assert (letter["request"]["method"], letter["request"]["path"]) == ("POST", "/acme/flaky")
        assert letter["id"].startswith("draft/")
    ran = output(NS, "flaky-draft")
    assert {body: ran[accepted[body]] for body in bodies} == {
        body: [f"attempt {body}"] * (2 if body.startswith("fail") else 1) for body in bodies
    }
    first = dead_letters(bob, "flaky", limit=2)
    rest = dead_letters(bob, "flaky", limit=2, cursor=first["next"])
    assert [len(first["items"]), len(rest["items"]), rest["next"]] == [2, 1, None]
    assert [i["id"] for i in first["items"] + rest["items"]] == [i["id"] for i in page["items"]]

    # Another tenant sees none of them, and its function of the same name has its own list.
    oscar = api(world.oscar)
    assert oscar.get(f"{API}/flaky/dead-letters/").status_code == 404
    with schema_context(world.globex.schema_name):
        function_services.function_create(name="flaky")
    assert dead_letters(oscar, "flaky", OTHER_API)["total"] == 0
    purged = oscar.post(f"{OTHER_API}/flaky/dead-letters/purge/", {}, format="json")
    assert purged.json() == {"purged": 0}
    assert dead_letters(bob, "flaky")["total"] == 3

    # One purged by id; the code fixed (on the router); the rest redriven: each runs again, once.
    dropped = letters["fail-c"]["id"]
    assert bob.post(f"{API}/flaky/dead-letters/purge/", {"ids": [dropped]}, format="json").json() == {
        "purged": 1
    }
    assert router.apply(package_literal(NS, "flaky-draft-fixed", FIXED)).status_code == 201
    fixed = function(NS, "flaky-draft", package="flaky-draft-fixed", concurrency=3, package_version="2")
    assert router.apply(fixed).status_code == 200
    redriven = bob.post(f"{API}/flaky/dead-letters/redrive/", {}, format="json")
    assert redriven.status_code == 200, redriven.content
    new_ids = redriven.json()["request_ids"]
    assert len(new_ids) == 2
    assert not set(new_ids) & set(accepted.values())
    done = wait_until(
        lambda: all(output(NS, "flaky-draft").get(i) for i in new_ids) and output(NS, "flaky-draft")
    )
    assert sorted(done[i][0] for i in new_ids) == ["attempt fail-a", "attempt fail-b"]
    assert dead_letters(bob, "flaky")["total"] == 0
    assert bob.post(f"{API}/flaky/dead-letters/purge/", {}, format="json").json() == {"purged": 0}


def test_events_pending_when_the_dispatcher_is_killed_are_delivered_after_a_restart(
    dispatcher: Dispatcher, world: Any, api: Callable[..., Any], router: RuntimeProcess
) -> None:
    deploy(world.acme, "gated", GATED, router, concurrency=1)
    bob = api(world.bob)
    # The function takes one call at a time: one running, two accepted while it does.
    ids = [accept(bob, "gated", str(n)) for n in range(3)]
    [running] = wait_until(lambda: [i for i in ids if output(NS, "gated-draft").get(i) == ["started"]])
    dispatcher.kill()
    dispatcher.start()
    uid = router.tenant_uid(NS)

    def finished() -> bool:
        for pid in _gated_processes(uid):
            os.kill(pid, signal.SIGUSR1)
        return all("finished" in output(NS, "gated-draft").get(i, []) for i in ids)

    wait_until(finished, timeout=60)
    lines = output(NS, "gated-draft")
    assert lines[running].count("started") >= 2  # in flight when the dispatcher died: called again
    assert [lines[i] for i in ids if i != running] == [["started", "finished"]] * 2
    assert dead_letters(bob, "gated")["total"] == 0


async def test_a_router_that_cannot_be_reached_is_a_throttle_not_a_failed_attempt() -> None:
    class NoCluster:
        def get(self, kind: str, namespace: str | None, name: str) -> None:
            return None  # the function is gone: the defaults apply

    caller = FissionCaller(NoCluster(), "http://127.0.0.1:9")  # type: ignore[arg-type]
    event = Event("gone-draft", "POST", b"/acme/gone", [], b"", "a" * 32, 0.0)
    try:
        response = await caller.call(NS, event)
    finally:
        await caller.close()
    assert response.status == 429
    assert response.body.startswith(b"Fission's router is unreachable")
    assert await caller.capacity(NS, "gone-draft") == 1
    assert (await caller.policy(NS, "gone-draft")).retries == 2


def test_make_run_starts_the_dispatcher_on_the_kubernetes_backend_only(monkeypatch: Any) -> None:
    monkeypatch.setenv("PORTAL_BACKEND", "local")
    assert "async-dispatcher" not in up.processes("127.0.0.1", 8000)
    monkeypatch.setenv("PORTAL_BACKEND", "kubernetes")
    command = up.processes("127.0.0.1", 8000)["async-dispatcher"]
    assert command.endswith("manage.py async_dispatcher")
