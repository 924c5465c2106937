"""Rollouts end to end: a real Celery worker drives each step, the real runtime serves the alias's
weights, a real Prometheus scrapes the runtime every second, and the engine judges B from it.

Each test puts real traffic on the alias's route (a load of a few threads) while the rollout runs."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from testsupport.e2e import create_function, deploy_and_wait, functions_api
from testsupport.processes import ROOT, _environment, stop_process, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]
HEALTHY = 'def main():\n    return "ok {marker}"\n'
FAILING = """import itertools

calls = itertools.count()


def main():
    if next(calls) % 10 < 3:  # 30 % of calls
        return "boom", 500
    return "ok {marker}"
"""
SLOW = 'import time\n\n\ndef main():\n    time.sleep({seconds})\n    return "ok {marker}"\n'


@dataclass
class Release:
    name: str
    url: str  # the alias's route on the router
    api: str  # the function's API

    def rollouts(self) -> str:
        return f"{self.api}/rollouts/"


def _publish(client: Any, name: str, code: str) -> int:
    assert (
        client.put(f"{functions_api()}/{name}/code/", {"files": {"main.py": code}}, format="json").status_code
        == 200
    )
    deploy_and_wait(client, name)
    response = client.post(f"{functions_api()}/{name}/versions/", {}, format="json")
    assert response.status_code == 201, response.content
    return int(response.json()["number"])


def release(stack: Any, client: Any, old: str, new: str) -> Release:
    """A function with v1 (``old``) and v2 (``new``), alias ``live`` on v1, routed at /<name>-live."""
    name = f"canary-{uuid.uuid4().hex[:6]}"
    create_function(client, name, {"main.py": old.format(marker="a", seconds=0.02)}, f"/{name}")
    deploy_and_wait(client, name)
    api = f"{functions_api()}/{name}"
    assert client.post(f"{api}/versions/", {}, format="json").status_code == 201
    assert _publish(client, name, new.format(marker="b", seconds=0.1)) == 2
    assert client.post(f"{api}/aliases/", {"name": "live", "version": 1}, format="json").status_code == 200
    trigger = {"name": f"{name}-live", "methods": ["GET"], "path": f"/{name}-live", "target_kind": "alias",
               "alias": "live"}  # fmt: skip
    assert client.post(f"{api}/triggers/", trigger, format="json").status_code == 201
    url = f"{stack.router}/acme/{name}-live"
    wait_until(lambda: _get(url) == "ok a", timeout=60, interval=0.2, message="the alias never served v1")
    return Release(name, url, api)


def _get(url: str) -> str:
    try:
        return httpx.get(url, timeout=10).text
    except httpx.HTTPError:
        return ""


@contextmanager
def traffic(url: str, threads: int = 3) -> Iterator[dict[str, int]]:
    """Calls ``url`` from ``threads`` threads until the block ends; counts answers by body. At
    most 3 at once: a function serves 3 at a time by default (concurrency 3, one request each),
    and a 429 beyond that counts as an error."""
    seen: dict[str, int] = {}
    stop = threading.Event()

    def run() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                try:
                    body = client.get(url).text
                except httpx.HTTPError:
                    body = "unreachable"
                seen[body] = seen.get(body, 0) + 1
                time.sleep(0.01)

    workers = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    try:
        yield seen
    finally:
        stop.set()
        for worker in workers:
            worker.join(15)


def start(client: Any, rel: Release, **options: Any) -> dict[str, Any]:
    body = {"alias": "live", "to_version": 2, "weights": [20, 50, 100], "interval_s": 4, "min_calls": 15,
            "traffic_wait_s": 20, **options}  # fmt: skip
    response = client.post(rel.rollouts(), body, format="json")
    assert response.status_code == 201, response.content
    return dict(response.json())


def finished(client: Any, rel: Release, rollout: dict[str, Any], timeout: float = 150) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def over() -> dict[str, Any] | None:
        last.update(client.get(f"{rel.rollouts()}{rollout['id']}/").json())
        return last if last["state"] not in ("running", "paused") else None

    try:
        return dict(wait_until(over, timeout=timeout, interval=0.5))
    except AssertionError:
        steps = [(d["id"], d["state"], d["cause"], [s["message"] for s in d["steps"]])
                 for d in client.get(f"{rel.api}/deployments/?limit=10").json()["results"]]  # fmt: skip
        raise AssertionError(f"the rollout never finished: {last}; deployments: {steps}") from None


def applied(client: Any, rel: Release, rollout: dict[str, Any]) -> None:
    """Until the deployment that ended ``rollout`` (its weights) is live."""
    url = f"{rel.api}/deployments/{rollout['step_deployment']}/"
    wait_until(lambda: client.get(url).json()["state"] == "live", timeout=90, interval=0.3,
               message="the rollout's last deployment never went live")  # fmt: skip


def actions(rollout: dict[str, Any]) -> list[str]:
    return [d["action"] for d in rollout["decisions"]]


def alias_of(client: Any, rel: Release) -> dict[str, Any]:
    return dict(client.get(f"{rel.api}/aliases/live/").json())


def test_a_healthy_b_is_promoted_through_every_step(
    stack: Any, prometheus: Any, api: Any, world: Any
) -> None:
    alice = api(world.alice)
    rel = release(stack, alice, HEALTHY, HEALTHY)
    with traffic(rel.url) as seen:
        rollout = finished(alice, rel, start(alice, rel))
        wait_until(lambda: _get(rel.url) == "ok b", timeout=30, interval=0.2, message="v2 never took over")
    assert rollout["state"] == "succeeded", [(d["action"], d["message"]) for d in rollout["decisions"]]
    assert actions(rollout) == ["started", "step", "serving", "pass", "step", "serving", "pass", "step",
                                "serving", "pass", "succeeded"]  # fmt: skip
    judged = [d for d in rollout["decisions"] if d["action"] == "pass"]
    assert [d["weight"] for d in judged] == [20, 50, 100]
    assert all(d["b"]["calls"] >= 15 for d in judged), [(d["a"], d["b"]) for d in judged]
    assert all(d["b"]["errors"] == 0 for d in judged), [(d["a"], d["b"]) for d in judged]
    assert judged[0]["a"]["calls"] > judged[0]["b"]["calls"]  # 80 % stayed on A at the first step
    alias = alias_of(alice, rel)
    assert (alias["version"], alias["canary_version"], alias["canary_weight"]) == (2, None, 0)
    assert seen.get("ok a", 0) > 0
    assert seen.get("ok b", 0) > 0
    assert "unreachable" not in seen


def test_a_b_failing_30_percent_is_rolled_back_at_the_first_step(stack: Any, prometheus: Any, api: Any,
                                                                  world: Any) -> None:  # fmt: skip
    alice = api(world.alice)
    rel = release(stack, alice, HEALTHY, FAILING)
    with traffic(rel.url):
        rollout = finished(alice, rel, start(alice, rel))
    assert rollout["state"] == "rolled_back"
    assert actions(rollout) == ["started", "step", "serving", "breach", "rolled_back"]
    breach = rollout["decisions"][3]
    assert breach["step"] == 1
    assert breach["weight"] == 20
    assert rollout["reason"].startswith("error rate: B answered")
    assert 0.2 <= breach["b"]["error_rate"] <= 0.4
    assert breach["a"]["errors"] == 0
    assert alias_of(alice, rel)["version"] == 1
    assert alias_of(alice, rel)["canary_version"] is None
    applied(alice, rel, rollout)  # the rollback's own deployment: then v1 takes every call
    assert all(_get(rel.url) == "ok a" for _ in range(20))


def test_a_b_five_times_slower_is_rolled_back_by_the_latency_rule(stack: Any, prometheus: Any, api: Any,
                                                                   world: Any) -> None:  # fmt: skip
    alice = api(world.alice)
    rel = release(stack, alice, SLOW, SLOW)  # A sleeps 20 ms, B 100 ms
    with traffic(rel.url):
        rollout = finished(alice, rel, start(alice, rel, max_error_rate=None, max_error_rate_increase=None))
    assert rollout["state"] == "rolled_back", rollout["decisions"]
    assert rollout["reason"].startswith("latency: B's p95"), rollout["reason"]
    breach = rollout["decisions"][3]
    assert breach["b"]["p95_ms"] >= 4 * breach["a"]["p95_ms"]
    assert actions(rollout).count("step") == 1


def test_a_step_without_traffic_waits_then_fails(stack: Any, prometheus: Any, api: Any, world: Any) -> None:
    alice = api(world.alice)
    rel = release(stack, alice, HEALTHY, HEALTHY)
    rollout = finished(alice, rel, start(alice, rel, traffic_wait_s=6))
    assert rollout["state"] == "rolled_back"
    assert actions(rollout) == ["started", "step", "serving", "wait", "no_traffic", "rolled_back"]
    assert rollout["reason"] == "not enough traffic: B had 0 of the 15 calls needed after waiting 6 s"
    assert alias_of(alice, rel)["version"] == 1


@pytest.fixture
def beat(tmp_path: Path) -> Iterator[subprocess.Popen[Any]]:
    """A real ``celery beat``: its sweep (releases.drive) re-queues a tick a killed worker held."""
    env = _environment() | {"PORTAL_BEAT_SCHEDULE": str(tmp_path / "schedule")}
    log = tmp_path / "beat.log"
    with log.open("wb") as out:
        command = [sys.executable, "-m", "celery", "-A", "portal", "beat", "--loglevel", "INFO"]
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    yield process
    stop_process(process)


def test_killing_the_worker_mid_rollout_neither_skips_nor_repeats_a_step(
    stack: Any, prometheus: Any, api: Any, world: Any, celery_worker_process: Any, beat: Any
) -> None:
    alice = api(world.alice)
    rel = release(stack, alice, HEALTHY, HEALTHY)
    with traffic(rel.url):
        rollout = start(alice, rel, interval_s=5)
        url = f"{rel.rollouts()}{rollout['id']}/"

        def in_second_step() -> bool:
            return bool(alice.get(url).json()["step"] == 2)

        wait_until(in_second_step, timeout=90, interval=0.2, message="the rollout never reached step 2")
        celery_worker_process.kill()  # SIGKILL: whatever tick it held is neither acknowledged nor finished
        time.sleep(2)
        celery_worker_process.start()
        rollout = finished(alice, rel, rollout, timeout=180)
    assert rollout["state"] == "succeeded", rollout["decisions"]
    assert actions(rollout) == ["started", "step", "serving", "pass", "step", "serving", "pass", "step",
                                "serving", "pass", "succeeded"]  # fmt: skip
    assert [d["step"] for d in rollout["decisions"] if d["action"] == "step"] == [1, 2, 3]
    causes = [d["cause"] for d in alice.get(f"{rel.api}/deployments/?limit=100").json()["results"]]
    rollout_causes = [c for c in causes if c.startswith(f"rollout {rollout['id']}")]
    assert len(rollout_causes) == 4, rollout_causes  # three steps and the promotion, each once
