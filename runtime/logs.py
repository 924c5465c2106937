"""Function output to Redis, attributed by the runtime, never by the worker.

For every worker the runtime creates three channels before the fork and keeps their other ends:
a socketpair for the JSON-line records of ``runtime.worker.capture`` (what the function prints or
logs, with the request id), and two pipes for whatever is written to the process's raw stdout and
stderr (subprocesses, C extensions). Nothing in a sandbox can open any of them: they have no name.
So the runtime knows which worker every line comes from, and tags it with that worker's namespace,
function and the function object's uid (``function_uid``: a function deleted and created again has
a new one); a worker cannot claim another's. Each record goes to a capped stream per namespace,
``runtime:logs:<namespace>``.

When a function fails to load, its worker's traceback must not be lost with the worker: the
executor ``tap``s the stderr lines of the specialize request, waits for the worker's channels to
end (``Output.drained``) once it is killed, and for the records to be stored (``flushed``) before
the caller hears of the failure.
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
from collections.abc import Callable, Iterator
from typing import Any, cast

import redis.asyncio as redis

log = logging.getLogger(__name__)
STREAM_PREFIX = "runtime:logs:"
MAX_MESSAGE_CHARS = 16384
MAX_LINE_BYTES = 64 * 1024
MAX_TAPPED_LINES = 1000  # of one request's stderr, kept for its answer (a traceback is far shorter)
# Whose a worker's lines are: (namespace, function, function uid); None while it is generic.
Identity = tuple[str, str, str]
Owner = Callable[[], Identity | None]


def stream_name(namespace: str) -> str:
    return STREAM_PREFIX + namespace


def _entry(stamp: float, owner: Identity, request_id: str, stream: str, message: str) -> dict[str, str]:
    namespace, function, uid = owner
    return {"time": f"{stamp:.6f}", "namespace": namespace, "function": function, "function_uid": uid,
            "request_id": request_id, "stream": stream, "message": message}  # fmt: skip


def _size(entry: dict[str, str]) -> int:
    """What a queued record holds in memory, near enough (its text, and a fixed part)."""
    return (
        len(entry["message"])
        + len(entry["function"])
        + len(entry["function_uid"])
        + len(entry["request_id"])
        + 64
    )


class Output:
    """A worker's three channels as the collector reads them; ``drained`` once all have ended."""

    def __init__(self) -> None:
        self.transports: list[asyncio.BaseTransport] = []
        self.open = 3
        self.ended = asyncio.Event()

    def _closed(self) -> None:
        self.open -= 1
        if self.open <= 0:
            self.ended.set()

    async def drained(self, timeout: float) -> bool:
        """Wait until every line the worker wrote has been read: its channels end when it and
        whatever it started are gone. False when that takes longer than ``timeout`` (a child
        of the worker may outlive it)."""
        try:
            await asyncio.wait_for(self.ended.wait(), timeout)
        except TimeoutError:
            return False
        return True


class _Lines(asyncio.Protocol):
    """Splits a byte stream into lines (a line too long is cut, never buffered without bound)."""

    def __init__(self, on_line: Callable[[bytes], None], on_close: Callable[[], None] = lambda: None) -> None:
        self.on_line = on_line
        self.on_close = on_close
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
        self.on_close()


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
        # Records queued and records handled (stored, or given up on), counted since the start.
        self.enqueued = 0
        self.handled = 0
        self._handled_changed = asyncio.Event()
        self.taps: dict[str, list[list[str]]] = {}  # request id -> lists of its stderr messages

    async def start(self) -> None:
        self._flusher = asyncio.get_running_loop().create_task(self._flush_forever())

    async def attach(self, owner: Owner, records: socket.socket, stdout: int, stderr: int) -> Output:
        """Read a worker's three channels (ours now; their transports close at EOF)."""
        loop = asyncio.get_running_loop()
        output = Output()
        records_transport, _ = await loop.connect_accepted_socket(
            lambda: _Lines(lambda line: self._record(owner, line), output._closed), sock=records
        )
        output.transports.append(records_transport)
        for fd, stream in ((stdout, "stdout"), (stderr, "stderr")):
            pipe = os.fdopen(fd, "rb", buffering=0)
            pipe_transport, _ = await loop.connect_read_pipe(self._raw_reader(owner, stream, output), pipe)
            output.transports.append(pipe_transport)
        return output

    def _raw_reader(self, owner: Owner, stream: str, output: Output) -> Callable[[], _Lines]:
        return lambda: _Lines(lambda line: self._raw(owner, stream, line), output._closed)

    @contextlib.contextmanager
    def tap(self, request_id: str) -> Iterator[list[str]]:
        """The stderr messages of ``request_id`` read while inside (a failed load's traceback)."""
        lines: list[str] = []
        self.taps.setdefault(request_id, []).append(lines)
        try:
            yield lines
        finally:
            taps = self.taps[request_id]
            taps.remove(lines)
            if not taps:
                del self.taps[request_id]

    def note(self, owner: Identity, request_id: str, message: str) -> None:
        """A record of the runtime's own about a function (stream stderr), e.g. why it did not load."""
        self._add(lambda: owner, time.time(), request_id, "stderr", f"[runtime] {message}")

    async def flushed(self, timeout: float) -> bool:
        """Wait until the records queued so far are stored (or given up on); False on timeout."""
        mark = self.enqueued
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.handled < mark:
            self._handled_changed.clear()
            try:
                await asyncio.wait_for(self._handled_changed.wait(), deadline - loop.time())
            except TimeoutError:
                return False
        return True

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
        message = message[:MAX_MESSAGE_CHARS]
        if stream == "stderr" and request_id in self.taps:
            for lines in self.taps[request_id]:
                if len(lines) < MAX_TAPPED_LINES:
                    lines.append(message)
        namespace = known[0]
        entry = _entry(stamp, known, request_id, stream, message)
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
            self._enqueue(namespace, _entry(stamp, (namespace, "", ""), "", "stderr", note))
        self._enqueue(namespace, entry)

    def _enqueue(self, namespace: str, entry: dict[str, str]) -> None:
        size = _size(entry)
        self.queued[namespace] += size
        self.queued_total += size
        self.enqueued += 1
        self.queue.put_nowait((namespace, entry))

    def _written(self, batch: list[tuple[str, dict[str, str]]]) -> None:
        for namespace, entry in batch:
            size = _size(entry)
            self.queued[namespace] -= size
            self.queued_total -= size
            if not self.queued[namespace]:
                del self.queued[namespace]
        self.handled += len(batch)
        self._handled_changed.set()

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
