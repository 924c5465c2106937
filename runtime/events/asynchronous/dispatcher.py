"""The dispatcher: reads the namespaces' streams, calls the functions (through the queue's
``Caller``), settles each event (success, retry, dead letter) in the transaction that acknowledges
it, and moves retries back to the streams when they are due. What it guarantees is said in the
package's docstring.

One dispatcher per key space: a starting dispatcher claims every pending entry of its streams,
including those another one is calling."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from redis.exceptions import RedisError, ResponseError

from runtime import metrics
from runtime.events.asynchronous.queue import Entry, Queue
from runtime.events.asynchronous.records import (
    DEAD_LETTER_CAP,
    EVENT_AGE_EXCEEDED,
    GROUP,
    RETRIES_EXHAUSTED,
    Event,
    Policy,
    dead_letter,
    error_of,
    text,
)

if TYPE_CHECKING:
    from redis.asyncio.client import Pipeline

    from runtime.http import Response

log = logging.getLogger(__name__)
READ_BLOCK_MS = 500  # a read waits so long for entries (a namespace new to the reader, at most so)
THROTTLE_CAP = 300  # a throttled event waits at most this many backoffs
# Moves the retries due by ARGV[1] to the stream; returns how many, and when the next is due ('').
_PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
for _, event in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'e', event)
  redis.call('ZREM', KEYS[1], event)
end
local next = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {#due, next[2] or ''}
"""
Write = Callable[["Pipeline"], object]


class Dispatcher:
    def __init__(self, queue: Queue, *, backoff: float, concurrency: int) -> None:
        """Runs ``queue``'s events through its caller. ``backoff``: seconds before the first
        retry; ``concurrency``: events dispatched at once."""
        self.queue, self.keys, self.caller = queue, queue.keys, queue.caller
        self.backoff, self.concurrency = backoff, concurrency
        self.namespace_share = max(1, concurrency // 2)
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.wanted: set[str] = set()  # namespaces whose streams to read
        self.ready: set[str] = set()  # ... whose group exists and whose pending entries are claimed
        self.held: set[tuple[str, str]] = set()  # entries read and not yet settled
        self.held_by: Counter[str] = Counter()  # per namespace
        self.slots: dict[tuple[str, str], tuple[int, asyncio.Semaphore]] = {}  # per function
        self.due: dict[str, float] = {}  # per namespace: when its next retry is due
        self.tasks: set[asyncio.Task[None]] = set()
        self.loops: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()  # a namespace to read, or room to read more
        self._due_changed = asyncio.Event()
        self._turn = 0
        self._restored = False
        if queue.client is not None:
            self._promote = queue.client.register_script(_PROMOTE)

    def watch(self, namespaces: set[str]) -> None:
        """Read these namespaces' streams too (``Runtime.apply`` names those with functions: an
        event is accepted only for an existing function)."""
        if namespaces - self.wanted:
            self.wanted |= namespaces
            self._changed.set()

    async def start(self, *, discover_every: float | None = None) -> None:
        """Start reading. ``discover_every``: for a dispatcher no one tells which namespaces to
        read (``watch``), look every so many seconds for those that had an event."""
        if self.queue.client is not None:
            loop = asyncio.get_running_loop()
            self.loops = [loop.create_task(self._read_forever()), loop.create_task(self._promote_forever())]
            if discover_every is not None:
                self.loops.append(loop.create_task(self._discover_forever(discover_every)))

    async def stop(self, grace: float = 5.0) -> None:
        """Stop reading; wait up to ``grace`` for the calls in flight to settle, then cancel the
        rest: their entries stay pending, for the next start to claim."""
        for task in self.loops:
            task.cancel()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=grace)
        for task in [*self.loops, *self.tasks]:
            task.cancel()
        await asyncio.gather(*self.loops, *self.tasks, return_exceptions=True)

    # -------------------------------------------------------------- reading

    async def _read_forever(self) -> None:
        failures = 0
        while True:
            try:
                await self._restore()
                await self._make_ready()
                batch = await self._read()
                failures = 0
            except RedisError as exc:
                failures += 1
                if failures == 1:
                    log.warning("asynchronous invocations: Redis is unavailable (%s): retrying", exc)
                self.ready.clear()  # claim again: a reply may have been lost with the connection
                await asyncio.sleep(min(5.0, 0.1 * 2**failures))
                continue
            except Exception:  # a bug must not stop every tenant's events: logged, and the loop goes on
                log.exception("asynchronous invocations: the reader failed: retrying")
                self.ready.clear()
                await asyncio.sleep(1.0)
                continue
            for namespace, entries in batch:
                for entry_id, fields in entries:
                    self._spawn(namespace, entry_id, fields)

    async def _restore(self) -> None:
        """Once: the namespaces of earlier runs, whose events (and retries) may be waiting."""
        if not self._restored:
            namespaces = await self._known()
            self.watch(namespaces)
            for namespace in namespaces:
                self._schedule(namespace, 0.0)
            self._restored = True

    async def _known(self) -> set[str]:
        """The namespaces that ever had an event (each accept adds its own)."""
        return {text(m) for m in await self.queue.redis_client().smembers(self.keys.namespaces)}

    async def _discover_forever(self, every: float) -> None:
        while True:
            with contextlib.suppress(RedisError):  # the reader reports an unavailable Redis
                self.watch(await self._known())
            await asyncio.sleep(every)

    async def _make_ready(self) -> None:
        """For each namespace new to the reader: its consumer group, and every pending entry (a
        dead consumer's, or ours that a lost reply never brought) claimed and dispatched."""
        client = self.queue.redis_client()
        for namespace in sorted(self.wanted - self.ready):
            queue = self.keys.queue(namespace)
            try:
                await client.xgroup_create(queue, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            start: bytes | str = "0-0"
            while True:
                start, entries, *_ = await client.xautoclaim(queue, GROUP, self.consumer, 0, start, count=100)
                for entry_id, fields in entries:
                    self._spawn(namespace, entry_id, fields)
                if text(start) == "0-0":
                    break
            for consumer in await client.xinfo_consumers(queue, GROUP):
                if text(consumer["name"]) != self.consumer and not consumer["pending"]:
                    await client.xgroup_delconsumer(queue, GROUP, consumer["name"])
            self.ready.add(namespace)

    async def _read(self) -> list[tuple[str, list[Entry]]]:
        """The next entries of the namespaces that have room, once there is room."""
        while not (chosen := self._choose()):
            self._changed.clear()
            await self._changed.wait()
            if self.wanted - self.ready:
                return []
        room = self.concurrency - len(self.held)
        count = max(1, min(room // len(chosen), *(self.namespace_share - self.held_by[ns] for ns in chosen)))
        by_key = {self.keys.queue(ns): ns for ns in chosen}
        streams: dict[Any, Any] = dict.fromkeys(by_key, ">")
        client = self.queue.redis_client()
        reply = cast(
            list[list[Any]] | None,
            await client.xreadgroup(GROUP, self.consumer, streams, count=count, block=READ_BLOCK_MS),
        )
        return [(by_key[text(key)], entries) for key, entries in reply or ()]

    def _choose(self) -> list[str]:
        """The namespaces to read next: those below their share, in turns, as many as there is
        room for."""
        room = self.concurrency - len(self.held)
        open_ = sorted(ns for ns in self.ready if self.held_by[ns] < self.namespace_share)
        if room <= 0 or not open_:
            return []
        self._turn = (self._turn + 1) % len(open_)
        return (open_[self._turn :] + open_[: self._turn])[:room]

    def _spawn(self, namespace: str, raw_id: bytes | str | None, fields: dict[bytes, bytes] | None) -> None:
        if raw_id is None:
            return  # an entry deleted while pending: Redis 6.2's XAUTOCLAIM may return one so
        entry_id = text(raw_id)
        key = (namespace, entry_id)
        if key in self.held:
            return  # already being dispatched (claimed again after a Redis error)
        self.held.add(key)
        self.held_by[namespace] += 1
        data = (fields or {}).get(b"e")
        task = asyncio.get_running_loop().create_task(self._dispatch(namespace, entry_id, data))
        self.tasks.add(task)
        task.add_done_callback(functools.partial(self._done, key))

    def _done(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.held.discard(key)
        self.held_by[key[0]] -= 1
        if self.held_by[key[0]] <= 0:
            del self.held_by[key[0]]
        self._changed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("asynchronous invocation %s of %s: left pending", key[1], key[0],
                      exc_info=task.exception())  # fmt: skip

    # -------------------------------------------------------------- dispatching

    async def _dispatch(self, namespace: str, entry_id: str, data: bytes | None) -> None:
        try:
            event = Event.decode(data)
        except ValueError as exc:
            log.error("asynchronous invocation %s of %s dropped: %s", entry_id, namespace, exc)
            await self._settle(namespace, entry_id)
            return
        policy = await self.caller.policy(namespace, event.function)
        response = await self._call(namespace, event, policy)
        if response is None:
            await self._dead_letter(namespace, entry_id, event, EVENT_AGE_EXCEEDED)
        elif response.status < 400:
            await self._settle(namespace, entry_id)
            metrics.observe_event(namespace, "async", "", event.function, "succeeded")
        elif response.status == 429:
            event.throttles += 1
            event.error = error_of(response)
            delay = self.backoff * min(2 ** min(event.throttles - 1, 16), THROTTLE_CAP)
            jittered = delay * random.uniform(0.5, 1.0)  # noqa: S311 - spreads retries, not security
            await self._retry(namespace, entry_id, event, jittered, "throttled")
        else:
            await self._failed(namespace, entry_id, event, policy, response)

    async def _call(self, namespace: str, event: Event, policy: Policy) -> Response | None:
        """The function's answer; None when the event is older than the function's maximum age
        (checked once it may call, which may be a while)."""
        async with await self._slot(namespace, event.function):
            if time.time() - event.accepted_at > policy.max_age:
                return None
            return await self.caller.call(namespace, event)

    async def _slot(self, namespace: str, function: str) -> asyncio.Semaphore:
        """The function's calls at once, as many as it takes (renewed when that changes)."""
        capacity = await self.caller.capacity(namespace, function)
        current = self.slots.get((namespace, function))
        if current is None or current[0] != capacity:
            current = self.slots[(namespace, function)] = (capacity, asyncio.Semaphore(capacity))
        return current[1]

    async def _failed(self, namespace: str, entry_id: str, event: Event, policy: Policy,
                      response: Response) -> None:  # fmt: skip
        event.attempts += 1
        event.error = error_of(response)
        tries = policy.retries + 1
        if event.attempts >= tries:
            await self._dead_letter(namespace, entry_id, event, RETRIES_EXHAUSTED)
            return
        delay = self.backoff * 2 ** (event.attempts - 1)
        await self._retry(namespace, entry_id, event, delay, "retried")
        message = (f"asynchronous invocation failed with status {response.status} (attempt {event.attempts} "
                   f"of {tries}): retrying in {delay:g} s")  # fmt: skip
        self.caller.note(namespace, event.function, event.request_id, message)

    async def _retry(self, namespace: str, entry_id: str, event: Event, delay: float, outcome: str) -> None:
        due, encoded, delayed = time.time() + delay, event.encode(), self.keys.delayed(namespace)
        await self._settle(namespace, entry_id, lambda pipe: pipe.zadd(delayed, {encoded: due}))
        self._schedule(namespace, due)
        metrics.observe_event(namespace, "async", "", event.function, outcome)

    async def _dead_letter(self, namespace: str, entry_id: str, event: Event, condition: str) -> None:
        record, dead = dead_letter(event, condition), self.keys.dead(namespace, event.function)
        await self._settle(
            namespace,
            entry_id,
            lambda pipe: pipe.xadd(dead, {"d": record}, maxlen=DEAD_LETTER_CAP, approximate=False),
        )
        expired = condition == EVENT_AGE_EXCEEDED
        metrics.observe_event(
            namespace, "async", "", event.function, "expired" if expired else "dead_lettered"
        )
        why = (f"outlived the function's maximum event age after {event.attempts} failed attempts" if expired
               else f"failed {event.attempts} times")  # fmt: skip
        message = f"asynchronous invocation {why}: dead-lettered"
        self.caller.note(namespace, event.function, event.request_id, message)

    async def _settle(self, namespace: str, entry_id: str, write: Write | None = None) -> None:
        """Acknowledge and delete the entry in one transaction with ``write`` (the outcome's
        record), retried until Redis takes it: until then the entry stays pending."""
        queue, delay = self.keys.queue(namespace), 0.1
        while True:
            try:
                async with self.queue.redis_client().pipeline(transaction=True) as pipe:
                    if write is not None:
                        write(pipe)
                    pipe.xack(queue, GROUP, entry_id)
                    pipe.xdel(queue, entry_id)
                    await pipe.execute()
                return
            except RedisError as exc:
                log.warning("asynchronous invocation %s of %s: cannot record its outcome yet: %s",
                            entry_id, namespace, exc)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)

    # -------------------------------------------------------------- retries

    def _schedule(self, namespace: str, due: float) -> None:
        self.due[namespace] = min(self.due.get(namespace, due), due)
        self._due_changed.set()

    async def _promote_forever(self) -> None:
        """Move each namespace's retries to its stream when they are due."""
        while True:
            now = time.time()
            for namespace in [ns for ns, due in self.due.items() if due <= now]:
                del self.due[namespace]  # a retry scheduled meanwhile sets it again
                following = await self._promote_due(namespace, now)
                if following is not None:
                    self._schedule(namespace, following)
            self._due_changed.clear()
            wait = min(self.due.values(), default=time.time() + 60.0) - time.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._due_changed.wait(), max(0.0, wait))

    async def _promote_due(self, namespace: str, now: float) -> float | None:
        """Move the namespace's retries due by ``now``; when the next one is due (None: none)."""
        keys = [self.keys.delayed(namespace), self.keys.queue(namespace)]
        try:
            _, following = await self._promote(keys=keys, args=[now], client=self.queue.redis_client())
        except RedisError as exc:
            log.warning("asynchronous invocations of %s: cannot move retries yet: %s", namespace, exc)
            return now + 1.0
        return float(following) if following else None
