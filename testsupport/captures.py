"""A failed request in the local data plane's capture store, as the runtime's router writes it
(runtime/captures.py), for tests that need one without making the call."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from django.conf import settings

from runtime import captures


@contextmanager
def captured_request(namespace: str, function: str, *, path: str = "/", status: int = 500) -> Iterator[str]:
    """Yields the entry's id; the function's capture stream is removed afterwards."""
    call = captures.Captured(
        namespace=namespace, policy=captures.CapturePolicy(function=function),
        fission_function=f"{function}-v1", trigger_path=f"/{function}", method="GET", target=path.encode(),
        headers=[], body=b"", status=status, response_headers=[], response_body=b"boom", started=time.time(),
        duration_ms=1.0, request_id="test",
    )  # fmt: skip
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    stream = captures.captures_stream(namespace, function)
    try:
        fields: dict[Any, Any] = dict(captures.entry(call))
        yield str(client.xadd(stream, fields))
    finally:
        client.delete(stream)
        client.close()
