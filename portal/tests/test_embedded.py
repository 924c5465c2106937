"""``free_port``: a port the caller can still bind a moment later."""

from __future__ import annotations

import socket
from pathlib import Path

from portal.embedded import free_port


def _ephemeral_range() -> tuple[int, int]:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


def test_a_free_port_is_outside_the_kernels_ephemeral_range() -> None:
    # Outgoing connections take their local port from that range: a port chosen inside it can be
    # taken by any connection before the caller binds it (CI once lost a runtime start that way).
    low, high = _ephemeral_range()
    ports = [free_port() for _ in range(200)]
    assert all(not low <= port <= high for port in ports), [p for p in ports if low <= p <= high]


def test_a_free_port_is_not_handed_out_twice_and_binds() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))
