"""The request body limit: per route, enforced while the body is read, before anything else.

Django's ASGI handler reads a request's whole body (into a temporary file past
FILE_UPLOAD_MAX_MEMORY_SIZE) before the first Django middleware runs, so a limit checked in
middleware only refuses once every byte has arrived: a declared 64 MiB was awaited in full and
an anonymous chunked 64 MiB was spooled to disk before its 401. ``RequestBodyLimit`` wraps the
ASGI application so that Django never reads past the route's limit:

- a declared ``Content-Length`` over it is not read at all (Django is handed an empty body);
- a body without one (chunked) is counted as it arrives, and ends for Django at the last whole
  message under the limit; the rest is never read.

Either way the scope is marked (``REFUSED``) and ``core.middleware.BodySizeLimitMiddleware``
answers 413 before any view, sign-in check or parser sees the request: the API's JSON error on
its paths, the portal's framed 413 page elsewhere (one renderer for every 413). The answer says
``Connection: close``: the unread rest of the body is not this server's to wait for.

The two limits (settings ``MAX_REQUEST_BYTES`` for the routes that take code or object contents,
``MAX_FORM_BYTES`` for every other) and the table of the larger routes live here, used by both
layers; a path the table does not name gets the smaller limit.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from functools import cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django_tenants.utils import get_subfolder_prefix

Scope = dict[str, Any]
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

# The scope key that marks a request refused for its size: its value is the route's limit.
REFUSED = "portal.body_too_large"
# The Django middleware that answers such a request (with the portal's 413).
ANSWERED_BY = "core.middleware.BodySizeLimitMiddleware"

# The routes whose legitimate bodies outgrow the form limit, under /<prefix>/<tenant>/; each
# takes at most MAX_REQUEST_BYTES. The largest legitimate bodies elsewhere are a few KiB.
LARGE_BODY_ROUTES = (
    # The Code tab: an upload (.py or .zip), or a file saved from the editor (up to 1 MiB, and
    # form encoding can triple it).
    r"functions/[^/]+/",
    # The test panel: a test call's body (sent as it is to the function), and a saved event.
    r"functions/[^/]+/(invoke|events)/",
    # Secrets and ConfigMaps: up to 1 MiB of values each, form-encoded.
    r"configuration/",
    # The API's twins: upload, the draft's files (all of them at once), a test call; Secrets and
    # ConfigMaps.
    r"api/v1/functions/[^/]+/(upload|code|invoke)/",
    r"api/v1/(secrets|configmaps)/([^/]+/)?",
    r"api/v1/spec/apply/",  # a Fission spec folder (a zip): functions/fission_spec
)

_END_OF_BODY = {"type": "http.request", "body": b"", "more_body": False}


@cache
def _large_body_route() -> re.Pattern[str]:
    """One pattern of LARGE_BODY_ROUTES under the tenants' path prefix (settings: made once)."""
    routes = "|".join(f"(?:{route})" for route in LARGE_BODY_ROUTES)
    return re.compile(rf"/{re.escape(get_subfolder_prefix())}/[^/]+/(?:{routes})")


def body_limit(path: str) -> int:
    """The most bytes a request body to ``path`` may have: MAX_REQUEST_BYTES on the routes of
    LARGE_BODY_ROUTES, else MAX_FORM_BYTES (never more than MAX_REQUEST_BYTES, which is the
    largest body the portal takes anywhere)."""
    if _large_body_route().fullmatch(path):
        return int(settings.MAX_REQUEST_BYTES)
    return min(int(settings.MAX_FORM_BYTES), int(settings.MAX_REQUEST_BYTES))


def declared_length(scope: Scope) -> int | None:
    """The request's ``Content-Length``, or None when it has none or one that is not a number
    (the server refuses those; Django's middleware answers 400 if one gets through)."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class RequestBodyLimit:
    """ASGI middleware: HTTP requests read at most their route's ``body_limit`` (see the module
    docstring); websockets and lifespan pass through untouched."""

    def __init__(self, app: App) -> None:
        # Past the limit Django is handed the start of the body: that middleware must refuse it
        # before any view reads it as if it were whole.
        if ANSWERED_BY not in settings.MIDDLEWARE:
            raise ImproperlyConfigured(f"RequestBodyLimit needs {ANSWERED_BY} in MIDDLEWARE.")
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope = dict(scope)  # ASGI: a middleware copies the scope it changes
        limit = body_limit(scope["path"])
        if (declared_length(scope) or 0) > limit:
            scope[REFUSED] = limit
        await self.app(scope, _LimitedReceive(scope, receive, limit), _closing_when_refused(scope, send))


class _LimitedReceive:
    """The application's ``receive``: the body's messages while their bytes stay within
    ``limit``; past it (or when the scope came refused) the end of the body, with the scope
    marked refused, and then nothing more."""

    def __init__(self, scope: Scope, receive: Receive, limit: int) -> None:
        self.scope, self.receive, self.limit = scope, receive, limit
        self.received = 0
        self.ended = False

    async def __call__(self) -> Message:
        if self.ended:
            return await _never()
        if REFUSED in self.scope:
            self.ended = True
            return dict(_END_OF_BODY)
        message = await self.receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                self.scope[REFUSED] = self.limit
                self.ended = True
                return dict(_END_OF_BODY)
        return message


async def _never() -> Message:
    """What a refused request's application waits for after its body: nothing. Django listens
    for a disconnect while it answers, and cancels that once the answer is sent; reading the
    server's ``receive`` instead would read on into the body this middleware refused."""
    await asyncio.get_running_loop().create_future()
    raise AssertionError("unreachable: the future above is never resolved")


def _closing_when_refused(scope: Scope, send: Send) -> Send:
    """``send``, with ``Connection: close`` added to the answer of a refused request."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start" and REFUSED in scope:
            message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
        await send(message)

    return wrapped
