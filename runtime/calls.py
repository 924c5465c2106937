"""A record of every call a worker served: when it started, how long it took, how long it waited
for a worker, whether that wait was a cold start, and its status. The portal's cold-start insight
(metrics/coldstarts.py) reads it to measure cold starts per version and to replay the calls under
other scaling settings.

One capped Redis stream per namespace, ``runtime:calls:<namespace>``, as the logs
(runtime/logs.py): a tenant's calls go to its own namespace's stream only, and the portal reads
only the stream of the tenant whose page it serves. Each stream is bounded by count (``maxlen``,
the newest kept) and by age (entries older than ``retention_s``, at least 24 hours, are trimmed).

Fields of an entry: ``function`` (the Fission name, ``f-v3``), ``time`` (epoch seconds the call
reached the executor), ``duration`` (seconds until its answer), ``startup`` (seconds of that it
waited for a worker), ``cold`` ("" warm; "pool" a pooled worker was specialized for it; "new" a new
worker process was started for it) and ``status``.

Calls refused before any worker took them (429 at a limit or quota, a function that does not
load) are not recorded: they are errors, counted by the router's metrics. Recording never slows a
call down nor fails one: entries wait in a bounded queue (dropped, and counted, beyond it) for a
background writer, which retries Redis a few times and then gives up on the batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, cast

import redis.asyncio as redis

log = logging.getLogger(__name__)
STREAM_PREFIX = "runtime:calls:"
MAXLEN = 200_000  # entries per namespace at most (about 30 MB of Redis at most per namespace)
RETENTION_S = 25 * 3600  # entries older than this are trimmed: a day's window and an hour's margin
QUEUE_LIMIT = 100_000  # entries waiting for Redis, all namespaces together
TRIM_EVERY_S = 60.0


def stream_name(namespace: str) -> str:
    return STREAM_PREFIX + namespace


class CallRecorder:
    def __init__(
        self, redis_url: str | None, *, maxlen: int = MAXLEN, retention_s: float = RETENTION_S
    ) -> None:
        if retention_s < 24 * 3600:
            raise ValueError("calls must be kept at least 24 hours")
        self.maxlen = maxlen
        self.retention_s = retention_s
        self.client = redis.Redis.from_url(redis_url) if redis_url else None
        self.queue: asyncio.Queue[tuple[str, dict[str, str]]] = asyncio.Queue()
        self.dropped = 0
        self.trimmed_at: dict[str, float] = {}  # namespace -> when its stream was last trimmed by age
        self._writer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.client is not None:
            self._writer = asyncio.get_running_loop().create_task(self._write_forever())

    def record(self, namespace: str, function: str, *, start: float, duration: float, startup: float,
               cold: str, status: int) -> None:  # fmt: skip
        """Queue one call's entry (never blocks; dropped when the queue is full or there is no Redis)."""
        if self.client is None:
            return
        if self.queue.qsize() >= QUEUE_LIMIT:
            self.dropped += 1
            return
        entry = {"function": function, "time": f"{start:.6f}", "duration": f"{duration:.6f}",
                 "startup": f"{startup:.6f}", "cold": cold, "status": str(status)}  # fmt: skip
        self.queue.put_nowait((namespace, entry))

    async def _write_forever(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while not self.queue.empty() and len(batch) < 500:
                batch.append(self.queue.get_nowait())
            await self._write(batch)

    async def _write(self, batch: list[tuple[str, dict[str, str]]]) -> None:
        assert self.client is not None
        now = time.time()
        stale = {ns for ns, _ in batch if now - self.trimmed_at.get(ns, 0.0) >= TRIM_EVERY_S}
        for attempt in range(5):
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    for namespace, entry in batch:
                        fields = cast(dict[Any, Any], entry)
                        pipe.xadd(stream_name(namespace), fields, maxlen=self.maxlen, approximate=True)
                    # By age (ids are append times in milliseconds), exactly: an approximate trim
                    # keeps a node that holds any newer entry, old ones and all.
                    for namespace in stale:
                        oldest = int((now - self.retention_s) * 1000)
                        pipe.xtrim(stream_name(namespace), minid=oldest, approximate=False)
                    await pipe.execute()
                self.trimmed_at.update(dict.fromkeys(stale, now))
                return
            except redis.RedisError:
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
        self.dropped += len(batch)
        log.warning("dropped %d call records: Redis unavailable", len(batch))

    async def stop(self) -> None:
        """Write what is queued, then stop."""
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        batch = []
        while not self.queue.empty():
            batch.append(self.queue.get_nowait())
        if batch and self.client is not None:
            await self._write(batch)
        if self.client is not None:
            with contextlib.suppress(redis.RedisError):
                await self.client.aclose()
