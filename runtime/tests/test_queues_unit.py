"""The message-queue consumers' parts without a broker: settings, the gate, the call and its error
document, and a consumer driven through a scripted broker (at-least-once, reconnection, refusals)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import pytest

from runtime import config as config_module
from runtime.config import Config
from runtime.events import queues
from runtime.events.queues import Consumers, base, consumer, delivery
from runtime.events.queues.base import (
    Gate,
    Refused,
    Settings,
    Status,
    Unreachable,
    env_name,
    trigger_settings,
)
from runtime.events.queues.consumer import Consumer
from runtime.events.queues.delivery import KEDA_HEADERS, NATS_HEADERS, Delivery, Outcome, Stopped
from runtime.events.queues.nats import go_duration
from runtime.executor import Executor
from runtime.http import Response
from runtime.objects import Function, MessageQueueTrigger, Meta, Secret

NS = "faas-acme"


def mqt(**spec: Any) -> MessageQueueTrigger:
    fields: dict[str, Any] = {"mq_type": "redis", "topic": "in", "function": "fn", "resp_topic": "out",
                              "error_topic": "err", "max_retries": 2, **spec}  # fmt: skip
    return MessageQueueTrigger(meta=Meta(NS, "t1", "1", "uid-t1"), **fields)


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivery, "RETRY_BASE_S", 0.001)
    monkeypatch.setattr(consumer, "RECONNECT_BASE_S", 0.001)
    monkeypatch.setattr(consumer, "RELEASE_DELAY_S", 0.001)


@pytest.mark.parametrize(
    ("key", "name"),
    [("natsServer", "NATS_SERVER"), ("host", "HOST"), ("passwordFromEnv", "PASSWORD_FROM_ENV"),
     ("ackwait", "ACKWAIT"), ("databaseIndex", "DATABASE_INDEX"), ("nats_server", "NATS_SERVER")],
)  # fmt: skip
def test_keys_are_matched_as_fission_names_the_connectors_variables(key: str, name: str) -> None:
    assert env_name(key) == name


def test_a_secret_key_wins_over_the_metadata_and_a_missing_secret_is_misconfigured() -> None:
    trigger = mqt(metadata={"address": "a:1", "listName": "in"}, secret="creds")
    secret = Secret(meta=Meta(NS, "creds"), data={"address": b"b:2", "password": b"pw"})
    assert trigger_settings(trigger, secret).values == {"ADDRESS": "b:2", "LIST_NAME": "in", "PASSWORD": "pw"}
    with pytest.raises(Refused) as caught:
        trigger_settings(trigger, None)
    assert (caught.value.state, caught.value.permanent) == ("misconfigured", True)
    assert caught.value.message == f"misconfigured: secret 'creds' not found in namespace {NS}"


def test_settings_name_the_key_that_is_missing_and_bound_the_concurrency() -> None:
    with pytest.raises(Refused, match=r"natsServer is required \(spec.metadata.natsServer or a key"):
        Settings({}).require("NATS_SERVER", "natsServer")
    assert Settings({}).concurrency() == base.DEFAULT_CONCURRENCY
    assert Settings({"CONCURRENT": "32"}).concurrency() == 32
    for bad in ("0", "x", "257"):
        with pytest.raises(Refused, match="concurrent must be an integer"):
            Settings({"CONCURRENT": bad}).concurrency()


def test_go_durations() -> None:
    assert [go_duration(text) for text in ("30s", "1m30s", "500ms", "1h")] == [30, 90, 0.5, 3600]
    for bad in ("", "30", "s", "1x", "30s "):
        with pytest.raises(ValueError, match="not a Go duration"):
            go_duration(bad)


async def test_the_gate_lets_through_only_listed_addresses_and_never_the_runtimes_redis() -> None:
    gate = Gate(
        frozenset({"127.0.0.1:4222", "broker.example:6379", "localhost:7000"}), "redis://localhost:7000/0"
    )
    await gate.check([("127.0.0.1", 4222), ("BROKER.example", 6379)])
    for address in [("127.0.0.1", 4223), ("localhost", 4222), ("10.0.0.1", 6379), ("localhost", 7000)]:
        with pytest.raises(Refused) as caught:
            await gate.check([address])
        assert caught.value.state == "not allowed"
        assert caught.value.message == f"{base.NOT_ALLOWED}: {address[0].lower()}:{address[1]}"
    # The runtime's Redis under another name of the same host, listed by mistake: refused all the same.
    listed = Gate(frozenset({"127.0.0.1:7000", "0.0.0.0:7000"}), "redis://localhost:7000/0")
    for host in ("127.0.0.1", "0.0.0.0"):  # noqa: S104 - an address a tenant might write
        with pytest.raises(Refused, match="not allowed"):
            await listed.check([(host, 7000)])


def test_addresses_and_urls() -> None:
    assert base.split_address("redis.local:6380", 6379, "address") == ("redis.local", 6380)
    assert base.split_address("[::1]:6380", 6379, "address") == ("::1", 6380)
    assert base.split_address("redis.local", 6379, "address") == ("redis.local", 6379)
    assert base.address_text("::1", 6380) == "[::1]:6380"
    assert base.url_address("amqp://u:p@mq:5673/vh", ("amqp",), 5672, "host") == ("mq", 5673)
    with pytest.raises(Refused, match="address is not a host:port address"):
        base.split_address("u:secret@:x", 6379, "address")
    with pytest.raises(Refused, match="host must be a amqp:// URL"):
        base.url_address("http://mq:15672", ("amqp",), 5672, "host")


def test_the_error_document_is_the_connectors_json() -> None:
    headers = {"KEDA-Topic": "in", "Content-Type": "application/json"}
    document = delivery.error_details(
        b"<m>", "/fission-function/ns/f", headers, Response(500, [], b"boom"), "t1"
    )
    assert document == (
        b'{"FunctionHTTPRequest":{"Message":"\\u003cm\\u003e","HTTPEndpoint":"/fission-function/ns/f",'
        b'"Headers":{"Content-Type":["application/json"],"KEDA-Topic":["in"]}},'
        b'"FunctionHTTPResponse":{"ResponseBody":"boom","StatusCode":500,'
        b'"ErrorString":"request returned failure: 500. http_endpoint: /fission-function/ns/f, source: t1"}}'
    )
    nothing = json.loads(delivery.error_details(b"m", "/p", {}, None, "t1"))["FunctionHTTPResponse"]
    assert nothing["StatusCode"] == 500
    assert nothing["ErrorString"].startswith("every function invocation retry failed")


def test_headers_as_each_connector_sets_them() -> None:
    trigger = mqt()
    nats = delivery.connector_headers(
        NATS_HEADERS, trigger, {"Trace": "1", "X-Fission-Function-Name": "other"}
    )
    assert nats == {"Topic": "in", "RespTopic": "out", "ErrorTopic": "err",
                    "Content-Type": "application/json", "Source-Name": "t1", "Trace": "1"}  # fmt: skip
    keda = delivery.connector_headers(KEDA_HEADERS, mqt(resp_topic=""), {})
    assert [delivery.canonical(name) for name in keda] == [
        "Keda-Topic", "Keda-Response-Topic", "Keda-Error-Topic", "Content-Type", "Keda-Source-Name",
    ]  # fmt: skip
    assert keda["KEDA-Response-Topic"] == ""  # sent empty, as Fission does
    assert delivery.function_path("default", "f") == "/fission-function/f"


class FakeExecutor:
    """What ``call_function`` needs of an executor; answers come from ``answer(body, attempt)``."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls: list[tuple[bytes, dict[bytes, bytes]]] = []
        self.quotas = SimpleNamespace(enter=lambda namespace: True, leave=lambda namespace: None)
        spec = Function(meta=Meta(NS, "fn", "7", "uid-fn"), environment="python", package="fn",
                        package_version="1", entrypoint="main", executor="poolmgr", min_scale=0, max_scale=1,
                        timeout=60, idle_timeout=120, concurrency=1, requests_per_pod=3,
                        memory_limit=None)  # fmt: skip
        self.deployables = {(NS, "fn"): SimpleNamespace(function=spec)}

    async def call(self, key: Any, method: str, target: bytes, headers: list[tuple[bytes, bytes]],
                   body: bytes, request_id: str = "") -> Response:  # fmt: skip
        self.calls.append((body, dict(headers)))
        attempt = sum(1 for called, _ in self.calls if called == body)
        result: Response = self.answer(body, attempt)
        return result


def make_delivery(answer: Any, **spec: Any) -> tuple[Delivery, FakeExecutor, Status, asyncio.Event]:
    executor, status, stopping = FakeExecutor(answer), Status(), asyncio.Event()
    return (
        Delivery(cast(Executor, executor), mqt(**spec), KEDA_HEADERS, status, stopping),
        executor,
        status,
        stopping,
    )


async def test_a_message_is_posted_with_the_connectors_headers_and_one_request_id() -> None:
    handler, executor, status, _ = make_delivery(
        lambda body, attempt: Response(500 if attempt == 1 else 200, [], b"ok")
    )
    outcome = await handler.process(b"hello", {})
    assert (outcome.ok, outcome.topic, outcome.body, outcome.attempts) == (True, "out", b"ok", 2)
    (_, first), (_, second) = executor.calls
    assert first[b"Keda-Topic"] == b"in"
    assert first[b"Keda-Source-Name"] == b"t1"
    assert first[b"x-fission-request-id"] == second[b"x-fission-request-id"] == outcome.request_id.encode()
    assert status.last_request_id == outcome.request_id


async def test_after_max_retries_the_error_goes_to_the_error_topic() -> None:
    handler, executor, status, _ = make_delivery(
        lambda body, attempt: Response(503, [], b"down"), max_retries=2
    )
    outcome = await handler.process(b"m", {})
    assert len(executor.calls) == 3
    assert (outcome.ok, outcome.topic, outcome.attempts, outcome.status) == (False, "err", 3, 503)
    assert json.loads(outcome.body)["FunctionHTTPResponse"]["ResponseBody"] == "down"
    assert status.failures == 0  # counted once stored on the broker
    handler.settled(outcome)
    assert (status.messages, status.failures) == (1, 1)
    assert status.last_error is not None
    assert "failed after 3 attempts" in status.last_error


async def test_a_429_is_waited_out_without_using_an_attempt() -> None:
    handler, executor, _, _ = make_delivery(
        lambda body, attempt: Response(429 if attempt <= 5 else 200, [], b""), max_retries=0
    )
    outcome = await handler.process(b"m", {})
    assert (outcome.ok, len(executor.calls)) == (True, 6)


async def test_a_stop_during_the_wait_gives_the_message_back() -> None:
    handler, _, _, stopping = make_delivery(lambda body, attempt: Response(429, [], b""))
    task = asyncio.create_task(handler.process(b"m", {}))
    await asyncio.sleep(0.05)
    stopping.set()
    with pytest.raises(Stopped):
        await task


@dataclass
class FakeMessage:
    body: bytes
    log: list[tuple[str, bytes]]
    fail_settle: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    keepalive: float | None = None

    async def touch(self) -> None:
        return None

    async def settle(self, outcome: Outcome) -> None:
        if self.fail_settle:
            raise base.PublishFailed("no such queue")
        self.log.append((f"settle:{outcome.topic}", self.body))

    async def release(self) -> None:
        self.log.append(("release", self.body))


class FakeBroker:
    """Scripted: ``connects`` lists what each connect does (an exception to raise, or a list of
    messages to hand out, after which the connection is lost)."""

    header_names = KEDA_HEADERS

    def __init__(self, connects: list[Any]) -> None:
        self.connects = connects
        self.addresses = [("127.0.0.1", 6379)]

    def __call__(self, trigger: MessageQueueTrigger, settings: Settings, concurrency: int) -> FakeBroker:
        return self

    async def connect(self) -> Any:
        step = self.connects.pop(0) if self.connects else []
        if isinstance(step, Exception):
            raise step
        messages = list(step)

        class Connection:
            async def receive(self, limit: int) -> list[Any]:
                if messages:
                    taken = messages[:limit]
                    del messages[:limit]
                    return taken
                await asyncio.sleep(0.01)
                return []

            async def close(self) -> None:
                return None

        return Connection()


def run_consumer(broker: FakeBroker, answer: Any, allowed: str = "127.0.0.1:6379") -> tuple[Consumer, Status]:
    status = Status()
    executor = cast(Executor, FakeExecutor(answer))
    factory = cast(consumer.BrokerFactory, broker)
    runner = Consumer(mqt(), None, factory, executor, Gate(frozenset({allowed}), None), status)
    runner.start()
    return runner, status


async def wait_for(predicate: Any) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not reached")


async def test_messages_are_settled_or_given_back_never_dropped(caplog: pytest.LogCaptureFixture) -> None:
    log: list[tuple[str, bytes]] = []
    messages = [
        FakeMessage(b"ok", log),
        FakeMessage(b"bad", log),
        FakeMessage(b"unstored", log, fail_settle=True),
    ]
    answer = lambda body, attempt: Response(500 if body == b"bad" else 200, [], body)  # noqa: E731
    runner, status = run_consumer(FakeBroker([messages]), answer)
    await wait_for(lambda: len(log) == 3)
    await runner.stop()
    assert sorted(log) == [("release", b"unstored"), ("settle:err", b"bad"), ("settle:out", b"ok")]
    assert (status.messages, status.failures) == (2, 1)
    assert "not acknowledged: no such queue" in caplog.text


async def test_an_unreachable_broker_is_retried_until_it_answers() -> None:
    log: list[tuple[str, bytes]] = []
    broker = FakeBroker([Unreachable("connection refused"), Unreachable("connection refused"),
                         [FakeMessage(b"m", log)]])  # fmt: skip
    runner, status = run_consumer(broker, lambda body, attempt: Response(200, [], b"r"))
    await wait_for(lambda: log == [("settle:out", b"m")])
    assert status.state == "consuming"
    await runner.stop()


async def test_a_refusal_shows_in_the_status_and_is_not_retried() -> None:
    broker = FakeBroker([base.misconfigured("queue 'in' does not exist", permanent=True), []])
    runner, status = run_consumer(broker, lambda body, attempt: Response(200, [], b""))
    await wait_for(lambda: status.state == "misconfigured")
    assert status.message == "misconfigured: queue 'in' does not exist"
    assert len(broker.connects) == 1  # not tried again
    await runner.stop()
    runner, status = run_consumer(
        FakeBroker([[]]), lambda body, attempt: Response(200, [], b""), allowed="x:1"
    )
    await wait_for(lambda: status.state == "not allowed")
    assert status.message == f"{base.NOT_ALLOWED}: 127.0.0.1:6379"
    await runner.stop()


async def test_consumers_follow_the_stored_triggers_and_their_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(queues.BROKERS, "redis", FakeBroker([]))
    config = cast(Config, SimpleNamespace(mq_brokers=frozenset({"127.0.0.1:6379"}), redis_url=None))
    consumers = Consumers(cast(Executor, FakeExecutor(lambda body, attempt: Response(200, [], b""))), config)
    trigger = mqt(secret="creds")
    secret = Secret(meta=Meta(NS, "creds", "1"), data={"address": b"127.0.0.1:6379"})
    consumers.set_triggers([trigger], {(NS, "creds"): secret})
    first = consumers.consumers[(NS, "t1")]
    await wait_for(lambda: (consumers.status(NS, "t1") or {}).get("state") == "consuming")
    consumers.set_triggers([trigger], {(NS, "creds"): Secret(meta=Meta(NS, "creds", "2"), data=secret.data)})
    assert consumers.consumers[(NS, "t1")] is first  # the same data: nothing to restart
    consumers.set_triggers([trigger], {(NS, "creds"): Secret(meta=Meta(NS, "creds", "3"), data={"x": b"y"})})
    second = consumers.consumers[(NS, "t1")]
    assert second is not first
    assert second.status is first.status  # the same trigger: its counts go on
    await wait_for(lambda: first.task is not None and first.task.done())
    consumers.set_triggers([], {})
    assert consumers.status(NS, "t1") is None
    await consumers.stop()
    assert second.task is not None
    assert second.task.done()


def test_the_allowed_brokers_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTIME_MQ_BROKERS", " 127.0.0.1:4222, Broker.Local:5672,[::1]:6379,")
    assert config_module._brokers("RUNTIME_MQ_BROKERS") == {
        "127.0.0.1:4222",
        "broker.local:5672",
        "[::1]:6379",
    }
    monkeypatch.delenv("RUNTIME_MQ_BROKERS")
    assert config_module._brokers("RUNTIME_MQ_BROKERS") == frozenset()  # none by default
    for bad in ("localhost", "localhost:", ":6379", "host:70000"):
        monkeypatch.setenv("RUNTIME_MQ_BROKERS", bad)
        with pytest.raises(config_module.ConfigError, match="RUNTIME_MQ_BROKERS must list host:port"):
            config_module._brokers("RUNTIME_MQ_BROKERS")
