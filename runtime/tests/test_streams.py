"""The runtime's background Redis writer (runtime.streams.StreamWriter): entries of a moment
share one pipeline, and stopping writes every entry, including one waiting for company."""

from __future__ import annotations

import asyncio
from typing import Any

from runtime.streams import StreamWriter


class Recorded(StreamWriter[int]):
    """Writes nowhere: keeps the batches it was asked to write."""

    def __init__(self) -> None:
        super().__init__("redis://127.0.0.1:1/0")  # never connected: _write is replaced
        self.batches: list[list[int]] = []

    async def _write(self, batch: list[Any]) -> None:
        self.batches.append(list(batch))


def test_entries_of_a_moment_share_one_write() -> None:
    async def scenario() -> list[list[int]]:
        writer = Recorded()
        await writer.start()
        for value in range(5):
            writer.queue.put_nowait(value)
            await asyncio.sleep(0.001)  # calls a millisecond apart
        await asyncio.sleep(writer.linger * 3)
        await writer.stop()
        return writer.batches

    assert asyncio.run(scenario()) == [[0, 1, 2, 3, 4]]


def test_stopping_writes_the_entry_that_waits_for_company() -> None:
    async def scenario() -> list[list[int]]:
        writer = Recorded()
        await writer.start()
        writer.queue.put_nowait(1)
        await asyncio.sleep(0)  # the writer has taken it and lingers
        await asyncio.sleep(0)
        assert writer.queue.empty()
        writer.queue.put_nowait(2)
        await writer.stop()
        return writer.batches

    assert asyncio.run(scenario()) == [[1, 2]]
