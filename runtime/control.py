"""The control API: Kubernetes-style paths for fission.io/v1 objects and for the core/v1
ResourceQuota, LimitRange, Secret and ConfigMap of a namespace, and its NetworkPolicies,
bearer-token protected.

``/apis/fission.io/v1/namespaces/<ns>/<plural>[/<name>]`` (environments, packages, functions,
httptriggers, timetriggers, messagequeuetriggers),
``/api/v1/namespaces/<ns>/{resourcequotas,limitranges,secrets,configmaps}[/<name>]`` and
``/apis/networking.k8s.io/v1/namespaces/<ns>/networkpolicies[/<name>]``: GET (read, list), POST
(create), PUT (replace), DELETE. Errors use the portal's shape: ``{"error": {code, message, detail}}``.
An HTTPTrigger must route under its namespace's tenant (``runtime.tenancy``), else 422. A
ConfigMap of environment variables (``runtime.objects``) with a name the platform keeps
(``PATH``, ``FISSION_...``) is a 422 naming ``data.<NAME>``.
``POST /apis/fission.io/v1/namespaces/<ns>/functions/<name>/specialize`` is the specialize probe:
the function gets a worker specialized for it without being called (see ``specialize``).
``/healthz`` needs no token. ``/metrics`` (Prometheus' text format: every namespace's functions
and calls) needs a bearer token too: the read-only ``RUNTIME_METRICS_TOKEN`` when one is set, so that
Prometheus never holds the control token, or the control token (always: its holder may read every
object anyway); without one it answers 401 with ``WWW-Authenticate: Bearer``.

Asynchronous invocation (``runtime.events.asynchronous``), under
``/apis/fission.io/v1/namespaces/<ns>/functions/<name>``; a namespace's paths reach only its own
events and dead letters. Without Redis each answers 503.

- ``POST .../invocations`` queues a call of the function and answers 202 ``{"requestId"}`` (also
  in ``X-Fission-Request-ID``: the caller's valid one, else a new one); 404 without the function,
  429 when the namespace's queue is full. The body (every field optional)::

      {"method": "POST", "path": "/orders?id=1", "headers": {"Content-Type": "application/json"},
       "body": "text"}

  ``path`` is the path and query the function sees (default ``/``); ``headers`` an object, or a
  list of ``[name, value]`` pairs (``X-Fission-*`` are dropped: the runtime sets those);
  ``body`` UTF-8 text, or ``bodyBase64`` for bytes.
- ``GET .../deadletters?limit=100&cursor=<id>``: ``{"items": [...], "next": <cursor or null>,
  "total": n}``, newest first; each item ``{"id", "requestId", "namespace", "function",
  "request": {"method", "path", "headers", "body", "bodyBase64"}, "condition" (RetriesExhausted
  or EventAgeExceeded), "attempts", "error": {"status", "body", "truncated"} or null,
  "acceptedAt", "failedAt", "redriveOf"}``. ``GET .../deadletters/<id>``: one.
- ``POST .../deadletters/redrive`` with ``{"ids": [...]}`` (absent: all, oldest first) and
  optionally ``"function": "<another function of the namespace>"``: each is queued again as a new
  event (attempts reset, a new request id, the old one in ``redriveOf``) and leaves the list.
  200 ``{"redriven": [{"id", "requestId"}], "notFound": [ids]}``; 429 with the same in
  ``detail`` when the queue filled up (the rest stay dead letters).
- ``DELETE .../deadletters`` with ``{"ids": [...]}`` (no body: all): ``{"purged": n}``.

``POST /apis/fission.io/v1/namespaces/<ns>/functions/<name>/call`` calls that one Fission function
(a version, not an alias) directly, as the router would (``runtime.invoke.call_function``: the
namespace's concurrency quota, the same worker path and ``X-Fission-Function-*`` and request-id
headers): this is how a captured request (``runtime.captures``) is replayed against a chosen
version. The body::

    {"method": "POST", "path": "/?id=1", "headers": [["Content-Type", "application/json"]],
     "body": "<base64>"}

``path`` is the path and query the function sees; ``headers`` ``[name, value]`` pairs (an
``X-Fission-*`` header is dropped, except ``X-Fission-Params-*`` and ``X-Fission-Full-Url``, which
say what a route gave the function). The answer is always 200 with the function's answer, whatever
its status (a function that does not load, or is at a limit, answers 502 or 429 as to a router's
caller): ``{"status", "headers": [[name, value], ...], "body": "<base64>", "duration_ms",
"request_id"}``. 404 when the namespace has no such function; 422 for a bad body. It is not counted
as router traffic and not captured.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from runtime import metrics
from runtime.errors import InvalidObject, NotFound, RuntimeProblem
from runtime.events.asynchronous.records import INVOCATION_TYPE, Event, Headers
from runtime.executor import LoadFailed, TooManyRequests, Unavailable
from runtime.http import REQUEST_ID_HEADER, request_id_or_new
from runtime.invoke import call_function
from runtime.objects import CORE_KINDS, KINDS, NETWORKING_KINDS
from runtime.quota import QuotaExhausted

if TYPE_CHECKING:
    from runtime.app import Runtime

log = logging.getLogger(__name__)
NAMESPACED = "/namespaces/{namespace}/{plural}"
# URL prefix of each API group, and the kinds it serves.
GROUPS = {"/apis/fission.io/v1": KINDS, "/api/v1": CORE_KINDS, "/apis/networking.k8s.io/v1": NETWORKING_KINDS}
MAX_OBJECT_BYTES = 8 * 1024 * 1024
FUNCTION = "/apis/fission.io/v1/namespaces/{namespace}/functions/{name}"
SPECIALIZE = FUNCTION + "/specialize"
INVOCATIONS = FUNCTION + "/invocations"
DEAD_LETTERS = FUNCTION + "/deadletters"
CALL = FUNCTION + "/call"
METRICS_PATH = "/metrics"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")  # an RFC 9110 token
_HEADER_VALUE = re.compile(r"^[^\r\n\x00]*$")
_TARGET = re.compile(r"^/[\x21-\x7e]{0,8191}$")  # printable ASCII, no spaces: a request target
_DEAD_LETTER_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")  # a Redis stream entry id


def problem(status: int, code: str, message: str, detail: Any = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, "detail": detail}}, status=status)


def _bearer_is(offered: str, token: str) -> bool:
    """Whether the ``Authorization`` header ``offered`` is ``Bearer <token>`` (constant time)."""
    return hmac.compare_digest(offered.encode(), f"Bearer {token}".encode())


def _refused(request: web.Request, token: str, scrape_tokens: tuple[str, ...]) -> web.Response | None:
    """The 401 for a request without the token its path needs; None when it may go on."""
    offered = request.headers.get("Authorization", "")
    if request.path.startswith(("/apis/", "/api/")) and not _bearer_is(offered, token):
        return problem(401, "not_authenticated", "A valid bearer token is required.")
    if request.path != METRICS_PATH:
        return None
    # Every token is compared (no short cut), so the time taken tells nothing about either.
    if not any([_bearer_is(offered, t) for t in scrape_tokens]):  # noqa: C419
        response = problem(401, "not_authenticated", "The metrics token is missing or wrong.")
        response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return None


def make_app(runtime: Runtime, token: str, metrics_token: str | None = None) -> web.Application:
    """The control API, guarded by ``token``; /metrics also by ``metrics_token`` (the module's
    docstring)."""
    scrape_tokens = (token, metrics_token) if metrics_token else (token,)

    @web.middleware
    async def guard(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        refused = _refused(request, token, scrape_tokens)
        if refused is not None:
            return refused
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
    app.router.add_get(METRICS_PATH, handlers.metrics)
    for group in GROUPS:
        base = group + NAMESPACED
        app.router.add_get(base, handlers.list)
        app.router.add_post(base, handlers.create)
        app.router.add_get(base + "/{name}", handlers.read)
        app.router.add_put(base + "/{name}", handlers.replace)
        app.router.add_delete(base + "/{name}", handlers.delete)
    app.router.add_post(SPECIALIZE, handlers.specialize)
    app.router.add_post(INVOCATIONS, handlers.invoke)
    app.router.add_post(CALL, handlers.call)
    app.router.add_get(DEAD_LETTERS, handlers.dead_letters)
    app.router.add_delete(DEAD_LETTERS, handlers.purge)
    app.router.add_post(DEAD_LETTERS + "/redrive", handlers.redrive)
    app.router.add_get(DEAD_LETTERS + "/{id}", handlers.dead_letter)
    return app


class Handlers:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def metrics(self, request: web.Request) -> web.Response:
        if self.runtime.front is not None:
            self.runtime.front.flush()  # the compiled front's calls of the last millisecond too
        metrics.quotas_observed(self.runtime.executor)
        return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")

    async def list(self, request: web.Request) -> web.Response:
        plural, namespace = _plural(request), request.match_info["namespace"]
        items = [self._with_status(plural, raw) for raw in self.runtime.store.list(plural, namespace)]
        return web.json_response({"items": items})

    async def read(self, request: web.Request) -> web.Response:
        key = _key(request)
        return web.json_response(self._with_status(key[0], self.runtime.store.get(key)))

    def _with_status(self, plural: str, raw: dict[str, Any]) -> dict[str, Any]:
        """A trigger as stored, plus ``status``: what its event source last did (the runtime's own
        record, as a Kubernetes status subresource would hold it), when it has one."""
        metadata = raw["metadata"]
        status = self.runtime.event_status(plural, metadata["namespace"], metadata["name"])
        return raw if status is None else {**raw, "status": status}

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
        request_id = _request_id(request)
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

    async def invoke(self, request: web.Request) -> web.Response:
        """Queue an asynchronous invocation (the body's shape is in the module's docstring)."""
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        method, target, headers, body = invocation(await _body(request))
        request_id = _request_id(request)
        event = Event(name, method, target, headers, body, request_id, time.time())
        await self.runtime.invocations.accept(namespace, event)
        response = web.json_response({"requestId": request_id}, status=202)
        response.headers["X-Fission-Request-ID"] = request_id
        return response

    async def call(self, request: web.Request) -> web.Response:
        """Call one function directly and answer what it answered (the module's docstring)."""
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        method, target, headers, body = direct_call(await _body(request))
        self.runtime.store.get(("functions", namespace, name))  # NotFound: not this namespace's
        request_id = _request_id(request)
        started = time.perf_counter()
        answer = await call_function(self.runtime.executor, namespace, name, method, target, headers, body,
                                     request_id.encode())  # fmt: skip
        duration_ms = (time.perf_counter() - started) * 1000
        response = web.json_response({
            "status": answer.status,
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in answer.headers],
            "body": base64.b64encode(answer.body).decode(),
            "duration_ms": round(duration_ms, 3),
            "request_id": request_id,
        })  # fmt: skip
        response.headers["X-Fission-Request-ID"] = request_id
        return response

    async def dead_letters(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        limit = _limit(request.query.get("limit", "100"))
        cursor = request.query.get("cursor") or None
        if cursor is not None and not _DEAD_LETTER_ID.match(cursor):
            raise InvalidObject("cursor must be a dead letter's id", field="cursor")
        items, following, total = await self.runtime.invocations.dead_letters(namespace, name, limit, cursor)
        return web.json_response({"items": items, "next": following, "total": total})

    async def dead_letter(self, request: web.Request) -> web.Response:
        namespace, name, entry_id = (request.match_info[k] for k in ("namespace", "name", "id"))
        if not _DEAD_LETTER_ID.match(entry_id):
            raise NotFound(f"dead letter {entry_id} of function {namespace}/{name} not found")
        return web.json_response(await self.runtime.invocations.dead_letter(namespace, name, entry_id))

    async def redrive(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        body = await _optional_body(request)
        target = body.get("function", name)
        if not isinstance(target, str):
            raise InvalidObject("function must be a function's name", field="function")
        result = await self.runtime.invocations.redrive(namespace, name, _ids(body), target)
        answer = {"redriven": result.redriven, "notFound": result.not_found}
        if result.full:
            return problem(
                429, "queue_full", "the namespace's queue is full: the rest stay dead letters", answer
            )
        return web.json_response(answer)

    async def purge(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        ids = _ids(await _optional_body(request))
        return web.json_response({"purged": await self.runtime.invocations.purge(namespace, name, ids)})


def _request_id(request: web.Request) -> str:
    """The caller's valid ``X-Fission-Request-ID``, else a new one."""
    offered = request.headers.get(REQUEST_ID_HEADER.decode())
    return request_id_or_new(offered.encode("ascii", "replace") if offered else None).decode()


def invocation(body: dict[str, Any]) -> tuple[str, bytes, Headers, bytes]:
    """The method, target, headers and body of an invocation's JSON (the module's docstring)."""
    method = body.get("method", "POST")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise InvalidObject(f"method must be one of {', '.join(METHODS)}", field="method")
    path = body.get("path", "/")
    if not isinstance(path, str) or not _TARGET.match(path):
        raise InvalidObject("path must start with / and hold printable ASCII only", field="path")
    return method.upper(), path.encode(), _headers(body.get("headers", {})), _payload(body)


def direct_call(body: dict[str, Any]) -> tuple[str, bytes, Headers, bytes]:
    """The method, target, headers and body of a direct call's JSON (the module's docstring)."""
    method = body.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise InvalidObject(f"method must be one of {', '.join(METHODS)}", field="method")
    path = body.get("path", "/")
    if not isinstance(path, str) or not _TARGET.match(path):
        raise InvalidObject("path must start with / and hold printable ASCII only", field="path")
    if not isinstance(body.get("headers", []), list):
        raise InvalidObject("headers must be a list of [name, value]", field="headers")
    try:
        payload = base64.b64decode(str(body.get("body", "")), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidObject("body must be base64", field="body") from None
    return method.upper(), path.encode(), _headers(body.get("headers", []), keep=ROUTE_HEADERS), payload


# What a route tells the function about the request, which a direct call may say in its stead.
ROUTE_HEADERS = (b"x-fission-params-", b"x-fission-full-url")


def _headers(raw: Any, keep: tuple[bytes, ...] = ()) -> Headers:
    pairs = list(raw.items()) if isinstance(raw, dict) else raw
    if not isinstance(pairs, list):
        raise InvalidObject("headers must be an object or a list of [name, value]", field="headers")
    headers: Headers = []
    for index, pair in enumerate(pairs):
        field = f"headers[{index}]"
        if not (isinstance(pair, list | tuple) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise InvalidObject("each header must be a [name, value] pair of strings", field=field)
        name, value = pair
        if not _HEADER_NAME.match(name) or not _HEADER_VALUE.match(value):
            raise InvalidObject(
                "a header name must be a token, and its value hold no line break", field=field
            )
        try:
            encoded = (name.encode("ascii"), value.encode("latin-1"))
        except UnicodeEncodeError:
            raise InvalidObject("a header value must be Latin-1 text", field=field) from None
        lower = encoded[0].lower()
        if (not lower.startswith(b"x-fission-") or lower.startswith(keep)) and lower != INVOCATION_TYPE:
            headers.append(encoded)
    return headers


def _payload(body: dict[str, Any]) -> bytes:
    if "body" in body and "bodyBase64" in body:
        raise InvalidObject("give body or bodyBase64, not both", field="body")
    text = body.get("body", "")
    if "bodyBase64" in body:
        try:
            return base64.b64decode(str(body["bodyBase64"]), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidObject("bodyBase64 must be base64", field="bodyBase64") from None
    if not isinstance(text, str):
        raise InvalidObject("body must be text (bodyBase64 for bytes)", field="body")
    return text.encode()


def _limit(raw: str) -> int:
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= 1000:
        raise InvalidObject("limit must be a whole number from 1 to 1000", field="limit")
    return limit


def _ids(body: dict[str, Any]) -> list[str] | None:
    """The dead letters a request names (None: all of them)."""
    ids = body.get("ids")
    if ids is None:
        return None
    if not isinstance(ids, list) or len(ids) > 10_000:
        raise InvalidObject("ids must be a list of dead letters' ids", field="ids")
    for index, entry_id in enumerate(ids):
        if not isinstance(entry_id, str) or not _DEAD_LETTER_ID.match(entry_id):
            raise InvalidObject("each id must be a dead letter's id", field=f"ids[{index}]")
    return ids


async def _optional_body(request: web.Request) -> dict[str, Any]:
    """The JSON object of a request whose body may be left out ({})."""
    return await _body(request) if request.can_read_body else {}


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
