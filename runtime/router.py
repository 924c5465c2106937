"""The router: HTTP triggers to functions, as Fission's router does it.

Exact ``relativeurl`` first, then ``{var}`` templates, then prefixes (longest first). A path
that matches but not for this method is 405. ``function-weights`` are drawn per request.
A namespace's ``faas-portal/concurrency`` quota bounds its requests in flight (429 beyond).
A route is served only under its namespace's tenant root (``runtime.tenancy``): the control API
refuses any other, and the table leaves out any that got past it (an object stored by an older
runtime), so a request under ``/<a>/`` never reaches another tenant's function.
Error answers are short and generic: internals go to the runtime's log, not to callers.
"""

from __future__ import annotations

import logging
import random
import re
import time
import uuid
from dataclasses import dataclass

from runtime import metrics
from runtime.executor import Executor, TooManyRequests, Unavailable
from runtime.http import Request, Response
from runtime.objects import HTTPTrigger
from runtime.quota import QuotaExhausted
from runtime.tenancy import route_root, under

log = logging.getLogger(__name__)
_VAR = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,128}$")
TEXT = [(b"content-type", b"text/plain; charset=utf-8")]


@dataclass(frozen=True)
class Route:
    trigger: HTTPTrigger
    pattern: re.Pattern[str] | None
    names: tuple[str, ...]
    functions: tuple[str, ...]
    weights: tuple[int, ...]

    @classmethod
    def of(cls, trigger: HTTPTrigger) -> Route:
        names = tuple(_VAR.findall(trigger.path)) if not trigger.is_prefix else ()
        pattern = None
        if names:
            parts = _VAR.split(trigger.path)
            regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(parts))
            pattern = re.compile(f"^{regex}$")
        return cls(trigger, pattern, names, tuple(trigger.weights), tuple(trigger.weights.values()))

    def pick(self) -> str:
        if len(self.functions) == 1:
            return self.functions[0]
        return random.choices(self.functions, self.weights)[0]  # noqa: S311 - traffic split, not security


class RouteTable:
    def __init__(self, triggers: list[HTTPTrigger], namespace_prefix: str) -> None:
        routes = [Route.of(t) for t in triggers if _owned(t, namespace_prefix)]
        self.exact: dict[str, list[Route]] = {}
        for route in routes:
            if not route.trigger.is_prefix and route.pattern is None:
                self.exact.setdefault(route.trigger.path, []).append(route)
        self.templated = [r for r in routes if r.pattern is not None]
        self.prefixes = sorted((r for r in routes if r.trigger.is_prefix), key=lambda r: -len(r.trigger.path))

    def match(self, path: str, method: str) -> tuple[Route | None, dict[str, str], bool]:
        """(route, path params, whether the path matched at all)."""
        seen = False
        for route in self.exact.get(path, ()):
            seen = True
            if method in route.trigger.methods:
                return route, {}, True
        for route in self.templated:
            assert route.pattern is not None
            found = route.pattern.match(path)
            if found:
                seen = True
                if method in route.trigger.methods:
                    return route, found.groupdict(), True
        for route in self.prefixes:
            prefix = route.trigger.path.rstrip("/")
            if path == prefix or path.startswith(prefix + "/"):
                seen = True
                if method in route.trigger.methods:
                    return route, {}, True
        return None, {}, seen


def _owned(trigger: HTTPTrigger, namespace_prefix: str) -> bool:
    root = route_root(trigger.meta.namespace, namespace_prefix)
    if root is not None and under(trigger.path, root):
        return True
    log.error("not routing %s/%s: %s is outside its tenant's root", trigger.meta.namespace,
              trigger.meta.name, trigger.path)  # fmt: skip
    return False


class Router:
    def __init__(self, executor: Executor, namespace_prefix: str) -> None:
        self.executor = executor
        self.namespace_prefix = namespace_prefix
        self.table = RouteTable([], namespace_prefix)

    def set_triggers(self, triggers: list[HTTPTrigger]) -> None:
        self.table = RouteTable(triggers, self.namespace_prefix)

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        if request.path == "/router-healthz":
            return Response(200, TEXT, b"ok\n")
        route, params, seen = self.table.match(request.path, request.method)
        if route is None:
            return (
                Response(405, TEXT, b"method not allowed\n") if seen else Response(404, TEXT, b"not found\n")
            )
        function = route.pick()
        namespace = route.trigger.meta.namespace
        request_id = request.header(b"x-fission-request-id")
        if request_id is None or not _REQUEST_ID.match(request_id):
            request_id = uuid.uuid4().hex.encode()
        response = await self._admit(request, route, function, params, request_id)
        response.headers = [(k, v) for k, v in response.headers if k.lower() != b"x-fission-request-id"]
        response.headers.append((b"x-fission-request-id", request_id))
        response.head_only = request.method == "HEAD"
        metrics.observe_call(
            namespace,
            function,
            route.trigger.path,
            request.method,
            response.status,
            time.perf_counter() - started,
        )
        return response

    async def _admit(
        self, request: Request, route: Route, function: str, params: dict[str, str], request_id: bytes
    ) -> Response:
        """Forward unless the namespace already has as many requests in flight as its quota allows."""
        quotas, namespace = self.executor.quotas, route.trigger.meta.namespace
        if not quotas.enter(namespace):
            return Response(429, TEXT, b"too many requests: the namespace's concurrency quota is exhausted\n")
        try:
            return await self._forward(request, route, function, params, request_id)
        finally:
            quotas.leave(namespace)

    async def _forward(
        self, request: Request, route: Route, function: str, params: dict[str, str], request_id: bytes
    ) -> Response:
        trigger = route.trigger
        path = request.path
        if trigger.is_prefix and not trigger.keep_prefix:
            path = "/" + path[len(trigger.path.rstrip("/")) :].lstrip("/")
        target = path.encode("latin-1") + (b"?" + request.query if request.query else b"")
        headers = [(k, v) for k, v in request.headers if not k.lower().startswith(b"x-fission-")]
        headers.append((b"x-fission-request-id", request_id))
        headers.append((b"x-fission-function-name", function.encode()))
        headers.append((b"x-fission-function-namespace", trigger.meta.namespace.encode()))
        headers.extend(
            (f"x-fission-params-{name}".encode(), value.encode()) for name, value in params.items()
        )
        method = "GET" if request.method == "HEAD" else request.method
        try:
            return await self.executor.call(
                (trigger.meta.namespace, function), method, target, headers, request.body
            )
        except QuotaExhausted as exc:
            message = f"too many requests: the namespace's {exc.resource} quota is exhausted\n"
            return Response(429, TEXT, message.encode())
        except TooManyRequests:
            return Response(429, TEXT, b"too many requests: the function is at its concurrency limit\n")
        except Unavailable as exc:
            log.warning("%s/%s unavailable: %s", trigger.meta.namespace, function, exc)
            return Response(502, TEXT, b"the function is unavailable\n")
