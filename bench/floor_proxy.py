"""The floor of ``bench/runtime.py``: the least a router in front of a worker can cost.

A uvloop proxy, on the router's interpreter, that parses nothing and decides nothing: each client
connection gets one unix-socket connection of its own to the worker, and bytes are copied both
ways as they come. No routing, no headers, no request ids, no metrics, no limits: what remains is
the extra hop itself (two reads, two writes and a wake-up more per call), which any router that
is a process of its own pays. Measured in the same rounds as the router, it says how much of the
router's cost is the hop and how much is the router's own work.

``python bench/floor_proxy.py --port N --socket PATH`` (listens on 127.0.0.1 only).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import cast

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime.http import UNAVAILABLE, Reply, Request, Response, ServerProtocol, UpstreamConnection

MAX_BODY = 1 << 20


class _ToClient(asyncio.Protocol):
    """The worker side of one client connection: its bytes go to the client as they come."""

    def __init__(self, client: asyncio.Transport) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()


class _FromClient(asyncio.Protocol):
    """One client connection: its bytes go to the worker (held until that connection is open)."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.worker: asyncio.Transport | None = None
        self.held: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.client = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_unix_connection(lambda: _ToClient(self.client), self.socket_path)
        self.worker = transport
        for data in self.held:
            transport.write(data)
        self.held.clear()

    def data_received(self, data: bytes) -> None:
        if self.worker is None:
            self.held.append(data)
        else:
            self.worker.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.worker is not None:
            self.worker.close()


class _Forward:
    """The HTTP floor's dispatch for one client connection: each request goes as it came to the
    worker over one connection of its own (opened with the first), the worker's answer back as it
    is; 502 when the worker cannot be reached."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.worker: UpstreamConnection | None = None
        self.opening: asyncio.Task[None] | None = None  # kept: the loop holds tasks weakly

    def __call__(self, request: Request, reply: Reply) -> None:
        worker = self.worker
        if worker is None or worker.closed:
            self.opening = asyncio.get_running_loop().create_task(self._open_then_send(request, reply))
        else:
            self._send(worker, request, reply)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()

    async def _open_then_send(self, request: Request, reply: Reply) -> None:
        try:
            self.worker = await UpstreamConnection.open(self.socket_path)
        except OSError:
            reply(Response(502, body=UNAVAILABLE))
            return
        self._send(self.worker, request, reply)

    @staticmethod
    def _send(worker: UpstreamConnection, request: Request, reply: Reply) -> None:
        def settle(outcome: Response | Exception) -> None:
            reply(outcome if isinstance(outcome, Response) else Response(502, body=UNAVAILABLE))

        worker.start(request.method, request.target, request.headers, request.body, None, settle)


class _HttpFloor(ServerProtocol):
    """One client connection of the HTTP floor; its worker connection ends with it."""

    def __init__(self, socket_path: str) -> None:
        self.forward = _Forward(socket_path)
        super().__init__(self.forward, MAX_BODY)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.forward.close()


async def _serve(port: int, socket_path: str, http: bool) -> None:
    loop = asyncio.get_running_loop()

    def protocol() -> asyncio.Protocol:
        return _HttpFloor(socket_path) if http else _FromClient(socket_path)

    server = await loop.create_server(protocol, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--socket", required=True, help="the worker's unix socket")
    parser.add_argument("--http", action="store_true", help="parse and frame HTTP as the router does")
    args = parser.parse_args()
    uvloop.run(_serve(args.port, args.socket, args.http))


if __name__ == "__main__":
    main()
