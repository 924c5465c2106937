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
from typing import cast

import uvloop


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


async def _serve(port: int, socket_path: str) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _FromClient(socket_path), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--socket", required=True, help="the worker's unix socket")
    args = parser.parse_args()
    uvloop.run(_serve(args.port, args.socket))


if __name__ == "__main__":
    main()
