"""The background Redis writer the runtime's records share (runtime/calls.py, captures.py):
entries wait in a queue (recording never blocks nor fails the call it records), a task on the
event loop writes them in batches through one pipeline, retries Redis a few times with backoff
and then drops the batch (counted), and ``stop`` writes what is still queued."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Generic, TypeVar

import redis.asyncio as redis

log = logging.getLogger(__name__)
T = TypeVar("T")
ATTEMPTS = 5


class StreamWriter(Generic[T]):
    """Subclasses add their entries to the pipeline (``_add``) and may act on a written batch
    (``_written``) or on one leaving the queue, written or not (``_left``)."""

    batch_size = 500
    # How long the first entry waits for others to share its pipeline: a Redis round trip costs
    # the event loop (the router's) more than a call does, so calls at a low rate must not each
    # pay one.
    linger = 0.02
    what = "entries"  # for the log line of a dropped batch

    def __init__(self, redis_url: str | None) -> None:
        self.client = redis.Redis.from_url(redis_url) if redis_url else None
        self.queue: asyncio.Queue[T] = asyncio.Queue()
        self.dropped = 0
        self._writer: asyncio.Task[None] | None = None
        self._lingering: list[T] = []  # taken from the queue, waiting for company

    async def start(self) -> None:
        if self.client is not None:
            self._writer = asyncio.get_running_loop().create_task(self._write_forever())

    def _add(self, pipe: Any, batch: list[T]) -> None:
        raise NotImplementedError

    def _written(self, batch: list[T]) -> None:
        """Called once the batch is in Redis."""

    def _left(self, batch: list[T]) -> None:
        """Called when the batch has left the queue, written or dropped."""

    async def _write_forever(self) -> None:
        while True:
            batch = [await self.queue.get()]
            if self.queue.qsize() < self.batch_size:
                self._lingering = batch  # stop() writes it if it comes meanwhile
                await asyncio.sleep(self.linger)  # one pipeline for the entries of a moment, not one each
                self._lingering = []
            while not self.queue.empty() and len(batch) < self.batch_size:
                batch.append(self.queue.get_nowait())
            try:
                await self._write(batch)
            finally:
                self._left(batch)

    async def _write(self, batch: list[T]) -> None:
        assert self.client is not None
        for attempt in range(ATTEMPTS):
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    self._add(pipe, batch)
                    await pipe.execute()
                self._written(batch)
                return
            except redis.RedisError:
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
        self.dropped += len(batch)
        log.warning("dropped %d %s: Redis unavailable", len(batch), self.what)

    async def stop(self) -> None:
        """Write what is queued, then stop."""
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        batch, self._lingering = self._lingering, []
        while not self.queue.empty():
            batch.append(self.queue.get_nowait())
        if batch and self.client is not None:
            try:
                await self._write(batch)
            finally:
                self._left(batch)
        if self.client is not None:
            with contextlib.suppress(redis.RedisError):
                await self.client.aclose()
