"""Test calls: through the router like real traffic, with the logs of that one request."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import asdict
from typing import Any

from django.conf import settings
from django.db import transaction

from audit import services as audit
from core.errors import Conflict, ValidationFailed
from dataplane.backends import get_backend
from dataplane.backends.base import Backend, BackendError, LogRecord
from functions.models import Function, Invocation, SavedEvent
from functions.services.common import full_clean
from runtime import timing
from tenants.selectors import current_tenant

MAX_BODY_CHARS = 64 * 1024
LOG_SETTLE_S = 1.0  # log records travel worker -> runtime -> Redis; wait this long at most
QUIET_S = 0.3  # ...but not when none has arrived by then
_HIDDEN_HEADERS = {"authorization", "cookie", "x-fission-request-id"}
# What the call's HTTP client can send (RFC 9110): a path starts with "/" and has no control
# character; a header name is a token; a value here is printable ASCII, space and tab (no CR or LF
# that would start another header). \u, not \x: the API's serializer documents them as patterns.
PATH_RE = r"^/[^\u0000-\u001f\u007f]*$"
HEADER_NAME_RE = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
HEADER_VALUE_RE = r"^[\t\u0020-\u007e]*$"


# The router queues a call carrying it (Lambda's InvocationType: Event) and answers 202 at once
# (runtime/events/asynchronous); the portal's asynchronous calls are that router call. On
# Kubernetes, whose router has no queue, the backend queues it itself, with the same semantics
# (dataplane/backends/k8s_async.py).
INVOCATION_TYPE_HEADER = "X-Faas-Invocation-Type"
INVOCATION_TYPES = ("RequestResponse", "Event")


def invocation_create(
    *, function: Function, method: str, path: str, headers: dict[str, str], body: str, user: str = "",
    invocation_type: str = "RequestResponse",
) -> Invocation:  # fmt: skip
    """Call ``/<tenant><path>`` on the router and record status, body, duration and logs, and
    what the router said it measured (``router_ms``, ``function_ms``; the local runtime's only).
    ValidationFailed for a path or headers that the router cannot be sent.

    ``invocation_type`` "Event": the data plane queues the call and answers 202 with its request
    id (retries, dead letters: runtime/events/asynchronous); its logs come later, under that id
    (on Kubernetes, where no line names its request, the function's lines of that time)."""
    _check_path(path)
    _check_headers(headers)
    asynchronous = _asynchronous(invocation_type)
    tenant = current_tenant()
    request_id = uuid.uuid4().hex
    sent = {
        k: v
        for k, v in headers.items()
        if k.lower() not in _HIDDEN_HEADERS and k.lower() != INVOCATION_TYPE_HEADER.lower()
    }
    invocation = Invocation(
        function=function, method=method, path=path, request_headers=sent, request_body=body[:MAX_BODY_CHARS],
        request_id=request_id, invoked_by=user,
    )  # fmt: skip
    backend, called_at = get_backend(), time.time()
    try:
        result = backend.invoke(
            method, f"/{tenant.slug}{path}", {**sent, **asynchronous, "X-Fission-Request-ID": request_id},
            body.encode(), timeout_s=function.timeout_s + 5,
        )  # fmt: skip
    except BackendError as exc:
        invocation.error = exc.message
    else:
        invocation.status, invocation.duration_ms = result.status, round(result.duration_ms, 2)
        invocation.router_ms, invocation.function_ms = _router_timing(result.headers)
        invocation.response_headers = {k: v for k, v in result.headers.items() if k.lower() != "set-cookie"}
        invocation.response_body = _storable(result.body.decode(errors="replace")[:MAX_BODY_CHARS])
        records = (
            [] if asynchronous else _logs_of(backend, tenant.namespace, request_id, function.name, called_at)
        )
        invocation.logs = [{k: _storable(v) for k, v in asdict(r).items()} for r in records]
    _save(invocation)
    return invocation


@transaction.atomic
def _save(invocation: Invocation) -> None:
    """Store the call with its audit record, once it is over: no transaction is held across it.
    The record names the call, never its headers or body (nor the path's query string)."""
    with audit.change(
        "invocation.create", object_type="invocation", object_name=invocation.function.name
    ) as done:
        invocation.save()
        done.after = {
            "method": invocation.method, "path": invocation.path.split("?")[0], "status": invocation.status,
            "request_id": invocation.request_id,
        }  # fmt: skip


def _router_timing(headers: dict[str, str]) -> tuple[float | None, float | None]:
    """(router ms, function ms) from the local router's ``Server-Timing`` (runtime/timing.py);
    None for what it did not say or said malformed. Only the local runtime's router writes the
    header, last: Fission's passes a function's own through, which must not pass for the router's."""
    if settings.PORTAL_BACKEND != "local":
        return None, None
    value = next((v for k, v in headers.items() if k.lower() == timing.HEADER.lower()), None)
    return timing.parse(value)


def _asynchronous(invocation_type: str) -> dict[str, str]:
    """The header that makes the router queue the call; {} for a call that waits for its answer."""
    if invocation_type not in INVOCATION_TYPES:
        raise ValidationFailed(
            "Unknown invocation type.", detail={"invocation_type": [f"One of {INVOCATION_TYPES}."]}
        )
    if invocation_type == "RequestResponse":
        return {}
    return {INVOCATION_TYPE_HEADER: "Event"}


def _check_path(path: str) -> None:
    # "/acme" + "2/x" would be tenant acme2's route: the path must start a new segment.
    if not re.fullmatch(PATH_RE, path) or ".." in path.split("?")[0].split("/"):
        message = "The path must start with '/' and contain no '..' and no control character."
        raise ValidationFailed(message, detail={"path": [path]})


# A function keeps at most this many saved test events.
MAX_SAVED_EVENTS = 50


@transaction.atomic
def saved_event_save(
    *, function: Function, name: str, method: str, path: str, headers: dict[str, str], body: str,
    user: str = "",
) -> SavedEvent:  # fmt: skip
    """Save the test panel's request under ``name`` (replacing one of that name), for every member
    to send again. The headers a test call never sends (Authorization, Cookie) are not kept."""
    _check_path(path)
    _check_headers(headers)
    # One save of a function's events at a time: the name check and the count hold until commit.
    Function.objects.select_for_update().filter(pk=function.pk).first()
    event = SavedEvent.objects.filter(function=function, name=name).first()
    if event is None and SavedEvent.objects.filter(function=function).count() >= MAX_SAVED_EVENTS:
        raise Conflict(f"A function keeps at most {MAX_SAVED_EVENTS} saved events: delete one first.")
    kept = {k: v for k, v in headers.items() if k.lower() not in _HIDDEN_HEADERS}
    action = "saved-event.update" if event is not None else "saved-event.create"
    before = {"method": event.method, "path": event.path.split("?")[0]} if event is not None else None
    label = f"{function.name}/{name}"
    with audit.change(action, object_type="saved-event", object_name=label, before=before) as change:
        event = event or SavedEvent(function=function, name=name)
        event.method, event.path, event.headers, event.body = method, path, kept, body[:MAX_BODY_CHARS]
        event.saved_by = user
        full_clean(event, exclude=["function"])
        event.save()
        change.after = {"method": method, "path": path.split("?")[0]}  # never the body or headers
    return event


@transaction.atomic
def saved_event_delete(*, event: SavedEvent) -> None:
    with audit.change(
        "saved-event.delete", object_type="saved-event", object_name=f"{event.function.name}/{event.name}"
    ):
        event.delete()


def _check_headers(headers: dict[str, str]) -> None:
    """ValidationFailed naming each header the router cannot be sent (as given)."""
    bad = {
        name: ["A header name is letters, digits and !#$%&'*+-.^_`|~; a value is printable ASCII."]
        for name, value in headers.items()
        if not re.fullmatch(HEADER_NAME_RE, name) or not re.fullmatch(HEADER_VALUE_RE, value)
    }
    if bad:
        raise ValidationFailed("These headers cannot be sent over HTTP.", detail={"headers": bad})


def _storable(value: Any) -> Any:
    """Text as PostgreSQL can store it: what a function printed or answered may hold NUL bytes,
    which text and jsonb refuse; each becomes U+FFFD, as an undecodable byte does."""
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


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
