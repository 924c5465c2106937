"""Test calls: through the router like real traffic, with the logs of that one request."""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict

from core.errors import ValidationFailed
from dataplane.backends import get_backend
from dataplane.backends.base import Backend, BackendError, LogRecord
from functions.models import Function, Invocation
from tenants.selectors import current_tenant

MAX_BODY_CHARS = 64 * 1024
LOG_SETTLE_S = 1.0  # log records travel worker -> runtime -> Redis; wait this long at most
QUIET_S = 0.3  # ...but not when none has arrived by then
_HIDDEN_HEADERS = {"authorization", "cookie", "x-fission-request-id"}


def invocation_create(
    *, function: Function, method: str, path: str, headers: dict[str, str], body: str, user: str = ""
) -> Invocation:
    """Call ``/<tenant><path>`` on the router and record status, body, duration and logs."""
    # "/acme" + "2/x" would be tenant acme2's route: the path must start a new segment.
    if not path.startswith("/") or ".." in path.split("?")[0].split("/"):
        raise ValidationFailed("The path must start with '/' and contain no '..'.", detail={"path": [path]})
    tenant = current_tenant()
    request_id = uuid.uuid4().hex
    sent = {k: v for k, v in headers.items() if k.lower() not in _HIDDEN_HEADERS}
    invocation = Invocation(
        function=function, method=method, path=path, request_headers=sent, request_body=body[:MAX_BODY_CHARS],
        request_id=request_id, invoked_by=user,
    )  # fmt: skip
    backend, called_at = get_backend(), time.time()
    try:
        result = backend.invoke(
            method, f"/{tenant.slug}{path}", {**sent, "X-Fission-Request-ID": request_id}, body.encode(),
            timeout_s=function.timeout_s + 5,
        )  # fmt: skip
    except BackendError as exc:
        invocation.error = exc.message
    else:
        invocation.status, invocation.duration_ms = result.status, round(result.duration_ms, 2)
        invocation.response_headers = {k: v for k, v in result.headers.items() if k.lower() != "set-cookie"}
        invocation.response_body = result.body.decode(errors="replace")[:MAX_BODY_CHARS]
        records = _logs_of(backend, tenant.namespace, request_id, function.name, called_at)
        invocation.logs = [asdict(r) for r in records]
    invocation.save()
    return invocation


def _logs_of(
    backend: Backend, namespace: str, request_id: str, function: str, since: float
) -> list[LogRecord]:
    """The request's log records, once no new one arrived for a moment (bounded wait).

    The local runtime knows which request wrote a line; Kubernetes does not, so there the
    function's lines since the call are what the caller gets."""
    started = time.monotonic()
    seen, records = -1, []
    while time.monotonic() - started < LOG_SETTLE_S:
        try:
            records = backend.logs(namespace, request_id=request_id, function=function, since=since - 1)
        except BackendError:
            return []
        if len(records) == seen and (records or time.monotonic() - started > QUIET_S):
            break  # settled; or nothing at all after a moment: the function printed nothing
        seen = len(records)
        time.sleep(0.1)
    return records
