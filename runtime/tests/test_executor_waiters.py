"""Calls waiting for a newdeploy function's worker at MaxScale (runtime.executor.Waiters): woken
one at a time, in arrival order; a call that times out or is cancelled leaves the line; a call
woken but cancelled before it looked passes its turn on."""

from __future__ import annotations

import asyncio

import pytest

from runtime.executor import Waiters


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
