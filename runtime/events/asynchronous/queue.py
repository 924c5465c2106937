"""The side the router and the control API call: accept an event, list, redrive and purge dead
letters. Every answer is immediate; the dispatcher (``dispatcher``) runs the events. Which
functions exist, and where a line about an invocation goes, is the ``Caller``'s to say."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from runtime import metrics
from runtime.errors import NotFound
from runtime.events.asynchronous.records import (
    AsyncUnavailable,
    Event,
    Keys,
    QueueFull,
    dead_letter_event,
    dead_letter_view,
    text,
)

if TYPE_CHECKING:
    from runtime.events.asynchronous.caller import Caller

log = logging.getLogger(__name__)
Entry = tuple[bytes | str | None, dict[Any, Any] | None]  # a stream entry: id, fields (None: deleted)

# Appends an event unless its namespace holds ARGV[1] already (queued, running or waiting).
_ACCEPT = """
if redis.call('XLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[1]) then return false end
redis.call('SADD', KEYS[3], ARGV[2])
return redis.call('XADD', KEYS[1], '*', 'e', ARGV[3])
"""
# Queues a dead letter's new event and removes it, once: 1, 0 when it is gone, -1 when full.
_REDRIVE = """
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then return 0 end
if redis.call('XLEN', KEYS[2]) + redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[2]) then return -1 end
redis.call('SADD', KEYS[4], ARGV[3])
redis.call('XADD', KEYS[2], '*', 'e', ARGV[4])
redis.call('XDEL', KEYS[1], ARGV[1])
return 1
"""


@dataclass
class Redrive:
    redriven: list[dict[str, str]] = field(default_factory=list)  # {"id": dead letter, "requestId": new}
    not_found: list[str] = field(default_factory=list)
    full: bool = False  # the namespace's queue filled up: the rest stay dead letters


class Queue:
    def __init__(self, redis_url: str | None, keys: Keys, caller: Caller, *, limit: int) -> None:
        """``caller``: the functions the events are for; ``limit``: the events a namespace may
        hold (queued, running or waiting for a retry)."""
        # A Redis that stops answering fails a request within 10 s (a read blocks for 0.5 s at most).
        self.client = (
            redis.Redis.from_url(redis_url, socket_connect_timeout=5, socket_timeout=10)
            if redis_url
            else None
        )
        self.keys, self.caller, self.limit = keys, caller, limit
        if self.client is not None:
            self._accept = self.client.register_script(_ACCEPT)
            self._redrive = self.client.register_script(_REDRIVE)

    def redis_client(self) -> redis.Redis:
        """The client; AsyncUnavailable when the runtime has no Redis."""
        if self.client is None:
            raise AsyncUnavailable("asynchronous invocation needs Redis: the runtime has no REDIS_URL")
        return self.client

    @contextlib.contextmanager
    def _answering(self) -> Iterator[None]:
        try:
            yield
        except RedisError as exc:
            log.warning("asynchronous invocation: Redis is unavailable: %s", exc)
            raise AsyncUnavailable("asynchronous invocation is unavailable: Redis is unreachable") from None

    async def _require_function(self, namespace: str, function: str) -> None:
        if not await self.caller.exists(namespace, function):
            raise NotFound(f"function {namespace}/{function} not found")

    async def accept(self, namespace: str, event: Event) -> None:
        """Queue ``event`` for ``namespace``. Raises NotFound (no such function), AsyncUnavailable
        (no Redis) or QueueFull (the namespace holds ``limit`` events)."""
        client = self.redis_client()
        await self._require_function(namespace, event.function)
        keys = [self.keys.queue(namespace), self.keys.delayed(namespace), self.keys.namespaces]
        with self._answering():
            added = await self._accept(keys=keys, args=[self.limit, namespace, event.encode()], client=client)
        if added is None:
            metrics.observe_event(namespace, "async", "", event.function, "refused")
            raise QueueFull(
                f"the namespace has {self.limit} asynchronous invocations queued: try again later"
            )
        metrics.observe_event(namespace, "async", "", event.function, "accepted")

    async def dead_letters(self, namespace: str, function: str, limit: int,
                           cursor: str | None) -> tuple[list[dict[str, Any]], str | None, int]:  # fmt: skip
        """A page of the function's dead letters, newest first, after ``cursor`` (a dead letter's
        id); with the cursor of the next page (None on the last) and how many there are."""
        client, key = self.redis_client(), self.keys.dead(namespace, function)
        with self._answering():
            async with client.pipeline(transaction=False) as pipe:
                pipe.xrevrange(key, "+" if cursor is None else "(" + cursor, "-", count=limit + 1)
                pipe.xlen(key)
                entries, total = await pipe.execute()
        page = [self._view(namespace, entry_id, fields) for entry_id, fields in entries[:limit]]
        following = text(entries[limit - 1][0]) if len(entries) > limit else None
        return [item for item in page if item is not None], following, int(total)

    async def dead_letter(self, namespace: str, function: str, entry_id: str) -> dict[str, Any]:
        """One dead letter; NotFound when the function has no such one."""
        with self._answering():
            entries = await self.redis_client().xrange(
                self.keys.dead(namespace, function), entry_id, entry_id
            )
        view = self._view(namespace, entries[0][0], entries[0][1]) if entries else None
        if view is None:
            raise NotFound(f"dead letter {entry_id} of function {namespace}/{function} not found")
        return view

    def _view(self, namespace: str, entry_id: Any, fields: Any) -> dict[str, Any] | None:
        try:
            return dead_letter_view(namespace, text(entry_id), fields.get(b"d"))
        except ValueError as exc:
            log.error("dead letter %s of %s: %s", text(entry_id), namespace, exc)
            return None

    async def redrive(self, namespace: str, function: str, ids: list[str] | None, target: str) -> Redrive:
        """Queue the function's dead letters (``ids``, else all, oldest first) again, as new events
        for ``target`` (a function of the same namespace; NotFound when there is none). Each is
        removed from the list as it is queued, at most once however often this runs. Stops when
        the namespace's queue is full (``Redrive.full``)."""
        client, dead = self.redis_client(), self.keys.dead(namespace, function)
        await self._require_function(namespace, target)
        result = Redrive()
        with self._answering():
            async for entry_id, fields in self._dead_entries(client, dead, ids, result):
                if entry_id is None:
                    continue
                if await self._move(client, namespace, dead, text(entry_id), fields, target, result) < 0:
                    result.full = True
                    break
        return result

    async def _dead_entries(
        self, client: redis.Redis, dead: str, ids: list[str] | None, result: Redrive
    ) -> AsyncIterator[Entry]:
        """The dead letters of ``ids`` that exist (the others noted in ``result``), else every
        one, oldest first, a page at a time."""
        if ids is not None:
            for entry_id in ids:
                found = await client.xrange(dead, entry_id, entry_id)
                if found:
                    yield found[0]
                else:
                    result.not_found.append(entry_id)
            return
        after = "-"
        while page := await client.xrange(dead, after, "+", count=100):
            for entry in page:
                yield entry
            after = "(" + text(page[-1][0] or "")

    async def _move(self, client: redis.Redis, namespace: str, dead: str, entry_id: str,
                    fields: dict[bytes, bytes] | None, target: str, result: Redrive) -> int:  # fmt: skip
        try:
            old = dead_letter_event((fields or {}).get(b"d"))
        except ValueError:
            result.not_found.append(entry_id)  # unreadable: nothing to queue
            return 0
        event = old.redriven(target)
        keys = [dead, self.keys.queue(namespace), self.keys.delayed(namespace), self.keys.namespaces]
        args: list[str | int] = [entry_id, self.limit, namespace, event.encode()]
        moved = int(await self._redrive(keys=keys, args=args, client=client))
        if moved > 0:
            result.redriven.append({"id": entry_id, "requestId": event.request_id})
            metrics.observe_event(namespace, "async", "", target, "redriven")
            message = f"asynchronous invocation redrives {old.request_id} (dead letter {entry_id})"
            self.caller.note(namespace, target, event.request_id, message)
        elif moved == 0:
            result.not_found.append(entry_id)
        return moved

    async def purge(self, namespace: str, function: str, ids: list[str] | None) -> int:
        """Delete the function's dead letters (``ids``, else all); returns how many were."""
        client, dead = self.redis_client(), self.keys.dead(namespace, function)
        with self._answering():
            if ids is not None:
                return int(await client.xdel(dead, *ids)) if ids else 0
            async with client.pipeline(transaction=True) as pipe:
                pipe.xlen(dead)
                pipe.delete(dead)
                count, _ = await pipe.execute()
        return int(count)

    async def known_namespaces(self) -> set[str]:
        """The namespaces that ever had an event (empty without Redis)."""
        if self.client is None:
            return set()
        with self._answering():
            return {text(name) for name in await self.client.smembers(self.keys.namespaces)}

    async def drop_namespace(self, namespace: str) -> int:
        """Delete everything of a namespace that is gone (a deleted tenant): its queue, its retries
        and every function's dead letters, so that nothing of it reaches a namespace made later
        under the same name. Returns how many keys went."""
        client = self.redis_client()
        with self._answering():
            keys = [self.keys.queue(namespace), self.keys.delayed(namespace)]
            keys += [key async for key in client.scan_iter(match=self.keys.dead(namespace, "*"), count=500)]
            deleted = int(await client.delete(*keys))
            await client.srem(self.keys.namespaces, namespace)
        return deleted

    async def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(RedisError):
                await self.client.aclose()
