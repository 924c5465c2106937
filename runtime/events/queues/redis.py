"""Redis list consumer, as Fission's ``redis-http-connector`` consumes (KEDA's redis scaler
watches the length of the same list).
# Reference: https://redis.io/docs/latest/commands/blmove/ ("Pattern: Reliable queue")

Settings (metadata or secret keys, matched as ``base`` says): ``address`` (``host:port``, or a
``redis://`` / ``rediss://`` URL; else ``host`` and ``port``, as KEDA's scaler also takes them),
``password`` (or ``passwordFromEnv``, the variable the connector reads its password from),
``username``, ``databaseIndex`` (default 0), ``enableTLS`` (``true``).

``spec.topic`` is the list read from its head (the connector's BLPOP); responses and errors are
RPUSHed to the ``respTopic`` / ``errorTopic`` lists, as the connector does.

At-least-once, where the connector's BLPOP loses a message it took when it dies: each message is
moved atomically (BLMOVE) from the head of the topic to the tail of the trigger's processing list,
``<topic>:processing:<namespace>:<trigger>``; one script then pushes its response or error and
removes it from the processing list, so that it is either still there or settled. On connecting,
whatever a previous run left in the processing list goes back to the head of the topic, in order;
a message given back is moved there the same way. (BLMOVE and LMOVE need Redis 6.2 or later.)
"""

from __future__ import annotations

from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError, ResponseError

from runtime.objects import MessageQueueTrigger

from .base import PublishFailed, Settings, Unreachable, misconfigured, split_address, url_address
from .consumer import Message
from .delivery import KEDA_HEADERS, Outcome

CONNECT_TIMEOUT_S = 5.0
SOCKET_TIMEOUT_S = 10.0  # longer than the blocking wait below
RECEIVE_WAIT_S = 1  # seconds (BLMOVE takes decimals; redis-py types it int)
# KEYS: processing list, topic. ARGV: most to move. Moves up to that many from the topic's head.
_TAKE = """
local taken = {}
for _ = 1, tonumber(ARGV[1]) do
  local item = redis.call('LMOVE', KEYS[2], KEYS[1], 'LEFT', 'RIGHT')
  if not item then break end
  taken[#taken + 1] = item
end
return taken
"""
# KEYS: processing list, destination ('' for none). ARGV: the message, what to push. A failing
# push raises before the removal: the message stays in the processing list.
_SETTLE = """
if KEYS[2] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[2]) end
return redis.call('LREM', KEYS[1], 1, ARGV[1])
"""
# KEYS: processing list, topic. ARGV: the message. Back to the head of the topic.
_RELEASE = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) > 0 then redis.call('LPUSH', KEYS[2], ARGV[1]) end
return 0
"""


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def processing_list(trigger: MessageQueueTrigger) -> str:
    return f"{trigger.topic}:processing:{trigger.meta.namespace}:{trigger.meta.name}"


class RedisMessage:
    keepalive: float | None = None

    def __init__(self, connection: RedisConnection, body: bytes) -> None:
        self.connection = connection
        self.body = body
        self.headers: dict[str, str] = {}

    async def touch(self) -> None:
        return None

    async def settle(self, outcome: Outcome) -> None:
        keys = [self.connection.processing, outcome.topic]
        try:
            await self.connection.settle_script(keys=keys, args=[self.body, outcome.body])
        except ResponseError as exc:
            raise PublishFailed(f"pushing to list {outcome.topic!r} failed: {_reason(exc)}") from exc
        except (RedisError, OSError) as exc:
            raise Unreachable(_reason(exc)) from exc

    async def release(self) -> None:
        connection = self.connection
        await connection.release_script(keys=[connection.processing, connection.topic], args=[self.body])


class RedisConnection:
    def __init__(self, client: Redis, trigger: MessageQueueTrigger) -> None:
        self.client = client
        self.topic = trigger.topic
        self.processing = processing_list(trigger)
        self.take_script, self.settle_script, self.release_script = (
            client.register_script(script) for script in (_TAKE, _SETTLE, _RELEASE)
        )

    async def requeue(self) -> int:
        """Put back what a previous run left in the processing list; how many."""
        count = 0
        while await self.client.lmove(self.processing, self.topic, "RIGHT", "LEFT") is not None:
            count += 1
        return count

    async def receive(self, limit: int) -> list[Message]:
        try:
            first = await self.client.blmove(self.topic, self.processing, RECEIVE_WAIT_S, "LEFT", "RIGHT")
            if first is None:
                return []
            more = (
                await self.take_script(keys=[self.processing, self.topic], args=[limit - 1])
                if limit > 1
                else []
            )
        except ResponseError as exc:  # e.g. the topic's key holds something else than a list
            raise misconfigured(f"list {self.topic!r}: {_reason(exc)}", permanent=False) from exc
        except (RedisError, OSError) as exc:
            raise Unreachable(_reason(exc)) from exc
        return [RedisMessage(self, body) for body in [first, *more]]

    async def close(self) -> None:
        await self.client.aclose()


class RedisBroker:
    header_names: tuple[str, ...] = KEDA_HEADERS

    def __init__(self, trigger: MessageQueueTrigger, settings: Settings, concurrency: int) -> None:
        self.trigger = trigger
        address = settings.get("ADDRESS")
        self.tls = settings.get("ENABLE_TLS").lower() == "true"
        if "://" in address:
            self.tls = self.tls or urlsplit(address).scheme == "rediss"
            host, port = url_address(address, ("redis", "rediss"), 6379, "address")
        elif address:
            host, port = split_address(address, 6379, "address")
        else:
            host, text = settings.require("HOST", "address"), settings.get("PORT", "6379")
            if not text.isdigit() or not 0 < int(text) < 65536:
                raise misconfigured(f"port must be a port number, got {text!r}")
            port = int(text)
        self.addresses = [(host, port)]
        self.password = settings.get("PASSWORD") or settings.get("PASSWORD_FROM_ENV") or None
        self.username = settings.get("USERNAME") or None
        index = settings.get("DATABASE_INDEX", "0")
        if not index.isdigit():
            raise misconfigured(f"databaseIndex must be a number, got {index!r}")
        self.database = int(index)

    async def connect(self) -> RedisConnection:
        host, port = self.addresses[0]
        client = Redis(
            host=host, port=port, db=self.database, username=self.username, password=self.password,
            ssl=self.tls, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=SOCKET_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
            client_name=f"faas-runtime:{self.trigger.meta.namespace}:{self.trigger.meta.name}",
        )  # fmt: skip
        connection = RedisConnection(client, self.trigger)
        try:
            await connection.requeue()
        except AuthenticationError as exc:
            await client.aclose()
            raise misconfigured(
                f"the broker refused the credentials: {_reason(exc)}", permanent=False
            ) from exc
        except ResponseError as exc:
            await client.aclose()
            raise misconfigured(f"list {self.trigger.topic!r}: {_reason(exc)}", permanent=False) from exc
        except (RedisError, OSError) as exc:
            await client.aclose()
            raise Unreachable(_reason(exc)) from exc
        return connection
