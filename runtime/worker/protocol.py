"""The zygote's control protocol: one JSON object per ``SOCK_SEQPACKET`` message, with file
descriptors passed alongside (``SCM_RIGHTS``).

Why a socketpair and not a socket file: the zygote runs inside a tenant's sandbox, where a file in
the filesystem would be one more thing a function could find and connect to. An inherited socketpair
has no name; only the runtime holds its other end. Why SEQPACKET: each request is one message, so
the descriptors that travel with it can never be attributed to the wrong request.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import socket
from typing import Any, Final

MAX_MESSAGE_BYTES: Final = 256 * 1024
MAX_FDS: Final = 8


class ProtocolError(Exception):
    """A malformed message (not JSON, not an object, truncated, too many descriptors)."""


def send(sock: socket.socket, message: dict[str, Any], fds: list[int] | tuple[int, ...] = ()) -> None:
    """Send ``message`` with ``fds`` (duplicated into the receiver; ours stay open)."""
    data = json.dumps(message).encode()
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sock.sendmsg([data], ancillary)


def receive(sock: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """The next message and the descriptors that came with it (now ours to close); None at EOF.

    Raises BlockingIOError on a non-blocking socket with nothing to read, ProtocolError for a bad
    message (its descriptors are closed first, so none leaks).
    """
    space = socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)
    data, ancillary, flags, _ = sock.recvmsg(MAX_MESSAGE_BYTES + 1, space, socket.MSG_CMSG_CLOEXEC)
    fds = _descriptors(ancillary)
    if not data and not fds:
        return None
    try:
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            raise ProtocolError("message or descriptors truncated")
        message = json.loads(data)
        if not isinstance(message, dict):
            raise ProtocolError("a message is a JSON object")
    except (ValueError, ProtocolError) as exc:
        close_all(fds)
        raise ProtocolError(str(exc)) from None
    return message, fds


def _descriptors(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    fds = array.array("i")
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % fds.itemsize
            fds.frombytes(payload[:usable])
    return list(fds)


def close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
