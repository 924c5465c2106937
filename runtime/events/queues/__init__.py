"""Message-queue triggers (Fission ``MessageQueueTrigger``, ``mqtkind: keda``) of the local runtime:
one consumer per trigger, doing what Fission's KEDA connector for its broker does
(fission/keda-connectors), for the brokers this runtime serves: NATS JetStream (``nats``), RabbitMQ
(``rabbitmq``) and Redis lists (``redis``). MQTT is not served (Fission has no MQTT connector, and
``runtime.objects`` refuses it with Kafka and the others: they run on Kubernetes, through KEDA).

- ``delivery``: the call to the function (headers, request id, retries, the error document);
- ``consumer``: one trigger's consumer (connect, slots, at-least-once settling, reconnection);
- ``base``: settings from the trigger's metadata and secret, the broker gate, the status.

Fission's scaling fields (``pollingInterval``, ``cooldownPeriod``, ``minReplicaCount``,
``maxReplicaCount``) are KEDA's business: here one consumer per trigger runs while the trigger
exists, waiting on the broker (no polling), its concurrency bounded as ``consumer`` says.

Metrics: ``faas_trigger_events_total{kind="mq", trigger, function, outcome}`` counts ``delivered``
(a 2xx answer stored on the response topic, or none set, and acknowledged), ``failed`` (a message
whose every attempt failed, acknowledged), ``error_topic`` (those of them stored on the error topic),
``retried`` (each further call of a message, a 429's wait included) and ``unreachable`` (each failed
connection attempt or lost connection); every call is also in ``fission_function_calls_total`` and
its siblings under the path ``/fission-function/<function>``, as Fission's connectors call through
the router's internal route.

Status (``Consumers.status``, shown under ``status`` of the trigger by the control API): see
``base.Status``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from runtime.config import Config
from runtime.executor import Executor
from runtime.logs import LogCollector
from runtime.objects import MessageQueueTrigger, Secret

from .base import Gate, Status
from .consumer import BrokerFactory, Consumer
from .nats import NatsBroker
from .rabbitmq import RabbitBroker
from .redis import RedisBroker

BROKERS: dict[str, BrokerFactory] = {
    "nats-jetstream": NatsBroker,
    "rabbitmq": RabbitBroker,
    "redis": RedisBroker,
}
Key = tuple[str, str]  # (namespace, trigger name)


class Consumers:
    """The consumers of every stored MessageQueueTrigger (``Runtime.apply`` reconciles them)."""

    def __init__(self, executor: Executor, config: Config, logs: LogCollector | None = None) -> None:
        self.executor = executor
        self.gate = Gate(config.mq_brokers, config.redis_url)
        self.logs = logs
        self.consumers: dict[Key, Consumer] = {}
        self.retiring: dict[Key, tuple[Consumer, asyncio.Task[None]]] = {}  # stopping

    def set_triggers(self, triggers: list[MessageQueueTrigger], secrets: Mapping[Key, Secret]) -> None:
        """Start the consumers of new triggers, stop those of removed ones, and restart those whose
        trigger or secret changed (the new one starts once the old one has stopped). Idempotent."""
        wanted: dict[Key, tuple[MessageQueueTrigger, Secret | None]] = {}
        for trigger in triggers:
            secret = secrets.get((trigger.meta.namespace, trigger.secret)) if trigger.secret else None
            wanted[(trigger.meta.namespace, trigger.meta.name)] = (trigger, secret)
        for key, consumer in list(self.consumers.items()):
            if key not in wanted or not _same(consumer, *wanted[key]):
                self._retire(key)
        for key, (trigger, secret) in wanted.items():
            if key not in self.consumers:
                self._start(key, trigger, secret)

    def _start(self, key: Key, trigger: MessageQueueTrigger, secret: Secret | None) -> None:
        previous = self.retiring.get(key)
        # A changed trigger keeps its status (counts, last message): it is the same trigger.
        status = Status() if previous is None else previous[0].status
        consumer = Consumer(
            trigger, secret, BROKERS[trigger.mq_type], self.executor, self.gate, status, self.logs
        )
        consumer.start(after=None if previous is None else previous[1])
        self.consumers[key] = consumer

    def _retire(self, key: Key) -> None:
        consumer = self.consumers.pop(key)
        task = asyncio.create_task(consumer.stop())
        self.retiring[key] = (consumer, task)
        task.add_done_callback(lambda _: self._retired(key, task))

    def _retired(self, key: Key, task: asyncio.Task[None]) -> None:
        if key in self.retiring and self.retiring[key][1] is task:
            del self.retiring[key]

    def status(self, namespace: str, name: str) -> dict[str, Any] | None:
        """What the trigger's consumer is doing (``base.Status``); None for an unknown trigger."""
        consumer = self.consumers.get((namespace, name))
        return None if consumer is None else consumer.status.as_dict()

    async def stop(self) -> None:
        """Stop every consumer (each finishes or gives back its messages in flight)."""
        stopping = [consumer.stop() for consumer in self.consumers.values()]
        self.consumers.clear()
        with contextlib.suppress(Exception):
            await asyncio.gather(*stopping, *(task for _, task in self.retiring.values()))


def _same(consumer: Consumer, trigger: MessageQueueTrigger, secret: Secret | None) -> bool:
    """Whether the consumer runs with these settings (a secret counts by its data)."""
    old = None if consumer.secret is None else consumer.secret.data
    return consumer.trigger == trigger and old == (None if secret is None else secret.data)
