"""Calls through a Fission-compatible router (the runtime's, or Fission's on a cluster)."""

from __future__ import annotations

import time

import httpx

from dataplane.backends.base import InvokeResult, TransientError
from dataplane.backends.pool import shared_client


def invoke_router(
    router_url: str, method: str, path: str, headers: dict[str, str], body: bytes, timeout_s: float
) -> InvokeResult:
    """Send one request to ``router_url + path`` like real traffic, timing the whole round trip."""
    started = time.perf_counter()
    try:
        response = shared_client().request(
            method, router_url.rstrip("/") + path, headers=headers, content=body, timeout=timeout_s
        )
    except httpx.TimeoutException:
        raise TransientError("the call timed out") from None
    except httpx.HTTPError as exc:
        raise TransientError(f"the router is unreachable: {exc}") from None
    return InvokeResult(
        status=response.status_code,
        headers=dict(response.headers),
        body=response.content,
        duration_ms=(time.perf_counter() - started) * 1000,
        request_id=response.headers.get("x-fission-request-id", ""),
    )
