"""A hostile function and the host-side facts to aim it at: the sandbox tests deploy ``PROBE``
(through the runtime, or through the portal) and POST it a list of attempts.

``PROBE`` answers ``{name: {"ok": bool, "value" or "error"}}`` for ``{name: [action, *args]}``.
Every action is something a function must not get away with, or something it must be able to do
(read its own files, write /tmp): the tests assert which is which.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import httpx
import pytest

PROBE = r"""
import ctypes, importlib, json, os, resource, signal, socket, subprocess, sys, threading, time
from flask import request

libc = ctypes.CDLL(None, use_errno=True)


def read(path):
    with open(path, "rb") as handle:
        return handle.read(200).decode(errors="replace")


def write(path, size=1):
    chunk = b"x" * min(int(size), 1024 * 1024)
    with open(path, "wb") as handle:
        for start in range(0, int(size), len(chunk)):
            handle.write(chunk[: int(size) - start])
    return "written"


def listdir(path):
    return sorted(os.listdir(path))


def tcp(host, port):
    with socket.create_connection((host, int(port)), timeout=3) as connection:
        connection.settimeout(3)
        try:
            return "connected: " + connection.recv(100).decode(errors="replace")
        except OSError:
            return "connected"


def unix(path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(3)
        connection.connect(path)
        return "connected"


def resolve(name):
    return socket.getaddrinfo(name, 443)[0][4][0]


def signal_pid(pid):
    os.kill(int(pid), 0)
    return "may signal"


def ptrace(pid):
    if libc.ptrace(16, int(pid), 0, 0) != 0:  # PTRACE_ATTACH
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return "attached"


def identity():
    wanted = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs")
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
    return {key: status[key].strip() for key in wanted}


def processes():
    found = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                found[pid] = read(f"/proc/{pid}/cmdline").replace("\0", " ").strip()
            except OSError as exc:
                found[pid] = repr(exc)
    return found


def signal_siblings():  # the processes it sees in /proc (but itself) that it could signal
    me = os.readlink("/proc/self")
    reached = []
    for pid in os.listdir("/proc"):
        # /proc numbers its tenant's processes; in its own pid namespace, 1 names itself.
        if pid.isdigit() and pid not in (me, "1"):
            try:
                os.kill(int(pid), 0)
                reached.append(pid)
            except OSError:
                pass
    return reached


def detach(seconds):
    child = subprocess.Popen(["/usr/bin/sleep", str(seconds)], start_new_session=True)
    return child.pid


def unshare_user():
    if libc.unshare(0x10000000) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return "unshared"


def mount_tmpfs(target):
    if libc.mount(b"tmpfs", target.encode(), b"tmpfs", 0, None) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return "mounted"


def setuid(uid):
    os.setuid(int(uid))
    return "changed"


def allocate(megabytes):
    block = bytearray(int(megabytes) * 1024 * 1024)
    for index in range(0, len(block), 4096):
        block[index] = 1
    return len(block)


def threads(count):
    started, stop = [], threading.Event()
    try:
        for _ in range(int(count)):
            thread = threading.Thread(target=stop.wait)
            thread.start()
            started.append(thread)
    finally:
        stop.set()
        for thread in started:
            thread.join()
    return len(started)


def subprocess_output(text):
    subprocess.run(["/bin/echo", text], check=True)
    os.write(2, (text + " raw stderr\n").encode())
    return "printed"


def run(action, *args):
    return ACTIONS[action](*args)


ACTIONS = {
    "read": read, "write": write, "listdir": listdir, "tcp": tcp, "unix": unix, "resolve": resolve,
    "signal": signal_pid, "ptrace": ptrace, "identity": identity, "processes": processes,
    "unshare_user": unshare_user, "mount": mount_tmpfs, "setuid": setuid, "allocate": allocate,
    "threads": threads, "print": lambda text: print(text) or "printed", "subprocess": subprocess_output,
    "getpid": os.getpid, "pidns": lambda: os.readlink("/proc/self/ns/pid"), "sleep": time.sleep,
    "import": lambda name: importlib.import_module(name).__name__,
    "signal_siblings": signal_siblings, "detach": detach,
}


def main():
    results = {}
    for name, (action, *args) in request.get_json().items():
        try:
            results[name] = {"ok": True, "value": run(action, *args)}
        except BaseException as exc:
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return results
"""

# Every capability set, as /proc/self/status prints it when empty.
NO_CAPABILITIES = {f"Cap{name}": "0000000000000000" for name in ("Inh", "Prm", "Eff", "Bnd", "Amb")}
# What a sandbox's root holds, and nothing else (the interpreter lives below /root, /usr, /work...).
ALLOWED_DEV = {"core", "fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout",
               "tty", "urandom", "zero"}  # fmt: skip


def attempt(router: str, path: str, probes: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    """POST ``probes`` to the probe at ``path``; the per-attempt results."""
    response = httpx.post(router + path, json=probes, timeout=timeout)
    assert response.status_code == 200, response.text
    results: dict[str, Any] = response.json()
    return results


def denied(results: dict[str, Any], *names: str) -> None:
    """Each named attempt failed (with the error it got, for the record)."""
    allowed = {name: results[name] for name in names if results[name]["ok"]}
    assert not allowed, f"a sandboxed function was allowed: {allowed}"


def succeeded(results: dict[str, Any], *names: str) -> None:
    failed = {name: results[name] for name in names if not results[name]["ok"]}
    assert not failed, f"a sandboxed function was refused what it may do: {failed}"


def redis_address() -> tuple[str, int]:
    url = urlparse(os.environ["REDIS_URL"])
    return url.hostname or "127.0.0.1", url.port or 6379


def postgres_targets() -> dict[str, list[Any]]:
    """The database, over its unix socket (the embedded one listens on one only) or over TCP."""
    url = urlparse(os.environ["DATABASE_URL"])
    location = unquote(url.netloc.rpartition("@")[2])
    if location.startswith("/"):
        return {"postgres_socket": ["unix", f"{location}/.s.PGSQL.5432"]}
    return {"postgres_tcp": ["tcp", url.hostname or "127.0.0.1", url.port or 5432]}


def host_address() -> str:
    """This machine's address on its default route (not loopback): services bound to every
    interface listen there too."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.254", 9))  # no packet is sent: this only picks the source address
        return str(probe.getsockname()[0])


# --- a host outside the machine, reachable only through egress --------------------------------------


@dataclass(frozen=True)
class OutsideHost:
    """A TCP server on a public-looking address of a network namespace of its own, routed from the
    host through a veth pair: egress reaches it, a sandbox without egress does not."""

    address: str
    port: int
    banner: str


# TEST-NET-2: never a real host, and not one of this machine's; one per test session (by pid, as
# the veth and its subnet are), so that two sessions on one machine do not add the same route.
OUTSIDE_ADDRESS = f"198.51.100.{1 + os.getpid() % 254}"
_SERVER = (
    "import socket\n"
    "server = socket.create_server(('0.0.0.0', {port}))\n"
    "while True:\n"
    "    connection, _ = server.accept()\n"
    "    connection.sendall(b'{banner}')\n"
    "    connection.close()\n"
)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="session")
def outside_host() -> Iterator[OutsideHost]:
    """Needs root and iproute2 (as the sandboxes do)."""
    name = f"faasout{os.getpid() % 100000}"
    link = f"fo{os.getpid() % 100000}"
    subnet = f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}"
    _ip("netns", "add", name)
    server = None
    try:
        _ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", name)
        _ip("addr", "add", f"{subnet}.1/30", "dev", link)
        _ip("link", "set", link, "up")
        for args in (("addr", "add", f"{subnet}.2/30", "dev", "eth0"), ("link", "set", "eth0", "up"),
                     ("link", "set", "lo", "up"), ("addr", "add", f"{OUTSIDE_ADDRESS}/32", "dev", "lo"),
                     ("route", "add", "default", "via", f"{subnet}.1")):  # fmt: skip
            _ip("netns", "exec", name, "ip", *args)
        _ip("route", "add", f"{OUTSIDE_ADDRESS}/32", "via", f"{subnet}.2")
        host = OutsideHost(OUTSIDE_ADDRESS, 8080, "hello from outside")
        code = _SERVER.format(port=host.port, banner=host.banner)
        server = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", code])
        _wait_listening(host)
        yield host
    finally:
        if server is not None:
            server.kill()
            server.wait(10)
        subprocess.run(["ip", "route", "del", f"{OUTSIDE_ADDRESS}/32"], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def _wait_listening(host: OutsideHost) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection((host.address, host.port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def read_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777
