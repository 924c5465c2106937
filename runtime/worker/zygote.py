"""The zygote: a preloaded process that forks ready-to-serve workers in milliseconds.

``python -m runtime.worker.zygote --control PATH`` imports Flask, Werkzeug, httptools, uvloop and the
worker modules once, then answers JSON lines on the unix socket ``PATH`` (one reply line per request
line, in order, any number of requests per connection):

- ``{"op": "ping"}`` -> ``{"ok": true}``
- ``{"op": "spawn", "id": str, "socket": str, "workdir": str, "memory_bytes": int | null,
  "concurrency": int, "env": {str: str}}`` -> ``{"pid": int}`` once the child is forked. The worker's
  socket is bound and listening before the reply, so the caller may connect at once (the connection
  waits in the backlog until the child's loop accepts it). Bad input -> ``{"error": str}``.

The child: new session, default signal handlers, RLIMIT_AS = ``memory_bytes`` when given, cwd =
``workdir``, ``os.environ`` = exactly ``env`` (put ``RUNTIME_LOG_SOCKET`` there to get its logs), the
zygote's sockets closed, a fresh uvloop loop serving the worker (``runtime.worker.server``).

The zygote reaps its children (SIGCHLD) and, when it stops (SIGTERM/SIGINT/SIGHUP), sends SIGTERM to
the children still alive, SIGKILL to those left after 5 s, and reaps them: workers never outlive the
process that owns them (unless it is killed with SIGKILL itself). It runs no asyncio loop and no
thread, so forking is safe.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import resource
import selectors
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Final, NoReturn

# Preloaded so that children start with everything imported (the point of the zygote).
import flask  # noqa: F401
import httptools  # noqa: F401
import uvloop  # noqa: F401
import werkzeug  # noqa: F401

from runtime.worker import capture, loader, server  # noqa: F401
from runtime.worker.server import UnixListener

MAX_LINE_BYTES: Final = 1024 * 1024
SHUTDOWN_GRACE_SECONDS: Final = 5.0
_HANDLED_SIGNALS: Final = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass(frozen=True)
class SpawnRequest:
    """A validated ``spawn`` message."""

    id: str
    socket: str
    workdir: str
    memory_bytes: int | None
    concurrency: int
    env: dict[str, str]

    @classmethod
    def parse(cls, message: dict[str, Any]) -> SpawnRequest:
        """Validate ``message``; raises ``ValueError`` naming the bad field."""
        env = message.get("env") or {}
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise ValueError("env must be an object of strings")
        memory = message.get("memory_bytes")
        if memory is not None and (not _is_int(memory) or memory <= 0):
            raise ValueError("memory_bytes must be a positive integer or null")
        concurrency = message.get("concurrency", 1)
        if not _is_int(concurrency) or concurrency < 1:
            raise ValueError("concurrency must be a positive integer")
        for field in ("socket", "workdir"):
            if not isinstance(message.get(field), str) or not message[field]:
                raise ValueError(f"{field} must be a non-empty string")
        if not os.path.isdir(message["workdir"]):
            raise ValueError(f"workdir {message['workdir']!r} is not a directory")
        return cls(
            str(message.get("id", "")), message["socket"], message["workdir"], memory, concurrency, env
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Zygote:
    """The control server: a single-threaded selector loop (no asyncio before fork)."""

    def __init__(self, control: UnixListener, app: server.FunctionApp | None = None) -> None:
        """``app``: the (warmed-up) Flask app every child starts with."""
        self.control = control
        self.app = app
        self.selector = selectors.DefaultSelector()
        self.buffers: dict[socket.socket, bytearray] = {}
        self.children: set[int] = set()
        self.exits: list[tuple[int, int]] = []
        self.stopping = False
        # Signal handlers only set flags; this pair wakes select() so the loop sees them at once.
        self._wake_r, self._wake_w = socket.socketpair()
        for sock in (self._wake_r, self._wake_w):
            sock.setblocking(False)
        control.sock.setblocking(False)
        self.selector.register(control.sock, selectors.EVENT_READ, "accept")
        self.selector.register(self._wake_r, selectors.EVENT_READ, "wake")

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT/SIGHUP, then stop the children and remove the socket."""
        signal.set_wakeup_fd(self._wake_w.fileno())
        signal.signal(signal.SIGCHLD, self._on_sigchld)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_stop)
        self._reap()  # children that exited before the handler existed
        while not self.stopping:
            for key, _ in self.selector.select():
                self._on_ready(key)
            self._log_exits()
        self._shutdown()

    def _on_ready(self, key: selectors.SelectorKey) -> None:
        sock = key.fileobj
        assert isinstance(sock, socket.socket)
        if key.data == "accept":
            self._accept()
        elif key.data == "wake":
            _drain(sock)
        else:
            self._read(sock)

    def _accept(self) -> None:
        try:
            conn, _ = self.control.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        conn.setblocking(False)
        self.buffers[conn] = bytearray()
        self.selector.register(conn, selectors.EVENT_READ, "client")

    def _read(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        buffer = self.buffers[conn]
        buffer += data
        while (end := buffer.find(b"\n")) >= 0:
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            if line.strip() and not self._reply(conn, self.handle_line(line)):
                return
        if len(buffer) > MAX_LINE_BYTES:
            self._reply(conn, {"error": "request line too long"})
            self._drop(conn)

    def _reply(self, conn: socket.socket, reply: dict[str, Any]) -> bool:
        """Send one reply line; a client that does not read its replies is dropped."""
        try:
            conn.sendall(json.dumps(reply).encode() + b"\n")
        except OSError:
            self._drop(conn)
            return False
        return True

    def _drop(self, conn: socket.socket) -> None:
        if conn in self.buffers:
            self.selector.unregister(conn)
            del self.buffers[conn]
            conn.close()

    def handle_line(self, line: bytes) -> dict[str, Any]:
        """The reply to one request line."""
        try:
            message = json.loads(line)
            if not isinstance(message, dict):
                raise ValueError("a request is a JSON object")
            op = message.get("op")
            if op == "ping":
                return {"ok": True}
            if op == "spawn":
                return {"pid": self.spawn(SpawnRequest.parse(message))}
            raise ValueError(f"unknown op {op!r}")
        except Exception as exc:  # noqa: BLE001 - no request may take the zygote down
            return {"error": str(exc) or type(exc).__name__}

    def spawn(self, request: SpawnRequest) -> int:
        """Bind the worker's socket, fork the worker, return its pid (raises OSError on failure)."""
        listener = UnixListener.bind(request.socket)
        # Unflushed output would be written twice (by us and by the child).
        sys.stdout.flush()
        sys.stderr.flush()
        # SIGCHLD stays blocked until the pid is recorded, so a child that dies at once is never
        # reaped before we know it (and never left in `children` after being reaped).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        try:
            pid = os.fork()
            if pid == 0:
                self._become_worker(listener, request)
            self.children.add(pid)
        except OSError:
            listener.unlink()
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
            listener.sock.close()
        return pid

    def _become_worker(self, listener: UnixListener, request: SpawnRequest) -> NoReturn:
        """The child's whole life: never returns into the zygote's loop."""
        code = 1
        try:
            self._leave_zygote()
            _limit_and_isolate(request)
            server.serve(listener=listener, concurrency=request.concurrency, app=self.app)
            code = 0
        except BaseException:  # noqa: BLE001 - whatever happens, the child must not return
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _leave_zygote(self) -> None:
        """New session, default signals, and none of the zygote's sockets."""
        os.setsid()
        signal.set_wakeup_fd(-1)
        for signum in _HANDLED_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own default
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        self.selector.close()
        for conn in self.buffers:
            conn.close()
        self.control.sock.close()
        self._wake_r.close()
        self._wake_w.close()

    def _on_sigchld(self, signum: int, frame: object) -> None:
        self._reap()

    def _on_stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _reap(self) -> None:
        """Collect every exited child (WNOHANG), so none stays a zombie."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.exits.append((pid, status))

    def _log_exits(self) -> None:
        while self.exits:
            pid, status = self.exits.pop(0)
            if status != 0:
                print(f"zygote: worker {pid} ended: {_describe_status(status)}", file=sys.stderr, flush=True)

    def _shutdown(self) -> None:
        """Stop accepting, then end the children: SIGTERM, SIGKILL after the grace period."""
        self.selector.close()
        for conn in self.buffers:
            conn.close()
        self.control.sock.close()
        self.control.unlink()
        self._signal_children(signal.SIGTERM)
        if not self._wait_children(SHUTDOWN_GRACE_SECONDS):
            self._signal_children(signal.SIGKILL)
            self._wait_children(SHUTDOWN_GRACE_SECONDS)
        self._log_exits()

    def _signal_children(self, signum: int) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _wait_children(self, timeout: float) -> bool:
        """Reap until no child is left (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        while self.children and time.monotonic() < deadline:
            self._reap()
            if self.children:
                time.sleep(0.005)
        return not self.children


def _limit_and_isolate(request: SpawnRequest) -> None:
    """Memory limit, working directory and a clean environment for the child; it is killed
    if the zygote dies, so no worker is ever orphaned."""
    _set_parent_death_signal(signal.SIGKILL)
    if request.memory_bytes is not None:
        resource.setrlimit(resource.RLIMIT_AS, (request.memory_bytes, request.memory_bytes))
    os.chdir(request.workdir)
    os.environ.clear()
    os.environ.update(request.env)


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(4096):
            pass
    except (BlockingIOError, InterruptedError):
        pass


def warm_up() -> server.FunctionApp:
    """A Flask app that has served one request in-process, so lazily imported code and caches
    exist before forking (and children need not build an app)."""
    worker = server.Worker(None, 1)
    worker.function = lambda: {"warm": True}
    path, query = server.split_url(b"/warm-up?x=1")
    request = server.Request("POST", b"/warm-up?x=1", [(b"Content-Type", b"application/json")], b"{}", True)
    environ = server.build_environ(request, path, query, worker, ("localhost", "80"))
    server.render(worker.invoke(environ), "warm-up", True, False)
    return worker.app


def _set_parent_death_signal(signum: int) -> None:
    """prctl(PR_SET_PDEATHSIG): the kernel sends ``signum`` when the parent process dies."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signum), 0, 0, 0)


def _die_with_parent() -> None:
    """Get SIGTERM when the runtime dies, even by SIGKILL, so no zygote (and so no worker)
    outlives it; the SIGTERM handler then stops the children."""
    _set_parent_death_signal(signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runtime.worker.zygote", description=__doc__)
    parser.add_argument("--control", required=True, help="unix socket path for JSON-line requests")
    args = parser.parse_args(argv)
    _die_with_parent()
    app = warm_up()
    zygote = Zygote(UnixListener.bind(args.control), app)
    # Why: objects that exist now are never freed; freezing keeps the GC from touching (and so
    # copying) their pages in every child.
    gc.freeze()
    zygote.run()


if __name__ == "__main__":
    main()
