"""Minimal HTTP/1.1 on asyncio + httptools for the router's hot path.

Two halves: ``ServerProtocol`` parses client requests (keep-alive, one at a time per
connection, in order) and hands them to a handler; ``UpstreamConnection`` sends one request
at a time to a worker over a unix socket and parses its response. No framework on this
path: it is where the router overhead is measured.

A HEAD goes to the worker as HEAD; its answer has headers only (the Content-Length is the one a
GET would have), and neither half sends or waits for a body.
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import cast

import httptools

HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade", b"proxy-connection"}
)
REQUEST_ID_HEADER = b"x-fission-request-id"
_NOT_FORWARDED = HOP_BY_HOP | {b"host", b"content-length"}  # send() writes its own
# A caller's request id is taken only when it is this plain: it names log records and is echoed.
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,128}$")


class _NameMemo(dict[bytes, bool]):
    """Header name as written -> a yes/no about it, computed once per name (the same few dozen
    names come with every call; at most ``LIMIT`` are remembered: callers choose them)."""

    LIMIT = 1024

    def __init__(self, rule: Callable[[bytes], bool]) -> None:
        super().__init__()
        self.rule = rule

    def __missing__(self, name: bytes) -> bool:
        answer = self.rule(name.lower())
        if len(self) < self.LIMIT:
            self[name] = answer
        return answer


# Whether send() forwards a header of this name (it writes Host and Content-Length itself).
_FORWARDED_NAME = _NameMemo(lambda lower: lower not in _NOT_FORWARDED)
# Whether Response.encode writes a header of this name as it is (not framing, not hop-by-hop).
_KEPT_NAME = _NameMemo(lambda lower: lower not in HOP_BY_HOP and lower != b"content-length")


class _RandomIds:
    """New request ids: 16 bytes of ``os.urandom`` each, as hex, read 4 KiB at a time (one
    syscall per 256 ids, not one per request). Random, not counted: a tenant must not learn from
    its own ids how many calls other tenants made between two of its own."""

    BATCH = 256

    def __init__(self) -> None:
        self.ids: list[bytes] = []
        os.register_at_fork(after_in_child=self.ids.clear)  # a forked child draws its own

    def next(self) -> bytes:
        while True:
            try:
                return self.ids.pop()
            except IndexError:
                raw = os.urandom(16 * self.BATCH).hex().encode()
                self.ids.extend(raw[i : i + 32] for i in range(0, len(raw), 32))


_new_id = _RandomIds()


def request_id_or_new(offered: bytes | None) -> bytes:
    """The caller's ``X-Fission-Request-ID`` when it is valid, else a new one (32 hex digits)."""
    if offered is not None and _REQUEST_ID.match(offered):
        return offered
    return _new_id.next()


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    target: bytes = b""  # the request line's target as received: path, "?", query
    client: str = ""  # the peer's address, "" when unknown

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def full_url(self) -> bytes:
        """The target as the caller wrote it, which is what Go's ``URL.String()`` gives for a
        server request (Fission's ``X-Fission-Full-Url``)."""
        if self.target:
            return self.target
        return self.path.encode("latin-1") + (b"?" + self.query if self.query else b"")


@dataclass(slots=True)
class Response:
    status: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    head_only: bool = False  # an answer to HEAD: the length of the body, not the body
    # Nanoseconds from sending the request to a worker to its whole answer (the router's
    # ``Server-Timing`` function figure, runtime.timing); -1 when no worker answered.
    worker_ns: int = field(default=-1, compare=False)

    def encode(self, keep_alive: bool = True) -> bytes:
        lines = [_STATUS_LINES.get(self.status) or f"HTTP/1.1 {self.status} ".encode()]
        length = str(len(self.body)).encode()
        for k, v in self.headers:
            if _KEPT_NAME[k]:
                lines.append(k + b": " + v)
            elif self.head_only and not self.body and k.lower() == b"content-length":
                # A worker's answer to HEAD has no body but says how long the GET body would be.
                length = v
        lines.append(b"content-length: " + length)
        if not keep_alive:
            lines.append(b"connection: close")
        return b"\r\n".join(lines) + b"\r\n\r\n" + (b"" if self.head_only else self.body)


_STATUS_LINES = {status.value: f"HTTP/1.1 {status.value} {status.phrase}".encode() for status in HTTPStatus}


class BodyTooLarge(Exception):
    pass


Handler = Callable[[Request], Awaitable[Response]]


class _Inbox:
    """A connection's requests (and the answers the parser gives itself), in order, for the one
    task that answers them: a deque and a future to wake that task on, which is all of
    ``asyncio.Queue`` this needs, at less cost per request. ``None`` ends the connection."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.items: collections.deque[Request | Response | None] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Request | Response | None) -> None:
        self.items.append(item)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def get(self) -> Request | Response | None:
        while not self.items:
            self.waiter = self.loop.create_future()
            await self.waiter
        return self.items.popleft()


class ServerProtocol(asyncio.Protocol):
    """One client connection. Requests are answered strictly in order."""

    def __init__(self, handler: Handler, max_body: int) -> None:
        self.handler = handler
        self.max_body = max_body
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.client = ""
        self.queue = _Inbox(asyncio.get_running_loop())
        self.worker: asyncio.Task[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body_parts: list[bytes] = []
        self.body_size = 0
        self.too_large = False

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        self.worker = asyncio.get_running_loop().create_task(self._serve())

    def connection_lost(self, exc: Exception | None) -> None:
        self.queue.put_nowait(None)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.queue.put_nowait(Response(501, body=b"upgrades are not supported\n"))
        except httptools.HttpParserError:
            self.queue.put_nowait(Response(400, body=b"malformed request\n"))
            self.queue.put_nowait(None)

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > self.max_body:
            self.too_large = True
        elif not self.too_large:
            self.body_parts.append(body)

    def on_message_complete(self) -> None:
        if self.too_large:
            self.queue.put_nowait(Response(413, body=b"request body too large\n"))
        else:
            parsed = httptools.parse_url(self.url)
            request = Request(
                method=self.parser.get_method().decode(),
                path=(parsed.path or b"/").decode("latin-1"),
                query=parsed.query or b"",
                headers=self.headers,
                body=b"".join(self.body_parts),
                target=self.url,
                client=self.client,
            )
            self.queue.put_nowait(request)
        self._reset()

    async def _serve(self) -> None:
        while True:
            item = await self.queue.get()  # no suspension when one is waiting
            if item is None or self.transport is None or self.transport.is_closing():
                break
            response = item if isinstance(item, Response) else await self.handler(item)
            if self.transport.is_closing():
                break  # the client went away while its call ran: the answer has nowhere to go
            keep_alive = self.parser.should_keep_alive() and response.status != 400
            self.transport.write(response.encode(keep_alive))
            if not keep_alive:
                self.transport.close()
                break


class UpstreamClosed(Exception):
    """The worker closed the connection (or died) before answering."""


class UpstreamConnection(asyncio.Protocol):
    """A keep-alive connection to one worker; one request in flight at a time.

    After a HEAD the connection is closed: the parser cannot be told that this answer has no
    body despite its Content-Length, so the answer ends with its headers, and bytes a worker
    might still send are never read as the next answer."""

    def __init__(self) -> None:
        # Kept: asyncio.get_running_loop() costs a getpid() syscall per call on Python 3.11.
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Response] | None = None
        self.closed = False
        self.for_head = False  # the request in flight is a HEAD
        self._start()

    def _start(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.body_parts: list[bytes] = []

    @classmethod
    async def open(cls, path: str) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_unix_connection(cls, path)
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(UpstreamClosed("the worker closed the connection"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_exception(UpstreamClosed(f"malformed response from the worker: {exc}"))
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if not self.for_head or status < 200:
            return
        response = Response(status, self.headers)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(response)
        self.close()

    def on_body(self, body: bytes) -> None:
        self.body_parts.append(body)

    def on_message_complete(self) -> None:
        if self.closed:
            return  # the answer to a HEAD, already complete with its headers
        response = Response(self.parser.get_status_code(), self.headers, b"".join(self.body_parts))
        keep = self.parser.should_keep_alive()
        self._start()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(response)
        if not keep:
            self.close()

    async def send(self, method: str, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes,
                   timeout: float | None = None) -> Response:  # fmt: skip
        """The worker's answer; TimeoutError (the connection closed) when none came within
        ``timeout`` seconds. The timeout is a timer on the loop, not ``asyncio.wait_for``'s task:
        this is the router's hot path."""
        if self.closed or self.transport is None:
            raise UpstreamClosed("connection already closed")
        loop = self.loop
        waiter = self.waiter = loop.create_future()
        self.for_head = method == "HEAD"
        head = [method.encode() + b" " + target + b" HTTP/1.1", b"host: worker"]
        head += [k + b": " + v for k, v in headers if _FORWARDED_NAME[k]]
        head.append(b"content-length: " + str(len(body)).encode())
        sent = time.perf_counter_ns()
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        timer = loop.call_later(timeout, self._time_out, waiter) if timeout is not None else None
        try:
            response = await waiter
        finally:
            self.waiter = None
            if timer is not None:
                timer.cancel()
        response.worker_ns = time.perf_counter_ns() - sent
        return response

    def _time_out(self, waiter: asyncio.Future[Response]) -> None:
        if not waiter.done():
            waiter.set_exception(TimeoutError())
            self.close()  # an answer that comes later must not be read as the next one's

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
