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
import functools
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import cast

import httptools

log = logging.getLogger(__name__)

HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade", b"proxy-connection"}
)
REQUEST_ID_HEADER = b"x-fission-request-id"
# start() writes its own Host and Content-Length; the router has read the whole body, so a
# caller's Expect is answered here (ServerProtocol), never passed on.
_NOT_FORWARDED = HOP_BY_HOP | {b"host", b"content-length", b"expect"}
# A caller's request id is taken only when it is this plain: it names log records and is echoed.
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,128}$")


class NameMemo(dict[bytes, bool]):
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


# Whether start() forwards a header of this name (it writes Host and Content-Length itself).
_FORWARDED_NAME = NameMemo(lambda lower: lower not in _NOT_FORWARDED)
# Whether Response.encode writes a header of this name as it is (not framing, not hop-by-hop).
_KEPT_NAME = NameMemo(lambda lower: lower not in HOP_BY_HOP and lower != b"content-length")


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


UPGRADE_REFUSED = b"upgrades are not supported\n"
MALFORMED = b"malformed request\n"
TOO_LARGE = b"request body too large\n"
# The answer's body when a call has no function to reach (or the runtime failed on it).
UNAVAILABLE = b"the function is unavailable\n"


def request_of(
    method: str, url: bytes, headers: list[tuple[bytes, bytes]], body: bytes, client: str
) -> Request:
    """A parsed request as the router takes it (from ``ServerProtocol`` or the compiled front,
    ``runtime.fastpath``). Raises ``httptools.HttpParserInvalidURLError`` for a target that is no URL."""
    parsed = httptools.parse_url(url)
    return Request(
        method=method,
        path=(parsed.path or b"/").decode("latin-1"),
        query=parsed.query or b"",
        headers=headers,
        body=body,
        target=url,
        client=client,
    )


def own_answers() -> dict[str, bytes]:
    """The answers ``ServerProtocol`` gives on its own, encoded, for the compiled front (whose
    ``502``, for a request the router failed on, closes the connection)."""
    return {
        "400": Response(400, body=MALFORMED).encode(False),
        "413": Response(413, body=TOO_LARGE).encode(True),
        "413-close": Response(413, body=TOO_LARGE).encode(False),
        "501": Response(501, body=UPGRADE_REFUSED).encode(False),
        "502": Response(502, body=UNAVAILABLE).encode(False),
    }


Reply = Callable[[Response], None]
# Takes a request and the way to answer it: calls the reply exactly once, at once or later.
Dispatch = Callable[[Request, Reply], None]
# The most parsed requests a connection holds unanswered before it stops reading (pipelining);
# it stops too when their bodies come to more than its body limit.
PENDING_LIMIT = 64


class ServerProtocol(asyncio.Protocol):
    """One client connection. Requests are answered strictly in order, one at a time: each parsed
    request is handed to ``dispatch`` once the one before it is answered, and the parser's own
    answers (400, 413, 501) wait their turn the same way. No task per connection or request: an
    answer ``dispatch`` gives at once is written at once, and one it gives later is written from
    the callback that gives it (the router's warm path, runtime.router)."""

    def __init__(self, dispatch: Dispatch, max_body: int) -> None:
        self.dispatch = dispatch
        self.max_body = max_body
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.client = ""
        # Parsed and not yet answered, in order, each with whether the connection stays open after it.
        self.pending: collections.deque[tuple[Request | Response, bool]] = collections.deque()
        self.pending_bytes = 0  # of the pending requests' bodies
        self.busy = False  # a request is with ``dispatch`` and not yet answered
        self.keep_alive = True  # whether the connection stays open after that request's answer
        self.head = False  # that request is a HEAD: its answer has no body
        self.sequence = 0  # counts the requests dispatched: a reply names the one it answers
        self.pumping = False  # _pump is on the stack: an answer given at once does not re-enter it
        self.paused = False
        self.broken = False  # the parser failed: nothing after that is read
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body_parts: list[bytes] = []
        self.body_size = 0
        self.too_large = False
        self.expect = b""  # the request's Expect header

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if isinstance(peer, tuple) and peer else ""

    def connection_lost(self, exc: Exception | None) -> None:
        self._drop_pending()  # a call under way finishes; its answer has nowhere to go

    def data_received(self, data: bytes) -> None:
        if self.broken:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if not self.broken:  # not answered yet (on_message_complete answers most upgrades)
                self._add(Response(501, body=UPGRADE_REFUSED), False)
            self.broken = True  # what follows is another protocol's
        except httptools.HttpParserError:
            self.broken = True
            self._add(Response(400, body=MALFORMED), False)

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        if len(name) == 6 and name.lower() == b"expect":
            self.expect = value

    def on_headers_complete(self) -> None:
        """``Expect: 100-continue``: the client waits for a go-ahead before it sends the body. It
        gets one when nothing is answered ahead of it on the connection (a ``100 Continue`` must
        not come between another request's answer and its client); otherwise the client sends
        the body after its own wait, as RFC 9110 lets it."""
        transport = self.transport
        waiting = self.busy or self.pending or transport is None or transport.is_closing()
        if self.expect.lower() == b"100-continue" and not waiting:
            cast(asyncio.Transport, transport).write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > self.max_body:
            self.too_large = True
        elif not self.too_large:
            self.body_parts.append(body)

    def on_message_complete(self) -> None:
        item: Request | Response
        keep_alive = self.parser.should_keep_alive()
        if self.parser.should_upgrade():
            item, keep_alive, self.broken = Response(501, body=UPGRADE_REFUSED), False, True
        elif self.too_large:
            item = Response(413, body=TOO_LARGE)
        else:
            method = self.parser.get_method().decode()
            item = request_of(method, self.url, self.headers, b"".join(self.body_parts), self.client)
        self._reset()
        self._add(item, keep_alive)

    # answering, in order
    def _add(self, item: Request | Response, keep_alive: bool) -> None:
        self.pending.append((item, keep_alive))
        if isinstance(item, Request):
            self.pending_bytes += len(item.body)
        too_much = len(self.pending) > PENDING_LIMIT or self.pending_bytes > self.max_body
        if too_much and self.transport is not None and not self.paused:
            self.paused = True  # bounded memory against a client that pipelines faster than calls end
            self.transport.pause_reading()
        if not self.busy and not self.pumping:
            self._pump()

    def _pump(self) -> None:
        """Answer what is pending until a request is with ``dispatch`` and not answered yet."""
        if self.pumping or self.busy:
            return
        self.pumping = True
        try:
            while self.pending and not self.busy:
                if self.transport is None or self.transport.is_closing():
                    self._drop_pending()
                    return
                item, keep_alive = self.pending.popleft()
                if isinstance(item, Response):
                    self._write(item, keep_alive)
                    continue
                self.pending_bytes -= len(item.body)
                self.busy = True
                self.keep_alive, self.head = keep_alive, item.method == "HEAD"
                self.sequence += 1
                self._dispatch(item)  # may reply at once: the loop then goes on
        finally:
            self.pumping = False
        drained = len(self.pending) <= PENDING_LIMIT // 2 and self.pending_bytes <= self.max_body // 2
        if self.paused and self.transport is not None and drained:
            self.paused = False
            self.transport.resume_reading()

    def _drop_pending(self) -> None:
        self.pending.clear()
        self.pending_bytes = 0

    def _dispatch(self, request: Request) -> None:
        sequence = self.sequence
        try:
            self.dispatch(request, functools.partial(self._reply, sequence))
        except Exception:
            # A fault of the router's own: logged, and the caller answered rather than left waiting.
            log.exception("the router failed on %s %s", request.method, request.path)
            self._reply(sequence, Response(502, body=UNAVAILABLE))

    def _reply(self, sequence: int, response: Response) -> None:
        if sequence != self.sequence or not self.busy:
            return  # for a request already answered (a fault's 502 went first): dropped
        self.busy = False
        response.head_only = self.head
        self._write(response, self.keep_alive)
        if self.pending and not self.pumping:
            # Not from here: whoever replied finishes its work (releasing the worker) first.
            self.loop.call_soon(self._pump)

    def _write(self, response: Response, keep_alive: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return  # the client went away while its call ran: the answer has nowhere to go
        transport.write(response.encode(keep_alive))
        if not keep_alive:
            self._drop_pending()
            transport.close()


class UpstreamClosed(Exception):
    """The worker closed the connection (or died) before answering."""


Outcome = Response | Exception  # a worker's answer, or why there is none
Settle = Callable[[Outcome], None]


class UpstreamConnection(asyncio.Protocol):
    """A keep-alive connection to one worker; one request in flight at a time.

    ``start`` sends a request and hands its outcome to a callback, exactly once: the worker's
    answer, TimeoutError (the connection is then closed: an answer that comes later must not be
    read as the next one's) or UpstreamClosed. ``send`` is the same, awaited. A connection that
    will not be reused is closed before its outcome is handed over, so the callback can tell.

    After a HEAD the connection is closed: the parser cannot be told that this answer has no
    body despite its Content-Length, so the answer ends with its headers, and bytes a worker
    might still send are never read as the next answer."""

    def __init__(self) -> None:
        # Kept: asyncio.get_running_loop() costs a getpid() syscall per call on Python 3.11.
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.settle: Settle | None = None  # the request in flight's, until its outcome is known
        self.timer: asyncio.TimerHandle | None = None
        self.sent = 0  # perf_counter_ns when the request in flight was written
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
        self._settle(UpstreamClosed("the worker closed the connection"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.close()
            self._settle(UpstreamClosed(f"malformed response from the worker: {exc}"))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if not self.for_head or status < 200:
            return
        self.close()
        self._settle(Response(status, self.headers))

    def on_body(self, body: bytes) -> None:
        self.body_parts.append(body)

    def on_message_complete(self) -> None:
        if self.closed:
            return  # the answer to a HEAD, already complete with its headers
        if self.parser.get_status_code() < 200:
            self._start()  # an interim answer (100 Continue...): the final one follows
            return
        response = Response(self.parser.get_status_code(), self.headers, b"".join(self.body_parts))
        self._start()
        if not self.parser.should_keep_alive():
            self.close()
        self._settle(response)

    def start(self, method: str, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes,
              timeout: float | None, settle: Settle) -> None:  # fmt: skip
        """Send the request; ``settle`` gets its outcome (never from within this call, unless the
        connection is already closed). The timeout is a timer on the loop, not a task: this is
        the router's hot path."""
        if self.closed or self.transport is None:
            settle(UpstreamClosed("connection already closed"))
            return
        self.settle = settle
        self.for_head = method == "HEAD"
        head = [method.encode() + b" " + target + b" HTTP/1.1", b"host: worker"]
        head += [k + b": " + v for k, v in headers if _FORWARDED_NAME[k]]
        head.append(b"content-length: " + str(len(body)).encode())
        self.sent = time.perf_counter_ns()
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        if timeout is not None:
            self.timer = self.loop.call_later(timeout, self._time_out)

    async def send(self, method: str, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes,
                   timeout: float | None = None) -> Response:  # fmt: skip
        """``start``, awaited: the worker's answer, or the exception there is instead. Cancelled,
        the connection is closed (its answer would otherwise be read as the next request's)."""
        waiter: asyncio.Future[Response] = self.loop.create_future()
        self.start(method, target, headers, body, timeout, functools.partial(_resolve, waiter))
        try:
            return await waiter
        except asyncio.CancelledError:
            self.close()
            self.settle = None
            raise

    def _settle(self, outcome: Outcome) -> None:
        settle = self.settle
        if settle is None:
            return
        self.settle = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if isinstance(outcome, Response):
            outcome.worker_ns = time.perf_counter_ns() - self.sent
        try:
            settle(outcome)
        except Exception:  # the taker's fault, not this connection's: it stays as it is
            log.exception("a worker's answer could not be handed over")

    def _time_out(self) -> None:
        self.timer = None
        self.close()
        self._settle(TimeoutError())

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _resolve(waiter: asyncio.Future[Response], outcome: Outcome) -> None:
    if waiter.done():
        return
    if isinstance(outcome, Response):
        waiter.set_result(outcome)
    else:
        waiter.set_exception(outcome)
