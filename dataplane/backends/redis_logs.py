"""The local runtime's logs: one capped Redis stream per namespace, ``runtime:logs:<namespace>``
(written by runtime/logs.py). Stream ids are the append time in milliseconds, so they order the
records and bound a time range; a page's cursor is the id of its oldest record.

Reference: https://redis.io/docs/latest/commands/xrevrange/ and https://redis.io/docs/latest/commands/xread/
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import redis
from django.conf import settings

from dataplane.backends.base import InvalidCursor, LogPage, LogQuery, LogRecord, TransientError
from runtime.logs import stream_name  # the runtime writes the stream: it owns the name

BATCH = 1000
APPEND_DELAY_S = 60
SCAN_LIMIT = 50_000  # records read for one page at most; the cursor continues from there
_CURSOR = re.compile(r"[0-9]{1,19}-[0-9]{1,19}")  # a stream id, within Redis' 64-bit parts
Entries = list[tuple[str, dict[str, str]]]  # what XRANGE and XREAD give with decode_responses


def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, decode_responses=True, socket_timeout=5)


def record(entry_id: str, fields: dict[str, str]) -> LogRecord:
    return LogRecord(
        time=float(fields.get("time", 0) or 0),
        namespace=fields.get("namespace", ""),
        function=fields.get("function", ""),
        request_id=fields.get("request_id", ""),
        stream=fields.get("stream", ""),
        message=fields.get("message", ""),
        id=entry_id,
    )


def _bounds(query: LogQuery) -> tuple[str, str]:
    """XREVRANGE's (max, min): the cursor (exclusive) or ``until``, down to ``since``. A record is
    appended after it was printed, so no id below ``since`` can match; but one printed before
    ``until`` may have been appended up to APPEND_DELAY_S later (the collector retries)."""
    if query.cursor is not None:
        if not _CURSOR.fullmatch(query.cursor):
            raise InvalidCursor("the cursor is not one this API gave")
        high = "(" + query.cursor
    else:
        high = f"{int((query.until + APPEND_DELAY_S) * 1000)}" if query.until is not None else "+"
    low = f"{max(0, int(query.since * 1000))}" if query.since is not None else "-"
    return high, low


def search(namespace: str, query: LogQuery) -> LogPage:
    """Newest first; reads at most SCAN_LIMIT records per page, then hands back a cursor."""
    high, low = _bounds(query)
    found: list[LogRecord] = []
    scanned, last_id = 0, None
    client = _client()
    try:
        while len(found) < query.limit and scanned < SCAN_LIMIT:
            entries: Entries = client.xrevrange(stream_name(namespace), max=high, min=low, count=BATCH)  # type: ignore[assignment]
            if not entries:
                return LogPage(found, None)
            for entry_id, fields in entries:
                scanned, last_id = scanned + 1, entry_id
                item = record(entry_id, fields)
                if query.matches(item):
                    found.append(item)
                    if len(found) == query.limit:
                        break
            high = "(" + str(last_id)
    except redis.RedisError as exc:
        raise TransientError(f"logs are unavailable: {exc}") from None
    finally:
        client.close()
    return LogPage(found, str(last_id) if last_id else None)


def drop(namespace: str) -> None:
    """Delete the namespace's stream (its tenant is gone: a tenant reusing the slug starts empty)."""
    client = _client()
    try:
        client.delete(stream_name(namespace))
    except redis.RedisError as exc:
        raise TransientError(f"the log stream could not be deleted: {exc}") from None
    finally:
        client.close()


def tail(namespace: str, stop: threading.Event, since: float | None = None) -> Iterator[list[LogRecord]]:
    """Records appended from ``since`` (epoch seconds; now by default) on, batch by batch, until
    ``stop``; reconnects after an outage and carries on from the last id it saw, so nothing
    appended meanwhile is missed."""
    last = f"{int(since * 1000) - 1}" if since is not None else "$"
    stream, pause = stream_name(namespace), 0.1
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True, socket_timeout=10)
    try:
        while not stop.is_set():
            try:
                answer: list[tuple[str, Entries]] = client.xread({stream: last}, count=BATCH, block=1000)  # type: ignore[assignment]
            except redis.RedisError:
                yield []
                stop.wait(pause)
                pause = min(5.0, pause * 2)
                continue
            pause = 0.1
            entries: Entries = answer[0][1] if answer else []
            if entries:
                last = entries[-1][0]
            yield [record(entry_id, fields) for entry_id, fields in entries]
    finally:
        client.close()
