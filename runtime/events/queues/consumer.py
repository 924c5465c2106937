"""One trigger's consumer, whatever its broker: connect (past the gate), receive as many messages as
there are free slots, hand each to ``Delivery``, store its outcome and acknowledge it; reconnect
with backoff when the broker is unreachable or the connection is lost.

At-least-once: a message is acknowledged only after its function answered and its response (or
error) was stored on the broker (``Message.settle``). A message whose outcome could not be stored,
or that the consumer gives back when it stops, is released unacknowledged and delivered again.

Concurrency: at most ``concurrent`` (metadata; default 10) messages of a trigger are processed at
once, and never more than its function can take (concurrency x requestsPerPod for poolmgr,
MaxScale x requestsPerPod for newdeploy), so that the function's own limit is met with waiting,
not with 429s.

Stopping: no new messages are taken; those in flight get ``GRACE_S`` to finish, then are
abandoned unacknowledged (the broker delivers them again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from runtime import metrics
from runtime.executor import Executor
from runtime.logs import LogCollector
from runtime.objects import MessageQueueTrigger, Secret

from .base import Gate, PublishFailed, Refused, Settings, Status, Unreachable, address_text, trigger_settings
from .delivery import Delivery, Outcome, Stopped

log = logging.getLogger(__name__)
GRACE_S = 10.0
RECONNECT_BASE_S = 0.5
RECONNECT_CAP_S = 30.0
RELEASE_DELAY_S = 1.0  # before a message whose outcome could not be stored is given back


class Message(Protocol):
    """A received message. ``headers``: its own (NATS), none elsewhere. ``keepalive``: seconds
    between ``touch`` calls while it is processed (NATS: before its ack wait ends), or None."""

    body: bytes
    headers: dict[str, str]
    keepalive: float | None

    async def touch(self) -> None: ...

    async def settle(self, outcome: Outcome) -> None:
        """Store ``outcome.body`` on ``outcome.topic`` (when set), then acknowledge. Raises
        PublishFailed or Unreachable, leaving the message unacknowledged."""

    async def release(self) -> None:
        """Give the message back unacknowledged, to be delivered again."""


class Connection(Protocol):
    async def receive(self, limit: int) -> list[Message]:
        """Up to ``limit`` messages, waiting about a second at most; raises Unreachable once the
        connection is lost."""

    async def close(self) -> None: ...


class Broker(Protocol):
    """A broker adapter, made from a trigger's settings (raises Refused when they do not do)."""

    header_names: tuple[str, ...]
    addresses: list[tuple[str, int]]

    async def connect(self) -> Connection:
        """Raises Unreachable, or Refused when the broker refuses the configuration."""


BrokerFactory = Callable[[MessageQueueTrigger, Settings, int], Broker]


def reconnect_delay(failures: int) -> float:
    """Exponential from 0.5 s, at most 30 s, with 20% jitter (triggers of one broker spread out)."""
    delay = min(RECONNECT_CAP_S, RECONNECT_BASE_S * 2 ** (failures - 1))
    return float(delay * random.uniform(0.8, 1.0))  # noqa: S311 - jitter, not secrecy


def capacity(executor: Executor, namespace: str, function: str) -> int:
    """How many calls the function takes at once (1 while it is not deployed)."""
    deployable = executor.deployables.get((namespace, function))
    return 1 if deployable is None else deployable.function.capacity


class Slots:
    """Messages in flight, up to ``limit()`` (read again whenever one finishes)."""

    def __init__(self, limit: Callable[[], int]) -> None:
        self.limit = limit
        self.active = 0
        self.changed = asyncio.Event()

    async def free(self, stopping: asyncio.Event) -> int:
        """How many more may start (> 0), once any may; 0 when stopping."""
        while not stopping.is_set():
            free = self.limit() - self.active
            if free > 0:
                return free
            self.changed.clear()
            await self.changed.wait()
        return 0

    def take(self) -> None:
        self.active += 1

    def give(self) -> None:
        self.active -= 1
        self.changed.set()


class Consumer:
    """Consumes one trigger's messages until stopped (module docstring). Never raises."""

    def __init__(self, trigger: MessageQueueTrigger, secret: Secret | None, factory: BrokerFactory,
                 executor: Executor, gate: Gate, status: Status,
                 logs: LogCollector | None = None) -> None:  # fmt: skip
        self.trigger = trigger
        self.secret = secret
        self.factory = factory
        self.executor = executor
        self.gate = gate
        self.status = status
        self.logs = logs
        self.stopping = asyncio.Event()
        self.in_flight: set[asyncio.Task[None]] = set()
        self.failures = 0
        self.task: asyncio.Task[None] | None = None
        self.slots = Slots(lambda: 1)
        self.label = f"{trigger.meta.namespace}/{trigger.meta.name}"

    def start(self, after: Awaitable[None] | None = None) -> None:
        """Run in the background, once ``after`` (the stop of this trigger's previous consumer) is done."""
        self.task = asyncio.create_task(self._run(after), name=f"mq {self.label}")

    async def stop(self) -> None:
        self.stopping.set()
        self.slots.changed.set()
        if self.task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self.task), GRACE_S + 5)
        except TimeoutError:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _run(self, after: Awaitable[None] | None) -> None:
        if after is not None:
            with contextlib.suppress(Exception):
                await after
        while not self.stopping.is_set():
            try:
                await self._session()
                continue  # ended by stop()
            except Refused as exc:
                self._refused(exc)
                if exc.permanent:
                    return
            except Unreachable as exc:
                self._unreachable(str(exc))
            except Exception as exc:  # an adapter's bug must not end the consumer, nor the runtime
                log.exception("mq %s: the consumer failed", self.label)
                self._unreachable(repr(exc))
            self.failures += 1
            await self._pause(reconnect_delay(self.failures))

    def _refused(self, exc: Refused) -> None:
        changed = self.status.set(exc.state, exc.message)
        log.log(logging.WARNING if changed else logging.DEBUG, "mq %s: %s", self.label, exc.message)

    def _unreachable(self, reason: str) -> None:
        """Logged when it starts or its reason changes; counted every time."""
        changed = self.status.set("broker unreachable", f"broker unreachable: {reason}")
        namespace, name, function = self.trigger.meta.namespace, self.trigger.meta.name, self.trigger.function
        metrics.observe_event(namespace, "mq", name, function, "unreachable")
        log.log(
            logging.WARNING if changed else logging.DEBUG, "mq %s: broker unreachable: %s", self.label, reason
        )

    async def _pause(self, seconds: float) -> None:
        """Sleep, cut short by stop()."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def _session(self) -> None:
        """Connect and consume until stopped (returns) or the connection is lost (raises)."""
        settings = trigger_settings(self.trigger, self.secret)
        concurrency = settings.concurrency()
        broker = self.factory(self.trigger, settings, concurrency)
        self.status.broker = ", ".join(address_text(host, port) for host, port in broker.addresses)
        await self.gate.check(broker.addresses)
        connection = await broker.connect()
        self.failures = 0
        namespace, function = self.trigger.meta.namespace, self.trigger.function
        self.slots = Slots(lambda: min(concurrency, capacity(self.executor, namespace, function)))
        delivery = Delivery(
            self.executor, self.trigger, broker.header_names, self.status, self.stopping, self.logs
        )
        self.status.set("consuming", f"consuming {self.trigger.topic!r} on {self.status.broker}")
        log.info("mq %s: %s", self.label, self.status.message)
        try:
            await self._pump(connection, delivery)
        finally:
            await self._drain()
            with contextlib.suppress(Exception):
                await connection.close()

    async def _pump(self, connection: Connection, delivery: Delivery) -> None:
        while True:
            free = await self.slots.free(self.stopping)
            if not free:
                return
            for message in await connection.receive(free):
                self.status.last_message_at = time.time()
                self.slots.take()
                task = asyncio.create_task(self._handle(message, delivery))
                self.in_flight.add(task)
                task.add_done_callback(self.in_flight.discard)

    async def _drain(self) -> None:
        """Let the messages in flight finish (GRACE_S at most once stopping), then abandon the rest."""
        if not self.in_flight:
            return
        await asyncio.wait(set(self.in_flight), timeout=GRACE_S)
        for task in set(self.in_flight):
            task.cancel()
        if self.in_flight:
            await asyncio.wait(set(self.in_flight))

    async def _handle(self, message: Message, delivery: Delivery) -> None:
        """Process and settle one message; give it back when that cannot be done."""
        try:
            outcome = await self._process(message, delivery)
            await message.settle(outcome)
        except Stopped:
            await self._release(message, pause=False)
        except (PublishFailed, Unreachable) as exc:
            self.status.error(f"message {self.status.last_request_id}: {exc}")
            log.warning("mq %s: a message was not acknowledged: %s", self.label, exc)
            await self._release(message, pause=True)
        except Exception:  # an adapter's bug: the message goes back, the consumer goes on
            log.exception("mq %s: settling a message failed", self.label)
            await self._release(message, pause=True)
        else:
            delivery.settled(outcome)
        finally:
            self.slots.give()

    async def _process(self, message: Message, delivery: Delivery) -> Outcome:
        """The delivery, with ``touch`` calls meanwhile when the broker needs them."""
        if message.keepalive is None:
            return await delivery.process(message.body, message.headers)
        work = asyncio.ensure_future(delivery.process(message.body, message.headers))
        try:
            while not (await asyncio.wait({work}, timeout=message.keepalive))[0]:
                with contextlib.suppress(Exception):
                    await message.touch()
            return work.result()
        finally:
            work.cancel()

    async def _release(self, message: Message, *, pause: bool) -> None:
        if pause:
            await self._pause(RELEASE_DELAY_S)
        try:
            await message.release()
        except Exception as exc:  # noqa: BLE001 - the broker delivers it again anyway (ack wait, requeue)
            log.debug("mq %s: releasing a message failed: %s", self.label, exc)
