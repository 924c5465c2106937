"""The live hub with a real Redis and channel layer: one poll per topic and tick across
processes (two hubs stand for two processes), fan-out to every subscriber, fallback without
Redis, and log batches routed by filter."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dataplane.backends.base import LogRecord
from metrics.hub import Hub, LogFilter, MetricsTopic

pytestmark = pytest.mark.django_db

TOPIC = MetricsTopic("t_acme", "faas-acme", "hello", 1, "5m")


class Collector:
    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    def deliver(self, frame: str) -> None:
        self.frames.append(json.loads(frame))


def _counting_poll() -> tuple[Any, list[float]]:
    calls: list[float] = []

    def poll(topic: MetricsTopic) -> dict[str, Any]:
        calls.append(time.time())
        return {"n": len(calls), "function": topic.function}

    return poll, calls


def _no_tail(namespace: str, stop: threading.Event, since: float) -> Iterator[list[LogRecord]]:
    yield from ()


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_two_processes_poll_once_per_tick_and_both_fan_out() -> None:
    poll, calls = _counting_poll()
    first, second = Hub(poll=poll, tail=_no_tail), Hub(poll=poll, tail=_no_tail)
    a, b, c = Collector(), Collector(), Collector()
    await first.subscribe_metrics(TOPIC, a)
    await first.subscribe_metrics(TOPIC, b)
    await second.subscribe_metrics(TOPIC, c)
    try:
        await _until(lambda: len(c.frames) >= 3 and len(a.frames) >= 3)
    finally:
        for hub, subscriber in ((first, a), (first, b), (second, c)):
            await hub.unsubscribe_metrics(TOPIC, subscriber)
    ticks = {int(t) for t in calls}
    assert len(calls) == len(ticks)  # one poll per second, whatever the number of hubs
    numbers = [frame["data"]["n"] for frame in a.frames]
    assert numbers == sorted(set(numbers))  # each frame once, in order
    assert [f["data"]["n"] for f in b.frames] == numbers
    seen_by_second = {f["data"]["n"] for f in c.frames}
    assert len(seen_by_second & set(numbers)) >= 2  # the same published frames reach both processes
    assert all(f["key"] == "metrics:hello:1:5m" and f["type"] == "metrics" for f in a.frames + c.frames)


async def test_the_last_subscriber_leaving_stops_the_poll() -> None:
    poll, calls = _counting_poll()
    hub, subscriber = Hub(poll=poll, tail=_no_tail), Collector()
    await hub.subscribe_metrics(TOPIC, subscriber)
    await _until(lambda: len(subscriber.frames) >= 1)
    await hub.unsubscribe_metrics(TOPIC, subscriber)
    polled = len(calls)
    await asyncio.sleep(2.2)
    assert len(calls) == polled
    assert hub.metrics == {}


async def test_a_late_subscriber_gets_the_last_frame_at_once() -> None:
    poll, _ = _counting_poll()
    hub, early, late = Hub(poll=poll, tail=_no_tail), Collector(), Collector()
    await hub.subscribe_metrics(TOPIC, early)
    try:
        await _until(lambda: len(early.frames) >= 1)
        await hub.subscribe_metrics(TOPIC, late)
        assert late.frames[:1] == early.frames[-1:]
    finally:
        await hub.unsubscribe_metrics(TOPIC, early)
        await hub.unsubscribe_metrics(TOPIC, late)


async def test_without_redis_each_process_polls_for_itself(settings: Any) -> None:
    settings.LIVE_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    poll, _ = _counting_poll()
    hub, subscriber = Hub(poll=poll, tail=_no_tail), Collector()
    await hub.subscribe_metrics(TOPIC, subscriber)
    try:
        await _until(lambda: len(subscriber.frames) >= 2)
    finally:
        await hub.unsubscribe_metrics(TOPIC, subscriber)
    assert [f["data"]["n"] for f in subscriber.frames][:2] == [1, 2]


async def test_an_unavailable_prometheus_is_a_frame_with_the_error_shape() -> None:
    from metrics.prometheus import MetricsUnavailable

    def failing(topic: MetricsTopic) -> dict[str, Any]:
        raise MetricsUnavailable("Prometheus is unreachable (ConnectionError).")

    hub, subscriber = Hub(poll=failing, tail=_no_tail), Collector()
    await hub.subscribe_metrics(TOPIC, subscriber)
    try:
        await _until(lambda: len(subscriber.frames) >= 1)
    finally:
        await hub.unsubscribe_metrics(TOPIC, subscriber)
    frame = subscriber.frames[0]
    message = "Prometheus is unreachable (ConnectionError)."
    assert frame["error"] == {"code": "metrics_unavailable", "message": message, "detail": None}
    assert "data" not in frame


def _record(function: str, message: str, stream: str = "stdout") -> LogRecord:
    return LogRecord(time.time(), "faas-acme", function, "req-1", stream, message, id="1-0")


async def test_log_batches_reach_the_subscribers_whose_filter_matches() -> None:
    batches: list[list[LogRecord]] = [[
        _record("hello-v1", "from v1"), _record("hello-draft", "from the draft", "stderr"),
        _record("other-v1", "another function"),
    ]]  # fmt: skip
    started = threading.Event()

    def tail(namespace: str, stop: threading.Event, since: float) -> Iterator[list[LogRecord]]:
        assert namespace == "faas-acme"
        started.set()
        while not stop.is_set():
            yield batches.pop() if batches else []
            stop.wait(0.05)

    hub = Hub(poll=_counting_poll()[0], tail=tail)
    everything, hello, v1, errors = Collector(), Collector(), Collector(), Collector()
    filters = {
        everything: LogFilter("t_acme", "faas-acme"),
        hello: LogFilter("t_acme", "faas-acme", "hello"),
        v1: LogFilter("t_acme", "faas-acme", "hello", "hello-v1"),
        errors: LogFilter("t_acme", "faas-acme", stream="stderr"),
    }
    for subscriber, log_filter in filters.items():
        await hub.subscribe_logs(log_filter, subscriber)
    await _until(lambda: len(everything.frames) == 1)
    for subscriber, log_filter in filters.items():
        await hub.unsubscribe_logs(log_filter, subscriber)

    def messages(collector: Collector) -> list[str]:
        return [r["message"] for frame in collector.frames for r in frame["records"]]

    assert messages(everything) == ["from v1", "from the draft", "another function"]
    assert messages(hello) == ["from v1", "from the draft"]
    assert messages(v1) == ["from v1"]
    assert messages(errors) == ["from the draft"]
    assert hello.frames[0]["key"] == "logs:hello:*:*"
    assert hello.frames[0]["records"][0] | {"time": 0} == {
        "id": "1-0", "time": 0, "function": "hello", "version": "v1", "request_id": "req-1",
        "stream": "stdout", "message": "from v1",
    }  # fmt: skip
    assert hub.logs == {}


class SwallowingLayer:
    """A channel layer whose receive turns its cancellation into a TimeoutError, as redis-py
    does when a cancellation meets its own read timeout."""

    def __init__(self) -> None:
        self.receiving = asyncio.Event()

    async def new_channel(self) -> str:
        return "specific.test!1"

    async def receive(self, channel: str) -> dict[str, Any]:
        self.receiving.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise TimeoutError("Timeout reading from redis") from None
        raise AssertionError("unreachable")

    async def group_add(self, group: str, channel: str) -> None:
        pass

    async def group_discard(self, group: str, channel: str) -> None:
        pass

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        pass


async def test_stopping_ends_the_receive_loop_even_when_its_cancellation_is_swallowed() -> None:
    hub, subscriber = Hub(poll=_counting_poll()[0], tail=_no_tail), Collector()
    layer = hub.layer = SwallowingLayer()
    await hub.subscribe_metrics(TOPIC, subscriber)
    receiver = hub._receiver
    assert receiver is not None
    await asyncio.wait_for(layer.receiving.wait(), timeout=10)
    await hub.unsubscribe_metrics(TOPIC, subscriber)
    assert receiver.done()  # it saw the hub stop receiving, instead of retrying forever
    assert (hub._receiver, hub.channel) == (None, None)
