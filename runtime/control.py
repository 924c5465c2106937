"""The control API: Kubernetes-style paths for fission.io/v1 objects and for the core/v1
ResourceQuota and LimitRange of a namespace, bearer-token protected.

``/apis/fission.io/v1/namespaces/<ns>/<plural>[/<name>]``,
``/api/v1/namespaces/<ns>/{resourcequotas,limitranges}[/<name>]`` and
``/apis/networking.k8s.io/v1/namespaces/<ns>/networkpolicies[/<name>]``: GET (read, list), POST
(create), PUT (replace), DELETE. Errors use the portal's shape: ``{"error": {code, message, detail}}``.
An HTTPTrigger must route under its namespace's tenant (``runtime.tenancy``), else 422.
``POST /apis/fission.io/v1/namespaces/<ns>/functions/<name>/specialize`` is the specialize probe:
the function gets a worker specialized for it without being called (see ``specialize``).
``/metrics`` (Prometheus) and ``/healthz`` need no token.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from runtime import metrics
from runtime.errors import InvalidObject, NotFound, RuntimeProblem
from runtime.executor import LoadFailed, TooManyRequests, Unavailable
from runtime.http import REQUEST_ID_HEADER, request_id_or_new
from runtime.objects import CORE_KINDS, KINDS, NETWORKING_KINDS
from runtime.quota import QuotaExhausted

if TYPE_CHECKING:
    from runtime.app import Runtime

log = logging.getLogger(__name__)
NAMESPACED = "/namespaces/{namespace}/{plural}"
# URL prefix of each API group, and the kinds it serves.
GROUPS = {"/apis/fission.io/v1": KINDS, "/api/v1": CORE_KINDS, "/apis/networking.k8s.io/v1": NETWORKING_KINDS}
MAX_OBJECT_BYTES = 8 * 1024 * 1024
SPECIALIZE = "/apis/fission.io/v1/namespaces/{namespace}/functions/{name}/specialize"


def problem(status: int, code: str, message: str, detail: Any = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, "detail": detail}}, status=status)


def make_app(runtime: Runtime, token: str) -> web.Application:
    @web.middleware
    async def guard(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path.startswith(("/apis/", "/api/")):
            offered = request.headers.get("Authorization", "")
            if not hmac.compare_digest(offered.encode(), f"Bearer {token}".encode()):
                return problem(401, "not_authenticated", "A valid bearer token is required.")
        try:
            return await handler(request)
        except RuntimeProblem as exc:
            detail = {"field": exc.field} if exc.field else None
            return problem(exc.status, exc.code, exc.message, detail)
        except web.HTTPException as exc:
            return problem(exc.status, "http_error", exc.reason)

    app = web.Application(middlewares=[guard], client_max_size=MAX_OBJECT_BYTES)
    handlers = Handlers(runtime)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/metrics", handlers.metrics)
    for group in GROUPS:
        base = group + NAMESPACED
        app.router.add_get(base, handlers.list)
        app.router.add_post(base, handlers.create)
        app.router.add_get(base + "/{name}", handlers.read)
        app.router.add_put(base + "/{name}", handlers.replace)
        app.router.add_delete(base + "/{name}", handlers.delete)
    app.router.add_post(SPECIALIZE, handlers.specialize)
    return app


class Handlers:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def metrics(self, request: web.Request) -> web.Response:
        metrics.quotas_observed(self.runtime.executor)
        return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")

    async def list(self, request: web.Request) -> web.Response:
        plural, namespace = _plural(request), request.match_info["namespace"]
        return web.json_response({"items": self.runtime.store.list(plural, namespace)})

    async def read(self, request: web.Request) -> web.Response:
        return web.json_response(self.runtime.store.get(_key(request)))

    async def create(self, request: web.Request) -> web.Response:
        raw = await self.runtime.put(
            _plural(request), request.match_info["namespace"], await _body(request), create=True
        )
        return web.json_response(raw, status=201)

    async def replace(self, request: web.Request) -> web.Response:
        body = await _body(request)
        name = (body.get("metadata") or {}).get("name")
        if name != request.match_info["name"]:
            raise InvalidObject("metadata.name must match the URL", field="metadata.name")
        raw = await self.runtime.put(_plural(request), request.match_info["namespace"], body, create=False)
        return web.json_response(raw)

    async def delete(self, request: web.Request) -> web.Response:
        await self.runtime.delete(_key(request))
        return web.json_response({"status": "deleted"})

    async def specialize(self, request: web.Request) -> web.Response:
        """200 ``{"status": "specialized"}`` once a worker is specialized for the function (one
        already serving it will do); 422 ``load_failed`` with the worker's traceback when the code
        does not load; 404 when it is not deployed; 429 at a quota or its concurrency limit; 503
        when no worker could be started. Every answer names the request id (the caller's valid
        ``X-Fission-Request-ID``, else a new one) in that header: the load's logs carry it."""
        offered = request.headers.get(REQUEST_ID_HEADER.decode())
        request_id = request_id_or_new(offered.encode("ascii", "replace") if offered else None).decode()
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        try:
            await self.runtime.prepare(namespace, name, request_id)
            response = web.json_response({"status": "specialized"})
        except LoadFailed as exc:
            detail = {"reason": exc.reason, "traceback": exc.traceback, "request_id": request_id}
            response = problem(422, "load_failed", f"the function failed to load: {exc.reason}", detail)
        except QuotaExhausted as exc:
            response = problem(429, "quota_exhausted", f"the namespace's {exc.resource} quota is exhausted")
        except TooManyRequests:
            response = problem(429, "too_many_requests", "the function is at its concurrency limit")
        except Unavailable as exc:
            response = problem(503, "unavailable", f"the function could not be started: {exc}")
        except NotFound as exc:
            response = problem(exc.status, exc.code, exc.message)
        response.headers["X-Fission-Request-ID"] = request_id
        return response


def _plural(request: web.Request) -> str:
    """The URL's plural, which must belong to its API group."""
    plural = request.match_info["plural"]
    kinds = next(kinds for group, kinds in GROUPS.items() if request.path.startswith(group + "/"))
    if plural not in kinds:
        raise NotFound(f"unknown kind {plural!r}: one of {', '.join(kinds)}")
    return plural


def _key(request: web.Request) -> tuple[str, str, str]:
    return (_plural(request), request.match_info["namespace"], request.match_info["name"])


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read())
    except ValueError:
        raise InvalidObject("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidObject("the body must be a JSON object")
    return body
