"""Function output to Redis: workers send JSON lines over a unix socket; each record is
tagged with its namespace and function (known from the sending process) and appended to
a capped stream per namespace, ``runtime:logs:<namespace>``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis.asyncio as redis

log = logging.getLogger(__name__)
STREAM_PREFIX = "runtime:logs:"
Lookup = Callable[[int], tuple[str, str] | None]  # pid -> (namespace, function)


def stream_name(namespace: str) -> str:
    return STREAM_PREFIX + namespace


def peer_pid(sock: socket.socket) -> int:
    """The sending process, from the kernel (SO_PEERCRED): a worker cannot lie about it."""
    credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, _, _ = struct.unpack("3i", credentials)
    return int(pid)


class LogCollector:
    def __init__(self, path: Path, redis_url: str | None, lookup: Lookup, maxlen: int) -> None:
        self.path = path
        self.lookup = lookup
        self.maxlen = maxlen
        self.client = redis.Redis.from_url(redis_url) if redis_url else None
        self.queue: asyncio.Queue[tuple[str, dict[str, str]]] = asyncio.Queue(maxsize=100_000)
        self.server: asyncio.base_events.Server | None = None
        self.dropped = 0

    async def start(self) -> None:
        self.path.unlink(missing_ok=True)
        self.server = await asyncio.start_unix_server(self._connection, path=str(self.path))
        self.path.chmod(0o600)  # workers run as this user; nobody else may inject lines
        asyncio.get_running_loop().create_task(self._flush_forever())

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        pid = peer_pid(sock) if sock is not None else 0
        try:
            while line := await reader.readline():
                self._accept(pid, line)
        finally:
            writer.close()

    def _accept(self, pid: int, line: bytes) -> None:
        owner = self.lookup(pid)
        try:
            record: dict[str, Any] = json.loads(line)
        except ValueError:
            return
        namespace, function = owner or ("", "")
        if not namespace:
            return  # a warm worker printing at start-up: nothing of a function yet
        entry = {
            "time": f"{float(record.get('time', 0)):.6f}",
            "namespace": namespace,
            "function": function,
            "request_id": str(record.get("request_id", "")),
            "stream": str(record.get("stream", "stdout")),
            "message": str(record.get("message", ""))[:16384],
        }
        try:
            self.queue.put_nowait((namespace, entry))
        except asyncio.QueueFull:
            self.dropped += 1

    async def _flush_forever(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while not self.queue.empty() and len(batch) < 500:
                batch.append(self.queue.get_nowait())
            await self._write(batch)

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
                        pipe.xadd(stream_name(namespace), entry, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
                    await pipe.execute()
                return
            except redis.RedisError:
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
        self.dropped += len(batch)
        log.warning("dropped %d log records: Redis unavailable", len(batch))

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.client is not None:
            with contextlib.suppress(redis.RedisError):
                await self.client.aclose()
