"""Time triggers: a real runtime firing real sandboxed functions, and the claim logic on its own.

The functions print one JSON line per call; the runtime ships each line to Redis with the call's
request id, so the tests count what the functions themselves saw. The runtime logs each fire with
its tick and request id, which ties what the functions saw to the ticks."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from runtime.events import timers as timers_module
from runtime.events.timers import TickStore, Timers, TimerState
from runtime.http import Response
from runtime.logs import stream_name
from runtime.objects import Meta, TimeTrigger
from testsupport.fission import environment, function, package_literal
from testsupport.processes import wait_until
from testsupport.runtime import TOKEN, RuntimeProcess
from testsupport.services import require

NS = "faas-timers"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PRINTER = """
import json, time
from flask import request

def main():
    headers = request.headers
    print(json.dumps({
        "timer": headers.get("X-Fission-Timer-Name"), "rid": headers.get("X-Fission-Request-ID"),
        "fn": headers.get("X-Fission-Function-Name"), "method": request.method, "path": request.path,
        "args": request.args.to_dict(), "body": request.get_data(as_text=True), "at": time.time(),
    }))
    return "ok"
"""
SLEEPER = """
import json, time
from flask import request

def main():
    timer, rid = request.headers.get("X-Fission-Timer-Name"), request.headers.get("X-Fission-Request-ID")
    print(json.dumps({"timer": timer, "rid": rid, "start": time.time()}))
    time.sleep(2.5)
    print(json.dumps({"timer": timer, "rid": rid, "end": time.time()}))
    return "slept"
"""
FIRED = re.compile(
    r"timer (?P<namespace>\S+)/(?P<trigger>\S+) fired (?P<function>\S+) for tick (?P<tick>\S+):"
    r" status (?P<status>\d+) in [\d.]+ ms, [-\d.]+ ms late, request id (?P<rid>[0-9a-f]+)"
)


def timetrigger(
    name: str, cron: str, fn: str = "printer", *, method: str = "POST", subpath: str = "/"
) -> dict[str, Any]:
    spec = {"cron": cron, "functionref": {"type": "name", "name": fn}, "method": method, "subpath": subpath}
    return {"apiVersion": "fission.io/v1", "kind": "TimeTrigger", "metadata": {"name": name, "namespace": NS},
            "spec": spec}  # fmt: skip


# --- a real runtime ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    """One runtime for the module, with the two functions deployed (each test adds its triggers
    and deletes them)."""
    require("redis")
    redis.Redis.from_url(os.environ["REDIS_URL"]).delete(stream_name(NS))
    process = RuntimeProcess(state_dir=tmp_path_factory.mktemp("timers")).start()
    try:
        assert process.apply(environment(NS, "python", poolsize=2)).status_code in (200, 201)
        for name, code in (("printer", PRINTER), ("sleeper", SLEEPER)):
            assert process.apply(package_literal(NS, f"{name}-pkg", code)).status_code in (200, 201)
            assert process.apply(function(NS, name, package=f"{name}-pkg")).status_code in (200, 201)
        yield process
    finally:
        process.stop()


def trigger_url(rt: RuntimeProcess, name: str = "") -> str:
    return f"{rt.control}/apis/fission.io/v1/namespaces/{NS}/timetriggers" + (f"/{name}" if name else "")


def create(rt: RuntimeProcess, obj: dict[str, Any]) -> dict[str, Any]:
    response = rt.apply(obj)
    assert response.status_code in (200, 201), response.text
    return response.json()


def delete(rt: RuntimeProcess, name: str) -> None:
    assert httpx.delete(trigger_url(rt, name), headers=AUTH, timeout=30).status_code == 200


def status(rt: RuntimeProcess, name: str) -> dict[str, Any]:
    response = httpx.get(trigger_url(rt, name), headers=AUTH, timeout=30)
    response.raise_for_status()
    result: dict[str, Any] = response.json()["status"]
    return result


def printed(timer: str) -> list[dict[str, Any]]:
    """What the functions printed for fires of ``timer``, in order."""
    client = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    lines = []
    entries: list[tuple[str, dict[str, str]]] = client.xrange(stream_name(NS))  # type: ignore[assignment]
    for _, entry in entries:
        if entry["stream"] == "stdout" and entry["message"].startswith("{"):
            line = json.loads(entry["message"])
            if line["timer"] == timer:
                assert line["rid"] == entry["request_id"]  # the log record carries the fire's request id
                lines.append(line)
    return lines


def fired(rt: RuntimeProcess, trigger: str) -> list[dict[str, str]]:
    """The runtime's log lines of ``trigger``'s fires: tick, status, request id."""
    return [m.groupdict() for m in FIRED.finditer(rt.log_path.read_text()) if m["trigger"] == trigger]


def tick_of(fire: dict[str, str]) -> float:
    return float(time_of(fire["tick"]))


def time_of(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def metric(rt: RuntimeProcess, trigger: str, outcome: str) -> float:
    text = rt.metrics()
    labels = (f'trigger="{trigger}"', f'outcome="{outcome}"', 'kind="timer"')
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("faas_trigger_events_total{") and all(label in line for label in labels)
    )


def test_every_second_fires_ten_times_in_ten_seconds(rt):
    create(rt, timetrigger("ten", "@every 1s"))
    try:
        # The first fire warms the function up; count ten seconds of ticks from the second one on.
        start = tick_of(wait_until(lambda: fired(rt, "ten")[1:2], timeout=30)[0])
        wait_until(lambda: any(tick_of(f) >= start + 10 for f in fired(rt, "ten")), timeout=30)
    finally:
        delete(rt, "ten")
    in_window = {f["rid"] for f in fired(rt, "ten") if start <= tick_of(f) < start + 10}
    wait_until(lambda: in_window <= {line["rid"] for line in printed("ten")}, timeout=10)
    calls = [line for line in printed("ten") if line["rid"] in in_window]
    assert 9 <= len(calls) <= 11, calls
    assert len({line["rid"] for line in calls}) == len(calls)


def test_no_tick_fires_twice_across_a_restart_and_ticks_missed_meanwhile_are_not_run(rt):
    create(rt, timetrigger("restart", "@every 1s"))
    try:
        wait_until(lambda: len(printed("restart")) >= 3, timeout=30)
        rt.stop()
        stopped = time.time()
        time.sleep(3)  # the point: ticks fall while no runtime runs (there is nothing to poll)
        restarted = time.time()
        rt.start()
        before = len(fired(rt, "restart"))
        wait_until(lambda: len(fired(rt, "restart")) >= before + 3, timeout=30)
        state = status(rt, "restart")
    finally:
        delete(rt, "restart")
    fires = fired(rt, "restart")
    ticks = Counter(f["tick"] for f in fires)
    assert max(ticks.values()) == 1, ticks  # no tick twice
    assert not [f for f in fires if stopped <= tick_of(f) < restarted]  # none of the gap, late
    wait_until(lambda: {f["rid"] for f in fires} <= {line["rid"] for line in printed("restart")}, timeout=10)
    assert Counter(line["rid"] for line in printed("restart")).most_common(1)[0][1] == 1  # one call each
    assert state["missed"] >= 2
    assert metric(rt, "restart", "missed") >= 2


def test_a_tick_that_comes_while_the_previous_fire_runs_is_skipped(rt):
    create(rt, timetrigger("slow", "@every 1s", "sleeper"))
    try:
        wait_until(lambda: (s := status(rt, "slow"))["fires"] >= 2 and s["skipped"] >= 2, timeout=30)
    finally:
        delete(rt, "slow")

    def finished() -> list[dict[str, Any]]:  # every call that started has ended (none is cut short)
        lines = printed("slow")
        return lines if sum("end" in x for x in lines) == sum("start" in x for x in lines) else []

    lines = wait_until(finished, timeout=10)
    starts = {x["rid"]: x["start"] for x in lines if "start" in x}
    ends = {x["rid"]: x["end"] for x in lines if "end" in x}
    runs = sorted((starts[rid], ends[rid]) for rid in starts)
    assert len(runs) >= 2
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(runs)), runs
    assert metric(rt, "slow", "skipped_overlap") >= 2


def test_a_changed_trigger_fires_its_new_request_on_its_new_schedule(rt):
    first = create(rt, timetrigger("change", "@every 1s", subpath="/first"))
    try:
        wait_until(lambda: [x for x in printed("change") if x["path"] == "/first"], timeout=30)
        second = create(rt, timetrigger("change", "@every 2s", method="GET", subpath="/second?x=1"))
        after = {f["rid"] for f in fired(rt, "change")}
        wait_until(lambda: len([x for x in printed("change") if x["path"] == "/second"]) >= 2, timeout=30)
        state = status(rt, "change")
    finally:
        delete(rt, "change")
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    lines = printed("change")
    assert all(x["fn"] == "printer" and x["body"] == "" for x in lines)
    assert all(re.fullmatch(r"[0-9a-f]{32}", x["rid"]) for x in lines)
    assert len({x["rid"] for x in lines}) == len(lines)
    first_calls = [x for x in lines if x["path"] == "/first"]
    assert all(x["method"] == "POST" for x in first_calls)
    new = [f for f in fired(rt, "change") if f["rid"] not in after]
    new_calls = [x for x in lines if x["rid"] in {f["rid"] for f in new}]
    assert new_calls
    assert all((x["method"], x["path"], x["args"]) == ("GET", "/second", {"x": "1"}) for x in new_calls)
    assert all(int(tick_of(f)) % 2 == 0 for f in new)  # @every 2s ticks on even seconds
    assert state["fires"] == len(first_calls) + len(new_calls)  # same uid: the counts go on
    assert state["lastFire"]["status"] == 200
    assert state["nextFire"] is not None


def test_a_deleted_trigger_stops_firing_and_one_created_again_starts_afresh(rt):
    old = create(rt, timetrigger("gone", "@every 1s"))
    state_file = rt.state_dir / "timers" / f"{old['metadata']['uid']}.json"
    wait_until(lambda: status(rt, "gone")["fires"] >= 4 and state_file.exists(), timeout=30)
    delete(rt, "gone")
    deleted = time.time()
    create(rt, timetrigger("clock", "@every 1s"))  # a clock: three of its ticks pass
    try:
        ticks = len(fired(rt, "clock"))
        wait_until(lambda: len(fired(rt, "clock")) >= ticks + 3, timeout=30)
    finally:
        delete(rt, "clock")
    assert not [f for f in fired(rt, "gone") if tick_of(f) >= deleted]
    assert not state_file.exists()
    new = create(rt, timetrigger("gone", "@every 1s"))
    try:
        wait_until(lambda: status(rt, "gone")["fires"] >= 1, timeout=30)
        again = status(rt, "gone")
    finally:
        delete(rt, "gone")
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    assert again["fires"] < 4  # its own count, from zero
    assert again["missed"] == 0  # nothing of the old trigger's claim


@pytest.mark.parametrize(
    ("cron", "message"),
    [("0 25 * * *", "spec.cron: field 2 (hour) '25' is out of range 0-23"),
     ("@every 500ms", "spec.cron: '@every 500ms': Fission's timer runs @every schedules in whole seconds")],
)  # fmt: skip
def test_an_invalid_cron_is_refused_with_what_is_wrong(rt, cron, message):
    response = httpx.post(trigger_url(rt), json=timetrigger("bad", cron), headers=AUTH, timeout=30)
    assert response.status_code == 422
    assert message in response.json()["error"]["message"]
    assert response.json()["error"]["detail"] == {"field": "spec.cron"}


# --- the claims, without a runtime ----------------------------------------------------------------


def trigger(cron: str = "@every 1s", uid: str = "uid-1", name: str = "t") -> TimeTrigger:
    return TimeTrigger(meta=Meta("ns", name, "1", uid), cron=cron, function="fn", subpath="/x")


class Calls:
    """Stands in for ``call_function``: records each call with the claim on disk at that moment."""

    def __init__(self, directory: Path, seconds: float = 0.0) -> None:
        self.store, self.seconds = TickStore(directory), seconds
        self.claims: list[int | None] = []
        self.targets: list[tuple[str, bytes, bytes]] = []

    async def __call__(
        self, executor: Any, namespace: str, fn: str, method: str, target: bytes,
        headers: list[tuple[bytes, bytes]], body: bytes, request_id: bytes,
    ) -> Response:  # fmt: skip
        state = self.store.load("uid-1")
        self.claims.append(state.claimed if state else None)
        self.targets.append((method, target, dict(headers)[b"X-Fission-Timer-Name"]))
        await asyncio.sleep(self.seconds)
        return Response(200, [], b"ok")


@pytest.fixture
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Calls:
    fake = Calls(tmp_path)
    monkeypatch.setattr(timers_module, "call_function", fake)
    return fake


async def until(predicate: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met"
        await asyncio.sleep(0.02)


async def test_a_tick_is_claimed_on_disk_before_the_call(tmp_path, calls):
    timers = Timers(None, tmp_path)  # type: ignore[arg-type]  # the fake call needs no executor
    timers.set_triggers([trigger()])
    await until(lambda: len(calls.claims) >= 2)
    state = timers.status("ns", "t")
    await timers.stop()
    assert state is not None
    # Each call found its own tick claimed on disk: the file named it before the call.
    assert calls.claims[:2] == [int(time_of(state["lastTick"])) - 1, int(time_of(state["lastTick"]))]
    assert calls.targets[0] == ("POST", b"/x", b"t")


async def test_stop_writes_back_the_last_tick_that_came(tmp_path, calls):
    timers = Timers(None, tmp_path)  # type: ignore[arg-type]
    timers.set_triggers([trigger()])
    await until(lambda: len(calls.claims) >= 1)
    fired_tick = calls.claims[0]
    # Stop once the next tick is claimed, ahead of it: that claim is undone, it did not fire.
    await until(lambda: (TickStore(tmp_path).load("uid-1") or TimerState("", "", "")).claimed != fired_tick)
    await timers.stop()
    state = TickStore(tmp_path).load("uid-1")
    assert state is not None
    assert len(calls.claims) == 1
    assert state.claimed == fired_tick
    assert state.fires == 1


async def test_ticks_after_the_last_claim_are_missed_not_run(tmp_path, calls):
    now = int(time.time())
    TickStore(tmp_path).save(asdict(TimerState("uid-1", "ns", "t", claimed=now - 10, fires=4)))
    timers = Timers(None, tmp_path)  # type: ignore[arg-type]
    started = time.time()
    timers.set_triggers([trigger()])
    await until(lambda: len(calls.claims) >= 1)
    await timers.stop()
    state = timers.status("ns", "t")
    assert state is not None
    assert 10 <= state["missed"] <= 11
    assert calls.claims[0] > started  # the first fire is a tick to come
    assert state["fires"] == 4 + len(calls.claims)  # the counts go on


async def test_a_fire_cut_off_by_a_stop_is_counted_as_fired(tmp_path, calls):
    calls.seconds = 30  # the call is still running when the runtime stops
    timers = Timers(None, tmp_path)  # type: ignore[arg-type]
    timers.set_triggers([trigger()])
    await until(lambda: len(calls.claims) >= 1)
    await timers.stop()
    state = timers.status("ns", "t")
    assert state is not None
    assert (state["fires"], state["failures"]) == (1, 1)
    assert state["lastFire"]["status"] == 503
    saved = TickStore(tmp_path).load("uid-1")
    assert saved is not None
    assert saved.fires == 1  # written back: the count goes on after a restart


async def test_a_tick_claimed_by_a_runtime_killed_before_it_does_not_fire(tmp_path, calls):
    ahead = int(time.time()) + 2
    TickStore(tmp_path).save(asdict(TimerState("uid-1", "ns", "t", claimed=ahead)))
    timers = Timers(None, tmp_path)  # type: ignore[arg-type]
    timers.set_triggers([trigger()])
    await until(lambda: len(calls.claims) >= 1)
    await timers.stop()
    assert calls.claims[0] == ahead + 1


async def test_a_tick_that_cannot_be_claimed_is_not_fired(tmp_path, calls, monkeypatch):
    def full(state: dict[str, Any]) -> None:
        raise OSError(28, "No space left on device")

    timers = Timers(None, tmp_path)  # type: ignore[arg-type]
    monkeypatch.setattr(timers.store, "save", full)
    timers.set_triggers([trigger()])
    await until(lambda: (timers.status("ns", "t") or {}).get("failures", 0) >= 1)
    await timers.stop()
    state = timers.status("ns", "t")
    assert state is not None
    assert calls.claims == []
    assert "could not be recorded" in state["lastError"]["message"]


async def test_a_removed_trigger_is_forgotten_and_one_with_a_new_uid_starts_afresh(tmp_path, calls):
    timers = Timers(None, tmp_path)  # type: ignore[arg-type]
    timers.set_triggers([trigger()])
    await until(lambda: len(calls.claims) >= 1)
    assert (tmp_path / "uid-1.json").exists()
    timers.set_triggers([trigger(uid="uid-2")])
    await until(lambda: not (tmp_path / "uid-1.json").exists())
    state = timers.status("ns", "t")
    assert state is not None
    assert state["fires"] == 0
    timers.set_triggers([])
    assert timers.status("ns", "t") is None
    await timers.stop()


async def test_an_invalid_stored_schedule_is_reported_not_run(tmp_path, calls):
    timers = Timers(None, tmp_path)  # type: ignore[arg-type]
    timers.set_triggers([trigger(cron="0 25 * * *")])
    state = timers.status("ns", "t")
    assert state is not None
    assert state["nextFire"] is None
    assert "out of range 0-23" in state["lastError"]["message"]
    await timers.stop()


def test_the_store_writes_atomically_and_sweeps_what_is_gone(tmp_path):
    store = TickStore(tmp_path)
    store.save(asdict(TimerState("a", "ns", "t", claimed=5, fires=2)))
    store.save(asdict(TimerState("b", "ns", "u")))
    (tmp_path / ".b.json.1234.tmp").write_text("{")  # left by a crash mid-write
    assert store.load("a") == TimerState("a", "ns", "t", claimed=5, fires=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".b.json.1234.tmp", "a.json", "b.json"]
    (tmp_path / "b.json").write_text("not json")
    assert store.load("b") is None  # unreadable: the trigger starts afresh
    store.sweep({"a"})
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert store.path("../../etc/passwd").parent == tmp_path


# ------------------------------------------------------------------ the tick clock


async def test_the_clock_runs_every_action_of_a_tick_before_any_waiter_wakes():
    clock, seen = timers_module.TickClock(), []
    tick = int(time.time()) + 1

    async def wait(name: str) -> None:
        moment = await clock.at(tick, lambda now: seen.append(("act", name, now)))
        seen.append(("woke", name, moment))

    await asyncio.gather(*(wait(name) for name in "abc"))
    await clock.close()
    assert [(kind, name) for kind, name, _ in seen] == [
        ("act", "a"), ("act", "b"), ("act", "c"), ("woke", "a"), ("woke", "b"), ("woke", "c"),
    ]  # fmt: skip
    assert len({moment for _, _, moment in seen}) == 1  # one moment for the whole tick
    assert seen[0][2] >= tick  # never early


async def test_the_calls_a_tick_starts_all_begin_before_any_waiter_wakes():
    """A fire starts its call as a task (``Timers._fire``): every such task's first step runs
    before any schedule wakes to compute its next tick, or the hundredth call of a tick would
    wait for ninety-nine schedules as well as ninety-nine calls."""
    clock, seen = timers_module.TickClock(), []
    tick = int(time.time()) + 1

    async def call(name: str) -> None:
        seen.append(("call", name))

    def fire(name: str, now: float) -> None:
        asyncio.get_running_loop().create_task(call(name))

    async def wait(name: str) -> None:
        await clock.at(tick, functools.partial(fire, name))
        seen.append(("woke", name))

    await asyncio.gather(*(wait(name) for name in "abc"))
    await asyncio.sleep(0)
    await clock.close()
    assert seen == [
        ("call", "a"), ("call", "b"), ("call", "c"), ("woke", "a"), ("woke", "b"), ("woke", "c"),
    ]  # fmt: skip


async def test_a_cancelled_wait_runs_nothing_at_its_tick_and_the_others_still_do():
    clock, acted = timers_module.TickClock(), []
    tick = int(time.time()) + 1
    cancelled = asyncio.create_task(clock.at(tick, lambda now: acted.append("cancelled")))
    kept = asyncio.create_task(clock.at(tick, lambda now: acted.append("kept")))
    await asyncio.sleep(0)
    cancelled.cancel()
    assert await kept >= tick
    await clock.close()
    assert acted == ["kept"]
    assert cancelled.cancelled()


async def test_a_tick_already_past_wakes_at_once_and_an_action_that_fails_wakes_its_waiter():
    clock = timers_module.TickClock()

    def fail(now: float) -> None:
        raise RuntimeError("boom")

    moment = await clock.at(int(time.time()) - 5, fail)
    await clock.close()
    assert moment <= time.time()


async def test_closing_the_clock_runs_nothing_that_was_due_and_cancels_its_waiters():
    clock, acted = timers_module.TickClock(), []
    waiting = asyncio.create_task(clock.at(int(time.time()) + 30, lambda now: acted.append(now)))
    await asyncio.sleep(0)
    await clock.close()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert acted == []
