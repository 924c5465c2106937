"""What every broker's consumer shares: a trigger's connection settings as Fission hands them to its
KEDA connector, the gate a broker address must pass before the runtime connects to it, the errors
a broker adapter raises, and the status a trigger shows.

Settings. Fission's scaler manager (pkg/mqtrigger/scalermanager.go) gives the connector each
``spec.metadata`` entry and then each key of ``spec.secret`` as an environment variable named by
``toEnvVar`` (``natsServer`` -> ``NATS_SERVER``, ``host`` -> ``HOST``); a secret key wins over a
metadata key of the same name, as the later of two equal variables does in a pod. The connectors
read those names, so keys are matched here by the same transformation: ``natsServer`` in the
metadata and ``nats_server`` in a secret are the same setting.

The gate (SSRF). The runtime runs on the host's network, so a broker address a tenant writes could
reach any service of the host. Only the addresses the operator lists in ``RUNTIME_MQ_BROKERS`` are
connected to, compared as the exact ``host:port`` string the trigger names (lower-cased; no name
resolution: list every spelling you allow); and never the runtime's own Redis (``REDIS_URL``), even
when listed: that one is also compared after resolving both names, with every loopback and
unspecified address taken as the same host. No client follows a broker elsewhere: NATS's reconnection
(to the servers a server advertises) is off, and Redis is not spoken to as a cluster.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from runtime.objects import MessageQueueTrigger, Secret

NOT_ALLOWED = "broker not allowed by the runtime's RUNTIME_MQ_BROKERS"
# Messages of one trigger in flight (metadata ``concurrent``), by default as the RabbitMQ connector.
DEFAULT_CONCURRENCY = 10
MAX_CONCURRENCY = 256
_FIRST_CAP = re.compile(r"(.)([A-Z][a-z]+)")
_ALL_CAP = re.compile(r"([a-z0-9])([A-Z])")


class Refused(Exception):
    """The consumer cannot run as configured. ``state`` is "misconfigured" or "not allowed";
    ``permanent`` when only a change of the trigger, its secret or the runtime fixes it (nothing
    is retried then); otherwise (a queue or stream that does not exist yet) the consumer retries."""

    def __init__(self, state: str, message: str, *, permanent: bool = True) -> None:
        super().__init__(message)
        self.state = state
        self.message = message
        self.permanent = permanent


def misconfigured(message: str, *, permanent: bool = True) -> Refused:
    return Refused("misconfigured", f"misconfigured: {message}", permanent=permanent)


class Unreachable(Exception):
    """The broker could not be reached, or the connection to it was lost: retried with backoff."""


class PublishFailed(Exception):
    """The function's response or error could not be stored on the broker: the message is not
    acknowledged, and is delivered again."""


def env_name(key: str) -> str:
    """Fission's ``toEnvVar``: ``natsServer`` -> ``NATS_SERVER``."""
    return _ALL_CAP.sub(r"\1_\2", _FIRST_CAP.sub(r"\1_\2", key)).upper()


@dataclass(frozen=True)
class Settings:
    """A trigger's broker settings by environment name (``NATS_SERVER``), metadata then secret."""

    values: dict[str, str]

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default).strip() or default

    def require(self, name: str, key: str) -> str:
        """The setting, or Refused naming the metadata or secret key that would give it."""
        value = self.get(name)
        if not value:
            raise misconfigured(f"{key} is required (spec.metadata.{key} or a key {key} of spec.secret)")
        return value

    def concurrency(self) -> int:
        """``concurrent`` (the connectors' ``CONCURRENT``): messages processed at once."""
        text = self.get("CONCURRENT")
        if not text:
            return DEFAULT_CONCURRENCY
        if not text.isdigit() or not 1 <= int(text) <= MAX_CONCURRENCY:
            raise misconfigured(f"concurrent must be an integer from 1 to {MAX_CONCURRENCY}, got {text!r}")
        return int(text)


def trigger_settings(trigger: MessageQueueTrigger, secret: Secret | None) -> Settings:
    """Raises Refused when the trigger names a secret that does not exist."""
    values = {env_name(key): value for key, value in trigger.metadata.items()}
    if trigger.secret:
        if secret is None:
            raise misconfigured(f"secret {trigger.secret!r} not found in namespace {trigger.meta.namespace}")
        values.update((env_name(key), value.decode("utf-8", "replace")) for key, value in secret.data.items())
    return Settings(values)


def split_address(address: str, default_port: int, key: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``) as (host, port). The value is not quoted in the error: it
    may hold credentials."""
    try:
        parts = urlsplit("//" + address.rpartition("@")[2])
        host, port = parts.hostname, parts.port
    except ValueError:
        raise misconfigured(f"{key} is not a host:port address") from None
    if not host:
        raise misconfigured(f"{key} is not a host:port address")
    return host, port or default_port


def url_address(url: str, schemes: tuple[str, ...], default_port: int, key: str) -> tuple[str, int]:
    """The (host, port) of a broker URL (``amqp://user:pass@host:5672/vhost``)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise misconfigured(f"{key} is not a valid URL") from None
    if parts.scheme not in schemes or not host:
        raise misconfigured(f"{key} must be a {' or '.join(s + '://' for s in schemes)} URL with a host")
    return host, port or default_port


def address_text(host: str, port: int) -> str:
    """``host:port`` as RUNTIME_MQ_BROKERS lists it (``[v6]:port`` for an IPv6 address)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Gate:
    """Which broker addresses consumers may connect to (module docstring)."""

    def __init__(self, allowed: frozenset[str], own_redis_url: str | None) -> None:
        self.allowed = allowed
        self.own: tuple[str, int] | None = None
        if own_redis_url and urlsplit(own_redis_url).hostname:
            own = urlsplit(own_redis_url)
            self.own = (own.hostname or "", own.port or 6379)

    async def check(self, addresses: list[tuple[str, int]]) -> None:
        """Raises Refused ("not allowed") unless every address may be connected to."""
        for host, port in addresses:
            text = address_text(host.lower(), port)
            if text not in self.allowed or await self._is_own_redis(host, port):
                raise Refused("not allowed", f"{NOT_ALLOWED}: {text}")

    async def _is_own_redis(self, host: str, port: int) -> bool:
        if self.own is None or port != self.own[1]:
            return False
        if host.lower() == self.own[0].lower():
            return True
        theirs, ours = await _hosts(host), await _hosts(self.own[0])
        return bool(theirs & ours)


async def _hosts(host: str) -> set[str]:
    """The addresses ``host`` resolves to, every loopback and unspecified one as "local"; a name
    that does not resolve gives itself (connecting to it fails anyway)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None)
    except OSError:
        return {host.lower()}
    result = set()
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        result.add("local" if address.is_loopback or address.is_unspecified else str(address))
    return result


def _iso(stamp: float | None) -> str | None:
    return None if stamp is None else datetime.fromtimestamp(stamp, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Status:
    """What a trigger's consumer is doing, for the control API (``Runtime.event_status``).

    ``state``: "starting", "consuming", "broker unreachable", "not allowed" or "misconfigured";
    ``message`` says it in a sentence ("broker unreachable: <reason>"). ``messages`` counts the
    messages settled (response or error stored, acknowledged), ``failures`` those that failed
    after every attempt."""

    state: str = "starting"
    message: str = "starting"
    broker: str = ""
    messages: int = 0
    failures: int = 0
    last_message_at: float | None = None
    last_error: str | None = None
    last_request_id: str | None = None
    since: float = field(default_factory=time.time)

    def set(self, state: str, message: str) -> bool:
        """Whether this changed the state or message."""
        if (state, message) == (self.state, self.message):
            return False
        self.state, self.message, self.since = state, message, time.time()
        return True

    def error(self, message: str) -> None:
        self.last_error = message[:1000]

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state, "message": self.message, "since": _iso(self.since), "broker": self.broker,
            "messages": self.messages, "failures": self.failures, "lastMessageAt": _iso(self.last_message_at),
            "lastError": self.last_error, "lastRequestId": self.last_request_id,
        }  # fmt: skip
