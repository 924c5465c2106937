"""Live streams fanned out in each process: one upstream per topic, however many subscribers.

- **Metrics**: one Prometheus poll per (tenant, function, interval, range) across all of the
  portal's processes. At each tick the process holding the topic's Redis lease polls and
  publishes the frame to the topic's channel-layer group, whose members are the processes' hubs
  (one member per process, not per browser); each hub hands the same serialized frame to its
  local subscribers. A lease outlives its holder by at most two intervals, then a process with
  subscribers takes over. When Redis is unreachable, each process polls for itself and
  delivers locally, so a Redis restart pauses nothing.
- **Logs**: each process tails a namespace's log store (``backend.tail_logs``) in one thread
  while anyone there watches, and hands each batch to the subscribers whose filter matches.

Subscribers never block the hub: ``deliver`` queues a frame or drops it for a client too slow.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from channels.layers import get_channel_layer
from django.conf import settings

from core import notifier
from dataplane.backends.base import LogQuery, LogRecord
from metrics.logs import log_record_json
from metrics.prometheus import MetricsUnavailable

log = logging.getLogger(__name__)
# Polls wait on Prometheus: their own few threads, so that a slow Prometheus never holds up the
# threads every other async-to-sync call of the process needs (database queries among them).
POLLS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="live-poll")
LEASE_PREFIX = "portal:live:lease:"
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class Subscriber(Protocol):
    def deliver(self, frame: str) -> None:
        """Queue ``frame`` for the client; never blocks."""


@dataclass(frozen=True)
class MetricsTopic:
    schema: str
    namespace: str
    function: str
    interval_s: int
    range: str
    born: float = 0.0  # the tenant's creation: nothing before it counts (metrics/selectors.py)
    by: str = ""  # "version" or "alias": frames also carry a point per line (metrics/live.py)
    # by alias: each alias and its triggers' routes (selectors.AliasRoutes), read at subscription
    routes: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def key(self) -> str:
        """What the client sees in each frame. Subscriptions that saw different triggers are
        different topics: the routes' digest keeps their groups apart."""
        key = f"metrics:{self.function}:{self.interval_s}:{self.range}"
        if self.by:
            key += f":{self.by}"
        if self.routes:
            key += ":" + hashlib.blake2s(repr(self.routes).encode(), digest_size=4).hexdigest()
        return key

    @property
    def group(self) -> str:
        return notifier.metrics_group(self.schema, self.key)


@dataclass(frozen=True)
class LogFilter:
    schema: str
    namespace: str
    function: str | None = None
    fission_name: str | None = None
    stream: str | None = None
    request_prefix: str | None = None  # the requests whose id starts with it

    @property
    def key(self) -> str:
        """``logs:<function>:<version>:<stream>`` (``*`` for any), then ``:request=<prefix>`` when
        one is given: last, since a request id may hold any character the others cannot."""
        parts = (self.function, self.fission_name, self.stream)
        key = "logs:" + ":".join(part or "*" for part in parts)
        return key + f":request={self.request_prefix}" if self.request_prefix else key

    def matches(self, record: LogRecord) -> bool:
        query = LogQuery(function=self.function, fission_name=self.fission_name, stream=self.stream,
                         request_prefix=self.request_prefix)  # fmt: skip
        return query.matches(record)


Poll = Callable[[MetricsTopic], dict[str, Any]]
TailFactory = Callable[[str, threading.Event, float], Iterator[list[LogRecord]]]


class Hub:
    def __init__(self, *, poll: Poll, tail: TailFactory) -> None:
        self.poll = poll
        self.tail = tail
        self.metrics: dict[MetricsTopic, _MetricsFeed] = {}
        self._by_group: dict[str, _MetricsFeed] = {}
        self.logs: dict[tuple[str, str], _LogFeed] = {}
        self.channel: str | None = None
        self.layer = get_channel_layer()
        self.redis = aioredis.Redis.from_url(
            settings.LIVE_REDIS_URL, socket_timeout=2, socket_connect_timeout=2
        )
        self._receiver: asyncio.Task[None] | None = None

    # -- metrics ------------------------------------------------------------------------------

    async def subscribe_metrics(self, topic: MetricsTopic, subscriber: Subscriber) -> None:
        await self._ensure_channel()
        feed = self.metrics.get(topic)
        if feed is None:
            feed = self.metrics[topic] = self._by_group[topic.group] = _MetricsFeed(self, topic)
            feed.start()
        feed.subscribers.add(subscriber)
        if feed.last_frame is not None:
            subscriber.deliver(feed.last_frame)  # a new page need not wait for the next tick

    async def unsubscribe_metrics(self, topic: MetricsTopic, subscriber: Subscriber) -> None:
        feed = self.metrics.get(topic)
        if feed is None:
            return
        feed.subscribers.discard(subscriber)
        if not feed.subscribers:
            del self.metrics[topic], self._by_group[topic.group]
            await feed.stop()
        if not self.metrics:
            await self._stop_receiving()

    async def _stop_receiving(self) -> None:
        """Nothing to receive any more: end the receive loop (it holds the channel layer's
        receive lock) until a metrics topic is watched again."""
        receiver, self._receiver, self.channel = self._receiver, None, None
        if receiver is not None:
            await _end(receiver)

    async def _ensure_channel(self) -> None:
        if self.channel is None and self.layer is not None:
            # The default prefix: channels_redis receives every channel of a process through one
            # real channel ("specific.<client>!"), so a channel of another prefix would never be read.
            self.channel = channel = await self.layer.new_channel()
            self._receiver = asyncio.get_running_loop().create_task(self._receive_forever(channel))

    async def _receive_forever(self, channel: str) -> None:
        """Frames published by whichever process polls, for the topics this process watches;
        until the hub stops receiving on ``channel`` (checked on every turn, as well as by
        cancellation, which redis-py may turn into a TimeoutError)."""
        pause = 0.1
        assert self.layer is not None
        while self.channel == channel:
            try:
                message = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis away: the feeds poll and deliver locally meanwhile
                if self.channel != channel:
                    return
                log.warning("the live hub cannot receive; retrying in %.1f s", pause, exc_info=True)
                await asyncio.sleep(pause)
                pause = min(5.0, pause * 2)
                continue
            pause = 0.1
            feed = self._by_group.get(str(message.get("group")))
            if feed is not None:
                feed.fan_out(str(message.get("frame", "")))

    # -- logs ---------------------------------------------------------------------------------

    async def subscribe_logs(self, log_filter: LogFilter, subscriber: Subscriber) -> None:
        where = (log_filter.schema, log_filter.namespace)
        feed = self.logs.get(where)
        if feed is None:
            feed = self.logs[where] = _LogFeed(self, log_filter.namespace, since=time.time())
            feed.start(asyncio.get_running_loop())
        feed.filters.setdefault(log_filter, set()).add(subscriber)

    async def unsubscribe_logs(self, log_filter: LogFilter, subscriber: Subscriber) -> None:
        where = (log_filter.schema, log_filter.namespace)
        feed = self.logs.get(where)
        if feed is None:
            return
        subscribers = feed.filters.get(log_filter, set())
        subscribers.discard(subscriber)
        if not subscribers:
            feed.filters.pop(log_filter, None)
        if not feed.filters:
            del self.logs[where]
            feed.stop()


class _MetricsFeed:
    def __init__(self, hub: Hub, topic: MetricsTopic) -> None:
        self.hub = hub
        self.topic = topic
        self.subscribers: set[Subscriber] = set()
        self.last_frame: str | None = None
        self.token = uuid.uuid4().hex
        self.task: asyncio.Task[None] | None = None
        self.stopped = False

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self.stopped = True
        if self.task is not None:
            await _end(self.task)
        with contextlib.suppress(Exception):  # best effort: the lease expires anyway
            await self.hub.redis.eval(_RELEASE, 1, LEASE_PREFIX + self.topic.group, self.token)
        channel = self.hub.channel
        if self.hub.layer is None or channel is None or self.topic.group in self.hub._by_group:
            return  # a new feed of the same topic took over meanwhile: its membership stays
        with contextlib.suppress(Exception):  # a stale membership only costs a dropped message
            await self.hub.layer.group_discard(self.topic.group, channel)

    def fan_out(self, frame: str) -> None:
        self.last_frame = frame
        for subscriber in list(self.subscribers):
            subscriber.deliver(frame)

    async def _run(self) -> None:
        """Tick on wall-clock multiples of the interval, so every process ticks together, until
        stopped (the flag as well as cancellation: redis-py may turn a cancellation into a
        TimeoutError, which would otherwise look like one failed tick)."""
        while not self.stopped:
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug or an outage in one tick must not end the stream
                if self.stopped:
                    return
                log.exception("live metrics tick failed for %s", self.topic.group)
            interval = self.topic.interval_s
            await asyncio.sleep(interval - time.time() % interval)

    async def _tick(self) -> None:
        leader = await self._lead()
        if leader is False:
            return
        frame = await self._poll()
        if leader and await self._publish(frame):
            return
        self.fan_out(frame)  # Redis is away: this process serves its own subscribers

    async def _lead(self) -> bool | None:
        """True: this process polls and publishes; False: another one does; None: Redis is
        unreachable, so poll and deliver locally. Joins the topic's group on every tick (a
        restarted Redis forgets groups)."""
        ttl_ms = (2 * self.topic.interval_s + 1) * 1000
        try:
            if self.hub.layer is not None and self.hub.channel is not None:
                await self.hub.layer.group_add(self.topic.group, self.hub.channel)
            held = await self.hub.redis.eval(_ACQUIRE, 1, LEASE_PREFIX + self.topic.group, self.token, ttl_ms)
        except Exception:  # noqa: BLE001 - any Redis failure means "on our own"
            return None
        return bool(held)

    async def _poll(self) -> str:
        body: dict[str, Any] = {"type": "metrics", "key": self.topic.key}
        try:
            loop = asyncio.get_running_loop()
            body["data"] = await loop.run_in_executor(POLLS, self.hub.poll, self.topic)
        except MetricsUnavailable as exc:
            body["error"] = {"code": exc.code, "message": exc.message, "detail": None}
        body["at"] = time.time()  # when it leaves: the bench measures delivery from here
        return json.dumps(body, separators=(",", ":"))

    async def _publish(self, frame: str) -> bool:
        if self.hub.layer is None:
            return False
        try:
            message = {"type": "live.frame", "group": self.topic.group, "frame": frame}
            await self.hub.layer.group_send(self.topic.group, message)
        except Exception:  # noqa: BLE001
            return False
        return True


class _LogFeed:
    def __init__(self, hub: Hub, namespace: str, *, since: float) -> None:
        self.hub = hub
        self.namespace = namespace
        self.since = since  # from the first subscription on: a line printed right after it counts
        self.filters: dict[LogFilter, set[Subscriber]] = {}
        self.stopping = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        threading.Thread(target=self._pump, name=f"log-tail-{self.namespace}", daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()

    def _pump(self) -> None:
        """Runs in its own thread: the backends' tails block (XREAD, pods/log follow)."""
        while not self.stopping.is_set():
            try:
                for batch in self.hub.tail(self.namespace, self.stopping, self.since):
                    if batch and self.loop is not None and not self.stopping.is_set():
                        self.since = batch[-1].time
                        self.loop.call_soon_threadsafe(self.dispatch, batch)
            except Exception:
                log.exception("log tail of %s failed; starting it again", self.namespace)
            self.stopping.wait(1.0)

    def dispatch(self, batch: list[LogRecord]) -> None:
        for log_filter, subscribers in list(self.filters.items()):
            records = [log_record_json(r) for r in batch if log_filter.matches(r)]
            if not records:
                continue
            body = {"type": "logs", "key": log_filter.key, "records": records}
            frame = json.dumps(body, separators=(",", ":"))
            for subscriber in list(subscribers):
                subscriber.deliver(frame)


async def _end(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it, but never forever: a task whose cancellation was
    swallowed ends by its own stop flag, and the caller must not hang meanwhile."""
    task.cancel()
    await asyncio.wait([task], timeout=10)
    if task.done() and not task.cancelled() and task.exception() is not None:
        log.warning("a live task ended with an error", exc_info=task.exception())
