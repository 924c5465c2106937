"""The local runtime's record of calls: one capped Redis stream per namespace,
``runtime:calls:<namespace>`` (written by runtime/calls.py). Stream ids are append times in
milliseconds, and a call is appended after it started, so no id below ``since`` can match.
"""

from __future__ import annotations

import redis
from django.conf import settings

from dataplane.backends.base import CallRecord, TransientError
from runtime.calls import MAXLEN, stream_name  # the runtime writes the stream: it owns the name

BATCH = 5000
Entries = list[tuple[str, dict[str, str]]]


def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, decode_responses=True, socket_timeout=10)


def _record(fields: dict[str, str]) -> CallRecord | None:
    try:
        return CallRecord(
            time=float(fields["time"]), function=fields["function"], duration=float(fields["duration"]),
            startup=float(fields["startup"]), cold=fields.get("cold", ""), status=int(fields["status"]),
        )  # fmt: skip
    except (KeyError, ValueError):
        return None  # not an entry the runtime wrote


def read(namespace: str, functions: list[str], since: float) -> list[CallRecord]:
    """The namespace's calls of ``functions`` from ``since`` on, oldest first (at most the
    stream's length: it is capped)."""
    wanted = set(functions)
    found: list[CallRecord] = []
    low = str(max(0, int(since * 1000)))
    client = _client()
    try:
        for _ in range(MAXLEN // BATCH + 2):  # the stream holds about MAXLEN entries at most
            entries: Entries = client.xrange(stream_name(namespace), min=low, max="+", count=BATCH)  # type: ignore[assignment]
            for _, fields in entries:
                if fields.get("function") in wanted:
                    call = _record(fields)
                    if call is not None and call.time >= since:
                        found.append(call)
            if len(entries) < BATCH:
                break
            low = "(" + entries[-1][0]
    except redis.RedisError as exc:
        raise TransientError(f"the call record is unavailable: {exc}") from None
    finally:
        client.close()
    found.sort(key=lambda c: c.time)
    return found


def drop(namespace: str) -> None:
    """Delete the namespace's stream (its tenant is gone: a tenant reusing the slug starts empty)."""
    client = _client()
    try:
        client.delete(stream_name(namespace))
    except redis.RedisError as exc:
        raise TransientError(f"the call record could not be deleted: {exc}") from None
    finally:
        client.close()
