"""What asynchronous invocation keeps: events, dead letters, Redis keys, per-function settings."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.errors import RuntimeProblem
from runtime.http import Response
from runtime.objects import Function

if TYPE_CHECKING:
    from runtime.logs import LogCollector
    from runtime.store import Store

log = logging.getLogger(__name__)
# The router's header choosing the invocation type, as Lambda's X-Amz-Invocation-Type (values
# compared without case; absent is RequestResponse). It is never forwarded to the function.
INVOCATION_TYPE = b"x-faas-invocation-type"
EVENT, REQUEST_RESPONSE = b"event", b"requestresponse"
RETRIES_ANNOTATION = "faas-portal.io/async-retries"
MAX_AGE_ANNOTATION = "faas-portal.io/async-max-event-age"
DEFAULT_RETRIES, MAX_RETRIES = 2, 2
MIN_MAX_AGE, DEFAULT_MAX_AGE = 60, 6 * 3600
DEAD_LETTER_CAP = 10_000  # per function: the oldest go first
ERROR_BODY_LIMIT = 4096
RETRIES_EXHAUSTED, EVENT_AGE_EXCEEDED = "RetriesExhausted", "EventAgeExceeded"
GROUP = "dispatch"  # the consumer group reading each namespace's stream
Headers = list[tuple[bytes, bytes]]


class AsyncUnavailable(RuntimeProblem):
    status = 503
    code = "async_unavailable"


class QueueFull(RuntimeProblem):
    status = 429
    code = "queue_full"


def keyspace(state_dir: Path) -> str:
    """The prefix of one runtime's keys, named by its state directory: a restart finds its queue,
    and two runtimes sharing a Redis never see each other's."""
    return f"runtime:async:{hashlib.sha256(str(state_dir).encode()).hexdigest()[:12]}:"


@dataclass(frozen=True)
class Keys:
    prefix: str

    def queue(self, namespace: str) -> str:
        """A stream of the namespace's events (queued, or being called until they settle)."""
        return f"{self.prefix}q:{namespace}"

    def delayed(self, namespace: str) -> str:
        """A sorted set of the namespace's events waiting for a retry, by when it is due."""
        return f"{self.prefix}r:{namespace}"

    def dead(self, namespace: str, function: str) -> str:
        return f"{self.prefix}d:{namespace}:{function}"  # neither name can hold a colon

    @property
    def namespaces(self) -> str:
        """The namespaces that ever had an event: the streams to claim from at a start."""
        return f"{self.prefix}namespaces"


def text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


@dataclass
class Event:
    """One invocation as it is queued; its namespace is the stream's, never a field of it."""

    function: str
    method: str
    target: bytes  # path and query, as the function sees them
    headers: Headers
    body: bytes
    request_id: str
    accepted_at: float  # seconds since the epoch (it outlives the process)
    attempts: int = 0  # calls that failed
    throttles: int = 0  # calls refused with 429 (not attempts)
    redrive_of: str = ""  # the request id of the dead letter this one redrives
    error: dict[str, Any] | None = None  # the last failure: status, body, truncated

    def to_dict(self) -> dict[str, Any]:
        return {
            "fn": self.function, "method": self.method, "target": text(self.target),
            "headers": [[text(k), text(v)] for k, v in self.headers],
            "body": base64.b64encode(self.body).decode(), "id": self.request_id, "at": self.accepted_at,
            "attempts": self.attempts, "throttles": self.throttles, "redriveOf": self.redrive_of,
            "error": self.error,
        }  # fmt: skip

    def encode(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Event:
        """Raises ValueError when ``raw`` is not an event."""
        try:
            return cls(
                function=str(raw["fn"]), method=str(raw["method"]), target=raw["target"].encode("latin-1"),
                headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in raw["headers"]],
                body=base64.b64decode(raw["body"]), request_id=str(raw["id"]), accepted_at=float(raw["at"]),
                attempts=int(raw["attempts"]), throttles=int(raw["throttles"]),
                redrive_of=str(raw.get("redriveOf") or ""), error=raw.get("error"),
            )  # fmt: skip
        except (KeyError, TypeError, AttributeError, UnicodeError, ValueError) as exc:
            raise ValueError(f"not an event: {exc!r}") from None

    @classmethod
    def decode(cls, data: bytes | None) -> Event:
        """Raises ValueError when ``data`` is not an encoded event."""
        try:
            raw = json.loads(data or b"")
        except ValueError:
            raise ValueError("not an event: not JSON") from None
        return cls.from_dict(raw if isinstance(raw, dict) else {})

    def request_view(self) -> dict[str, Any]:
        """The request as the control API shows it (``path`` is the target: path and query;
        ``body`` is None when the body is not UTF-8 text, ``bodyBase64`` always there)."""
        try:
            body: str | None = self.body.decode()
        except UnicodeDecodeError:
            body = None
        return {"method": self.method, "path": text(self.target),
                "headers": [[text(k), text(v)] for k, v in self.headers],
                "body": body, "bodyBase64": base64.b64encode(self.body).decode()}  # fmt: skip

    def redriven(self, function: str) -> Event:
        """This event again, as a new one: attempts reset, a new request id naming this one's."""
        return Event(function, self.method, self.target, self.headers, self.body, uuid.uuid4().hex,
                     time.time(), redrive_of=self.request_id)  # fmt: skip


def dead_letter(event: Event, condition: str) -> str:
    """A dead letter's record: the event, why it failed (``RetriesExhausted``, ``EventAgeExceeded``)
    and when."""
    return json.dumps({"event": event.to_dict(), "condition": condition, "failedAt": time.time()})


def dead_letter_event(data: bytes | None) -> Event:
    """The event of a dead letter's record. Raises ValueError when it is unreadable."""
    try:
        return Event.from_dict(json.loads(data or b"")["event"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a dead letter: {exc!r}") from None


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dead_letter_view(namespace: str, entry_id: str, data: bytes | None) -> dict[str, Any]:
    """A dead letter as the control API shows it. Raises ValueError when it is unreadable."""
    event = dead_letter_event(data)
    try:
        record = json.loads(data or b"")
        condition, failed_at = str(record["condition"]), float(record["failedAt"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a dead letter: {exc!r}") from None
    return {
        "id": entry_id, "requestId": event.request_id, "namespace": namespace, "function": event.function,
        "request": event.request_view(), "condition": condition, "attempts": event.attempts,
        "error": event.error, "acceptedAt": _iso(event.accepted_at), "failedAt": _iso(failed_at),
        "redriveOf": event.redrive_of or None,
    }  # fmt: skip


def error_of(response: Response) -> dict[str, Any]:
    """What a dead letter keeps of a failed call: its status and the start of its body."""
    body = response.body[:ERROR_BODY_LIMIT]
    return {"status": response.status, "body": body.decode("utf-8", "replace"),
            "truncated": len(response.body) > ERROR_BODY_LIMIT}  # fmt: skip


def note(
    logs: LogCollector, store: Store, namespace: str, function: str, request_id: str, message: str
) -> None:
    """A line of the runtime's in the function's log, under the invocation's request id."""
    raw = store.raw.get(("functions", namespace, function)) or {}
    uid = str((raw.get("metadata") or {}).get("uid", ""))
    logs.note((namespace, function, uid), request_id, message)


# ------------------------------------------------------------------ per-function settings


@dataclass(frozen=True)
class Policy:
    retries: int = DEFAULT_RETRIES
    max_age: int = DEFAULT_MAX_AGE  # seconds


def policy_of(store: Store, namespace: str, function: str) -> Policy:
    """The function's retries and maximum event age (``policy_from``) as the store holds it."""
    return policy_from(store.raw.get(("functions", namespace, function)), f"{namespace}/{function}")


def policy_from(function: dict[str, Any] | None, who: str) -> Policy:
    """The retries and maximum event age of a Function object (as stored, or as a cluster holds
    it) from its annotations (Kubernetes annotations are strings: "2", "3600"); the defaults for
    a function that is gone (None), and for a bad value (logged once, naming ``who``)."""
    annotations = ((function or {}).get("metadata") or {}).get("annotations")
    if not isinstance(annotations, dict):
        return Policy()
    return Policy(
        _annotation(annotations, RETRIES_ANNOTATION, 0, MAX_RETRIES, DEFAULT_RETRIES, who),
        _annotation(annotations, MAX_AGE_ANNOTATION, MIN_MAX_AGE, DEFAULT_MAX_AGE, DEFAULT_MAX_AGE, who),
    )


def _annotation(annotations: dict[str, Any], name: str, low: int, high: int, default: int, who: str) -> int:
    value = annotations.get(name)
    if value is None:
        return default
    try:
        number = int(str(value).strip())
    except ValueError:
        number = low - 1
    if low <= number <= high:
        return number
    _warn_bad_annotation(who, name, str(value), f"{low}..{high}", default)
    return default


@functools.lru_cache(maxsize=1024)  # once per function and value: it is read for every event
def _warn_bad_annotation(who: str, name: str, value: str, allowed: str, default: int) -> None:
    log.warning(
        "function %s: %s=%r is not a whole number in %s; using %d", who, name, value, allowed, default
    )


def capacity_of(store: Store, namespace: str, function: str) -> int:
    """The function's calls at once (``capacity_from``) as the store holds it."""
    return capacity_from(store.parsed.get(("functions", namespace, function)))


def capacity_from(parsed: object) -> int:
    """How many calls a Function takes at once before its executor refuses (poolmgr) or queues
    (newdeploy) more; 1 for a function that is gone or unreadable (its events fail anyway)."""
    return parsed.capacity if isinstance(parsed, Function) else 1
