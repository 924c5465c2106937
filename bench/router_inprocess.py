"""What the router's Python costs a call, in-process (a benchmark, not a test; no target).

The real ``ServerProtocol``, ``Router`` and ``Executor`` on uvloop, with the sockets replaced by
objects that hand the bytes straight back: a client connection that sends its next keep-alive
request as soon as it has the answer to the last, and a warm worker (a specialized ``Worker`` with
an open ``UpstreamConnection``) that answers every request at once with a canned 200. No kernel,
no other process: only the router's own interpreter work, which ``bench/runtime.py`` cannot
separate from the rest.

Two targets, interleaved in rounds: ``router`` (a GET of an exact HTTP trigger, as
``bench/runtime.py`` sends it, routed, rewritten, counted and answered as in production) and
``forward`` (the same two protocol objects with a dispatch that only forwards the request and
hands the worker's answer back: parsing and framing, no routing, headers or bookkeeping). A
figure is the median over rounds of microseconds a call (wall time; the loop runs nothing else),
with the range. ``--profile`` prints cProfile's top functions of one router round instead.

``.venv/bin/python bench/router_inprocess.py [--rounds N] [--calls N] [--profile]``
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime import interpreters
from runtime.executor import Deployable, Executor, Worker
from runtime.http import Dispatch, Reply, Request, ServerProtocol, UpstreamConnection
from runtime.logs import LogCollector
from runtime.objects import parse_environment, parse_function, parse_httptrigger
from runtime.router import Router
from runtime.sandbox.tenant import Sandboxes, SandboxSettings
from testsupport.fission import environment, function, httptrigger

NS = "faas-bench"
PATH = "/bench/hello"
# What wrk sends, and what a worker answers a hello-world function.
REQUEST = f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:8888\r\n\r\n".encode()
ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 12\r\n\r\nhello, world"
)


class _Worker:
    """The worker's end of an ``UpstreamConnection``: every request is answered at once."""

    def __init__(self, loop: asyncio.AbstractEventLoop, connection: UpstreamConnection) -> None:
        self.loop, self.connection = loop, connection

    def write(self, data: bytes) -> None:
        self.loop.call_soon(self.connection.data_received, ANSWER)

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class _Client:
    """A keep-alive client: the next request as soon as the answer to the last has come."""

    def __init__(self, loop: asyncio.AbstractEventLoop, calls: int) -> None:
        self.loop, self.calls, self.answered = loop, calls, 0
        self.done: asyncio.Future[None] = loop.create_future()
        self.protocol: ServerProtocol | None = None
        self.first = b""

    def write(self, data: bytes) -> None:
        self.answered += 1
        if self.answered == 1:
            self.first = data
        if self.answered == self.calls:
            self.done.set_result(None)
        else:
            assert self.protocol is not None
            self.loop.call_soon(self.protocol.data_received, REQUEST)

    def close(self) -> None:
        raise AssertionError("the router closed a keep-alive connection")

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        raise AssertionError("the router paused a client that does not pipeline")

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else default


def _upstream(loop: asyncio.AbstractEventLoop) -> UpstreamConnection:
    connection = UpstreamConnection()
    connection.connection_made(_Worker(loop, connection))  # type: ignore[arg-type]
    return connection


def warm_router(tmp: Path) -> Router:
    """A router and executor with one warm, specialized worker of ``hello`` behind ``PATH``."""
    settings = SandboxSettings(enabled=False, uid_base=100_000, tmp_bytes=0, worker_pids=0)  # none started
    sandboxes = Sandboxes(settings, tmp, None, None, interpreters.installed())
    executor = Executor(sandboxes, tmp, LogCollector(None, 1000))
    env = parse_environment(environment(NS, "python"), NS)
    fn = parse_function(function(NS, "hello", package="hello-pkg"), NS)
    deployable = Deployable(fn, env, tmp)
    executor.deployables = {deployable.key: deployable}
    worker = Worker("w1", 0, -1, tmp / "w1.sock", None, (NS, "python"), env.python, "poolmgr", 0,
                    state="specialized", function=deployable.key)  # fmt: skip
    worker.connections.append(_upstream(asyncio.get_running_loop()))
    executor.by_function[deployable.key].append(worker)
    router = Router(executor, "faas")
    router.set_triggers([parse_httptrigger(httptrigger(NS, "hello", PATH, function_name="hello"), NS)])
    return router


def forwarding(loop: asyncio.AbstractEventLoop) -> Dispatch:
    """A dispatch that only forwards: the request as it came, the worker's answer as it is."""
    connection = _upstream(loop)

    def dispatch(request: Request, reply: Reply) -> None:
        connection.start(request.method, request.target, request.headers, request.body, 60.0, reply)  # type: ignore[arg-type]

    return dispatch


async def calls(dispatch: Dispatch, count: int) -> float:
    """Microseconds a call over ``count`` keep-alive calls on one connection."""
    loop = asyncio.get_running_loop()
    client = _Client(loop, count)
    protocol = client.protocol = ServerProtocol(dispatch, 1 << 20)
    protocol.connection_made(client)  # type: ignore[arg-type]
    began = time.perf_counter()
    protocol.data_received(REQUEST)
    await client.done
    took = (time.perf_counter() - began) / count * 1e6
    if not client.first.startswith(b"HTTP/1.1 200 "):
        raise SystemExit(f"not answered 200: {client.first!r}")
    return took


async def measure(rounds: int, count: int) -> dict[str, list[float]]:
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="router-inprocess-") as tmp:
        targets: dict[str, Callable[[Request, Reply], None]] = {
            "router": warm_router(Path(tmp)).dispatch,
            "forward": forwarding(loop),
        }
        samples: dict[str, list[float]] = {name: [] for name in targets}
        await calls(targets["router"], 1000)  # warm: caches, memos, the first series of a metric
        for index in range(rounds):
            order = list(targets)[index % 2 :] + list(targets)[: index % 2]
            for name in order:
                samples[name].append(await calls(targets[name], count))
    return samples


async def profile(count: int) -> None:
    with tempfile.TemporaryDirectory(prefix="router-inprocess-") as tmp:
        dispatch = warm_router(Path(tmp)).dispatch
        await calls(dispatch, 1000)
        profiler = cProfile.Profile()
        profiler.enable()
        await calls(dispatch, count)
        profiler.disable()
    stats = pstats.Stats(profiler)
    print(f"{stats.total_calls / count:.0f} function calls a call (this script's included)")  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.profile:
        uvloop.run(profile(args.calls))
        return
    samples = uvloop.run(measure(args.rounds, args.calls))
    result: dict[str, object] = {"bench": "router_inprocess", "rounds": args.rounds, "calls": args.calls}
    print(f"{'':28}{'us a call':>10}  range over {args.rounds} rounds of {args.calls:,} calls")
    for name, values in samples.items():
        median = round(statistics.median(values), 2)
        result[f"{name}_us"] = median
        result[f"{name}_us_range"] = [round(min(values), 2), round(max(values), 2)]
        print(f"{name:28}{median:>10}  [{min(values):.2f}, {max(values):.2f}]")
    ratios = [r / f for r, f in zip(samples["router"], samples["forward"], strict=True)]
    result["router_vs_forward"] = round(statistics.median(ratios), 2)
    print(f"router / forward: x{result['router_vs_forward']} (no target)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
