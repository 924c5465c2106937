"""Sandboxes' bookkeeping when the machine fails them (the real thing: test_sandbox.py)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runtime.interpreters import Interpreters
from runtime.sandbox import tenant
from runtime.sandbox.host import Tools
from runtime.sandbox.network import EgressError, Grant, Slirp
from runtime.sandbox.tenant import Sandboxes, SandboxSettings, TenantSandbox

TOOLS = Tools(bwrap="bwrap", setpriv="setpriv", slirp4netns="slirp4netns", nsenter="nsenter", ip="ip")
EVERYWHERE = (Grant(ipaddress.IPv4Network("0.0.0.0/0")),)


class StubZygote:
    def __init__(self) -> None:
        self.stopped = False

    @property
    def alive(self) -> bool:
        return not self.stopped

    async def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def sandboxes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sandboxes:
    monkeypatch.setattr(tenant, "host_networks", lambda tools: ())
    interpreters = Interpreters(root=tmp_path, found={})
    return Sandboxes(SandboxSettings(True, 300_000, 1024, 64), tmp_path, TOOLS, None, interpreters)


def running(sandboxes: Sandboxes, namespace: str, python: str = "3.13") -> tuple[TenantSandbox, Any]:
    zygote = StubZygote()
    sandbox = TenantSandbox(namespace, python, zygote, pid=12345, applied=())  # type: ignore[arg-type]
    sandboxes.running[(namespace, python)] = sandbox
    (sandboxes.root / namespace / "etc").mkdir(parents=True, exist_ok=True)
    return sandbox, zygote


def raising(error: Exception) -> Callable[..., None]:
    def fail(*args: object) -> None:
        raise error

    return fail


async def test_a_sandbox_whose_egress_cannot_change_is_stopped(
    sandboxes: Sandboxes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Slirp, "start", raising(EgressError("slirp4netns did not start")))
    _, zygote = running(sandboxes, "faas-acme")

    await sandboxes.set_egress("faas-acme", EVERYWHERE)  # does not raise

    assert zygote.stopped
    assert sandboxes.of("faas-acme") == []
    assert sandboxes.grants["faas-acme"] == EVERYWHERE  # what a new sandbox will get


async def test_revoking_egress_that_fails_stops_the_sandbox(
    sandboxes: Sandboxes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tenant, "set_routes", raising(EgressError("setting routes timed out")))
    sandbox, zygote = running(sandboxes, "faas-acme")
    sandbox.applied = EVERYWHERE

    await sandboxes.set_egress("faas-acme", ())

    assert zygote.stopped  # fails closed: no worker keeps egress it no longer has


async def test_unchanged_egress_touches_nothing(
    sandboxes: Sandboxes, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    monkeypatch.setattr(tenant, "set_routes", lambda *args: calls.append(args))
    _, zygote = running(sandboxes, "faas-acme")

    await sandboxes.set_egress("faas-acme", ())

    assert calls == []
    assert not zygote.stopped
