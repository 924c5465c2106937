"""Function output to Redis, attributed by the runtime, never by the worker.

For every worker the runtime creates three channels before the fork and keeps their other ends:
a socketpair for the JSON-line records of ``runtime.worker.capture`` (what the function prints or
logs, with the request id), and two pipes for whatever is written to the process's raw stdout and
stderr (subprocesses, C extensions). Nothing in a sandbox can open any of them: they have no name.
So the runtime knows which worker every line comes from, and tags it with that worker's namespace
and function; a worker cannot claim another's. Each record goes to a capped stream per namespace,
``runtime:logs:<namespace>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any, cast

import redis.asyncio as redis

log = logging.getLogger(__name__)
STREAM_PREFIX = "runtime:logs:"
MAX_MESSAGE_CHARS = 16384
MAX_LINE_BYTES = 64 * 1024
Owner = Callable[[], tuple[str, str] | None]  # -> (namespace, function) of a worker, None while generic


def stream_name(namespace: str) -> str:
    return STREAM_PREFIX + namespace


def _entry(stamp: float, namespace: str, function: str, request_id: str, stream: str,
           message: str) -> dict[str, str]:  # fmt: skip
    return {"time": f"{stamp:.6f}", "namespace": namespace, "function": function,
            "request_id": request_id, "stream": stream, "message": message}  # fmt: skip


def _size(entry: dict[str, str]) -> int:
    """What a queued record holds in memory, near enough (its text, and a fixed part)."""
    return len(entry["message"]) + len(entry["function"]) + len(entry["request_id"]) + 64


class _Lines(asyncio.Protocol):
    """Splits a byte stream into lines (a line too long is cut, never buffered without bound)."""

    def __init__(self, on_line: Callable[[bytes], None]) -> None:
        self.on_line = on_line
        self.buffer = bytearray()
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\n")) >= 0:
            line = bytes(self.buffer[:end])
            del self.buffer[: end + 1]
            self.on_line(line)
        if len(self.buffer) > MAX_LINE_BYTES:
            self.on_line(bytes(self.buffer))
            self.buffer.clear()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.buffer:
            self.on_line(bytes(self.buffer))
            self.buffer.clear()


class LogCollector:
    """Lines waiting for Redis are bounded per namespace (``NAMESPACE_BUDGET`` bytes) and in all
    (``TOTAL_BUDGET``): a tenant that prints faster than they can be stored loses its own lines
    (counted, and said in its stream once it is back under its budget), never another tenant's."""

    NAMESPACE_BUDGET = 8 * 1024 * 1024
    TOTAL_BUDGET = 128 * 1024 * 1024

    def __init__(self, redis_url: str | None, maxlen: int) -> None:
        self.maxlen = maxlen
        self.client = redis.Redis.from_url(redis_url) if redis_url else None
        self.queue: asyncio.Queue[tuple[str, dict[str, str]]] = asyncio.Queue()
        self.queued: dict[str, int] = defaultdict(int)  # bytes waiting, per namespace
        self.queued_total = 0
        self.dropped: dict[str, int] = defaultdict(int)  # lines lost since last said, per namespace
        self._flusher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._flusher = asyncio.get_running_loop().create_task(self._flush_forever())

    async def attach(
        self, owner: Owner, records: socket.socket, stdout: int, stderr: int
    ) -> list[asyncio.BaseTransport]:
        """Read a worker's three channels (ours now); returns their transports (closed at EOF)."""
        loop = asyncio.get_running_loop()
        transports: list[asyncio.BaseTransport] = []
        records_transport, _ = await loop.connect_accepted_socket(
            lambda: _Lines(lambda line: self._record(owner, line)), sock=records
        )
        transports.append(records_transport)
        for fd, stream in ((stdout, "stdout"), (stderr, "stderr")):
            pipe = os.fdopen(fd, "rb", buffering=0)
            pipe_transport, _ = await loop.connect_read_pipe(self._raw_reader(owner, stream), pipe)
            transports.append(pipe_transport)
        return transports

    def _raw_reader(self, owner: Owner, stream: str) -> Callable[[], _Lines]:
        return lambda: _Lines(lambda line: self._raw(owner, stream, line))

    def _record(self, owner: Owner, line: bytes) -> None:
        """A JSON record from the worker's capture: only its time, request id, stream and message
        are taken; who sent it is the runtime's knowledge."""
        try:
            record: dict[str, Any] = json.loads(line)
        except ValueError:
            return
        if not isinstance(record, dict):
            return
        stream = "stderr" if record.get("stream") == "stderr" else "stdout"
        try:
            stamp = float(record.get("time", 0)) or time.time()
        except (TypeError, ValueError):
            stamp = time.time()
        self._add(
            owner, stamp, str(record.get("request_id", ""))[:128], stream, str(record.get("message", ""))
        )

    def _raw(self, owner: Owner, stream: str, line: bytes) -> None:
        """A line written to the process's own stdout or stderr (no request id is known)."""
        self._add(owner, time.time(), "", stream, line.decode("utf-8", "replace").rstrip("\r"))

    def _add(self, owner: Owner, stamp: float, request_id: str, stream: str, message: str) -> None:
        known = owner()
        if known is None:
            return  # a warm worker printing before it has a function: nobody's lines
        namespace, function = known
        entry = _entry(stamp, namespace, function, request_id, stream, message[:MAX_MESSAGE_CHARS])
        size = _size(entry)
        if (
            self.queued[namespace] + size > self.NAMESPACE_BUDGET
            or self.queued_total + size > self.TOTAL_BUDGET
        ):
            self.dropped[namespace] += 1
            return
        if self.dropped.get(namespace):
            lost = self.dropped.pop(namespace)
            note = f"[runtime] {lost} lines were dropped: they came faster than they could be stored"
            self._enqueue(namespace, _entry(stamp, namespace, "", "", "stderr", note))
        self._enqueue(namespace, entry)

    def _enqueue(self, namespace: str, entry: dict[str, str]) -> None:
        size = _size(entry)
        self.queued[namespace] += size
        self.queued_total += size
        self.queue.put_nowait((namespace, entry))

    def _written(self, batch: list[tuple[str, dict[str, str]]]) -> None:
        for namespace, entry in batch:
            size = _size(entry)
            self.queued[namespace] -= size
            self.queued_total -= size
            if not self.queued[namespace]:
                del self.queued[namespace]

    async def _flush_forever(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while not self.queue.empty() and len(batch) < 500:
                batch.append(self.queue.get_nowait())
            try:
                await self._write(batch)
            finally:
                self._written(batch)

    async def _write(self, batch: list[tuple[str, dict[str, str]]]) -> None:
        if self.client is None:
            for _, entry in batch:
                log.info(
                    "[%s/%s %s] %s",
                    entry["namespace"],
                    entry["function"],
                    entry["request_id"],
                    entry["message"],
                )
            return
        for attempt in range(5):
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    for namespace, entry in batch:
                        fields = cast(dict[Any, Any], entry)
                        pipe.xadd(stream_name(namespace), fields, maxlen=self.maxlen, approximate=True)
                    await pipe.execute()
                return
            except redis.RedisError:
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
        log.warning("dropped %d log records: Redis unavailable", len(batch))

    async def stop(self) -> None:
        """Write what is queued, then stop."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        batch = []
        while not self.queue.empty():
            batch.append(self.queue.get_nowait())
        if batch:
            await self._write(batch)
        if self.client is not None:
            with contextlib.suppress(redis.RedisError):
                await self.client.aclose()
