"""Calls waiting for a newdeploy function's worker at MaxScale (runtime.executor.Waiters): woken
one at a time, in arrival order; a call that times out or is cancelled leaves the line; a call
woken but cancelled before it looked passes its turn on. And calls waiting for a cold start's worker
(``Executor._join``): each counted on the worker once it comes, or given its seat back, or told why
the cold start failed."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest

from runtime.executor import Executor, Unavailable, Waiters, Worker, _Start


async def _line(
    waiters: Waiters, count: int, woken: list[int], timeout: float = 5
) -> list[asyncio.Task[None]]:
    async def wait(index: int) -> None:
        await waiters.wait(timeout)
        woken.append(index)

    tasks = [asyncio.create_task(wait(index)) for index in range(count)]
    await asyncio.sleep(0)  # all of them in line, in order
    return tasks


def test_one_is_woken_per_free_worker_in_arrival_order() -> None:
    async def scenario() -> list[int]:
        waiters, woken = Waiters(), list[int]()
        tasks = await _line(waiters, 5, woken)
        waiters.wake_one()
        await asyncio.sleep(0.01)
        assert woken == [0]  # one, not all five
        for _ in range(4):
            waiters.wake_one()
        await asyncio.gather(*tasks)
        assert not waiters.queue
        return woken

    assert asyncio.run(scenario()) == [0, 1, 2, 3, 4]


def test_a_call_that_waits_too_long_times_out_and_leaves_the_line() -> None:
    async def scenario() -> None:
        waiters, woken = Waiters(), list[int]()
        (task,) = await _line(waiters, 1, woken, timeout=0.02)
        with pytest.raises(TimeoutError):
            await task
        assert not waiters.queue
        waiters.wake_one()  # nobody left: nothing happens

    asyncio.run(scenario())


def test_a_call_woken_but_cancelled_passes_its_turn_on() -> None:
    async def scenario() -> list[int]:
        waiters, woken = Waiters(), list[int]()
        tasks = await _line(waiters, 3, woken)
        waiters.wake_one()  # the first is woken...
        tasks[0].cancel()  # ...but its caller went away before it looked
        await asyncio.sleep(0.01)
        assert tasks[0].cancelled()
        waiters.wake_one()
        await asyncio.gather(*tasks[1:])
        return woken

    assert asyncio.run(scenario()) == [1, 2]


def test_a_cancelled_call_leaves_the_line_and_the_next_is_woken() -> None:
    async def scenario() -> list[int]:
        waiters, woken = Waiters(), list[int]()
        tasks = await _line(waiters, 2, woken)
        tasks[0].cancel()
        await asyncio.sleep(0)
        waiters.wake_one()
        await tasks[1]
        return woken

    assert asyncio.run(scenario()) == [1]


# ---------------------------------------------------------------- waiting for a cold start


SIGNATURE = ("code", "main")  # stands for a Deployable.signature


def _executor() -> Executor:
    executor = Executor.__new__(Executor)  # only what _join and release use
    executor.freed = defaultdict(Waiters)
    return executor


def _worker() -> Worker:
    return Worker("w", 1, -1, Path("/nowhere"), None, ("ns", "env"), "3.11", "poolmgr", 0,
                  state="specializing", active=1)  # fmt: skip


def test_a_call_that_stops_waiting_before_the_worker_comes_gives_its_seat_back() -> None:
    async def scenario() -> None:
        executor, start = _executor(), _Start(seats=3, signature=SIGNATURE)
        waiting = asyncio.create_task(executor._join(start, ("ns", "f")))
        await asyncio.sleep(0)
        assert start.joined == 1
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert start.joined == 0  # not counted on the worker when it comes
        start.fail(RuntimeError("nobody waits"))  # no exception left unretrieved
        assert start.worker.cancelled()

    asyncio.run(scenario())


def test_a_call_that_stops_waiting_once_the_worker_came_is_released_from_it() -> None:
    async def scenario() -> None:
        executor, start, worker = _executor(), _Start(seats=3, signature=SIGNATURE), _worker()
        waiting = asyncio.create_task(executor._join(start, ("ns", "f")))
        await asyncio.sleep(0)
        worker.active += start.joined  # what cold_start does when the worker is specialized
        start.worker.set_result(worker)
        waiting.cancel()  # before it resumed with the worker
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert worker.active == 1  # the cold start's own call only

    asyncio.run(scenario())


def test_the_calls_waiting_get_what_the_cold_start_raised() -> None:
    async def scenario() -> None:
        executor = _executor()
        failed, abandoned = _Start(seats=3, signature=SIGNATURE), _Start(seats=3, signature=SIGNATURE)
        first = [asyncio.create_task(executor._join(failed, ("ns", "f"))) for _ in range(2)]
        second = asyncio.create_task(executor._join(abandoned, ("ns", "g")))
        await asyncio.sleep(0)
        failed.fail(Unavailable("the function failed to load"))
        abandoned.fail(asyncio.CancelledError())  # its own call was cancelled: they are answered
        for task in first:
            with pytest.raises(Unavailable, match="failed to load"):
                await task
        with pytest.raises(Unavailable, match="abandoned"):
            await second

    asyncio.run(scenario())


def test_a_call_never_waits_for_a_cold_start_of_a_version_it_replaced() -> None:
    async def scenario() -> None:
        executor = _executor()
        executor.launching = defaultdict(list)
        old, now = _Start(seats=3, signature=("v1",)), _Start(seats=3, signature=("v2",))
        executor.launching[("ns", "f")].append(old)
        deployable = SimpleNamespace(key=("ns", "f"), signature=("v2",))
        assert executor._joinable(deployable) is None  # type: ignore[arg-type]  # v1's fails: start one
        executor.launching[("ns", "f")].append(now)
        assert executor._joinable(deployable) is now  # type: ignore[arg-type]
        now.joined = now.seats
        assert executor._joinable(deployable) is None  # type: ignore[arg-type]  # no seat left
        for start in (old, now):
            start.worker.cancel()

    asyncio.run(scenario())
