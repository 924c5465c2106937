"""The local runtime's captured requests: one Redis stream per portal function of a namespace,
``runtime:captures:<namespace>:<function>`` (written, redacted and trimmed by
runtime/captures.py, which owns the name and the fields). An entry past its ``expires`` is left
out: the runtime trims by age only when it writes.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time

import redis
from django.conf import settings

from dataplane.backends.base import CapturedRequest, TransientError
from runtime.captures import STREAM_PREFIX, captures_stream

_ENTRY_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
Entries = list[tuple[str, dict[str, str]]]


def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, decode_responses=True, socket_timeout=10)


def _headers(text: str) -> list[tuple[str, str]]:
    return [(str(name), str(value)) for name, value in json.loads(text)]


def _captured(entry_id: str, fields: dict[str, str]) -> CapturedRequest | None:
    try:
        return CapturedRequest(
            id=entry_id, time=float(fields["time"]), fission_function=fields["fission_function"],
            trigger_path=fields["trigger_path"], method=fields["method"], path=fields["path"],
            headers=_headers(fields["headers"]), body=base64.b64decode(fields["body"]),
            body_truncated=fields["body_truncated"] == "1", status=int(fields["status"]),
            response_headers=_headers(fields["response_headers"]),
            response_body=base64.b64decode(fields["response_body"]),
            response_truncated=fields["response_truncated"] == "1",
            duration_ms=float(fields["duration_ms"]), request_id=fields["request_id"],
        )  # fmt: skip
    except (KeyError, ValueError, TypeError, binascii.Error):
        return None  # not an entry the runtime wrote


def read(namespace: str, function: str) -> list[CapturedRequest]:
    """The function's captured requests within their retention, oldest first (at most the
    policy's ``max_requests``, 1000: the stream is trimmed to it)."""
    client = _client()
    try:
        entries: Entries = client.xrange(captures_stream(namespace, function), count=5000)  # type: ignore[assignment]
    except redis.RedisError as exc:
        raise TransientError(f"the captured requests are unavailable: {exc}") from None
    finally:
        client.close()
    now, found = time.time(), []
    for entry_id, fields in entries:
        captured = _captured(entry_id, fields)
        if captured is not None and float(fields.get("expires") or "inf") > now:
            found.append(captured)
    return found


def delete(namespace: str, function: str, ids: list[str] | None) -> int:
    """Delete the entries ``ids`` (all when None); how many went. An id that is not a stream
    entry id names no entry: it is skipped."""
    client = _client()
    stream = captures_stream(namespace, function)
    try:
        if ids is None:
            count = int(client.xlen(stream))
            client.delete(stream)
            return count
        valid = [entry_id for entry_id in ids if _ENTRY_ID.fullmatch(entry_id)]
        return int(client.xdel(stream, *valid)) if valid else 0
    except redis.RedisError as exc:
        raise TransientError(f"the captured requests could not be deleted: {exc}") from None
    finally:
        client.close()


def drop(namespace: str) -> None:
    """Delete every capture stream of the namespace (its tenant is gone: a tenant reusing the slug
    starts empty). Namespaces and function names hold no ``:`` nor glob character, so the pattern
    matches this namespace's streams only."""
    client = _client()
    try:
        keys = list(client.scan_iter(match=f"{STREAM_PREFIX}{namespace}:*", count=1000))
        if keys:
            client.delete(*keys)
    except redis.RedisError as exc:
        raise TransientError(f"the captured requests could not be deleted: {exc}") from None
    finally:
        client.close()
