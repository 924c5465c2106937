"""The request body limit's ASGI middleware (core/asgi_limits.py) with a recording application
and scripted ``receive``/``send``: what Django is handed, how much of the server's body is read,
and the route table. The same middleware against a real server: portal/tests/test_body_limit.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from core.asgi_limits import REFUSED, RequestBodyLimit, body_limit

KiB = 1024
LIMITS = override_settings(MAX_REQUEST_BYTES=64 * KiB, MAX_FORM_BYTES=8 * KiB)


class Server:
    """The server's side: the body as ``chunks`` of ``http.request``, then a disconnect; counts
    how many messages the application took, and records what it sent."""

    def __init__(self, *chunks: bytes) -> None:
        self.messages: list[dict[str, Any]] = [
            {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
            for i, chunk in enumerate(chunks)
        ]
        self.messages.append({"type": "http.disconnect"})
        self.taken = 0
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        self.taken += 1
        return self.messages[self.taken - 1]

    async def send(self, message: Any) -> None:
        self.sent.append(message)


class App:
    """Django's part, as far as the middleware can tell: read the body to its end, note what it
    got and the scope it saw, answer 200 (whatever Django would answer)."""

    def __init__(self) -> None:
        self.body = b""
        self.scope: dict[str, Any] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scope = scope
        while True:
            message = await receive()
            self.body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})


def http(path: str, length: int | None = None) -> dict[str, Any]:
    headers = [(b"host", b"portal")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {"type": "http", "method": "POST", "path": path, "headers": headers}


def answer_headers(server: Server) -> list[tuple[bytes, bytes]]:
    return list(server.sent[0]["headers"])


@LIMITS
async def test_a_declared_length_over_the_limit_is_not_read_at_all() -> None:
    server, app = Server(b"x" * 9 * KiB), App()
    await RequestBodyLimit(app)(http("/login/", 9 * KiB), server.receive, server.send)
    assert server.taken == 0  # not one message of the body was asked of the server
    assert app.body == b""
    assert app.scope[REFUSED] == 8 * KiB
    assert (b"connection", b"close") in answer_headers(server)


@LIMITS
async def test_a_body_without_a_length_ends_for_django_at_the_limit() -> None:
    chunks = [b"x" * 3 * KiB] * 10  # 30 KiB, chunked
    server, app = Server(*chunks), App()
    await RequestBodyLimit(app)(http("/login/"), server.receive, server.send)
    assert server.taken == 3  # the third chunk passed the limit: no fourth was read
    assert app.body == b"x" * 6 * KiB  # the whole chunks under the limit, never more than it
    assert app.scope[REFUSED] == 8 * KiB
    assert (b"connection", b"close") in answer_headers(server)


@LIMITS
async def test_a_length_that_understates_the_body_is_counted_too() -> None:
    server, app = Server(b"x" * 5 * KiB, b"x" * 5 * KiB), App()
    await RequestBodyLimit(app)(http("/login/", 100), server.receive, server.send)
    assert app.scope[REFUSED] == 8 * KiB
    assert app.body == b"x" * 5 * KiB


@LIMITS
@pytest.mark.parametrize("length", [None, 8 * KiB])
async def test_a_body_within_the_limit_passes_unchanged(length: int | None) -> None:
    server, app = Server(b"a" * 4 * KiB, b"b" * 4 * KiB), App()
    await RequestBodyLimit(app)(http("/login/", length), server.receive, server.send)
    assert app.body == b"a" * 4 * KiB + b"b" * 4 * KiB
    assert REFUSED not in app.scope
    assert (b"connection", b"close") not in answer_headers(server)


@LIMITS
async def test_after_a_whole_body_the_server_is_still_listened_to() -> None:
    """Django waits for the client's disconnect while it answers: that reaches it."""
    server = Server(b"a")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["body"] == b"a"
        assert (await receive())["type"] == "http.disconnect"

    await RequestBodyLimit(app)(http("/login/"), server.receive, server.send)
    assert server.taken == 2


@LIMITS
async def test_after_a_refused_body_nothing_more_is_read() -> None:
    """Django's disconnect listener, after a refused body, waits (until Django cancels it) rather
    than reading on into the body: the server's receive is not called again."""
    server = Server(b"x" * 9 * KiB, b"y" * KiB)
    listened: list[asyncio.Task[Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["more_body"] is False
        listened.append(asyncio.ensure_future(receive()))
        await asyncio.sleep(0.05)

    await RequestBodyLimit(app)(http("/login/"), server.receive, server.send)
    assert not listened[0].done()
    listened[0].cancel()
    assert server.taken == 1


@LIMITS
async def test_the_scope_of_the_server_is_not_changed() -> None:
    server, scope = Server(b""), http("/login/", 9 * KiB)
    await RequestBodyLimit(App())(scope, server.receive, server.send)
    assert REFUSED not in scope


@pytest.mark.parametrize("kind", ["websocket", "lifespan"])
async def test_websockets_and_lifespan_pass_through_untouched(kind: str) -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.extend([scope, receive, send])

    scope: dict[str, Any] = {"type": kind, "path": "/ws/x/", "headers": [(b"content-length", b"999999999")]}

    async def receive() -> dict[str, Any]:
        return {}

    async def send(message: Any) -> None:
        return None

    await RequestBodyLimit(app)(scope, receive, send)
    assert seen[0] is scope
    assert seen[1] is receive
    assert seen[2] is send


@override_settings(MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"])
def test_it_refuses_to_start_without_the_middleware_that_answers_its_refusals() -> None:
    """Without it, a view would read the start of a cut-off body as if it were the whole."""
    with pytest.raises(ImproperlyConfigured, match="BodySizeLimitMiddleware"):
        RequestBodyLimit(App())


# ------------------------------------------------------------------ the route table

UPLOADS = [
    "/t/acme/functions/hello/",  # the Code tab: upload, save a file
    "/t/acme/functions/hello/invoke/",
    "/t/acme/functions/hello/events/",
    "/t/acme/configuration/",
    "/t/acme/api/v1/functions/hello/upload/",
    "/t/acme/api/v1/functions/hello/code/",
    "/t/acme/api/v1/functions/hello/invoke/",
    "/t/acme/api/v1/secrets/",
    "/t/acme/api/v1/configmaps/db/",
]
FORMS = [
    "/login/",
    "/api/v1/tenants/",
    "/t/acme/members/",
    "/t/acme/api/v1/members/",
    "/t/acme/functions/",
    "/t/acme/functions/hello/triggers/",
    "/t/acme/api/v1/functions/",
    "/t/acme/api/v1/functions/hello/builds/",
    "/t/acme/functions/hello/invoke/x/",  # a longer path than the table's is not its route
    "/functions/hello/",  # the table's routes are a tenant's
    "/x/acme/functions/hello/",
]


@LIMITS
@pytest.mark.parametrize("path", UPLOADS)
def test_the_routes_that_take_code_get_the_request_limit(path: str) -> None:
    assert body_limit(path) == 64 * KiB


@LIMITS
@pytest.mark.parametrize("path", FORMS)
def test_every_other_route_gets_the_form_limit(path: str) -> None:
    assert body_limit(path) == 8 * KiB


@override_settings(MAX_REQUEST_BYTES=4 * KiB, MAX_FORM_BYTES=8 * KiB)
def test_the_form_limit_is_never_above_the_request_limit() -> None:
    assert body_limit("/login/") == 4 * KiB


def test_the_defaults_are_1_mib_for_forms_and_10_mib_for_code() -> None:
    form, upload = settings.MAX_FORM_BYTES, settings.MAX_REQUEST_BYTES
    assert form == 1024 * KiB
    assert upload == 10 * 1024 * KiB
    assert body_limit("/login/") == settings.MAX_FORM_BYTES
