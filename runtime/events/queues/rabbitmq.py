"""RabbitMQ consumer, as Fission's ``rabbitmq-http-connector`` consumes.
# Reference: https://www.rabbitmq.com/docs/confirms (and aio-pika's API)

Settings (metadata or secret keys, matched as ``base`` says): ``host``, the AMQP URL
``amqp://user:password@host:port/vhost`` (``amqps://`` too; the connector reads ``HOST`` and only
speaks AMQP, so KEDA's HTTP management URLs are refused), usually from the secret since it carries
the password.

``spec.topic`` is the queue consumed. It is not declared (nor is it by the connector): a queue that
does not exist leaves the trigger "misconfigured", retried with backoff until it does. Deliveries
are acknowledged manually, after settling; the prefetch is the trigger's concurrency, so the
messages not being processed stay with the broker. Responses and errors are published as the
connector does, to the default exchange with the routing key ``respTopic`` / ``errorTopic`` (the
queue of that name) and the content type ``spec.contentType``; unlike the connector they are
persistent, published with confirms and ``mandatory``: when no queue of that name exists the
publish fails and the message is delivered again, where the connector drops the response. A
message given back is rejected with requeue.

aio-pika's robust (self-reconnecting) connection is not used: the consumer reconnects.
"""

from __future__ import annotations

import asyncio

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue
from aio_pika.exceptions import (
    AMQPError,
    ChannelNotFoundEntity,
    DeliveryError,
    ProbableAuthenticationError,
)

from runtime.objects import MessageQueueTrigger

from .base import PublishFailed, Settings, Unreachable, misconfigured, url_address
from .consumer import Message
from .delivery import KEDA_HEADERS, Outcome

CONNECT_TIMEOUT_S = 5.0
PUBLISH_TIMEOUT_S = 10.0
RECEIVE_WAIT_S = 1.0


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class RabbitMessage:
    keepalive: float | None = None

    def __init__(
        self, message: AbstractIncomingMessage, publisher: AbstractChannel, content_type: str
    ) -> None:
        self.message = message
        self.publisher = publisher
        self.content_type = content_type
        self.body = message.body
        self.headers: dict[str, str] = {}  # the connector passes no AMQP header on

    async def touch(self) -> None:
        return None

    async def settle(self, outcome: Outcome) -> None:
        if outcome.topic:
            reply = aio_pika.Message(
                outcome.body, content_type=self.content_type, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
            )
            try:
                await self.publisher.default_exchange.publish(
                    reply, routing_key=outcome.topic, mandatory=True, timeout=PUBLISH_TIMEOUT_S
                )
            except DeliveryError as exc:
                raise PublishFailed(f"publishing to queue {outcome.topic!r} failed: {_reason(exc)}") from exc
            except (AMQPError, OSError, TimeoutError) as exc:
                raise Unreachable(_reason(exc)) from exc
        try:
            await self.message.ack()
        except (AMQPError, OSError) as exc:
            raise Unreachable(f"acknowledging failed: {_reason(exc)}") from exc

    async def release(self) -> None:
        await self.message.reject(requeue=True)


class RabbitConnection:
    def __init__(self, connection: AbstractConnection, consumer: AbstractChannel, publisher: AbstractChannel,
                 content_type: str) -> None:  # fmt: skip
        self.connection = connection
        self.consumer = consumer
        self.publisher = publisher
        self.content_type = content_type
        self.inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self.lost: BaseException | None = None
        self.queue: AbstractQueue | None = None
        self.tag = ""
        connection.close_callbacks.add(self._closed)
        consumer.close_callbacks.add(self._closed)

    def _closed(self, _sender: object, exc: BaseException | None = None) -> None:
        self.lost = self.lost or exc or ConnectionError("closed")

    async def start(self, topic: str) -> None:
        self.queue = await self.consumer.declare_queue(topic, passive=True)
        self.tag = await self.queue.consume(self.inbox.put, no_ack=False)

    async def receive(self, limit: int) -> list[Message]:
        self._check()
        try:
            first = await asyncio.wait_for(self.inbox.get(), RECEIVE_WAIT_S)
        except TimeoutError:
            self._check()
            return []
        received = [first]
        while len(received) < limit and not self.inbox.empty():
            received.append(self.inbox.get_nowait())
        return [RabbitMessage(m, self.publisher, self.content_type) for m in received]

    def _check(self) -> None:
        if self.lost is not None or self.connection.is_closed or self.consumer.is_closed:
            raise Unreachable(f"connection lost: {_reason(self.lost or ConnectionError('closed'))}")

    async def close(self) -> None:
        """Closing the channel gives every unacknowledged delivery back to the queue."""
        try:
            if self.queue is not None and self.tag and not self.consumer.is_closed:
                await self.queue.cancel(self.tag, timeout=2)
        finally:
            await self.connection.close()


class RabbitBroker:
    header_names: tuple[str, ...] = KEDA_HEADERS

    def __init__(self, trigger: MessageQueueTrigger, settings: Settings, concurrency: int) -> None:
        self.trigger = trigger
        self.url = settings.require("HOST", "host")
        default_port = 5671 if self.url.startswith("amqps://") else 5672
        self.addresses = [url_address(self.url, ("amqp", "amqps"), default_port, "host")]
        self.concurrency = concurrency

    async def connect(self) -> RabbitConnection:
        name = f"faas-runtime {self.trigger.meta.namespace}/{self.trigger.meta.name}"
        try:
            connection = await aio_pika.connect(
                self.url, timeout=CONNECT_TIMEOUT_S, client_properties={"connection_name": name}
            )
        except ProbableAuthenticationError as exc:
            raise misconfigured(
                f"the broker refused the credentials: {_reason(exc)}", permanent=False
            ) from exc
        except (AMQPError, OSError, TimeoutError) as exc:
            raise Unreachable(_reason(exc)) from exc
        try:
            return await self._channels(connection)
        except BaseException:
            await connection.close()
            raise

    async def _channels(self, connection: AbstractConnection) -> RabbitConnection:
        try:
            consumer = await connection.channel(publisher_confirms=False)
            await consumer.set_qos(prefetch_count=self.concurrency)
            publisher = await connection.channel(publisher_confirms=True, on_return_raises=True)
            result = RabbitConnection(connection, consumer, publisher, self.trigger.content_type)
            await result.start(self.trigger.topic)
        except ChannelNotFoundEntity as exc:
            raise misconfigured(f"queue {self.trigger.topic!r} does not exist", permanent=False) from exc
        except (AMQPError, OSError, TimeoutError) as exc:
            raise Unreachable(_reason(exc)) from exc
        return result
