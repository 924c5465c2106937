"""The router's two HTTP halves on their own (runtime.http), with transports that record what is
written: answers in order whatever order they are given in, a bounded backlog of pipelined
requests, a client gone before its answer; and a worker connection whose every request gets
exactly one outcome (the answer, a timeout or the connection's end)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from runtime.http import (
    PENDING_LIMIT,
    Outcome,
    Reply,
    Request,
    Response,
    ServerProtocol,
    UpstreamClosed,
    UpstreamConnection,
)
from runtime.objects import parse_httptrigger
from runtime.router import Router
from testsupport.fission import httptrigger


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False
        self.paused = False
        self.pauses = 0

    def write(self, data: bytes) -> None:
        assert not self.closing, "written after close"
        self.written.append(data)

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume_reading(self) -> None:
        self.paused = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("10.1.2.3", 40000) if name == "peername" else default


def _get(path: str, extra: bytes = b"") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: h\r\n".encode() + extra + b"\r\n"


def _statuses_and_bodies(written: list[bytes]) -> list[tuple[int, bytes]]:
    found = []
    for answer in written:
        head, _, body = answer.partition(b"\r\n\r\n")
        found.append((int(head.split(b" ")[1]), body))
    return found


class _Later:
    """A dispatch that answers ``/now...`` at once and holds the others until told."""

    def __init__(self) -> None:
        self.held: list[tuple[Request, Reply]] = []
        self.seen: list[str] = []

    def __call__(self, request: Request, reply: Reply) -> None:
        self.seen.append(request.path)
        if request.path.startswith("/now"):
            reply(Response(200, body=request.path.encode()))
        else:
            self.held.append((request, reply))

    def release(self) -> None:
        request, reply = self.held.pop(0)
        reply(Response(200, body=request.path.encode()))


def _served(run: Callable[[ServerProtocol, _Transport, _Later], Any]) -> Any:
    async def main() -> Any:
        dispatch = _Later()
        protocol = ServerProtocol(dispatch, max_body=1024)
        transport = _Transport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        result = run(protocol, transport, dispatch)
        if asyncio.iscoroutine(result):
            result = await result
        return result

    return asyncio.run(main())


def test_pipelined_requests_are_answered_in_order_and_one_at_a_time():
    async def run(protocol: ServerProtocol, transport: _Transport, dispatch: _Later) -> None:
        protocol.data_received(_get("/slow1") + _get("/now2") + _get("/slow3") + _get("/now4"))
        assert dispatch.seen == ["/slow1"]  # the next one waits for this one's answer
        assert transport.written == []
        dispatch.release()
        await asyncio.sleep(0)  # the next request is taken up on the loop, not inside the reply
        assert dispatch.seen == ["/slow1", "/now2", "/slow3"]
        dispatch.release()
        await asyncio.sleep(0)
        expected = [(200, b"/slow1"), (200, b"/now2"), (200, b"/slow3"), (200, b"/now4")]
        assert _statuses_and_bodies(transport.written) == expected
        assert not transport.closing

    _served(run)


def test_a_malformed_request_is_answered_400_after_the_answers_before_it_then_the_connection_closes():
    async def run(protocol: ServerProtocol, transport: _Transport, dispatch: _Later) -> None:
        protocol.data_received(_get("/slow1") + b"NOT HTTP AT ALL\r\n\r\n")
        protocol.data_received(_get("/now-never"))  # after the parser failed: not read
        assert transport.written == []
        dispatch.release()
        await asyncio.sleep(0)
        assert [status for status, _ in _statuses_and_bodies(transport.written)] == [200, 400]
        assert b"connection: close" in transport.written[1]
        assert transport.closing
        assert dispatch.seen == ["/slow1"]

    _served(run)


def test_a_body_too_large_is_413_in_its_turn_and_the_connection_stays():
    def run(protocol: ServerProtocol, transport: _Transport, dispatch: _Later) -> None:
        big = b"POST /now HTTP/1.1\r\nHost: h\r\nContent-Length: 2000\r\n\r\n" + b"x" * 2000
        protocol.data_received(big + _get("/now-after"))
        assert _statuses_and_bodies(transport.written)[0][0] == 413
        assert _statuses_and_bodies(transport.written)[1] == (200, b"/now-after")
        assert not transport.closing

    _served(run)


def test_connection_close_from_the_client_closes_after_its_answer():
    def run(protocol: ServerProtocol, transport: _Transport, dispatch: _Later) -> None:
        protocol.data_received(_get("/now", b"Connection: close\r\n"))
        assert b"connection: close" in transport.written[0]
        assert transport.closing

    _served(run)


def test_a_client_that_pipelines_faster_than_answers_come_is_paused_then_resumed():
    async def run(protocol: ServerProtocol, transport: _Transport, dispatch: _Later) -> None:
        count = PENDING_LIMIT + 10
        protocol.data_received(b"".join(_get(f"/slow{i}") for i in range(count)))
        assert transport.paused  # no more is read while this many wait
        for _ in range(count):
            dispatch.release()
            await asyncio.sleep(0)
        assert not transport.paused
        assert transport.pauses == 1
        assert [body for _, body in _statuses_and_bodies(transport.written)] == [
            f"/slow{i}".encode() for i in range(count)
        ]

    _served(run)


def test_pipelined_bodies_beyond_the_body_limit_pause_reading_too():
    async def run(protocol: ServerProtocol, transport: _Transport, dispatch: _Later) -> None:
        post = b"POST /slow HTTP/1.1\r\nHost: h\r\nContent-Length: 600\r\n\r\n" + b"x" * 600
        protocol.data_received(post + post + post)  # 1,200 bytes wait behind the first: > 1,024
        assert transport.paused
        for _ in range(3):
            dispatch.release()
            await asyncio.sleep(0)
        assert not transport.paused
        assert protocol.pending_bytes == 0

    _served(run)


def test_an_answer_for_a_client_that_left_is_dropped():
    async def run(protocol: ServerProtocol, transport: _Transport, dispatch: _Later) -> None:
        protocol.data_received(_get("/slow1") + _get("/slow2"))
        transport.closing = True
        protocol.connection_lost(None)
        dispatch.release()  # the call ends after its client is gone: nothing is written
        await asyncio.sleep(0)
        assert transport.written == []
        assert dispatch.seen == ["/slow1"]  # the request behind it is never dispatched

    _served(run)


def test_an_upgrade_is_refused_once_and_the_connection_closes():
    def run(protocol: ServerProtocol, transport: _Transport, dispatch: _Later) -> None:
        protocol.data_received(_get("/now", b"Connection: Upgrade\r\nUpgrade: websocket\r\n") + b"junk")
        assert [status for status, _ in _statuses_and_bodies(transport.written)] == [501]
        assert dispatch.seen == []  # never handed on: the router does not upgrade
        assert transport.closing

    _served(run)


def test_the_answer_to_head_has_no_body_whoever_gives_it():
    def run(protocol: ServerProtocol, transport: _Transport, dispatch: _Later) -> None:
        # /now answers with a body, as the router's own 404 or health check does.
        protocol.data_received(b"HEAD /now HTTP/1.1\r\nHost: h\r\n\r\n" + _get("/now-next"))
        head, rest = transport.written
        assert head.endswith(b"\r\n\r\n")
        assert b"content-length: 4\r\n" in head  # what a GET would get
        assert _statuses_and_bodies([rest]) == [(200, b"/now-next")]  # the framing holds

    _served(run)


def test_a_functions_own_400_keeps_the_connection():
    def run(protocol: ServerProtocol, transport: _Transport, dispatch: _Later) -> None:
        protocol.dispatch = lambda request, reply: reply(Response(400, body=b"bad input"))
        protocol.data_received(_get("/a") + _get("/b"))
        assert [status for status, _ in _statuses_and_bodies(transport.written)] == [400, 400]
        assert not transport.closing

    _served(run)


def test_expect_100_continue_gets_its_go_ahead_when_nothing_is_ahead_of_it():
    async def run(protocol: ServerProtocol, transport: _Transport, dispatch: _Later) -> None:
        head = b"POST /now HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
        protocol.data_received(head)
        assert transport.written == [b"HTTP/1.1 100 Continue\r\n\r\n"]
        protocol.data_received(b"body")
        assert _statuses_and_bodies(transport.written[1:]) == [(200, b"/now")]
        # Behind a request still running, no interim answer may come between: none is sent.
        protocol.data_received(_get("/slow") + head)
        assert len(transport.written) == 2
        protocol.data_received(b"body")
        dispatch.release()
        await asyncio.sleep(0)
        assert [status for status, _ in _statuses_and_bodies(transport.written[2:])] == [200, 200]

    _served(run)


def test_a_fault_of_dispatch_is_answered_502_and_a_late_answer_dropped(caplog):
    def run(protocol: ServerProtocol, transport: _Transport, dispatch: _Later) -> None:
        late: list[Reply] = []

        def faulty(request: Request, reply: Reply) -> None:
            if request.path == "/fault":
                late.append(reply)
                raise RuntimeError("a bug")
            reply(Response(200, body=request.path.encode()))

        protocol.dispatch = faulty
        protocol.data_received(_get("/fault") + _get("/next"))
        late[0](Response(200, body=b"too late"))  # the faulty call answers after all: dropped
        assert _statuses_and_bodies(transport.written) == [(502, b"the function is unavailable\n"),
                                                           (200, b"/next")]  # fmt: skip
        assert "the router failed on GET /fault" in caplog.text

    _served(run)


# ---------------------------------------------------------------- the worker side


def _upstream() -> tuple[UpstreamConnection, _Transport, list[Outcome]]:
    connection = UpstreamConnection()
    transport = _Transport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    return connection, transport, []


ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nok"


def test_a_request_gets_the_workers_answer_once_and_the_connection_is_kept():
    async def run() -> None:
        connection, transport, outcomes = _upstream()
        headers = [(b"X-In", b"v"), (b"Connection", b"x")]
        connection.start("GET", b"/x?y=1", headers, b"", 5.0, outcomes.append)
        assert transport.written[0].startswith(b"GET /x?y=1 HTTP/1.1\r\n")
        assert b"X-In: v\r\n" in transport.written[0]
        assert b"Connection" not in transport.written[0]  # hop-by-hop: never forwarded
        assert outcomes == []  # not from within start
        connection.data_received(ANSWER)
        assert len(outcomes) == 1
        response = outcomes[0]
        assert isinstance(response, Response)
        assert (response.status, response.body) == (200, b"ok")
        assert response.worker_ns >= 0
        assert connection.timer is None  # the timeout's timer is cancelled
        assert not connection.closed
        connection.connection_lost(None)  # later: nothing more for a request already answered
        assert len(outcomes) == 1

    asyncio.run(run())


def test_a_timeout_closes_the_connection_and_a_late_answer_is_nobodys():
    async def run() -> None:
        connection, transport, outcomes = _upstream()
        connection.start("GET", b"/", [], b"", 0.01, outcomes.append)
        await asyncio.sleep(0.05)
        assert len(outcomes) == 1
        assert isinstance(outcomes[0], TimeoutError)
        assert connection.closed
        assert transport.closing
        connection.data_received(ANSWER)
        assert len(outcomes) == 1

    asyncio.run(run())


def test_a_worker_that_closes_says_so_once():
    async def run() -> None:
        connection, _, outcomes = _upstream()
        connection.start("GET", b"/", [], b"", 5.0, outcomes.append)
        connection.connection_lost(None)
        connection.connection_lost(None)
        assert len(outcomes) == 1
        assert isinstance(outcomes[0], UpstreamClosed)
        later: list[Outcome] = []
        connection.start("GET", b"/", [], b"", 5.0, later.append)  # a closed connection: at once
        assert len(later) == 1
        assert isinstance(later[0], UpstreamClosed)

    asyncio.run(run())


def test_an_answer_that_ends_the_connection_is_closed_before_it_is_handed_over():
    async def run() -> None:
        connection, _, outcomes = _upstream()
        closed_when_answered: list[bool] = []

        def settle(outcome: Outcome) -> None:
            closed_when_answered.append(connection.closed)
            outcomes.append(outcome)

        connection.start("GET", b"/", [], b"", 5.0, settle)
        connection.data_received(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        assert closed_when_answered == [True]  # so the executor does not keep it for the next call

    asyncio.run(run())


def test_a_malformed_answer_closes_the_connection():
    async def run() -> None:
        connection, transport, outcomes = _upstream()
        connection.start("GET", b"/", [], b"", 5.0, outcomes.append)
        connection.data_received(b"NONSENSE\r\n\r\n")
        assert len(outcomes) == 1
        assert isinstance(outcomes[0], UpstreamClosed)
        assert transport.closing

    asyncio.run(run())


def test_a_cancelled_send_closes_the_connection():
    async def run() -> None:
        connection, transport, _ = _upstream()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(connection.send("GET", b"/", [], b""), 0.01)
        assert connection.closed  # its answer would otherwise be read as the next request's
        assert transport.closing

    asyncio.run(run())


# ---------------------------------------------------------------- the router on top


class _FaultyQuotas:
    def enter(self, namespace: str) -> bool:
        raise RuntimeError("a fault of the runtime's own")


def test_a_fault_in_a_call_that_waits_is_answered_502_and_logged(caplog):
    # Not deployed: not the warm path, so the call goes to a task, where the quota check fails.
    executor = SimpleNamespace(deployables={}, quotas=_FaultyQuotas())
    router = Router(executor, "faas")  # type: ignore[arg-type]
    router.set_triggers(
        [parse_httptrigger(httptrigger("faas-acme", "t", "/acme/f", function_name="f"), "faas-acme")]
    )
    replies: list[Response] = []

    async def run() -> None:
        router.dispatch(Request("GET", "/acme/f", b"", [(b"Host", b"h")]), replies.append)
        assert replies == []
        await asyncio.sleep(0.05)

    asyncio.run(run())
    assert [r.status for r in replies] == [502]
    assert b"unavailable" in replies[0].body
    assert "the call failed in the runtime" in caplog.text
    assert not router.tasks


def test_an_interim_answer_of_the_worker_is_not_the_answer():
    async def run() -> None:
        connection, _, outcomes = _upstream()
        connection.start("POST", b"/", [(b"Expect", b"100-continue")], b"data", 5.0, outcomes.append)
        connection.data_received(b"HTTP/1.1 100 Continue\r\n\r\n")
        assert outcomes == []
        connection.data_received(ANSWER)
        assert len(outcomes) == 1
        assert isinstance(outcomes[0], Response)
        assert (outcomes[0].status, outcomes[0].body) == (200, b"ok")

    asyncio.run(run())


def test_expect_is_not_passed_on_to_the_worker():
    async def run() -> None:
        connection, transport, _ = _upstream()
        connection.start("POST", b"/", [(b"Expect", b"100-continue")], b"data", 5.0, lambda _: None)
        assert b"expect" not in transport.written[0].lower()

    asyncio.run(run())


def test_a_taker_that_fails_leaves_the_connection_as_it_was(caplog):
    async def run() -> None:
        connection, transport, _ = _upstream()

        def failing(outcome: Outcome) -> None:
            raise RuntimeError("the taker's bug")

        connection.start("GET", b"/", [], b"", 5.0, failing)
        connection.data_received(ANSWER)
        assert not connection.closed  # still fit for the next request
        assert not transport.closing
        assert "could not be handed over" in caplog.text

    asyncio.run(run())
