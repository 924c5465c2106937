"""Asynchronous invocation on Kubernetes: the portal runs the queue that Fission's router lacks.

The semantics are the local runtime's, and so is the code (runtime/events/asynchronous: accept
at once with 202 and a request id, retries with backoff, throttles, maximum event age, dead
letters, redrive, purge). This module gives that queue and dispatcher a caller for the cluster
(``FissionCaller``) and the portal's keys.

- Accepting (``accept``: ``KubernetesBackend.invoke`` with ``X-Faas-Invocation-Type: Event``).
  The request is matched as Fission's router matches it (runtime.router's table: exact paths,
  templates, prefixes, methods) against the HTTPTriggers of the namespace its first segment
  names, as the cluster holds them: no route answers 404 or 405 at once, as a call would. The
  event is the request as it will be sent to the router (the route path and query, the headers,
  the body) for the function the route names; with weights, drawn then, as the local router does.
- Running (``serve``: the ``async_dispatcher`` management command, one per portal). Each attempt
  goes to Fission's router on the route path, with the event's request id in
  ``X-Fission-Request-ID``. Fission's router has no public route to one function (its
  ``/fission-function/`` routes are on its internal, HMAC-signed listener) and does not say which
  function answered: a route with weights is drawn again by the router at each attempt, and the
  event's function (drawn at accept) is the one whose retries and maximum age apply and under
  which a failure is kept. A redrive to another target keeps the route: it reaches that target
  only once the route leads there (move the alias first).
- Per function, from its Function object in the cluster (read again at most every
  ``FUNCTION_TTL_S``): retries and maximum age from the annotations the portal writes, calls at
  once from ``concurrency`` (``MaxScale`` for newdeploy) x ``requestsPerPod``.
- A router that cannot be reached is a throttle, not a failed attempt: the function was not
  called (tried again with backoff until the event's maximum age).
- Notes (a retry, a dead letter, a redrive) go to the portal's log (logger ``dataplane.async``),
  with the request id: Kubernetes keeps no log per request.
- Keys: ``REDIS_URL``'s database (Celery's broker, whose keys are ``celery``, ``unacked*`` and
  ``_kombu.*``) under ``portal:async:``; a local runtime's are ``runtime:async:<id>:``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from asgiref.sync import async_to_sync
from django.conf import settings

from dataplane import namespaces
from dataplane.backends.base import (
    BackendError,
    DeadLetterPage,
    InvokeResult,
    NotFound,
    TransientError,
)
from runtime.errors import NotFound as FunctionMissing
from runtime.errors import RuntimeProblem
from runtime.events.asynchronous.dispatcher import Dispatcher
from runtime.events.asynchronous.queue import Queue
from runtime.events.asynchronous.records import (
    EVENT,
    INVOCATION_TYPE,
    REQUEST_RESPONSE,
    Event,
    Keys,
    Policy,
    capacity_from,
    policy_from,
    text,
)
from runtime.http import REQUEST_ID_HEADER, Response, request_id_or_new
from runtime.objects import Function, HTTPTrigger, parse_function, parse_httptrigger
from runtime.router import RouteTable

if TYPE_CHECKING:
    from dataplane.backends.k8s_adapter import KubeAdapter

log = logging.getLogger("dataplane.async")
T = TypeVar("T")
Obj = dict[str, Any]
KEYS = Keys("portal:async:")
QUEUE_LIMIT = 10_000  # events a namespace may hold (queued, running, waiting): the runtime's default
FUNCTION_TTL_S = 5.0  # a Function object read from the cluster serves so long
DISCOVER_EVERY_S = 0.5  # the dispatcher looks so often for namespaces new to the queue
TIMEOUT_MARGIN_S = 5.0  # beyond the function's timeout, for the router's own work
TEXT = {"content-type": "text/plain; charset=utf-8"}
TEXT_RAW = [(b"content-type", b"text/plain; charset=utf-8")]
# Sent again by the HTTP client as it sends the event, never taken from the request.
_NOT_REPLAYED = frozenset({"host", "content-length", "transfer-encoding", "connection"})


def invocation_type(headers: Mapping[str, str]) -> bytes | None:
    """The ``X-Faas-Invocation-Type`` of a request (lower case), None without one."""
    for name, value in headers.items():
        if name.lower().encode() == INVOCATION_TYPE:
            return value.strip().lower().encode()
    return None


def queued(headers: Mapping[str, str]) -> bool:
    """Whether a call is for the queue (``accept``): any invocation type but RequestResponse."""
    kind = invocation_type(headers)
    return kind is not None and kind != REQUEST_RESPONSE


def synchronous_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A ``RequestResponse`` call's headers: the invocation type never reaches a function."""
    return {k: v for k, v in headers.items() if k.lower().encode() != INVOCATION_TYPE}


class FissionCaller:
    """The cluster's functions (``runtime.events.asynchronous.caller.Caller``): Function objects
    from the API server, calls through Fission's router."""

    def __init__(self, adapter: KubeAdapter, router_url: str = "", *,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.adapter, self.router_url, self.clock = adapter, router_url.rstrip("/"), clock
        self._functions: dict[tuple[str, str], tuple[float, Obj | None]] = {}
        self._client: httpx.AsyncClient | None = None

    async def function(self, namespace: str, name: str, *, stale_ok: bool = True) -> Obj | None:
        """The Function object (None when it is gone), read again once ``FUNCTION_TTL_S`` old.
        When the API server cannot answer: the last one read if ``stale_ok`` (the dispatcher
        goes on), else TransientError."""
        key = (namespace, name)
        cached = self._functions.get(key)
        if cached is not None and self.clock() - cached[0] < FUNCTION_TTL_S:
            return cached[1]
        try:
            found = await asyncio.to_thread(self.adapter.get, "Function", namespace, name)
        except BackendError as exc:
            if not stale_ok:
                raise
            log.warning("Function %s/%s cannot be read (%s): using the last one read", namespace, name, exc)
            return cached[1] if cached is not None else None
        self._functions[key] = (self.clock(), found)
        return found

    def _parsed(self, namespace: str, obj: Obj | None) -> Function | None:
        if obj is None:
            return None
        try:
            return parse_function(obj, namespace)
        except RuntimeProblem as exc:
            log.warning("Function %s/%s is not one Fission runs: %s", namespace, _name(obj), exc)
            return None

    async def exists(self, namespace: str, function: str) -> bool:
        return await self.function(namespace, function, stale_ok=False) is not None

    async def capacity(self, namespace: str, function: str) -> int:
        return capacity_from(self._parsed(namespace, await self.function(namespace, function)))

    async def policy(self, namespace: str, function: str) -> Policy:
        return policy_from(await self.function(namespace, function), f"{namespace}/{function}")

    async def call(self, namespace: str, event: Event) -> Response:
        """One attempt through Fission's router, on the route the event was accepted for."""
        parsed = self._parsed(namespace, await self.function(namespace, event.function))
        timeout = (parsed.timeout if parsed is not None else 60.0) + TIMEOUT_MARGIN_S
        headers = [(k, v) for k, v in event.headers if k.lower().decode("latin-1") not in _NOT_REPLAYED]
        headers.append((REQUEST_ID_HEADER, event.request_id.encode()))
        if self._client is None:
            self._client = httpx.AsyncClient()
        try:
            answer = await self._client.request(
                event.method, self.router_url + text(event.target), headers=headers, content=event.body,
                timeout=timeout,
            )  # fmt: skip
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # The function was not called: a throttle (tried again, not counted as an attempt).
            return Response(429, TEXT_RAW, f"Fission's router is unreachable: {exc!r}\n".encode())
        except httpx.TimeoutException:
            return Response(504, TEXT_RAW, b"the call timed out\n")
        except httpx.HTTPError as exc:
            return Response(502, TEXT_RAW, f"the call failed: {exc!r}\n".encode())
        return Response(answer.status_code, list(answer.headers.raw), answer.content)

    def note(self, namespace: str, function: str, request_id: str, message: str) -> None:
        log.info("%s/%s request %s: %s", namespace, function, request_id, message)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", "?"))


# ---------------------------------------------------------------------- the portal's side (sync)


def _with_queue(caller: FissionCaller, work: Callable[[Queue], Awaitable[T]]) -> T:
    """``work`` on the portal's queue, from synchronous code (a request, a task): a queue (and
    its Redis connection) for this one call, closed after it."""

    async def run() -> T:
        queue = Queue(settings.REDIS_URL, KEYS, caller, limit=QUEUE_LIMIT)
        try:
            return await work(queue)
        finally:
            await queue.close()

    return async_to_sync(run)()


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """The queue's refusals as the backend's errors: a missing function is NotFound, Redis
    unavailable (503) or a full queue (429) TransientError."""
    try:
        yield
    except FunctionMissing as exc:
        raise NotFound(exc.message) from None
    except RuntimeProblem as exc:
        raise TransientError(exc.message) from None


def accept(
    adapter: KubeAdapter, method: str, path: str, headers: Mapping[str, str], body: bytes
) -> InvokeResult:
    """Queue a call of ``path`` (``/<tenant>/...``, with its query) as an asynchronous invocation,
    answering as the local router does: 202 ``{"requestId"}`` and ``X-Fission-Request-ID``; 400
    for an invocation type other than Event, 404 or 405 without a route, 502 when the route's
    function does not exist, 429 when the namespace's queue is full, 503 without Redis.
    TransientError when the API server cannot list the routes."""
    started = time.perf_counter()
    offered = next((v for k, v in headers.items() if k.lower().encode() == REQUEST_ID_HEADER), None)
    request_id = request_id_or_new(offered.encode("latin-1", "replace") if offered else None).decode()
    status, answer = _accepted(adapter, method, path, headers, body, request_id)
    content = {"content-type": "application/json"} if status == 202 else TEXT
    return InvokeResult(
        status=status, headers={**content, REQUEST_ID_HEADER.decode(): request_id}, body=answer,
        duration_ms=(time.perf_counter() - started) * 1000, request_id=request_id,
    )  # fmt: skip


def _accepted(adapter: KubeAdapter, method: str, path: str, headers: Mapping[str, str], body: bytes,
              request_id: str) -> tuple[int, bytes]:  # fmt: skip
    if invocation_type(headers) != EVENT:
        return 400, b"X-Faas-Invocation-Type must be Event or RequestResponse\n"
    route_path = path.partition("?")[0]
    namespace = _namespace_of(route_path)
    if namespace is None:
        return 404, b"not found\n"
    route, _, seen = RouteTable(_triggers(adapter, namespace), settings.TENANT_NAMESPACE_PREFIX).match(
        route_path, method
    )
    if route is None:
        return (405, b"method not allowed\n") if seen else (404, b"not found\n")
    kept = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items() if _replayed(k)]
    event = Event(route.pick(), method, path.encode("latin-1"), kept, body, request_id, time.time())
    try:
        _with_queue(FissionCaller(adapter), lambda queue: queue.accept(namespace, event))
    except FunctionMissing:
        log.warning("%s/%s unavailable: the function does not exist", namespace, event.function)
        return 502, b"the function is unavailable\n"  # as a call would be answered
    except RuntimeProblem as exc:
        return exc.status, exc.message.encode() + b"\n"
    return 202, json.dumps({"requestId": request_id}).encode()


def _replayed(name: str) -> bool:
    """Whether a request header is kept with the event: not the router's ``X-Fission-*`` (the
    request id is the event's own), not the invocation type, not what the client sends anew."""
    lower = name.lower()
    own = lower.startswith("x-fission-") or lower.encode() == INVOCATION_TYPE
    return not own and lower not in _NOT_REPLAYED


def _namespace_of(route_path: str) -> str | None:
    """The namespace of the tenant whose route ``/<tenant>/...`` is; None for no tenant's."""
    slug = route_path.split("/")[1] if route_path.startswith("/") else ""
    try:
        return namespaces.namespace_for(slug, settings.TENANT_NAMESPACE_PREFIX)
    except ValueError:
        return None


def _triggers(adapter: KubeAdapter, namespace: str) -> list[HTTPTrigger]:
    """The namespace's HTTPTriggers as Fission's router reads them (one it cannot read: skipped)."""
    triggers = []
    for obj in adapter.list("HTTPTrigger", namespace):
        try:
            triggers.append(parse_httptrigger(obj, namespace))
        except RuntimeProblem as exc:
            log.warning("HTTPTrigger %s/%s is not one Fission routes: %s", namespace, _name(obj), exc)
    return triggers


def dead_letters(adapter: KubeAdapter, namespace: str, functions: list[str], limit: int,
                 before: str | None) -> DeadLetterPage:  # fmt: skip
    """One page over several functions, newest first: dead-letter ids are stream ids of one
    Redis (time, then sequence), so "older than ``before``" means the same in each list, and
    the newest ``limit`` of the merged pages are the page."""

    async def pages(queue: Queue) -> list[tuple[list[dict[str, Any]], str | None, int]]:
        return [await queue.dead_letters(namespace, name, limit, before) for name in functions]

    with _translated():
        listed = _with_queue(FissionCaller(adapter), pages)
    return DeadLetterPage.merged(listed, limit)


def redrive(adapter: KubeAdapter, namespace: str, function: str, ids: list[str] | None, to: str) -> list[str]:
    """Queue ``function``'s dead letters ``ids`` (all when None) again as new events of ``to``
    (on the routes they were accepted for); their new request ids. NotFound when ``to`` does not
    exist; TransientError when the namespace's queue filled up (the rest stay dead letters)."""
    with _translated():
        result = _with_queue(
            FissionCaller(adapter), lambda queue: queue.redrive(namespace, function, ids, to)
        )
    if result.full:
        raise TransientError(
            f"the namespace's queue is full: {len(result.redriven)} redriven, the rest stay dead letters"
        )
    return [item["requestId"] for item in result.redriven]


def purge(adapter: KubeAdapter, namespace: str, function: str, ids: list[str] | None) -> int:
    """Drop ``function``'s dead letters ``ids`` (all when None); how many were."""
    with _translated():
        return _with_queue(FissionCaller(adapter), lambda queue: queue.purge(namespace, function, ids))


# ---------------------------------------------------------------------- the dispatcher's process


def drop_namespace(adapter: KubeAdapter, namespace: str) -> None:
    """Forget a deleted namespace's queued events and dead letters (nothing of a deleted tenant
    may reach one created later under its name)."""
    with _translated():
        _with_queue(FissionCaller(adapter), lambda queue: queue.drop_namespace(namespace))


async def serve(adapter: KubeAdapter, router_url: str, stop: asyncio.Event, *, backoff: float,
                concurrency: int) -> None:  # fmt: skip
    """Run the portal's asynchronous invocations through Fission's router at ``router_url``
    until ``stop`` is set; calls in flight then get a few seconds to settle, and any still
    running stays pending, for the next start to claim (at least once)."""
    caller = FissionCaller(adapter, router_url)
    queue = Queue(settings.REDIS_URL, KEYS, caller, limit=QUEUE_LIMIT)
    dispatcher = Dispatcher(queue, backoff=backoff, concurrency=concurrency)
    await dispatcher.start(discover_every=DISCOVER_EVERY_S)
    log.info("asynchronous invocations: dispatching through %s (%d at once)", router_url, concurrency)
    try:
        await stop.wait()
    finally:
        await dispatcher.stop()
        await queue.close()
        await caller.close()
