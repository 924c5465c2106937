"""The router's compiled data path (``front.c``; docs/router-data-path.md).

``Front`` puts the compiled front on the router's port: it answers a warm call on an exact route
itself and hands every other request to ``Router.dispatch``, the same seam ``ServerProtocol``
uses. What it needs of the Python state (which routes are exact and served by one deployed
function, the function's headers, limits and workers, the namespace's concurrency quota) is read
from the table ``table`` builds, rebuilt after every apply; the workers' counts and the requests
in flight per namespace are read and moved in place. The calls it made come back in batches to
``Front._drain``, which counts them as ``Router.account`` and ``Executor.finish`` do.

``available()`` says whether the extension is built (``make fastpath``, part of ``make setup``).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import socket
from types import ModuleType
from typing import Any

import httptools

from runtime import metrics
from runtime.executor import Deployable, Executor, FnKey
from runtime.http import _STATUS_LINES, MALFORMED, UNAVAILABLE, Reply, Response, own_answers, request_of
from runtime.invoke import function_headers
from runtime.quota import Limits
from runtime.router import Route, Router, RouteTable
from runtime.timing import SERVER_TIMING

log = logging.getLogger(__name__)

_front: ModuleType | None
try:
    _front = importlib.import_module("runtime.fastpath._front")
except ImportError:  # not built
    _front = None

# path -> ((methods, a compiled Route, a C type, or None), ...) in the router's order
Table = dict[bytes, tuple[tuple[tuple[bytes, ...], Any], ...]]
# The front's outcome of a call, as Executor.finish names a failure ("": answered).
_FAILURES = {}
if _front is not None:
    _FAILURES = {_front.OK: "", _front.TIMEOUT: "timed out", _front.CRASH: "crashed"}


def available() -> bool:
    return _front is not None


class Compiler:
    """The front's table from the router's, remembering each route it compiled with what it was
    compiled from (the route, its function's Deployable, the quota), so that an apply that
    changed nothing for a route (the usual case: one object put among 10,000) reuses it."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.known: dict[int, tuple[Route, Deployable | None, int | None, object]] = {}
        self.source: tuple[RouteTable, dict[FnKey, Deployable], dict[str, Limits]] | None = None

    def changed(self, routes: RouteTable) -> bool:
        """Whether anything the table is made of changed since the last ``table``."""
        if self.source is None:
            return True
        old_routes, old_deployables, old_limits = self.source
        deployables = self.executor.deployables
        return (
            routes is not old_routes
            or self.executor.quotas.limits != old_limits
            or len(deployables) != len(old_deployables)
            or any(old_deployables.get(key) is not d for key, d in deployables.items())
        )

    def table(self, routes: RouteTable) -> Table:
        """Each exact path -> its routes in the table's order, each as (methods, the compiled
        route or None when Python must serve it: several functions, a capture policy, nothing
        deployed)."""
        executor = self.executor
        self.source = (routes, dict(executor.deployables), dict(executor.quotas.limits))
        known, self.known = self.known, {}
        found: Table = {}
        for path, entries in routes.exact.items():
            found[path.encode("latin-1")] = tuple(
                (tuple(m.encode() for m in route.trigger.methods), self._compiled(route, known))
                for route in entries
            )
        return found

    def _compiled(
        self, route: Route, known: dict[int, tuple[Route, Deployable | None, int | None, object]]
    ) -> object:
        assert _front is not None
        trigger, functions, executor = route.trigger, route.functions, self.executor
        namespace = trigger.meta.namespace
        deployable = executor.deployables.get((namespace, functions[0])) if len(functions) == 1 else None
        concurrency = executor.quotas.of(namespace).concurrency
        seen = known.get(id(route))
        if seen is not None and seen[0] is route and seen[1] is deployable and seen[2] == concurrency:
            compiled = seen[3]
        elif deployable is None or trigger.capture is not None:
            compiled = None
        else:
            headers = function_headers(deployable.function.meta, b"")[1:]  # the request id is the front's
            compiled = _front.Route(
                namespace=namespace,
                function=functions[0],
                path=trigger.path,
                by_function=executor.by_function,
                in_flight=executor.quotas.in_flight,
                about=b"".join(name + b": " + value + b"\r\n" for name, value in headers),
                per_pod=deployable.function.requests_per_pod,
                limit=-1 if concurrency is None else concurrency,
                timeout=float(deployable.function.timeout or 0),
            )
        self.known[id(route)] = (route, deployable, concurrency, compiled)
        return compiled


class Front:
    """The compiled front on ``listener`` (a bound, listening socket), on the running loop."""

    def __init__(self, router: Router, executor: Executor, listener: socket.socket, max_body: int) -> None:
        assert _front is not None, "the compiled front is not built (make fastpath)"
        self.router = router
        self.executor = executor
        self.listener = listener  # kept open: the front accepts on its descriptor
        self.loop = asyncio.get_running_loop()
        self.front = _front.Front(
            listen_fd=listener.fileno(),
            max_body=max_body,
            fallback=self._fallback,
            drain=self._drain,
            status_lines=dict(_STATUS_LINES),
            canned=own_answers(),
            timing_name=SERVER_TIMING,
        )
        self.compiler = Compiler(executor)
        self.loop.add_reader(self.front.fileno(), self.front.run)
        metrics.FRONT_PATHS.counts = self.front.counts
        self.refresh()

    def refresh(self) -> None:
        """Read the routes, deployables and quotas again (after an apply), when any changed."""
        if self.compiler.changed(self.router.table):
            self.front.set_table(self.compiler.table(self.router.table))

    def close(self) -> None:
        """Stop accepting (connections open go on, as asyncio's Server.close leaves them)."""
        self.front.stop_listening()
        self.listener.close()

    def _fallback(self, method: str, url: bytes, headers: list[tuple[bytes, bytes]], body: bytes, client: str,
                  reply: Reply) -> None:  # fmt: skip
        """A request the front does not serve itself, to the router as ``ServerProtocol`` hands it."""
        try:
            request = request_of(method, url, headers, body, client)
        except httptools.HttpParserError:
            reply(Response(400, body=MALFORMED))
            return
        try:
            self.router.dispatch(request, reply)
        except Exception:
            log.exception("the router failed on %s %s", request.method, request.path)
            reply(Response(502, body=UNAVAILABLE))

    def flush(self) -> None:
        """Count the calls finished so far now (the front hands them over within a millisecond,
        or at once when one failed): before /metrics is read."""
        self.front.flush()

    def _drain(self, records: list[tuple[Any, ...]]) -> None:
        """The calls the front finished since the last drain, counted as ``Router.account`` and
        ``Executor.finish`` count them."""
        executor = self.executor
        for route, worker, method, status, elapsed, began, duration, outcome in records:
            metrics.observe_call(route.namespace, route.function, route.path, method, status, elapsed)
            executor.fast_finished(worker, route.key, _FAILURES[outcome], status, began, duration)
