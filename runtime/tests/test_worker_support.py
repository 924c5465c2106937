"""Helpers for the worker and zygote tests (real processes, real sockets); holds no tests itself.

- ``LogCollector``: collects the JSON-line records workers send, on a unix socket path (a worker
  run on its own) or on connections handed to it (workers of a zygote).
- ``Zygote``: a ``python -m runtime.worker.zygote`` process and its control socketpair.
- ``http``: one HTTP/1.1 request over a unix socket.
- ``wait_until``: poll with a deadline (tests never sleep to wait).
- ``rig``: a zygote plus a log collector, spawning one worker per function under test.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.worker import protocol
from runtime.worker.server import UnixListener
from testsupport.processes import wait_until

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def short_tmpdir() -> Iterator[Path]:
    """A temporary directory with a short path (unix socket paths are limited to 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="wk", dir="/tmp") as name:
        yield Path(name)


def write_files(root: Path, files: dict[str, str]) -> Path:
    """Create ``files`` (relative path -> source, dedented) under ``root``; return ``root``."""
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root


# HTTP over a unix socket


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 10.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    path: str,
    method: str = "GET",
    url: str = "/",
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
    conn: UnixHTTPConnection | None = None,
    timeout: float = 10.0,
) -> Reply:
    """One request on ``conn`` (kept open) or on a new connection (closed afterwards)."""
    own = conn is None
    connection = conn or UnixHTTPConnection(path, timeout)
    try:
        connection.request(method, url, body=body, headers=headers or {})
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        if own:
            connection.close()


def specialize(path: str, filepath: str | Path, entrypoint: str = "", rid: str = "spec") -> Reply:
    body = json.dumps(
        {
            "filepath": str(filepath),
            "functionName": entrypoint,
            "FunctionMetadata": {"name": "fn", "namespace": "default"},
        }
    )
    return call(path, "POST", "/v2/specialize", body, {"X-Fission-Request-ID": rid})


def healthy(path: str) -> bool:
    """Whether ``GET /healthz`` answers 200 (False while the socket is not there yet)."""
    try:
        return call(path, url="/healthz", timeout=2).status == 200
    except OSError:
        return False


# Log collection


class LogCollector:
    """A log socket server: accepts any number of workers, keeps every record they send."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.records: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        self._server.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._server.close()

    def adopt(self, conn: socket.socket) -> None:
        """Read the records arriving on ``conn`` (the collector's end of a worker's log socketpair)."""
        threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:
            for line in lines:
                record = json.loads(line)
                with self._changed:
                    self.records.append(record)
                    self._changed.notify_all()

    def for_request(self, rid: str) -> list[dict[str, Any]]:
        with self._changed:
            return [r for r in self.records if r["request_id"] == rid]

    def messages(self, rid: str, stream: str | None = None) -> list[str]:
        return [r["message"] for r in self.for_request(rid) if stream is None or r["stream"] == stream]

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 5.0) -> None:
        """Block until ``predicate(records)`` holds (AssertionError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self.records):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"log records never matched; got {self.records!r}")
                self._changed.wait(left)


# Processes


def start_worker(socket_path: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``python -m runtime.worker --socket PATH ARGS...``, healthy when this returns."""
    process = subprocess.Popen(
        [sys.executable, "-m", "runtime.worker", "--socket", socket_path, *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stderr=subprocess.PIPE,
    )
    wait_until(lambda: healthy(socket_path) or process.poll() is not None, timeout=20, message="the worker")
    assert process.poll() is None, "the worker exited"
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
    process.wait(10)


class Zygote:
    """A running (unsandboxed) zygote and the runtime's end of its control socketpair."""

    def __init__(self, logs: LogCollector | None = None, extra_fds: tuple[int, ...] = ()) -> None:
        """``extra_fds``: more descriptors the zygote inherits (it must not pass them on)."""
        self.logs = logs
        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "runtime.worker.zygote", "--control-fd", str(theirs.fileno())],
            cwd=REPO,
            pass_fds=(theirs.fileno(), *extra_fds),
        )
        theirs.close()
        self._sock.settimeout(20)
        self._deaf: list[socket.socket] = []
        assert self.request({"op": "ping"}) == {"ok": True}

    def request(self, message: dict[str, Any], fds: list[int] | None = None) -> dict[str, Any]:
        reply, reply_fds = self.exchange(message, fds)
        protocol.close_all(reply_fds)
        return reply

    def exchange(
        self, message: dict[str, Any], fds: list[int] | None = None
    ) -> tuple[dict[str, Any], list[int]]:
        protocol.send(self._sock, message, fds or [])
        received = protocol.receive(self._sock)
        assert received is not None, "the zygote closed its control socket"
        return received

    def exchange_raw(self, data: bytes) -> tuple[dict, list[int]]:
        """Send ``data`` as a message as it is (not necessarily JSON)."""
        self._sock.send(data)
        received = protocol.receive(self._sock)
        assert received is not None
        return received

    def spawn(
        self,
        socket_path: Path | str,
        workdir: Path | str,
        env: dict[str, str] | None = None,
        memory_bytes: int | None = None,
        concurrency: int = 1,
        deaf: bool = False,
    ) -> int:
        """Spawn a worker listening on ``socket_path`` (bound here, as the runtime does) with its
        records going to the zygote's collector (``deaf``: to a socket nobody ever reads); return
        its pid once it answers /healthz."""
        listener = UnixListener.bind(str(socket_path))
        ours, theirs = socket.socketpair()
        pipes = [os.pipe(), os.pipe()]
        request = {
            "op": "spawn", "id": "test", "cwd": str(workdir), "memory_bytes": memory_bytes,
            "concurrency": concurrency, "env": env or {},
        }  # fmt: skip
        try:
            reply, pidfds = self.exchange(
                request, [listener.sock.fileno(), theirs.fileno(), pipes[0][1], pipes[1][1]]
            )
        finally:
            listener.sock.close()
            theirs.close()
            for read, write in pipes:
                os.close(write)
                threading.Thread(target=_drain_pipe, args=(read,), daemon=True).start()
        assert "pid" in reply, reply
        protocol.close_all(pidfds)
        if deaf:
            self._deaf.append(ours)
        elif self.logs is not None:
            self.logs.adopt(ours)
        else:
            ours.close()
        wait_until(lambda: healthy(str(socket_path)), timeout=10, message="the spawned worker")
        return int(reply["pid"])

    def close(self) -> None:
        self._sock.close()  # the zygote stops its children and exits
        self.process.wait(20)
        for sock in self._deaf:
            sock.close()


def _drain_pipe(fd: int) -> None:
    """Read a worker's raw output until it ends (the runtime's log collector does this)."""
    with os.fdopen(fd, "rb") as pipe:
        while pipe.read(65536):
            pass


def kill_quietly(pid: int, signum: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def process_state(pid: int) -> str | None:
    """The state letter from /proc (``Z`` for a zombie), or None once the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


class Rig:
    """A zygote and a log collector; ``worker`` spawns (and later stops) workers logging to it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.logs = LogCollector(root / "log.sock")
        self.zygote = Zygote(self.logs)
        self.pids: list[int] = []
        self._count = 0

    def code(self, files: dict[str, str]) -> Path:
        """A fresh directory holding ``files`` (a deployment)."""
        self._count += 1
        return write_files(self.root / f"code{self._count}", files)

    def worker(self, concurrency: int = 1, env: dict[str, str] | None = None, **spawn: Any) -> str:
        """Spawn a worker (cwd: the rig's directory); return its socket path."""
        self._count += 1
        path = str(self.root / f"w{self._count}.sock")
        self.pids.append(self.zygote.spawn(path, self.root, env, concurrency=concurrency, **spawn))
        return path

    def function(self, files: dict[str, str], entrypoint: str = "", concurrency: int = 1) -> str:
        """A worker specialized for ``files`` with ``entrypoint``; returns its socket path."""
        path = self.worker(concurrency)
        reply = specialize(path, self.code(files), entrypoint)
        assert reply.status == 200, reply
        return path

    def close(self) -> None:
        for pid in self.pids:
            kill_quietly(pid, signal.SIGTERM)
        self.zygote.close()
        self.logs.close()


@contextlib.contextmanager
def rig() -> Iterator[Rig]:
    with short_tmpdir() as root:
        harness = Rig(root)
        try:
            yield harness
        finally:
            harness.close()
