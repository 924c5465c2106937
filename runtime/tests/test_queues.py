"""Message-queue triggers end to end: a real runtime process, sandboxed functions, and the machine's
NATS JetStream, RabbitMQ and Redis (each test skips when its broker is down, and fails instead with
REQUIRE_SERVICES=1). Every test uses its own streams, queues and lists (a uuid in their names) and
removes them afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Coroutine, Iterator
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import aio_pika
import httpx
import nats
import pytest
import redis

from runtime.tests.core import gauge
from testsupport.fission import environment, function, package_literal
from testsupport.processes import wait_until
from testsupport.runtime import TOKEN, RuntimeProcess
from testsupport.services import REQUIRE_SERVICES

NS = "faas-mq"
MQT = f"/apis/fission.io/v1/namespaces/{NS}/messagequeuetriggers"
SECRETS = f"/api/v1/namespaces/{NS}/secrets"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NATS_URL = "nats://127.0.0.1:4222"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
BROKERS = {"nats-jetstream": 4222, "rabbitmq": 5672, "redis": 6379}
ECHO = """
from flask import request

def main():
    h = request.headers
    return {
        "body": request.get_data(as_text=True),
        "topic": h.get("Keda-Topic") or h.get("Topic"),
        "source": h.get("Keda-Source-Name") or h.get("Source-Name"),
        "type": h.get("Content-Type"),
        "rid": h.get("X-Fission-Request-ID"),
    }
"""
FAIL = """
from flask import request

def main():
    return "boom: " + request.get_data(as_text=True), 500
"""
SLOW = ECHO.replace("def main():", "import time\n\ndef main():\n    time.sleep(0.02)")
T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def require_broker(kind: str) -> None:
    try:
        socket.create_connection(("127.0.0.1", BROKERS[kind]), timeout=2).close()
    except OSError as exc:
        message = f"{kind} is not running on 127.0.0.1:{BROKERS[kind]}: {exc}"
        if REQUIRE_SERVICES:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


class Broker(Protocol):
    """A broker as the tests drive it: its topic, response and error topics, and what is in them."""

    kind: str
    topic: str
    resp: str
    error: str

    def metadata(self) -> dict[str, str]: ...
    def secret(self) -> dict[str, str]: ...
    async def setup(self) -> None: ...
    async def publish(self, bodies: list[bytes]) -> None: ...
    async def count(self, topic: str) -> int: ...
    async def read(self, topic: str) -> list[bytes]: ...
    async def pending(self, trigger: str) -> int: ...
    async def cleanup(self) -> None: ...


class Nats:
    kind = "nats-jetstream"

    def __init__(self, uid: str, port: int = BROKERS["nats-jetstream"]) -> None:
        self.port = port  # where the trigger finds the broker (the test itself talks to 4222)
        self.stream = f"mq{uid}"
        self.topic, self.resp, self.error = f"{self.stream}.in", f"{self.stream}.out", f"{self.stream}.err"
        self.consumer = f"fission{uid}"

    def metadata(self) -> dict[str, str]:
        # ackwait: a message abandoned by a stopped runtime comes back within seconds, not 30 s.
        server = f"nats://127.0.0.1:{self.port}"
        return {"natsServer": server, "stream": self.stream, "consumer": self.consumer, "ackwait": "3s"}

    def secret(self) -> dict[str, str]:
        return {}

    async def _client(self) -> Any:
        return await nats.connect(NATS_URL, allow_reconnect=False)

    async def setup(self) -> None:
        client = await self._client()
        await client.jetstream().add_stream(name=self.stream, subjects=[f"{self.stream}.>"])
        await client.close()

    async def publish(self, bodies: list[bytes]) -> None:
        client = await self._client()
        js = client.jetstream()
        await asyncio.gather(*(js.publish(self.topic, body) for body in bodies))
        await client.close()

    async def count(self, topic: str) -> int:
        client = await self._client()
        info = await client.jetstream().stream_info(self.stream, subjects_filter=topic)
        await client.close()
        return int((info.state.subjects or {}).get(topic, 0))

    async def read(self, topic: str) -> list[bytes]:
        client = await self._client()
        total = await self.count(topic)
        subscription = await client.jetstream().pull_subscribe(topic, stream=self.stream)
        bodies: list[bytes] = []
        while len(bodies) < total:
            bodies += [message.data for message in await subscription.fetch(min(500, total - len(bodies)))]
        await client.close()
        return bodies

    async def pending(self, trigger: str) -> int:
        client = await self._client()
        info = await client.jetstream().consumer_info(self.stream, self.consumer)
        await client.close()
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def cleanup(self) -> None:
        client = await self._client()
        await client.jetstream().delete_stream(self.stream)
        await client.close()


class Rabbit:
    kind = "rabbitmq"

    def __init__(self, uid: str, port: int = BROKERS["rabbitmq"]) -> None:
        self.port = port  # where the trigger finds the broker (the test itself talks to 5672)
        self.topic, self.resp, self.error = f"mq-{uid}-in", f"mq-{uid}-out", f"mq-{uid}-err"

    def metadata(self) -> dict[str, str]:
        return {"queueName": self.topic}

    def secret(self) -> dict[str, str]:
        return {"host": f"amqp://guest:guest@127.0.0.1:{self.port}/"}

    async def setup(self) -> None:
        async with await aio_pika.connect(AMQP_URL) as connection:
            channel = await connection.channel()
            for queue in (self.topic, self.resp, self.error):
                await channel.declare_queue(queue, durable=True)

    async def publish(self, bodies: list[bytes]) -> None:
        async with await aio_pika.connect(AMQP_URL) as connection:
            exchange = (await connection.channel()).default_exchange
            await asyncio.gather(
                *(exchange.publish(aio_pika.Message(body), routing_key=self.topic) for body in bodies)
            )

    async def count(self, topic: str) -> int:
        async with await aio_pika.connect(AMQP_URL) as connection:
            queue = await (await connection.channel()).declare_queue(topic, passive=True)
            return int(queue.declaration_result.message_count or 0)

    async def read(self, topic: str) -> list[bytes]:
        bodies = []
        async with await aio_pika.connect(AMQP_URL) as connection:
            queue = await (await connection.channel()).declare_queue(topic, passive=True)
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                bodies.append(message.body)
        return bodies

    async def pending(self, trigger: str) -> int:
        async with await aio_pika.connect(AMQP_URL) as connection:
            queue = await (await connection.channel()).declare_queue(self.topic, passive=True)
            # Unacknowledged deliveries are not counted: they hold the consumer's slots instead.
            return int(queue.declaration_result.message_count or 0)

    async def cleanup(self) -> None:
        async with await aio_pika.connect(AMQP_URL) as connection:
            channel = await connection.channel()
            for queue in (self.topic, self.resp, self.error):
                await channel.queue_delete(queue)


class Lists:
    kind = "redis"

    def __init__(self, uid: str, port: int = BROKERS["redis"]) -> None:
        self.port = port  # where the trigger finds the broker (the test itself talks to 6379)
        self.topic, self.resp, self.error = f"mq-{uid}-in", f"mq-{uid}-out", f"mq-{uid}-err"

    @property
    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=BROKERS["redis"])

    def metadata(self) -> dict[str, str]:
        return {"address": f"127.0.0.1:{self.port}", "listName": self.topic, "listLength": "10"}

    def secret(self) -> dict[str, str]:
        return {}

    async def setup(self) -> None:
        return None

    async def publish(self, bodies: list[bytes]) -> None:
        self.client.rpush(self.topic, *bodies)

    async def count(self, topic: str) -> int:
        return int(self.client.llen(topic))

    async def read(self, topic: str) -> list[bytes]:
        return [item for item in self.client.lrange(topic, 0, -1) if isinstance(item, bytes)]

    async def pending(self, trigger: str) -> int:
        return int(self.client.llen(self.topic) + self.client.llen(self._processing(trigger)))

    def _processing(self, trigger: str) -> str:
        return f"{self.topic}:processing:{NS}:{trigger}"

    async def cleanup(self) -> None:
        client = self.client
        client.delete(self.topic, self.resp, self.error, *client.scan_iter(f"{self.topic}:processing:*"))


def make(kind: str, port: int | None = None) -> Broker:
    """A broker with new names; ``port``: where the trigger finds it (a proxy), if not its own."""
    uid, port = uuid.uuid4().hex[:10], port or BROKERS[kind]
    if kind == "nats-jetstream":
        return Nats(uid, port)
    return Rabbit(uid, port) if kind == "rabbitmq" else Lists(uid, port)


class Proxy:
    """A TCP forwarder from a port of its own to a broker of the machine: a broker the test takes
    away (closing every connection) and brings back."""

    def __init__(self, target: int) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        self.listener: socket.socket | None = None
        self.sockets: list[socket.socket] = []

    def open(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        for end in [*self.sockets, *([self.listener] if self.listener else [])]:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()
        self.sockets.clear()
        self.listener = None


def own_redis() -> str:
    parts = urlsplit(os.environ["REDIS_URL"])
    return f"{parts.hostname}:{parts.port}"


@pytest.fixture(scope="module")
def proxies() -> Iterator[dict[str, Proxy]]:
    forwarders = {kind: Proxy(port) for kind, port in BROKERS.items()}
    yield forwarders
    for forwarder in forwarders.values():
        forwarder.close()


@pytest.fixture(scope="module")
def mq(tmp_path_factory: pytest.TempPathFactory, proxies: dict[str, Proxy]) -> Iterator[RuntimeProcess]:
    """One runtime for the module, allowed the machine's brokers, the proxies' ports (brokers that
    come and go) and, to show it is refused anyway, the runtime's own Redis."""
    ports = [*BROKERS.values(), *(proxy.port for proxy in proxies.values())]
    allowed = [f"127.0.0.1:{port}" for port in ports] + [own_redis()]
    runtime = RuntimeProcess(state_dir=tmp_path_factory.mktemp("mq") / "runtime",
                             env={"RUNTIME_MQ_BROKERS": ",".join(allowed)})  # fmt: skip
    runtime.start()
    assert runtime.apply(environment(NS, "python", poolsize=2)).status_code in (200, 201)
    for name, code in (("echo", ECHO), ("fail", FAIL), ("slow", SLOW)):
        assert runtime.apply(package_literal(NS, f"{name}-pkg", code)).status_code in (200, 201)
        response = runtime.apply(function(NS, name, package=f"{name}-pkg", concurrency=1, requests_per_pod=4))
        assert response.status_code in (200, 201), response.text
    yield runtime
    runtime.stop()


def trigger(name: str, broker: Broker, fn: str, *, max_retries: int = 0, secret: str = "",
            metadata: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    spec: dict[str, Any] = {
        "functionref": {"type": "name", "name": fn}, "messageQueueType": broker.kind, "mqtkind": "keda",
        "topic": broker.topic, "respTopic": broker.resp, "errorTopic": broker.error,
        "maxRetries": max_retries, "contentType": "application/json",
        "metadata": metadata if metadata is not None else broker.metadata(),
    }  # fmt: skip
    if secret:
        spec["secret"] = secret
    return {"apiVersion": "fission.io/v1", "kind": "MessageQueueTrigger",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}  # fmt: skip


def secret_object(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NS},
        "stringData": data,
    }


def create(runtime: RuntimeProcess, obj: dict[str, Any]) -> None:
    response = runtime.apply(obj)
    assert response.status_code in (200, 201), response.text


def deploy(runtime: RuntimeProcess, broker: Broker, fn: str, **options: Any) -> str:
    """A trigger of ``broker`` on ``fn`` (and its secret, when the broker takes one); its name."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    if broker.secret():
        create(runtime, secret_object(name, broker.secret()))
        options["secret"] = name
    create(runtime, trigger(name, broker, fn, **options))
    return name


def remove(runtime: RuntimeProcess, name: str) -> None:
    httpx.delete(f"{runtime.control}{MQT}/{name}", headers=AUTH, timeout=30)
    httpx.delete(f"{runtime.control}{SECRETS}/{name}", headers=AUTH, timeout=30)


def status(runtime: RuntimeProcess, name: str) -> dict[str, Any]:
    response = httpx.get(f"{runtime.control}{MQT}/{name}", headers=AUTH, timeout=30)
    response.raise_for_status()
    result: dict[str, Any] = response.json().get("status", {})
    return result


def events(runtime: RuntimeProcess, name: str, outcome: str) -> float:
    return gauge(runtime, "faas_trigger_events_total", trigger=name, outcome=outcome) or 0.0


def calls(runtime: RuntimeProcess, fn: str, code: int) -> float:
    labels = {"function_name": fn, "code": str(code), "path": f"/fission-function/{fn}"}
    return gauge(runtime, "fission_function_calls_total", **labels) or 0.0


@pytest.fixture(params=list(BROKERS))
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    require_broker(request.param)
    made = make(request.param)
    run(made.setup())
    yield made
    run(made.cleanup())


def settled(runtime: RuntimeProcess, broker: Broker, name: str, topic: str, count: int) -> None:
    """Wait until ``count`` messages are on ``topic`` and none is waiting or unacknowledged."""
    wait_until(lambda: run(broker.count(topic)) >= count and run(broker.pending(name)) == 0, timeout=180,
               interval=0.25, message=f"{count} messages on {topic}: {status(runtime, name)}")  # fmt: skip


def test_thousand_messages_give_thousand_calls_and_responses(mq: RuntimeProcess, broker: Broker) -> None:
    name = deploy(mq, broker, "echo", max_retries=1)
    bodies = [json.dumps({"n": n}).encode() for n in range(1000)]
    before = calls(mq, "echo", 200)
    run(broker.publish(bodies))
    settled(mq, broker, name, broker.resp, 1000)
    responses = [json.loads(body) for body in run(broker.read(broker.resp))]
    assert Counter(r["body"] for r in responses) == Counter(b.decode() for b in bodies)  # each once
    assert {(r["topic"], r["source"], r["type"]) for r in responses} == {
        (broker.topic, name, "application/json")
    }
    assert len({r["rid"] for r in responses}) == 1000  # a request id per message
    assert run(broker.count(broker.error)) == 0
    assert calls(mq, "echo", 200) - before == 1000
    assert events(mq, name, "delivered") == 1000
    state = status(mq, name)
    assert (state["state"], state["messages"], state["failures"]) == ("consuming", 1000, 0)
    assert state["lastRequestId"] in {r["rid"] for r in responses}
    remove(mq, name)


def test_failing_function_sends_each_message_to_the_error_topic(mq: RuntimeProcess, broker: Broker) -> None:
    name = deploy(mq, broker, "fail", max_retries=2)
    bodies = [f"m{n}".encode() for n in range(100)]
    before, refused = calls(mq, "fail", 500), calls(mq, "fail", 429)
    run(broker.publish(bodies))
    settled(mq, broker, name, broker.error, 100)
    errors = [json.loads(body) for body in run(broker.read(broker.error))]
    assert Counter(e["FunctionHTTPRequest"]["Message"] for e in errors) == Counter(b.decode() for b in bodies)
    first = errors[0]
    assert first["FunctionHTTPResponse"]["StatusCode"] == 500
    assert first["FunctionHTTPResponse"]["ResponseBody"] == "boom: " + first["FunctionHTTPRequest"]["Message"]
    assert first["FunctionHTTPResponse"]["ErrorString"].startswith(
        f"request returned failure: 500. http_endpoint: /fission-function/{NS}/fail, source: {name}"
    )
    assert run(broker.count(broker.resp)) == 0
    assert calls(mq, "fail", 500) - before == 300  # 1 + maxRetries attempts each
    # A 429 (while the function's one worker starts, say) is waited out, and counts as no attempt.
    waits = calls(mq, "fail", 429) - refused
    outcomes = [events(mq, name, outcome) for outcome in ("retried", "failed", "error_topic")]
    assert outcomes == [200 + waits, 100, 100]
    assert status(mq, name)["failures"] == 100
    remove(mq, name)


def test_a_restart_of_the_runtime_mid_stream_loses_nothing(mq: RuntimeProcess, broker: Broker) -> None:
    name = deploy(mq, broker, "slow")
    bodies = [f"r{n}".encode() for n in range(300)]
    run(broker.publish(bodies))
    wait_until(lambda: run(broker.count(broker.resp)) >= 50, timeout=120, interval=0.1)
    mq.stop()
    stopped_at = run(broker.count(broker.resp))
    mq.start()
    settled(mq, broker, name, broker.resp, len(bodies))
    seen = Counter(json.loads(body)["body"] for body in run(broker.read(broker.resp)))
    assert set(seen) == {b.decode() for b in bodies}  # nothing lost
    duplicates = sum(seen.values()) - len(bodies)
    assert stopped_at < len(bodies), "the restart came after the stream: it proves nothing"
    assert duplicates <= 10, f"{duplicates} redelivered"  # at least once: only those in flight at the stop
    remove(mq, name)


def test_a_broker_that_is_not_allowed_is_never_connected(mq: RuntimeProcess) -> None:
    require_broker("redis")
    outsider = Lists(uuid.uuid4().hex[:10])
    outsider.client.rpush(outsider.topic, b"must stay")
    names = []
    for address in ("127.0.0.1:6380", "localhost:6379", own_redis()):  # not listed; listed otherwise; ours
        metadata = {"address": address, "listName": outsider.topic}
        names.append(f"t-{uuid.uuid4().hex[:8]}")
        create(mq, trigger(names[-1], outsider, "echo", metadata=metadata))
    for name, address in zip(names, ("127.0.0.1:6380", "localhost:6379", own_redis()), strict=True):
        state = wait_until(lambda name=name: (s := status(mq, name))["state"] != "starting" and s)
        assert state["state"] == "not allowed"
        assert state["message"] == f"broker not allowed by the runtime's RUNTIME_MQ_BROKERS: {address}"
        remove(mq, name)
    assert outsider.client.lrange(outsider.topic, 0, -1) == [b"must stay"]
    run(outsider.cleanup())


def test_a_missing_secret_shows_then_the_secret_starts_the_consumer(mq: RuntimeProcess) -> None:
    require_broker("redis")
    lists = Lists(uuid.uuid4().hex[:10])
    name = f"t-{uuid.uuid4().hex[:8]}"
    create(mq, trigger(name, lists, "echo", secret=name, metadata={"listName": lists.topic}))
    state = wait_until(lambda: (s := status(mq, name))["state"] == "misconfigured" and s)
    assert state["message"] == f"misconfigured: secret {name!r} not found in namespace {NS}"
    create(mq, secret_object(name, {"address": "127.0.0.1:6379"}))
    wait_until(lambda: status(mq, name)["state"] == "consuming")
    run(lists.publish([b"hello"]))
    wait_until(lambda: lists.client.llen(lists.resp) == 1)
    assert json.loads(lists.client.lindex(lists.resp, 0) or b"{}")["body"] == "hello"
    remove(mq, name)
    run(lists.cleanup())


@pytest.mark.parametrize("kind", list(BROKERS))
def test_an_unreachable_broker_shows_and_recovers_when_it_comes_back(
    mq: RuntimeProcess, proxies: dict[str, Proxy], kind: str
) -> None:
    require_broker(kind)
    proxy = proxies[kind]
    broker = make(kind, proxy.port)
    run(broker.setup())
    name = deploy(mq, broker, "echo")
    try:
        state = wait_until(lambda: (s := status(mq, name))["state"] == "broker unreachable" and s)
        assert state["message"].startswith("broker unreachable: ")
        assert events(mq, name, "unreachable") >= 1
        proxy.open()
        run(broker.publish([b"first"]))
        wait_until(lambda: run(broker.count(broker.resp)) == 1, timeout=60)
        assert status(mq, name)["state"] == "consuming"
        proxy.close()
        wait_until(lambda: status(mq, name)["state"] == "broker unreachable", timeout=30)
        run(broker.publish([b"second"]))
        proxy.open()
        wait_until(lambda: run(broker.count(broker.resp)) == 2, timeout=60)
        assert [json.loads(body)["body"] for body in run(broker.read(broker.resp))] == ["first", "second"]
        assert status(mq, name)["state"] == "consuming"
    finally:
        remove(mq, name)
        proxy.close()
        run(broker.cleanup())
