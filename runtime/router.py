"""The router: HTTP triggers to functions, as Fission's router does it.

Exact ``relativeurl`` first, then ``{var}`` templates, then prefixes (longest first). A prefix
``/p`` matches ``/p`` and ``/p/...``; a prefix ``/p/`` only ``/p/...`` (Fission registers the two
forms so). A path that matches but not for this method is 405. ``function-weights`` are drawn per
request.

What the function sees is what Fission's router sends (pkg/router rewrite.go, requesthHeader.go):
the path relative to the trigger (``/`` for an exact or templated one; a prefix's remainder, or
the whole path with ``keepPrefix``), the query as it came, the ``X-Fission-*`` headers naming the
function and the request, and ``Forwarded``/``X-Forwarded-Host``/``X-Forwarded-For``. A caller's
own ``X-Fission-*`` headers are dropped first: only the router says which function and request
this is (Fission lets some through; we do not).
A namespace's ``faas-portal/concurrency`` quota bounds its requests in flight (429 beyond).
A route is served only under its namespace's tenant root (``runtime.tenancy``): the control API
refuses any other, and the table leaves out any that got past it (an object stored by an older
runtime), so a request under ``/<a>/`` never reaches another tenant's function.
Error answers are short and generic: internals go to the runtime's log, not to callers.

Asynchronous invocation (``runtime.events.asynchronous``), as Lambda's ``X-Amz-Invocation-Type``:
a request with ``X-Faas-Invocation-Type: Event`` (any case) is matched and rewritten exactly as a
call (trigger, weights, path, headers) but queued instead of forwarded, and answered at once
``202`` with ``{"requestId": ...}`` and ``X-Fission-Request-ID``; 429 when the namespace's queue
is full, 503 without Redis. ``RequestResponse`` (or no header) is the ordinary call; another value
is 400. The header never reaches the function. An accepted event is not counted as a call here:
each of its calls is, when the dispatcher makes it.

A trigger with a capture policy (``runtime.captures``) has each call whose answer's status the
policy matches recorded, redacted, for replay; queued (asynchronous) calls are not captured.

Every answer given through a route (a call's or a queued call's, whatever its status) ends with
the router's ``Server-Timing`` header (``runtime.timing``):
``router;dur=<ms>, function;dur=<ms>``, the router's whole time for the request (the figure its
latency histogram observes) and the worker's, from sending it the request to its answer (absent
when no worker answered). A function's own ``Server-Timing`` goes through, ahead of it.
The router's own 404/405/400 and its health check carry none.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from dataclasses import dataclass

from runtime import metrics
from runtime.captures import Captured, CaptureRecorder
from runtime.errors import NotFound, RuntimeProblem
from runtime.events.asynchronous.queue import Queue
from runtime.events.asynchronous.records import EVENT, INVOCATION_TYPE, REQUEST_RESPONSE, Event
from runtime.executor import Executor
from runtime.http import REQUEST_ID_HEADER, UNAVAILABLE, NameMemo, Reply, Request, Response, request_id_or_new
from runtime.invoke import call_function, call_now
from runtime.objects import TEMPLATE_VARIABLE, HTTPTrigger
from runtime.tenancy import route_root, under
from runtime.timing import SERVER_TIMING, server_timing

log = logging.getLogger(__name__)
Headers = list[tuple[bytes, bytes]]

TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
JSON = [(b"content-type", b"application/json")]
FULL_URL = b"X-Fission-Full-Url"
NOT_FOUND = b"not found\n"
_IS_REQUEST_ID = NameMemo(lambda lower: lower == REQUEST_ID_HEADER)  # a function's own, replaced
_SPECIAL = frozenset((b"forwarded", b"x-forwarded-host", b"x-forwarded-for", b"host", INVOCATION_TYPE))


def canonical_header(name: str) -> str:
    """``x-fission-params-itemId`` -> ``X-Fission-Params-Itemid``, as Go's Header.Set writes it."""
    return "-".join(word[:1].upper() + word[1:].lower() for word in name.split("-"))


def forwarded_path(trigger: HTTPTrigger, path: str) -> str:
    """The path the function sees: a prefix trigger's remainder ("/" at least) or, with
    ``keepPrefix``, the whole path; "/" for an exact or templated ``relativeurl``."""
    if not trigger.is_prefix:
        return "/"
    if not trigger.keep_prefix:
        path = path.removeprefix(trigger.path)
    return path if path.startswith("/") else "/" + path


def forwarded_host(host: bytes) -> bytes:
    """The ``Forwarded`` value naming ``host`` (a Host header, maybe with a port): RFC 7239 wants
    an IPv6 address quoted, and Fission quotes any host whose name part has a colon or brackets."""
    if host.startswith(b"[") or host.count(b":") > 1:
        return b'host="' + host + b'";'
    return b"host=" + host + b";"


@dataclass(frozen=True)
class Route:
    trigger: HTTPTrigger
    pattern: re.Pattern[str] | None
    names: tuple[str, ...]
    functions: tuple[str, ...]
    weights: tuple[int, ...]
    subtree: str  # a prefix's paths below it start with this ("/p/" for "/p" and "/p/")
    param_headers: dict[str, bytes]  # a template variable -> its X-Fission-Params-<var> header

    @classmethod
    def of(cls, trigger: HTTPTrigger) -> Route:
        names = tuple(TEMPLATE_VARIABLE.findall(trigger.path)) if not trigger.is_prefix else ()
        pattern = None
        if names:
            parts = TEMPLATE_VARIABLE.split(trigger.path)
            regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(parts))
            pattern = re.compile(f"^{regex}$")
        subtree = trigger.path if trigger.path.endswith("/") else trigger.path + "/"
        param_headers = {name: canonical_header(f"X-Fission-Params-{name}").encode() for name in names}
        return cls(trigger, pattern, names, tuple(trigger.weights), tuple(trigger.weights.values()),
                   subtree, param_headers)  # fmt: skip

    def pick(self) -> str:
        if len(self.functions) == 1:
            return self.functions[0]
        return random.choices(self.functions, self.weights)[0]  # noqa: S311 - traffic split, not security


class RouteTable:
    """The routes, indexed so that a lookup costs the same with 10 routes or 10,000.

    A path can only be matched by a prefix route whose subtree is one of the path's directories
    ("/a/", "/a/b/", ...) or whose path is the path itself, and by a template whose literal
    directory (everything up to the last "/" before its first ``{var}``) is one of them; so a
    lookup reads the index at each "/" of the path and tries only those candidates, in the order
    the rules give (exact, then templates in table order, then prefixes longest first)."""

    def __init__(self, triggers: list[HTTPTrigger], namespace_prefix: str,
                 previous: RouteTable | None = None) -> None:  # fmt: skip
        """``previous``: the table this one replaces; the route of a trigger it holds (the same
        object: the store keeps an unchanged one) is taken over, not compiled again."""
        known = {id(route.trigger): route for route in previous.routes} if previous is not None else {}
        routes: list[Route] = []
        for trigger in triggers:
            route = known.get(id(trigger))
            if route is None or route.trigger is not trigger:
                route = _route(trigger) if _owned(trigger, namespace_prefix) else None
            if route is not None:
                routes.append(route)
        self.routes: list[Route] = routes
        self.exact: dict[str, list[Route]] = {}
        self.templates: dict[str, list[tuple[int, Route]]] = {}  # literal directory -> (order, route)
        self.subtrees: dict[str, list[tuple[int, Route]]] = {}  # "/p/" -> prefixes /p and /p/
        self.prefix_paths: dict[str, list[tuple[int, Route]]] = {}  # "/p" -> the prefix /p
        prefixes = sorted((r for r in routes if r.trigger.is_prefix), key=lambda r: -len(r.trigger.path))
        for order, route in enumerate(prefixes):
            self.subtrees.setdefault(route.subtree, []).append((order, route))
            if not route.trigger.path.endswith("/"):
                self.prefix_paths.setdefault(route.trigger.path, []).append((order, route))
        for order, route in enumerate(r for r in routes if r.pattern is not None):
            literal = route.trigger.path[: route.trigger.path.index("{")]
            self.templates.setdefault(literal[: literal.rindex("/") + 1], []).append((order, route))
        for route in routes:
            if not route.trigger.is_prefix and route.pattern is None:
                self.exact.setdefault(route.trigger.path, []).append(route)

    def match(self, path: str, method: str) -> tuple[Route | None, dict[str, str], bool]:
        """(route, path params, whether the path matched at all)."""
        seen = False
        for route in self.exact.get(path, ()):
            seen = True
            if method in route.trigger.methods:
                return route, {}, True
        directories = _directories(path)
        for _, route in _candidates(self.templates, directories):
            assert route.pattern is not None
            found = route.pattern.match(path)
            if found:
                seen = True
                if method in route.trigger.methods:
                    return route, found.groupdict(), True
        prefixes = _candidates(self.subtrees, directories)
        prefixes += self.prefix_paths.get(path, ())
        for _, route in sorted(prefixes, key=_order) if len(prefixes) > 1 else prefixes:
            seen = True
            if method in route.trigger.methods:
                return route, {}, True
        return None, {}, seen


def _directories(path: str) -> list[str]:
    """ "/a/b/c" -> ["/", "/a/", "/a/b/"]: every prefix of the path that ends with "/"."""
    found, at = [], path.find("/")
    while at != -1:
        found.append(path[: at + 1])
        at = path.find("/", at + 1)
    return found


def _order(candidate: tuple[int, Route]) -> int:
    return candidate[0]


def _candidates(index: dict[str, list[tuple[int, Route]]], keys: list[str]) -> list[tuple[int, Route]]:
    """The index's entries under any of ``keys``, in table order."""
    found: list[tuple[int, Route]] = []
    for key in keys:
        found += index.get(key, ())
    if len(found) > 1:
        found.sort(key=_order)
    return found


def _route(trigger: HTTPTrigger) -> Route | None:
    """The trigger's route; None (logged) for a template that cannot be compiled (a variable
    named twice), which would otherwise take every other route down with it."""
    try:
        return Route.of(trigger)
    except re.error as exc:
        log.error("not routing %s/%s: %s is not a valid template (%s)", trigger.meta.namespace,
                  trigger.meta.name, trigger.path, exc)  # fmt: skip
        return None


def _owned(trigger: HTTPTrigger, namespace_prefix: str) -> bool:
    root = route_root(trigger.meta.namespace, namespace_prefix)
    if root is not None and under(trigger.path, root):
        return True
    log.error("not routing %s/%s: %s is outside its tenant's root", trigger.meta.namespace,
              trigger.meta.name, trigger.path)  # fmt: skip
    return False


class Router:
    def __init__(self, executor: Executor, namespace_prefix: str, invocations: Queue | None = None,
                 captures: CaptureRecorder | None = None) -> None:  # fmt: skip
        """``invocations``: where asynchronous invocations are queued (none: 503 for them);
        ``captures``: where the calls a trigger's capture policy matches go (none: not captured)."""
        self.executor = executor
        self.namespace_prefix = namespace_prefix
        self.invocations = invocations
        self.captures = captures
        self.table = RouteTable([], namespace_prefix)
        self.tasks: set[asyncio.Task[None]] = set()  # calls that wait, until answered

    def set_triggers(self, triggers: list[HTTPTrigger]) -> None:
        self.table = RouteTable(triggers, self.namespace_prefix, self.table)

    def dispatch(self, request: Request, reply: Reply) -> None:
        """Answer ``request`` through ``reply`` (``runtime.http.Dispatch``): the router's own
        answers at once; a call to a free warm worker from the worker connection's callback
        (``invoke.call_now``: no task, no future: the warm path); any other call, or a queued
        one, from a task."""
        started = time.perf_counter_ns()
        if request.path == "/router-healthz":
            reply(Response(200, TEXT, b"ok\n"))
            return
        route, params, seen = self.table.match(request.path, request.method)
        if route is None:
            reply(Response(405, TEXT, b"method not allowed\n") if seen else Response(404, TEXT, NOT_FOUND))
            return
        caller = CallerHeaders.of(request)
        kind = caller.invocation
        event = kind is not None and kind.lower() == EVENT
        if kind is not None and not event and kind.lower() != REQUEST_RESPONSE:
            reply(Response(400, TEXT, b"X-Faas-Invocation-Type must be Event or RequestResponse\n"))
            return
        call = RoutedCall(self, request, route, caller, params, started, event, reply)
        if event or not call_now(self.executor, call.namespace, call.function, request.method, call.target,
                                 call.headers, request.body, call.request_id, call.answered):  # fmt: skip
            task = asyncio.get_running_loop().create_task(self._call_later(call))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _call_later(self, call: RoutedCall) -> None:
        """A call that waits (a cold start, a function at MaxScale, a connection to open) or is queued."""
        request = call.request
        try:
            if call.event:
                response = await self._enqueue(request, call.function, call.target, call.headers,
                                               call.namespace, call.request_id)  # fmt: skip
            else:
                response = await call_function(self.executor, call.namespace, call.function, request.method,
                                               call.target, call.headers, request.body,
                                               call.request_id)  # fmt: skip
        except Exception:
            # A fault of the runtime's own: logged, and the caller answered rather than left waiting.
            log.exception("%s/%s: the call failed in the runtime", call.namespace, call.function)
            response = Response(502, TEXT, UNAVAILABLE)
        call.answered(response)

    def complete(self, call: RoutedCall, response: Response) -> float:
        """Make ``response`` the caller's answer: the request id and ``Server-Timing`` headers
        added (the timing last); the router's time for the call, in seconds."""
        response.headers = [(k, v) for k, v in response.headers if not _IS_REQUEST_ID[k]]
        response.headers.append((REQUEST_ID_HEADER, call.request_id))
        took_ns = time.perf_counter_ns() - call.started
        response.headers.append((SERVER_TIMING, server_timing(took_ns, response.worker_ns)))
        return took_ns / 1e9

    def account(self, call: RoutedCall, response: Response, elapsed: float) -> None:
        """Count a call (not a queued one) in the metrics; capture it when its trigger's policy
        matches its status."""
        route, request = call.route, call.request
        metrics.observe_call(call.namespace, call.function, route.trigger.path, request.method,
                             response.status, elapsed)  # fmt: skip
        policy = route.trigger.capture
        if policy is not None and self.captures is not None and policy.matches(response.status):
            self._capture(call, response, elapsed)

    def _capture(self, call: RoutedCall, response: Response, elapsed: float) -> None:
        """Hand the call, as the function saw it, to the capture recorder (which redacts it); the
        answer as the function gave it: without the router's ``Server-Timing``, the last header."""
        trigger, recorder = call.route.trigger, self.captures
        assert trigger.capture is not None
        assert recorder is not None
        captured = Captured(
            namespace=trigger.meta.namespace, policy=trigger.capture, fission_function=call.function,
            trigger_path=trigger.path, method=call.request.method, target=call.target, headers=call.headers,
            body=call.request.body, status=response.status, response_headers=response.headers[:-1],
            response_body=response.body, started=time.time() - elapsed, duration_ms=elapsed * 1000,
            request_id=call.request_id.decode(),
        )  # fmt: skip
        recorder.record(captured)

    async def _enqueue(self, request: Request, function: str, target: bytes, headers: Headers, namespace: str,
                       request_id: bytes) -> Response:  # fmt: skip
        """Queue the call, as it would be forwarded now, as an asynchronous invocation."""
        if self.invocations is None:
            return Response(503, TEXT, b"asynchronous invocation is not available\n")
        event = Event(
            function, request.method, target, headers, request.body, request_id.decode(), time.time()
        )
        try:
            await self.invocations.accept(namespace, event)
        except NotFound:
            log.warning("%s/%s unavailable: the function does not exist", namespace, function)
            return Response(502, TEXT, UNAVAILABLE)  # as a call would be answered
        except RuntimeProblem as exc:
            return Response(exc.status, TEXT, exc.message.encode() + b"\n")
        return Response(202, JSON, json.dumps({"requestId": event.request_id}).encode())


class RoutedCall:
    """A request matched to a route, from its routing to its answer: the function drawn, the
    request id, and the target and headers the function gets."""

    __slots__ = ("event", "function", "headers", "namespace", "reply", "request", "request_id", "route",
                 "router", "started", "target")  # fmt: skip

    def __init__(self, router: Router, request: Request, route: Route, caller: CallerHeaders,
                 params: dict[str, str], started: int, event: bool, reply: Reply) -> None:  # fmt: skip
        self.router = router
        self.request = request
        self.route = route
        self.started = started  # perf_counter_ns when the router got the request
        self.event = event  # queued (X-Faas-Invocation-Type: Event), not called
        self.reply = reply
        self.function = route.pick()
        self.namespace = route.trigger.meta.namespace
        self.request_id = request_id_or_new(caller.request_id)
        self.target = forwarded_target(route.trigger, request)
        self.headers = proxy_headers(request, caller, route, params)

    def answered(self, response: Response) -> None:
        """Give the caller ``response``; then (after the write, off the caller's wait) count it."""
        try:
            elapsed = self.router.complete(self, response)
        except Exception:  # a fault of the router's own: the caller is answered all the same
            log.exception("%s/%s: the answer could not be completed", self.namespace, self.function)
            response, elapsed = Response(502, TEXT, UNAVAILABLE), 0.0
        self.reply(response)
        if not self.event:
            self.router.account(self, response, elapsed)


class CallerHeaders:
    """The caller's headers, read in one pass: those the function may see (all but
    ``X-Fission-*``, ``X-Faas-Invocation-Type`` and the ``Forwarded`` family, which
    ``proxy_headers`` writes), and apart the values the router acts on (the first of each)."""

    __slots__ = ("chain", "forwarded", "host", "invocation", "kept", "proxied", "request_id")

    def __init__(self) -> None:
        self.kept: Headers = []  # forwarded as they came
        self.forwarded: Headers = []  # Forwarded and X-Forwarded-Host, as they came
        self.proxied = False  # a proxy in front said which host was asked for
        self.chain: list[bytes] = []  # X-Forwarded-For so far
        self.host: bytes | None = None
        self.request_id: bytes | None = None  # an X-Fission-Request-ID the caller offered
        self.invocation: bytes | None = None  # X-Faas-Invocation-Type

    @classmethod
    def of(cls, request: Request) -> CallerHeaders:
        read = cls()
        for name, value in request.headers:
            lower = name.lower()
            if lower.startswith(b"x-fission-"):
                if lower == REQUEST_ID_HEADER and read.request_id is None:
                    read.request_id = value
            elif lower not in _SPECIAL or read._kept_special(lower, name, value):
                read.kept.append((name, value))
        return read

    def _kept_special(self, lower: bytes, name: bytes, value: bytes) -> bool:
        """Take in one of ``_SPECIAL``; whether it also goes to the function as it came."""
        if lower == b"host":
            self.host = value if self.host is None else self.host
            return True
        if lower == INVOCATION_TYPE:
            self.invocation = value if self.invocation is None else self.invocation
        elif lower == b"x-forwarded-for":
            self.chain.append(value)
        else:
            self.proxied = self.proxied or bool(value)
            self.forwarded.append((name, value))
        return False


def forwarded_target(trigger: HTTPTrigger, request: Request) -> bytes:
    """The request target the function sees: ``forwarded_path`` and the query as it came."""
    path = forwarded_path(trigger, request.path)
    return path.encode("latin-1") + (b"?" + request.query if request.query else b"")


def proxy_headers(request: Request, caller: CallerHeaders, route: Route, params: dict[str, str]) -> Headers:
    """The headers sent to the function: the caller's (``caller``), plus the router's
    (``call_function`` adds those naming the function and the request).

    ``Forwarded`` and ``X-Forwarded-Host`` naming the Host the caller asked for are added unless
    the caller (a proxy in front) sent either, which then goes through as it came; the caller's
    address is appended to ``X-Forwarded-For`` (Go's ReverseProxy does that for Fission)."""
    headers = list(caller.kept)
    if caller.proxied:
        headers += caller.forwarded
    else:
        host = caller.host or b""
        headers += [(b"Forwarded", forwarded_host(host)), (b"X-Forwarded-Host", host)]
    chain = caller.chain
    if request.client:
        chain = [*chain, request.client.encode()]
    if chain:
        headers.append((b"X-Forwarded-For", b", ".join(chain)))
    headers.append((FULL_URL, request.full_url()))
    if params:
        headers += [(route.param_headers[name], value.encode("latin-1")) for name, value in params.items()]
    return headers
