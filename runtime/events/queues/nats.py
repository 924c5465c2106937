"""NATS JetStream consumer, as Fission's ``nats-jetstream-http-connector`` consumes.
# Reference: https://docs.nats.io/nats-concepts/jetstream/consumers (and nats-py's JetStreamContext)

Settings (metadata or secret keys; ``base`` says how they are matched):

- ``natsServer``: ``nats://[user:password@]host:port`` (``tls://`` too; several separated by
  commas; no scheme means ``nats://``). Every one must pass the gate.
- ``consumer``: the durable consumer's name (required, as KEDA's scaler needs it too).
- ``stream``: the stream (optional: by default the one that captures ``spec.topic``).
- ``ackwait``: a Go duration (default ``30s``), the ack wait of a consumer created here.

``spec.topic`` is the subject read. The durable consumer is bound when it exists and created when it
does not (the connector creates it too): a pull consumer filtered on the topic, explicit ack, from
the start of the stream. Messages are fetched as slots free up, acknowledged after settling, and
marked in progress every third of the ack wait while their function runs; a message given back is
nak'ed (delivered again). Responses and errors are published with JetStream on the ``respTopic``
and ``errorTopic`` subjects (the publish waits for the stream's ack), so a stream must capture them,
as the connector requires: otherwise the publish fails and the message is delivered again.

nats-py's own reconnection is off: the consumer reconnects (with its backoff and status).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error, NoRespondersError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError

from runtime.objects import MessageQueueTrigger

from .base import PublishFailed, Settings, Unreachable, misconfigured, url_address
from .consumer import Message
from .delivery import NATS_HEADERS, Outcome

CONNECT_TIMEOUT_S = 5
PUBLISH_TIMEOUT_S = 5.0
FETCH_WAIT_S = 1.0
DEFAULT_ACK_WAIT_S = 30.0
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(text: str) -> float:
    """Seconds of a Go duration (``30s``, ``1m30s``, ``500ms``); ValueError otherwise."""
    parts = _DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"not a Go duration: {text!r}")
    return sum(float(number) * _UNITS[unit] for number, unit in parts)


def _servers(text: str) -> list[str]:
    return [s if "://" in s else f"nats://{s}" for s in (part.strip() for part in text.split(",")) if s]


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class NatsMessage:
    def __init__(self, msg: Msg, js: JetStreamContext, keepalive: float) -> None:
        self.msg = msg
        self.js = js
        self.body = msg.data
        self.headers: dict[str, str] = dict(msg.headers or {})
        self.keepalive: float | None = keepalive

    async def touch(self) -> None:
        await self.msg.in_progress()

    async def settle(self, outcome: Outcome) -> None:
        if outcome.topic:
            try:
                await self.js.publish(outcome.topic, outcome.body, timeout=PUBLISH_TIMEOUT_S)
            except (NoStreamResponseError, NoRespondersError, APIError, TimeoutError) as exc:
                raise PublishFailed(
                    f"publishing to subject {outcome.topic!r} failed: {_reason(exc)}"
                ) from exc
            except (Error, OSError) as exc:
                raise Unreachable(_reason(exc)) from exc
        try:
            await self.msg.ack()
        except (Error, OSError) as exc:
            raise Unreachable(f"acknowledging failed: {_reason(exc)}") from exc

    async def release(self) -> None:
        await self.msg.nak()


class NatsConnection:
    def __init__(self, client: Client, js: JetStreamContext, subscription: Any, keepalive: float) -> None:
        self.client = client
        self.js = js
        self.subscription = subscription
        self.keepalive = keepalive
        self.lost: BaseException | None = None

    async def receive(self, limit: int) -> list[Message]:
        if self.client.is_closed:
            raise Unreachable(f"connection lost: {_reason(self.lost) if self.lost else 'closed'}")
        try:
            msgs = await self.subscription.fetch(limit, timeout=FETCH_WAIT_S)
        except TimeoutError:
            return []
        except NotFoundError as exc:  # the consumer or stream was deleted: set them up again
            raise Unreachable(f"the consumer is gone: {_reason(exc)}") from exc
        except (Error, OSError) as exc:
            raise Unreachable(_reason(exc)) from exc
        return [NatsMessage(msg, self.js, self.keepalive) for msg in msgs]

    async def close(self) -> None:
        if self.client.is_closed:
            return
        try:
            await asyncio.wait_for(self.client.flush(), 2)  # the last acks
        finally:
            await self.client.close()


class NatsBroker:
    header_names: tuple[str, ...] = NATS_HEADERS

    def __init__(self, trigger: MessageQueueTrigger, settings: Settings, concurrency: int) -> None:
        self.trigger = trigger
        self.servers = _servers(settings.require("NATS_SERVER", "natsServer"))
        self.addresses = [url_address(s, ("nats", "tls"), 4222, "natsServer") for s in self.servers]
        self.consumer = settings.require("CONSUMER", "consumer")
        self.stream = settings.get("STREAM") or None
        try:
            self.ack_wait = go_duration(settings.get("ACKWAIT", "30s"))
        except ValueError:
            raise misconfigured(
                f"ackwait must be a Go duration such as 30s, got {settings.get('ACKWAIT')!r}"
            ) from None
        self.concurrency = concurrency

    async def connect(self) -> NatsConnection:
        holder: list[NatsConnection] = []
        errors: list[Exception] = []

        async def on_error(exc: Exception) -> None:  # nats-py logs a traceback without one
            errors.append(exc)  # while connecting: the cause under "no servers available"
            if holder:
                holder[0].lost = exc

        try:
            client = await nats.connect(
                self.servers, allow_reconnect=False, max_reconnect_attempts=1, reconnect_time_wait=0.1,
                connect_timeout=CONNECT_TIMEOUT_S, error_cb=on_error,
                name=f"faas-runtime {self.trigger.meta.namespace}/{self.trigger.meta.name}",
            )  # fmt: skip
        except (Error, OSError, TimeoutError) as exc:
            raise Unreachable(_reason(errors[-1] if errors else exc)) from exc
        try:
            connection = await self._subscribe(client)
        except BaseException:
            await client.close()
            raise
        holder.append(connection)
        return connection

    async def _subscribe(self, client: Client) -> NatsConnection:
        js = client.jetstream(timeout=PUBLISH_TIMEOUT_S)
        config = ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL, ack_wait=self.ack_wait,
            max_ack_pending=max(1000, self.concurrency),
        )  # fmt: skip
        topic = self.trigger.topic
        try:
            subscription = await js.pull_subscribe(
                topic, durable=self.consumer, stream=self.stream, config=config
            )
        except NotFoundError as exc:
            what = f"stream {self.stream!r}" if self.stream else f"a stream capturing subject {topic!r}"
            raise misconfigured(f"no {what} on the server", permanent=False) from exc
        except APIError as exc:
            raise misconfigured(f"consumer {self.consumer!r}: {_reason(exc)}", permanent=False) from exc
        except (Error, OSError, TimeoutError) as exc:
            raise Unreachable(_reason(exc)) from exc
        return NatsConnection(client, js, subscription, self.ack_wait / 3)
