"""Benchmark of the local runtime's event sources (not a test): time triggers, message-queue
triggers on NATS JetStream, RabbitMQ and Redis, and asynchronous invocation, each compared with
plain HTTP calls through the router to the same function, measured in the same run.

One sandboxed runtime (as the product runs), its own embedded Redis (logs, asynchronous queue),
and one function, ``hello``, that prints the moment it starts (``time.time()`` inside the sandbox,
the host's clock) and answers its request body, or ``hello, world`` when there is none. Every
figure below that says "start" is that printed moment, read back from the runtime's log stream
``runtime:logs:<namespace>`` by the call's request id. Each round measures, in an order that
rotates from round to round (these machines are shared and noisy: only figures of one run compare):

- ``router``: wrk, GET, 32 connections, ``DURATION``: the reference, ``router_rps_ref``.
- ``async_accept``: wrk (a Lua script: POST with ``X-Faas-Invocation-Type: Event``), 32
  connections, ``DURATION``: 202s per second, while the dispatcher runs the accepted events as
  the product does (the queue limit is raised for it: ``RUNTIME_ASYNC_QUEUE_LIMIT``); then the
  backlog is drained before anything else is measured (``async_drain_per_s``: events accepted /
  the time from the first accept until the runtime's metrics count as many succeeded).
- ``async_latency``: ``PACED`` events one after the other at ``RATE``/s (well below saturation);
  start latency = the function's start minus the moment the client sent the POST (so it includes
  the accept round trip, ``async_accept_rtt_p50_ms``).
- ``nats``: ``MESSAGES`` published at once (plain publishes, which the stream stores: a cheap
  client, as wrk is for the router); msgs/s = messages / (last response on the response subject -
  first publish). ``nats_latency``: ``PACED`` JetStream publishes at ``RATE``/s, each carrying its
  publish time; latency = its response's arrival (a core NATS subscription on the response
  subject) minus that time.
- ``rabbitmq``, ``redis``: as ``nats`` (msgs/s only): publishes without confirms to the queue /
  one RPUSH to the list, responses read from the response queue / list.
- ``cron``: ``TIMERS`` TimeTriggers ``@every 1s``, ``CRON_SECONDS`` / rounds whole ticks of the
  steady state each round (``measure_cron`` says which). Jitter, as the issue defines it: the fire
  time minus the scheduled second, where the fire time is the moment the runtime starts the
  trigger's call (``lateMs`` in its log line of each fire, taken in ``runtime.events.timers`` as
  the call begins: the request is written to the worker in that same step when one is free).
  Shown too, with no target: the function's start minus the tick (``start_jitter``, matched by
  request id), each tick's first start, and its last start minus its first. Every trigger fires
  on the same whole second (as in Fission, whose robfig/cron rounds ``@every`` to the second), so
  each tick is a burst of ``TIMERS`` calls at once: the start of the last waits for the CPU the
  ninety-nine before it take on this machine's cores.

The message-queue consumers run with ``concurrent: 32`` (the router reference's concurrency).
Figures: the median over rounds, with the range of the round figures; latencies: percentiles
over every sample of every round, with the range of the round percentiles. CPU steal during the
run is reported, and the CPU that the machine, this script (its clients), the runtime's process
and the namespace's workers used during each measurement. Targets (PASS/FAIL, never asserted): cron jitter p99 <= 20 ms; NATS msgs/s >=
0.5 x router_rps_ref with latency p99 <= 50 ms; async accept >= 1.0 x router_rps_ref with start
latency p50 <= 5 ms. A broker that is not running on its standard loopback port is left out (its
figures are null). Run with ``make bench`` (or ``.venv/bin/python bench/events.py [--rounds N]``);
prints a table, then one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import aio_pika
import httpx
import nats
import redis
import redis.asyncio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.runtime import cpu_times, percentile, steal_since
from portal import embedded
from runtime.logs import stream_name
from testsupport.fission import environment, function, httptrigger, package_literal
from testsupport.runtime import TOKEN, RuntimeProcess

NS = "faas-bench"
ROOT = "/bench"
PATH = f"{ROOT}/hello"
HELLO = """import time

from flask import request


def main():
    started = time.time()
    print(f"start {started:.6f}")
    return request.get_data() or "hello, world"
"""
CONNECTIONS = 32
DURATION = "4s"
MESSAGES = 2000  # per broker and round
PACED = 300  # latency samples per round (async, NATS), sent one after the other ...
RATE = 100.0  # ... at this many per second
TIMERS = 100
CRON_SECONDS = 30  # in all, split over the rounds
TIMEOUT = 120.0  # for anything that should take seconds
BROKERS = {"nats-jetstream": 4222, "rabbitmq": 5672, "redis": 6379}
NATS_URL = "nats://127.0.0.1:4222"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
AMQP_SECRET_NAME = "bench-amqp"  # noqa: S105 - the name of the Secret holding the AMQP URL
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EVENT = {"X-Faas-Invocation-Type": "Event"}
ASYNC_SCRIPT = """wrk.method = "POST"
wrk.body = '{"bench": "async"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Faas-Invocation-Type"] = "Event"
"""
FIRE = re.compile(
    r"timer (?P<ns>\S+)/(?P<trigger>\S+) fired \S+ for tick (?P<tick>\S+): status (?P<status>\d+) "
    r"in [\d.]+ ms, (?P<late>-?[\d.]+) ms late, request id (?P<rid>\S+)"
)


# -- helpers ----------------------------------------------------------------------------------------


def ms(seconds: float) -> float:
    return seconds * 1000


def wrk(url: str, script: Path | None = None) -> dict[str, float]:
    """wrk at ``CONNECTIONS``: requests per second and p50/p99 latency (ms). Exits on any answer
    that is not 2xx (a figure with refusals in it means nothing)."""
    command = ["wrk", "-t", "1", "-c", str(CONNECTIONS), "-d", DURATION, "--latency", url]
    if script is not None:
        command[1:1] = ["-s", str(script)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout

    def latency(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        assert match, out
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"wrk saw {errors.group(1)} error responses from {url}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return {"rps": rps, "p50": latency("50"), "p99": latency("99"), "count": total}


def counter(runtime: RuntimeProcess, name: str, **labels: str) -> float:
    """The sum of every series of ``name`` that has these labels (0 when there is none)."""
    text = runtime.metrics()
    total = 0.0
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        if series.startswith(name + "{") and all(f'{k}="{v}"' in series for k, v in labels.items()):
            total += float(value)
    return total


def wait_for(
    condition: Callable[[], bool], what: str, timeout: float = TIMEOUT, interval: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(interval)


def broker_up(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    return True


def epoch_of(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# -- the runtime, its function and its triggers ----------------------------------------------------


@dataclass
class Bench:
    """The runtime under test and what the rounds share."""

    runtime: RuntimeProcess
    logs: redis.Redis  # the runtime's own Redis (its log stream), answering str
    brokers: dict[str, bool]
    redis_pid: int  # the runtime's own Redis
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])  # names this run's streams, queues

    @property
    def nats_stream(self) -> str:
        return f"bench{self.tag}"

    def topics(self, kind: str) -> tuple[str, str, str]:
        """(topic, response topic, error topic) of ``kind``'s trigger."""
        if kind == "nats-jetstream":
            return f"{self.nats_stream}.in", f"{self.nats_stream}.out", f"{self.nats_stream}.err"
        return f"bench-{self.tag}-{kind}-in", f"bench-{self.tag}-{kind}-out", f"bench-{self.tag}-{kind}-err"

    def apply(self, obj: dict[str, Any]) -> None:
        response = self.runtime.apply(obj)
        if response.status_code not in (200, 201):
            raise SystemExit(f"{obj['kind']} {obj['metadata']['name']} refused: {response.text}")

    def control(self, method: str, path: str) -> httpx.Response:
        response = httpx.request(method, self.runtime.control + path, headers=AUTH, timeout=60)
        response.raise_for_status()
        return response

    def log_mark(self) -> str:
        """The id of the newest record in the function's log stream ("0-0" when empty)."""
        newest = cast(list[tuple[str, Any]], self.logs.xrevrange(stream_name(NS), count=1))
        return newest[0][0] if newest else "0-0"

    def starts(self, after: str, request_ids: set[str], timeout: float = 30) -> dict[str, float]:
        """The start time the function printed, by request id, for each of ``request_ids``
        (records after ``after``); waits until every one has been shipped, or ``timeout``."""
        found: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        while len(found) < len(request_ids) and time.monotonic() < deadline:
            read = self.logs.xrange(stream_name(NS), min=f"({after}", count=10_000)
            entries = cast(list[tuple[str, dict[str, str]]], read)
            for entry_id, fields in entries:
                after = entry_id
                request_id, message = fields["request_id"], fields["message"].strip()
                if request_id in request_ids and message.startswith("start "):
                    found[request_id] = float(message.split()[1])
            if not entries:
                time.sleep(0.05)
        return found


def start_runtime(tmp: Path, redis_url: str) -> RuntimeProcess:
    allowed = ",".join(f"127.0.0.1:{port}" for port in BROKERS.values())
    env = {
        "REDIS_URL": redis_url,
        "RUNTIME_MQ_BROKERS": allowed,
        # A DURATION of accepts at full speed queues more than the default 10,000 events.
        "RUNTIME_ASYNC_QUEUE_LIMIT": "1000000",
    }
    return RuntimeProcess(state_dir=tmp / "runtime", env=env, own_session=True).start()


def deploy(bench: Bench) -> None:
    bench.apply(environment(NS, "python", poolsize=3))
    bench.apply(package_literal(NS, "hello-pkg", HELLO))
    bench.apply(function(NS, "hello", package="hello-pkg", concurrency=0, requests_per_pod=0))
    bench.apply(httptrigger(NS, "hello", PATH, function_name="hello", methods=("GET", "POST")))


def mq_trigger(bench: Bench, kind: str) -> dict[str, Any]:
    topic, resp, error = bench.topics(kind)
    metadata = {"concurrent": str(CONNECTIONS)}
    if kind == "nats-jetstream":
        metadata |= {"natsServer": NATS_URL, "stream": bench.nats_stream, "consumer": f"bench{bench.tag}"}
    elif kind == "redis":
        metadata |= {"address": "127.0.0.1:6379", "listName": topic, "listLength": "10"}
    else:
        metadata |= {"queueName": topic}
    spec: dict[str, Any] = {
        "functionref": {"type": "name", "name": "hello"}, "messageQueueType": kind, "mqtkind": "keda",
        "topic": topic, "respTopic": resp, "errorTopic": error, "maxRetries": 0,
        "contentType": "application/json", "metadata": metadata,
    }  # fmt: skip
    if kind == "rabbitmq":
        spec["secret"] = AMQP_SECRET_NAME
    return {"apiVersion": "fission.io/v1", "kind": "MessageQueueTrigger",
            "metadata": {"name": f"mq-{kind}", "namespace": NS}, "spec": spec}  # fmt: skip


async def prepare_brokers(bench: Bench) -> None:
    """The NATS stream (capturing topic, response and error subjects) and the RabbitMQ queues."""
    if bench.brokers["nats-jetstream"]:
        client = await nats.connect(NATS_URL, allow_reconnect=False)
        await client.jetstream().add_stream(name=bench.nats_stream, subjects=[f"{bench.nats_stream}.>"])
        await client.close()
    if bench.brokers["rabbitmq"]:
        async with await aio_pika.connect(AMQP_URL) as connection:
            channel = await connection.channel()
            for queue in bench.topics("rabbitmq"):
                await channel.declare_queue(queue, durable=True)


async def cleanup_brokers(bench: Bench) -> None:
    if bench.brokers["nats-jetstream"]:
        client = await nats.connect(NATS_URL, allow_reconnect=False)
        await client.jetstream().delete_stream(bench.nats_stream)
        await client.close()
    if bench.brokers["rabbitmq"]:
        async with await aio_pika.connect(AMQP_URL) as connection:
            channel = await connection.channel()
            for queue in bench.topics("rabbitmq"):
                await channel.queue_delete(queue)
    if bench.brokers["redis"]:
        lists = redis.asyncio.Redis(host="127.0.0.1", port=BROKERS["redis"])
        topic = bench.topics("redis")[0]
        await lists.delete(*bench.topics("redis"), *[key async for key in lists.scan_iter(f"{topic}:*")])
        await lists.aclose()


def start_consumers(bench: Bench) -> None:
    asyncio.run(prepare_brokers(bench))
    if bench.brokers["rabbitmq"]:
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": AMQP_SECRET_NAME, "namespace": NS},
                  "stringData": {"host": AMQP_URL}}  # fmt: skip
        bench.apply(secret)
    for kind, up in bench.brokers.items():
        if not up:
            continue
        bench.apply(mq_trigger(bench, kind))
        path = f"/apis/fission.io/v1/namespaces/{NS}/messagequeuetriggers/mq-{kind}"

        def consuming(path: str = path) -> bool:
            return bench.control("GET", path).json().get("status", {}).get("state") == "consuming"

        wait_for(consuming, f"the {kind} consumer")


# -- measurements -----------------------------------------------------------------------------------


def measure_router(bench: Bench, tmp: Path) -> dict[str, float]:
    return wrk(bench.runtime.router + PATH)


def measure_async_accept(bench: Bench, tmp: Path) -> dict[str, float]:
    """Accepts per second, then the backlog drained (events succeeded = events accepted)."""
    script = tmp / "async.lua"
    script.write_text(ASYNC_SCRIPT)
    labels = {"namespace": NS, "kind": "async"}
    done_before = counter(bench.runtime, "faas_trigger_events_total", outcome="succeeded", **labels)
    accepted_before = counter(bench.runtime, "faas_trigger_events_total", outcome="accepted", **labels)
    started = time.monotonic()
    result = wrk(bench.runtime.router + PATH, script)
    accepted = counter(bench.runtime, "faas_trigger_events_total", outcome="accepted", **labels)
    accepted -= accepted_before

    def drained() -> bool:
        done = counter(bench.runtime, "faas_trigger_events_total", outcome="succeeded", **labels)
        return done - done_before >= accepted

    # Polled every 0.2 s: rendering /metrics costs the runtime CPU that the dispatcher needs.
    wait_for(drained, f"{accepted:.0f} asynchronous events to run", timeout=600, interval=0.2)
    result["drain_per_s"] = accepted / (time.monotonic() - started)
    result["accepted"] = accepted
    return result


def measure_async_latency(bench: Bench, tmp: Path) -> dict[str, Any]:
    """``PACED`` events at ``RATE``/s: the function's start minus the POST's send time."""
    mark = bench.log_mark()
    connection = http.client.HTTPConnection("127.0.0.1", bench.runtime.router_port, timeout=30)
    body = json.dumps({"bench": "async latency"})
    headers = {"Content-Type": "application/json", **EVENT}
    sent: dict[str, float] = {}
    rtts = []
    first = time.time() + 0.05
    for index in range(PACED):
        time.sleep(max(0.0, first + index / RATE - time.time()))
        moment = time.time()
        connection.request("POST", PATH, body, headers)
        response = connection.getresponse()
        answer = response.read()
        rtts.append(ms(time.time() - moment))
        if response.status != 202:
            raise SystemExit(f"an asynchronous call answered {response.status}: {answer!r}")
        sent[json.loads(answer)["requestId"]] = moment
    connection.close()
    starts = bench.starts(mark, set(sent))
    if len(starts) < len(sent):
        raise SystemExit(f"{len(sent) - len(starts)} of {len(sent)} asynchronous events never started")
    return {"latencies": [ms(starts[rid] - moment) for rid, moment in sent.items()], "rtts": rtts}


class Arrivals:
    """Responses of one measurement (their bodies carry its ``run`` id), as they arrive."""

    def __init__(self, run: str, expected: int) -> None:
        self.run, self.expected = run, expected
        self.latencies: list[float] = []
        self.last = 0.0
        self.done = asyncio.Event()

    def add(self, body: bytes, moment: float) -> None:
        try:
            data = json.loads(body)
        except ValueError:
            return
        if not isinstance(data, dict) or data.get("run") != self.run:
            return  # another measurement's (a redelivery), or not ours
        self.latencies.append(ms(moment - data["t"]))
        self.last = moment
        if len(self.latencies) >= self.expected:
            self.done.set()

    async def wait(self, what: str) -> None:
        try:
            await asyncio.wait_for(self.done.wait(), TIMEOUT)
        except TimeoutError:
            raise SystemExit(f"{what}: {len(self.latencies)} of {self.expected} responses came") from None


def message(run: str, index: int) -> bytes:
    return json.dumps({"run": run, "n": index, "t": time.time()}).encode()


async def nats_run(bench: Bench, count: int, rate: float | None) -> dict[str, Any]:
    """``count`` messages, all at once (``rate`` None) or paced; msgs/s and latencies. All at once:
    plain NATS publishes to the stream's subject (stored all the same), so that this Python client,
    which shares the CPUs, costs little; paced: JetStream publishes, each acknowledged."""
    topic, resp, _ = bench.topics("nats-jetstream")
    arrivals = Arrivals(uuid.uuid4().hex, count)
    client = await nats.connect(NATS_URL, allow_reconnect=False)

    async def arrived(msg: Any) -> None:
        arrivals.add(msg.data, time.time())

    await client.subscribe(resp, cb=arrived)
    await client.flush()
    js = client.jetstream()
    started = time.time()
    if rate is None:
        for n in range(count):
            await client.publish(topic, message(arrivals.run, n))
        await client.flush()
    else:
        for n in range(count):
            await asyncio.sleep(max(0.0, started + n / rate - time.time()))
            await js.publish(topic, message(arrivals.run, n))
    await arrivals.wait("NATS")
    await client.close()
    result = {"rps": count / (arrivals.last - started), "latencies": arrivals.latencies}
    return result | ({"count": count} if rate is None else {})  # CPU per message: of a burst only


async def rabbit_run(bench: Bench, count: int) -> dict[str, Any]:
    topic, resp, _ = bench.topics("rabbitmq")
    arrivals = Arrivals(uuid.uuid4().hex, count)
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel(publisher_confirms=False)  # a cheap client (see nats_run)
        queue = await channel.declare_queue(resp, durable=True, passive=True)

        async def arrived(incoming: aio_pika.abc.AbstractIncomingMessage) -> None:
            arrivals.add(incoming.body, time.time())

        await queue.consume(arrived, no_ack=True)
        started = time.time()
        exchange = channel.default_exchange
        await asyncio.gather(
            *(
                exchange.publish(aio_pika.Message(message(arrivals.run, n)), routing_key=topic)
                for n in range(count)
            )
        )
        await arrivals.wait("RabbitMQ")
    return {"rps": count / (arrivals.last - started), "count": count}


async def redis_run(bench: Bench, count: int) -> dict[str, Any]:
    topic, resp, _ = bench.topics("redis")
    arrivals = Arrivals(uuid.uuid4().hex, count)
    client = redis.asyncio.Redis(host="127.0.0.1", port=BROKERS["redis"])
    started = time.time()
    await client.rpush(topic, *(message(arrivals.run, n) for n in range(count)))
    deadline = time.monotonic() + TIMEOUT
    while not arrivals.done.is_set():
        items = cast(list[bytes] | None, await client.lpop(resp, 1000))
        moment = time.time()
        for item in items or []:
            arrivals.add(item, moment)
        if not items:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.002)
    await client.aclose()
    await arrivals.wait("Redis")
    return {"rps": count / (arrivals.last - started), "count": count}


def measure_nats(bench: Bench, tmp: Path) -> dict[str, Any]:
    return asyncio.run(nats_run(bench, MESSAGES, None))


def measure_nats_latency(bench: Bench, tmp: Path) -> dict[str, Any]:
    return asyncio.run(nats_run(bench, PACED, RATE))


def measure_rabbitmq(bench: Bench, tmp: Path) -> dict[str, Any]:
    return asyncio.run(rabbit_run(bench, MESSAGES))


def measure_redis(bench: Bench, tmp: Path) -> dict[str, Any]:
    return asyncio.run(redis_run(bench, MESSAGES))


def timetrigger(name: str) -> dict[str, Any]:
    spec = {
        "cron": "@every 1s",
        "functionref": {"type": "name", "name": "hello"},
        "method": "GET",
        "subpath": "/",
    }
    return {"apiVersion": "fission.io/v1", "kind": "TimeTrigger", "metadata": {"name": name, "namespace": NS},
            "spec": spec}  # fmt: skip


def measure_cron(bench: Bench, seconds: int) -> dict[str, Any]:
    """``TIMERS`` triggers for about ``seconds`` of whole ticks; every fire's jitter (the runtime
    started its call - tick) and start jitter (function start - tick), and what the triggers counted.

    Only the ticks of the steady state count: after every trigger exists and has fired once (that
    first tick of all of them at once cold-starts the workers the pool lacks), and before the
    first is deleted (creating and deleting 100 triggers through the control API takes seconds)."""
    names = [f"cron-{n:03d}" for n in range(TIMERS)]
    log_offset = bench.runtime.log_path.stat().st_size
    mark = bench.log_mark()
    for name in names:
        bench.apply(timetrigger(name))
    first = math.ceil(time.time()) + 1  # the first tick of all, a warm-up, is left out
    time.sleep(max(0.0, first + seconds + 1.2 - time.time()))
    last = math.floor(time.time()) - 1  # ``seconds`` ticks after ``first``; their fires have ended
    base = f"/apis/fission.io/v1/namespaces/{NS}/timetriggers"
    statuses = [item.get("status", {}) for item in bench.control("GET", base).json()["items"]]
    for name in names:
        bench.control("DELETE", f"{base}/{name}")
    time.sleep(1)  # the fires in flight end (a deleted trigger's fire runs to its end) and are logged
    with bench.runtime.log_path.open("rb") as log:
        log.seek(log_offset)
        text = log.read().decode(errors="replace")
    fires = [m for m in FIRE.finditer(text) if m["ns"] == NS and first < epoch_of(m["tick"]) <= last]
    starts = bench.starts(mark, {m["rid"] for m in fires})
    if len(starts) < len(fires):
        raise SystemExit(f"{len(fires) - len(starts)} of {len(fires)} fires have no start in the log stream")
    by_tick: dict[str, list[float]] = {}
    for m in fires:
        by_tick.setdefault(m["tick"], []).append(ms(starts[m["rid"]] - epoch_of(m["tick"])))
    return {
        "jitter": [float(m["late"]) for m in fires],
        "start_jitter": [ms(starts[m["rid"]] - epoch_of(m["tick"])) for m in fires],
        "first": [min(values) for values in by_tick.values()],  # each tick's earliest start
        "spread": [max(values) - min(values) for values in by_tick.values()],  # its last - its first
        "fires": len(fires),
        "expected": (last - first) * TIMERS,
        "failed": sum(1 for m in fires if m["status"] != "200"),
        "missed": sum(s.get("missed", 0) for s in statuses),
        "skipped": sum(s.get("skipped", 0) for s in statuses),
    }


BROKER_COMMANDS = ("nats-server", "beam.smp")  # NATS, RabbitMQ; Redis: the redis-server on its port
GROUPS = ("bench", "runtime", "workers", "redis", "brokers")
PER_CALL = ("runtime", "workers", "redis")


class CpuMeter:
    """CPU time during a measurement, in cores and in ms per call or message, of: this script (its
    clients; not wrk), the runtime's process, the namespace's sandboxed workers (every process of
    its uid), the runtime's own Redis, and the brokers' servers; and the whole machine's busy
    cores. Where a throughput stops growing, these say who ran out of CPU (the runtime's event
    loop is one thread: it cannot use more than one core) or whether the machine did."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, bench: Bench) -> None:
        assert bench.runtime.process is not None
        self.pids = {"bench": os.getpid(), "runtime": bench.runtime.process.pid, "redis": bench.redis_pid}
        self.uid = bench.runtime.tenant_uid(NS)
        self.broker_suffix = f":{BROKERS['redis']}".encode()

    @classmethod
    def seconds(cls, pid: int | str) -> float:
        """utime + stime of ``pid`` (0 when it is gone)."""
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / cls.TICK

    def _is_broker(self, entry: Path) -> bool:
        command = (entry / "comm").read_text().strip()
        if command == "redis-server":
            return (entry / "cmdline").read_bytes().rstrip(b"\0").endswith(self.broker_suffix)
        return command in BROKER_COMMANDS

    def sample(self) -> dict[str, float]:
        """CPU seconds so far of each group (of the processes alive now)."""
        totals = {group: self.seconds(pid) for group, pid in self.pids.items()}
        totals["workers"] = totals["brokers"] = 0.0
        for entry in Path("/proc").iterdir():
            try:
                if not entry.name.isdigit():
                    continue
                if entry.stat().st_uid == self.uid:
                    totals["workers"] += self.seconds(entry.name)
                elif self._is_broker(entry):
                    totals["brokers"] += self.seconds(entry.name)
            except OSError:
                continue
        return totals

    @staticmethod
    def machine() -> tuple[int, int]:
        """(busy, total) jiffies of all CPUs: busy is all but idle, iowait and steal."""
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return sum(fields) - fields[3] - fields[4] - fields[7], sum(fields)

    def __enter__(self) -> CpuMeter:
        self.started = time.monotonic()
        self.before, self.machine_before = self.sample(), self.machine()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.monotonic() - self.started
        after = self.sample()
        self.used = {group: after[group] - self.before[group] for group in GROUPS}
        busy, total = self.machine()
        share = (busy - self.machine_before[0]) / max(1, total - self.machine_before[1])
        self.machine_cores = share * (os.cpu_count() or 1)

    def figures(self, count: float | None) -> dict[str, float | None]:
        result: dict[str, float | None] = {"machine_cores": round(self.machine_cores, 2)}
        for group in GROUPS:
            result[f"{group}_cores"] = round(self.used[group] / self.wall, 2)
        for group in PER_CALL:
            result[f"{group}_ms_per"] = round(ms(self.used[group]) / count, 3) if count else None
        return result


# -- rounds and the report --------------------------------------------------------------------------


def phases(bench: Bench, cron_seconds: int) -> dict[str, Callable[[Bench, Path], dict[str, Any]]]:
    measured: dict[str, Callable[[Bench, Path], dict[str, Any]]] = {
        "router": measure_router,
        "async_accept": measure_async_accept,
        "async_latency": measure_async_latency,
        "cron": lambda b, _tmp: measure_cron(b, cron_seconds),
    }
    if bench.brokers["nats-jetstream"]:
        measured |= {"nats": measure_nats, "nats_latency": measure_nats_latency}
    if bench.brokers["rabbitmq"]:
        measured["rabbitmq"] = measure_rabbitmq
    if bench.brokers["redis"]:
        measured["redis"] = measure_redis
    return measured


def warm_up(bench: Bench, tmp: Path) -> None:
    """A worker per connection, the consumers' connections and the dispatcher's group in use."""
    wrk(bench.runtime.router + PATH)
    if bench.brokers["nats-jetstream"]:
        asyncio.run(nats_run(bench, 200, None))
    if bench.brokers["rabbitmq"]:
        asyncio.run(rabbit_run(bench, 200))
    if bench.brokers["redis"]:
        asyncio.run(redis_run(bench, 200))
    status = httpx.post(bench.runtime.router + PATH, headers=EVENT, content=b"{}", timeout=30).status_code
    if status != 202:
        raise SystemExit(f"an asynchronous call answered {status}")


def run_rounds(bench: Bench, rounds: int, tmp: Path) -> dict[str, list[dict[str, Any]]]:
    """Every measurement once per round, the order rotating from round to round."""
    measured = phases(bench, max(5, round(CRON_SECONDS / rounds)))
    names = list(measured)
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index * max(1, len(names) // rounds) % len(names)
        for name in names[shift:] + names[:shift]:
            print(f"round {index + 1}/{rounds}: {name}", file=sys.stderr, flush=True)
            with CpuMeter(bench) as cpu:
                result = measured[name](bench, tmp)
            samples[name].append(result | cpu.figures(result.get("count")))
    return samples


def span(values: list[float], digits: int = 2) -> list[float]:
    return [round(min(values), digits), round(max(values), digits)]


def summarize(samples: dict[str, list[dict[str, Any]]], steal: float, rounds: int) -> dict[str, Any]:
    def rate(name: str, key: str = "rps") -> tuple[float | None, list[float] | None]:
        if name not in samples:
            return None, None
        values = [s[key] for s in samples[name]]
        return round(statistics.median(values), 1), span(values, 1)

    def pooled(name: str, key: str) -> tuple[float | None, float | None, list[float] | None]:
        """p50 and p99 over every sample, and the range of the rounds' p99s."""
        if name not in samples:
            return None, None, None
        every = [v for s in samples[name] for v in s[key]]
        if not every:
            return None, None, None
        p99s = [percentile(s[key], 99) for s in samples[name] if s[key]]
        return round(statistics.median(every), 2), round(percentile(every, 99), 2), span(p99s)

    ref, ref_range = rate("router")
    nats_rps, nats_range = rate("nats")
    accept, accept_range = rate("async_accept")
    drain, _ = rate("async_accept", "drain_per_s")
    rabbit, rabbit_range = rate("rabbitmq")
    redis_rps, redis_range = rate("redis")
    jitter50, jitter99, jitter_range = pooled("cron", "jitter")
    start_jitter50, start_jitter99, start_jitter_range = pooled("cron", "start_jitter")
    nats50, nats99, nats_p99_range = pooled("nats_latency", "latencies")
    start50, start99, start_p99_range = pooled("async_latency", "latencies")
    rtt50, _, _ = pooled("async_latency", "rtts")
    cron = samples["cron"]
    result: dict[str, Any] = {
        "bench": "events",
        "cron_jitter_p50_ms": jitter50,
        "cron_jitter_p99_ms": jitter99,
        "mq_nats_msgs_per_s": nats_rps,
        "mq_nats_latency_p50_ms": nats50,
        "mq_nats_latency_p99_ms": nats99,
        "mq_rabbitmq_msgs_per_s": rabbit,
        "mq_redis_msgs_per_s": redis_rps,
        "async_accept_per_s": accept,
        "async_start_latency_p50_ms": start50,
        "async_start_latency_p99_ms": start99,
        "router_rps_ref": ref,
        "router_rps_ref_range": ref_range,
        "router_ref_p50_ms": round(statistics.median(s["p50"] for s in samples["router"]), 3),
        "router_ref_p99_ms": round(statistics.median(s["p99"] for s in samples["router"]), 3),
        "cron_jitter_p99_range_ms": jitter_range,
        "cron_jitter_max_ms": round(max(v for s in cron for v in s["jitter"]), 2),
        "cron_start_jitter_p50_ms": start_jitter50,
        "cron_start_jitter_p99_ms": start_jitter99,
        "cron_start_jitter_p99_range_ms": start_jitter_range,
        "cron_tick_first_start_p50_ms": pooled("cron", "first")[0],
        "cron_tick_spread_p50_ms": pooled("cron", "spread")[0],
        "cron_fires": sum(s["fires"] for s in cron),
        "cron_fires_expected": sum(s["expected"] for s in cron),
        "cron_failed": sum(s["failed"] for s in cron),
        "cron_missed": sum(s["missed"] for s in cron),
        "cron_skipped": sum(s["skipped"] for s in cron),
        "mq_nats_msgs_per_s_range": nats_range,
        "mq_nats_latency_p99_range_ms": nats_p99_range,
        "mq_rabbitmq_msgs_per_s_range": rabbit_range,
        "mq_redis_msgs_per_s_range": redis_range,
        "async_accept_per_s_range": accept_range,
        "async_drain_per_s": drain,
        "async_start_latency_p99_range_ms": start_p99_range,
        "async_accept_rtt_p50_ms": rtt50,
    }

    def ratio(value: float | None) -> float | None:
        return None if value is None or not ref else round(value / ref, 3)

    result |= {
        "mq_nats_ratio": ratio(nats_rps),
        "mq_rabbitmq_ratio": ratio(rabbit),
        "mq_redis_ratio": ratio(redis_rps),
        "async_accept_ratio": ratio(accept),
    }
    result["targets"] = targets(result)
    result["cpu"] = {name: cpu_figures(runs) for name, runs in samples.items()}
    result |= {"rounds": rounds, "steal_cores": round(steal, 2), "messages": MESSAGES, "paced_rate": RATE}
    return result


def cpu_figures(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    """The medians over rounds of a measurement's ``CpuMeter`` figures."""
    keys = ["machine_cores", *(f"{group}_cores" for group in GROUPS), *(f"{g}_ms_per" for g in PER_CALL)]
    values = {key: [run[key] for run in runs if run.get(key) is not None] for key in keys}
    return {key: round(statistics.median(v), 3) if v else None for key, v in values.items()}


def targets(r: dict[str, Any]) -> dict[str, bool | None]:
    def check(value: float | None, ok: Callable[[float], bool]) -> bool | None:
        return None if value is None else ok(value)

    return {
        "cron_jitter_p99_le_20ms": check(r["cron_jitter_p99_ms"], lambda v: v <= 20),
        "mq_nats_ge_0.5x_ref": check(r["mq_nats_ratio"], lambda v: v >= 0.5),
        "mq_nats_latency_p99_le_50ms": check(r["mq_nats_latency_p99_ms"], lambda v: v <= 50),
        "async_accept_ge_1.0x_ref": check(r["async_accept_ratio"], lambda v: v >= 1.0),
        "async_start_latency_p50_le_5ms": check(r["async_start_latency_p50_ms"], lambda v: v <= 5),
    }


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else "PASS" if ok else "FAIL"


def report(r: dict[str, Any]) -> None:
    t = r["targets"]
    rows = [
        ("router, GET, c=32 (reference)", r["router_ref_p50_ms"], r["router_ref_p99_ms"], r["router_rps_ref"],
         r["router_rps_ref_range"], ""),
        ("async accept, c=32", "", "", r["async_accept_per_s"], r["async_accept_per_s_range"],
         f"x{r['async_accept_ratio']} >= 1.0: {verdict(t['async_accept_ge_1.0x_ref'])}"),
        ("async drain (run per s)", "", "", r["async_drain_per_s"], "", ""),
        (f"async start latency @{RATE:.0f}/s", r["async_start_latency_p50_ms"], r["async_start_latency_p99_ms"],
         "", r["async_start_latency_p99_range_ms"],
         f"p50 <= 5 ms: {verdict(t['async_start_latency_p50_le_5ms'])}"),
        ("NATS JetStream, burst", "", "", r["mq_nats_msgs_per_s"], r["mq_nats_msgs_per_s_range"],
         f"x{r['mq_nats_ratio']} >= 0.5: {verdict(t['mq_nats_ge_0.5x_ref'])}"),
        (f"NATS latency @{RATE:.0f}/s", r["mq_nats_latency_p50_ms"], r["mq_nats_latency_p99_ms"], "",
         r["mq_nats_latency_p99_range_ms"], f"p99 <= 50 ms: {verdict(t['mq_nats_latency_p99_le_50ms'])}"),
        ("RabbitMQ, burst", "", "", r["mq_rabbitmq_msgs_per_s"], r["mq_rabbitmq_msgs_per_s_range"],
         f"x{r['mq_rabbitmq_ratio']}"),
        ("Redis list, burst", "", "", r["mq_redis_msgs_per_s"], r["mq_redis_msgs_per_s_range"],
         f"x{r['mq_redis_ratio']}"),
        (f"cron jitter (fire), {TIMERS} x @every 1s", r["cron_jitter_p50_ms"], r["cron_jitter_p99_ms"], "",
         r["cron_jitter_p99_range_ms"], f"p99 <= 20 ms: {verdict(t['cron_jitter_p99_le_20ms'])}"),
        ("cron, the function's start", r["cron_start_jitter_p50_ms"], r["cron_start_jitter_p99_ms"], "",
         r["cron_start_jitter_p99_range_ms"], ""),
    ]  # fmt: skip
    print(f"{'':<34}{'p50 ms':>9}{'p99 ms':>9}{'per s':>10}  {'range (rounds)':<18}target")
    for label, p50, p99, per_s, spread, target in rows:
        print(f"{label:<34}{p50!s:>9}{p99!s:>9}{per_s!s:>10}  {spread!s:<18}{target}")
    print("\nCPU during each measurement (medians over rounds), in cores: the machine's busy cores (all but"
          " idle and steal), this script (its clients), the runtime, its workers, its own Redis, the brokers;"
          " then ms of CPU per call or message")  # fmt: skip
    groups = ["machine", *GROUPS]
    header = "".join(f"{group:>9}" for group in groups) + "".join(f"{g + ' ms':>11}" for g in PER_CALL)
    print(f"{'':<15}{header}")
    for name, cpu in r["cpu"].items():
        cores = "".join(f"{cpu[group + '_cores']!s:>9}" for group in groups)
        per = "".join(f"{cpu[group + '_ms_per']!s:>11}" for group in PER_CALL)
        print(f"{name:<15}{cores}{per}")
    print(f"cron: {r['cron_fires']} fires of {r['cron_fires_expected']} ticks x triggers counted"
          f" ({r['cron_failed']} failed), {r['cron_missed']} missed,"
          f" {r['cron_skipped']} skipped, jitter max {r['cron_jitter_max_ms']} ms; per tick (median): first"
          f" start {r['cron_tick_first_start_p50_ms']} ms after it, last - first {r['cron_tick_spread_p50_ms']} ms;"
          f" async accept round trip p50 {r['async_accept_rtt_p50_ms']} ms;"
          f" {r['rounds']} rounds, CPU steal {r['steal_cores']} cores")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk (make bench does it)")
    brokers = {kind: broker_up(port) for kind, port in BROKERS.items()}
    for kind, up in brokers.items():
        if not up:
            print(f"{kind} is not running on 127.0.0.1:{BROKERS[kind]}: left out", file=sys.stderr)
    began = time.monotonic()
    before = cpu_times()
    with tempfile.TemporaryDirectory(prefix="bench-events-") as tmp_name:
        tmp = Path(tmp_name)
        own_redis = embedded.start_redis(tmp / "redis")
        runtime = None
        bench = None
        try:
            runtime = start_runtime(tmp, own_redis.url)
            logs = redis.Redis.from_url(own_redis.url, decode_responses=True)
            bench = Bench(runtime, logs, brokers, own_redis.process.pid)
            deploy(bench)
            start_consumers(bench)
            warm_up(bench, tmp)
            samples = run_rounds(bench, args.rounds, tmp)
        finally:
            if runtime is not None:
                runtime.stop()
            if bench is not None:
                asyncio.run(cleanup_brokers(bench))
            own_redis.stop()
    steal = steal_since(before)
    result = summarize(samples, steal, args.rounds)
    result["seconds"] = round(time.monotonic() - began)
    report(result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
