"""The data-plane interface: the same Fission objects go to the local runtime or a cluster.

Errors are our own types, and every one is either a ``TransientError`` (callers retry it with
backoff, a bounded number of times) or a ``PermanentError`` (a refused object, a missing
permission: reported to the user at once). Nothing else leaves a backend on purpose.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from dataplane.manifests import portal_function

if TYPE_CHECKING:
    from dataplane.namespaces import TenantQuota


class BackendError(Exception):
    """Base of the two kinds below; never raised itself."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TransientError(BackendError):
    """Timeouts, 429, 5xx, connection refused: worth retrying."""


class PermanentError(BackendError):
    """The data plane refused the request (invalid object, forbidden): retrying won't help."""


class NotFound(PermanentError):
    """The object (or its namespace) is not there. Where a missing object is expected to come
    (right after an apply), the backend raises TransientError instead."""


class Conflict(TransientError):
    """A concurrent change or a stale write (409): reading and writing again resolves it."""


class LoadFailed(PermanentError):
    """The function's code does not load on the data plane (an import error, a missing
    entrypoint): ``traceback`` is what the worker printed, ``request_id`` the specialization's id,
    under which its log records are found."""

    def __init__(self, message: str, *, traceback: str = "", request_id: str = "") -> None:
        super().__init__(message)
        self.traceback = traceback
        self.request_id = request_id

    @classmethod
    def of(cls, function: str, reason: str, traceback: str = "", request_id: str = "") -> LoadFailed:
        """``<function> does not load: <reason>`` and the end of the traceback, which says what
        failed (a deployment keeps 2,000 characters of its reason)."""
        tail = traceback.strip()[-1500:]
        message = f"{function} does not load: {reason}" + (f"\n{tail}" if tail else "")
        return cls(message, traceback=traceback, request_id=request_id)


class InvalidCursor(PermanentError):
    """A log cursor this backend did not hand out."""


class Forbidden(PermanentError):
    """The portal's own credentials may not do this (401/403): an operator must grant it."""


class CallsNotRecorded(PermanentError):
    """The data plane keeps no record of individual calls (Fission on Kubernetes does not): the
    message says so in a sentence a page can show."""


@dataclass(frozen=True)
class CallRecord:
    """One call a worker served, as the local runtime records it (runtime/calls.py): ``function``
    is the Fission name (``f-v3``), ``time`` when it reached the executor (epoch seconds),
    ``duration`` until its answer and ``startup`` of that spent waiting for a worker (seconds);
    ``cold`` is "" (warm), "pool" (a pooled worker was specialized for it) or "new" (a new worker
    process was started for it)."""

    time: float
    function: str
    duration: float
    startup: float
    cold: str
    status: int


class CapturesNotRecorded(PermanentError):
    """The data plane captures no requests, or cannot call one version directly (Fission on
    Kubernetes does neither): the message says so in a sentence a page can show."""


@dataclass(frozen=True)
class CapturedRequest:
    """One failed call kept for replay (runtime/captures.py), already redacted: secret header,
    query and form/JSON field values read ``[redacted]``. ``id`` is its stream entry id (oldest
    first sorts by it), ``time`` when it reached the router (epoch seconds), ``fission_function``
    the version that served it (``f-v2``), ``path`` the path and query the function saw,
    ``headers`` the ``(name, value)`` pairs it was sent (without those naming the function and the
    request: a replay's call sets its own); each body holds at most the policy's
    ``max_body_bytes``, and ``*_truncated`` says whether it was cut."""

    id: str
    time: float
    fission_function: str
    trigger_path: str
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    body_truncated: bool
    status: int
    response_headers: list[tuple[str, str]]
    response_body: bytes
    response_truncated: bool
    duration_ms: float
    request_id: str


@dataclass(frozen=True)
class FunctionAnswer:
    """What one Fission function answered to a direct call (``Backend.call_function``):
    ``headers`` as ``(name, value)`` pairs, ``request_id`` the call's (its log records carry it)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    duration_ms: float
    request_id: str


@dataclass(frozen=True)
class InvokeResult:
    status: int
    headers: dict[str, str]
    body: bytes
    duration_ms: float
    request_id: str


@dataclass(frozen=True)
class LogRecord:
    """One line a function printed. ``function`` is the data plane's name: version N of portal
    function ``f`` is ``f-vN``, its draft ``f-draft``. ``id`` orders records of one namespace."""

    time: float
    namespace: str
    function: str
    request_id: str
    stream: str
    message: str
    id: str = ""


@dataclass(frozen=True)
class LogQuery:
    """What a log search selects; every field narrows it. ``function`` is a portal function,
    ``fission_name`` one of its versions or its draft; ``request_id`` one request exactly,
    ``request_prefix`` the requests whose id starts with it (what a person types: the first
    characters they see); ``text`` a case-insensitive substring; ``cursor`` comes from the
    previous page and continues with older records."""

    function: str | None = None
    fission_name: str | None = None
    request_id: str | None = None
    stream: str | None = None
    since: float | None = None
    until: float | None = None
    text: str | None = None
    limit: int = 100
    cursor: str | None = None
    request_prefix: str | None = None

    def matches(self, record: LogRecord) -> bool:
        return (
            (self.function is None or portal_function_of(record.function) == self.function)
            and (self.fission_name is None or record.function == self.fission_name)
            and (not self.request_id or record.request_id == self.request_id)
            and (not self.request_prefix or record.request_id.startswith(self.request_prefix))
            and (not self.stream or record.stream == self.stream)
            and (self.since is None or record.time >= self.since)
            and (self.until is None or record.time < self.until)
            and (not self.text or self.text.casefold() in record.message.casefold())
        )


@dataclass(frozen=True)
class LogPage:
    """Matching records, newest first, and the cursor of the next (older) page, if any."""

    records: list[LogRecord]
    cursor: str | None = None


def portal_function_of(fission_name: str) -> str:
    """``f`` for ``f-v3`` or ``f-draft``; the name itself for anything else."""
    try:
        return portal_function(fission_name)
    except ValueError:
        return fission_name


@dataclass(frozen=True)
class DeadLetterPage:
    """Dead letters as the data plane shows them (runtime/control.py: each with ``id``,
    ``requestId``, ``function``, ``request``, ``condition``, ``attempts``, ``error``, times);
    ``next`` is the ``before`` of the next page (None on the last); ``total`` counts all."""

    items: list[dict[str, Any]]
    next: str | None
    total: int

    @classmethod
    def merged(cls, pages: list[tuple[list[dict[str, Any]], str | None, int]], limit: int) -> DeadLetterPage:
        """One page from each function's page (items, next, total) of the same ``before``:
        dead-letter ids are stream ids of one Redis (time, then sequence), so "older than
        ``before``" means the same in each list, and the newest ``limit`` of them are the page."""
        items = sorted((item for page, _, _ in pages for item in page), key=_stream_order, reverse=True)
        more = len(items) > limit or any(following is not None for _, following, _ in pages)
        items = items[:limit]
        total = sum(count for _, _, count in pages)
        return cls(items=items, next=items[-1]["id"] if more and items else None, total=total)


def _stream_order(item: dict[str, Any]) -> tuple[int, int]:
    milliseconds, _, sequence = str(item["id"]).partition("-")
    return int(milliseconds), int(sequence or 0)


@dataclass(frozen=True)
class ObjectRef:
    kind: str
    namespace: str
    name: str
    labels: dict[str, str] = field(default_factory=dict)


class Backend(Protocol):
    name: str

    def apply(self, objects: list[dict[str, Any]]) -> None:
        """Create or replace each object, in order. Idempotent."""

    def delete(self, ref: ObjectRef) -> None:
        """Delete one object; a missing object is not an error."""

    def list_objects(self, namespace: str, kind: str, labels: dict[str, str]) -> list[ObjectRef]:
        """Objects of ``kind`` in ``namespace`` carrying all of ``labels``."""

    def event_status(self, namespace: str, kind: str) -> dict[str, dict[str, Any]]:
        """What the data plane last did for each TimeTrigger or MessageQueueTrigger (``kind``) of
        the namespace, by name: fires, messages, errors, a broker that cannot be reached. Empty
        when the data plane keeps no such record (Fission does not)."""

    def dead_letters(
        self, namespace: str, functions: list[str], limit: int, before: str | None
    ) -> DeadLetterPage:
        """The asynchronous invocations of ``functions`` (Fission names) that failed for good,
        newest first, older than the dead letter ``before`` (an id of a previous page)."""

    def redrive_dead_letters(
        self, namespace: str, function: str, ids: list[str] | None, to: str
    ) -> list[str]:
        """Queue the dead letters ``ids`` of ``function`` (all when None) again as new invocations
        of ``to``; return the new request ids. TransientError when the queue is full."""

    def purge_dead_letters(self, namespace: str, function: str, ids: list[str] | None) -> int:
        """Drop the dead letters ``ids`` of ``function`` (all when None); return how many."""

    def provision_tenant(self, slug: str, quota: TenantQuota, *, internet_egress: bool) -> None:
        """Create or update the tenant's namespace, quota and fences. Idempotent."""

    def delete_namespace(self, namespace: str) -> None:
        """Remove everything of a tenant from the data plane. Idempotent."""

    def wait_ready(self, namespace: str, functions: list[str], timeout_s: float) -> None:
        """Return once the functions can serve; TransientError when not yet after timeout."""

    def specialize(self, namespace: str, functions: list[str], request_id: str) -> str:
        """Make each function load its code on the data plane without calling it (a deployment's
        last step); return a note on what was checked. LoadFailed when the code does not load,
        TransientError when it could not be tried now. ``request_id`` tags the workers' output."""

    def invoke(
        self, method: str, path: str, headers: dict[str, str], body: bytes, timeout_s: float
    ) -> InvokeResult:
        """Call through the router like real traffic."""

    def logs(
        self,
        namespace: str,
        *,
        request_id: str | None = None,
        function: str | None = None,
        since: float | None = None,
        limit: int = 200,
    ) -> list[LogRecord]:
        """Recent log records of the namespace, of one request or one portal function if given,
        written at or after ``since`` (epoch seconds)."""

    def search_logs(self, namespace: str, query: LogQuery) -> LogPage:
        """One page of the namespace's records matching ``query``, newest first.
        TransientError when the log store cannot be read."""

    def calls(self, namespace: str, functions: list[str], since: float) -> list[CallRecord]:
        """The recorded calls of ``functions`` (Fission names) of the namespace that started at or
        after ``since`` (epoch seconds), oldest first. CallsNotRecorded when the data plane keeps
        no such record; TransientError when it cannot be read now."""

    def captures(self, namespace: str, function: str) -> list[CapturedRequest]:
        """The captured requests of portal function ``function`` of the namespace still within
        their retention, oldest first. CapturesNotRecorded when the data plane captures none;
        TransientError when they cannot be read now."""

    def captures_delete(self, namespace: str, function: str, ids: list[str] | None) -> int:
        """Delete the captured requests ``ids`` of ``function`` (all when None); return how many
        went (an id already gone is not an error). CapturesNotRecorded, TransientError as above."""

    def call_function(
        self, namespace: str, fission_name: str, *, method: str, path: str,
        headers: list[tuple[str, str]], body: bytes, timeout_s: float,
    ) -> FunctionAnswer:  # fmt: skip
        """Call one Fission function of the namespace (a version, ``f-v2``, not an alias) directly,
        as the router would, with ``path`` (and query) as the function sees it; its answer, whatever
        its status. NotFound when the namespace has no such function; CapturesNotRecorded when the
        data plane cannot call a version directly (replay needs the local runtime);
        TransientError when it cannot be reached now."""

    def tail_logs(
        self, namespace: str, stop: threading.Event, since: float | None = None
    ) -> Iterator[list[LogRecord]]:
        """Batches of records as the namespace's functions print them, from ``since`` (epoch
        seconds; now by default) until ``stop`` is set; an empty batch now and then, so the caller
        can stop. Rides out outages of the store."""
