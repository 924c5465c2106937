"""The zygote: a preloaded process that forks ready-to-serve workers in milliseconds.

``python -m runtime.worker.zygote --control-fd N [--isolate]`` imports Flask, Werkzeug, httptools,
uvloop and the worker modules once, then answers requests on the inherited ``SOCK_SEQPACKET`` socket
``N`` (``runtime.worker.protocol``: one JSON object per message, descriptors alongside), one reply
per request, in order:

- ``{"op": "ping"}`` -> ``{"ok": true}``
- ``{"op": "spawn", "id": str, "concurrency": int, "env": {str: str}, "cwd": str,
  "memory_bytes": int | null, "tmp_bytes": int | null, "cgroups": int}`` with four descriptors:
  the worker's listening unix socket, its log connection, and the write ends of its stdout and
  stderr, then ``cgroups`` more: ``tasks`` files of the worker's cgroups, which the child writes
  ``0`` to first thing, so that it runs nothing before it is in them. Reply
  ``{"pid": int}`` (the pid in the zygote's own pid namespace) with a pidfd of the worker, which
  stays valid whoever reaps it. Bad input -> ``{"error": str}``; the descriptors are closed either way.

The runtime created every descriptor, so a worker owns no name in any filesystem: nothing in the
sandbox can connect to a worker or to the zygote.

The child: new session, default signal handlers, stdin on /dev/null and stdout/stderr on the given
pipes, killed if the zygote dies, RLIMIT_AS = ``memory_bytes`` when given, cwd and ``os.environ`` =
exactly ``cwd`` and ``env`` (the function's own variables come later, with its specialization:
``runtime.worker.environment``), a fresh uvloop loop serving the worker (``runtime.worker.server``),
scheduled SCHED_BATCH as the zygote is (``_batch_scheduling``).
With ``--isolate`` (the zygote runs in a tenant's sandbox) the zygote first enters a user
namespace of its own, and each child is the init of a pid namespace of its own, gets a private
``/tmp`` of ``tmp_bytes`` and confines itself to its package at specialization
(``runtime.worker.isolation``).

The zygote reaps its children (SIGCHLD) and, when it stops (the control socket closes; unless
isolated, also SIGTERM/SIGINT/SIGHUP), sends SIGTERM to the children still alive, SIGKILL to those
left after 5 s, and reaps them: workers never outlive the process that owns them. It runs no
asyncio loop and no thread, so forking is safe.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import os
import resource
import selectors
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Final, NoReturn, cast

# Preloaded so that children start with everything imported (the point of the zygote).
import flask  # noqa: F401
import httptools  # noqa: F401
import uvloop  # noqa: F401
import werkzeug  # noqa: F401

from runtime.worker import capture, environment, isolation, loader, protocol, server, volumes  # noqa: F401
from runtime.worker.server import UnixListener

SHUTDOWN_GRACE_SECONDS: Final = 5.0
SPAWN_FDS: Final = 4  # listening socket, log connection, stdout, stderr
_HANDLED_SIGNALS: Final = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass(frozen=True)
class SpawnRequest:
    """A validated ``spawn`` message."""

    id: str
    concurrency: int
    env: dict[str, str]
    cwd: str
    memory_bytes: int | None
    tmp_bytes: int | None
    cgroups: int

    @classmethod
    def parse(cls, message: dict[str, Any], *, isolated: bool) -> SpawnRequest:
        """Validate ``message``; raises ``ValueError`` naming the bad field."""
        env = message.get("env") or {}
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise ValueError("env must be an object of strings")
        concurrency = message.get("concurrency", 1)
        if not _is_int(concurrency) or concurrency < 1:
            raise ValueError("concurrency must be a positive integer")
        memory, tmp = message.get("memory_bytes"), message.get("tmp_bytes")
        for name, value in (("memory_bytes", memory), ("tmp_bytes", tmp)):
            if value is not None and (not _is_int(value) or value <= 0):
                raise ValueError(f"{name} must be a positive integer or null")
        if isolated and tmp is None:
            raise ValueError("tmp_bytes is required in a sandbox")
        cwd = message.get("cwd")
        if not isinstance(cwd, str) or not os.path.isdir(cwd):
            raise ValueError(f"cwd {cwd!r} is not a directory")
        cgroups = message.get("cgroups", 0)
        if not _is_int(cgroups) or not 0 <= cgroups <= protocol.MAX_FDS - SPAWN_FDS:
            raise ValueError("cgroups must be a small integer >= 0")
        return cls(str(message.get("id", "")), concurrency, env, cwd, memory, tmp, cgroups)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Zygote:
    """The control server: a single-threaded selector loop (no asyncio before fork)."""

    def __init__(self, control: socket.socket, app: server.FunctionApp | None = None,
                 *, isolated: bool = False) -> None:  # fmt: skip
        """``app``: the (warmed-up) Flask app every child starts with; ``isolated``: see the module."""
        self.control = control
        self.app = app
        self.isolated = isolated
        self.selector = selectors.DefaultSelector()
        self.children: set[int] = set()
        self.exits: list[tuple[int, int]] = []
        self.stopping = False
        # Signal handlers only set flags; this pair wakes select() so the loop sees them at once.
        self._wake_r, self._wake_w = socket.socketpair()
        for sock in (self._wake_r, self._wake_w, control):
            sock.setblocking(False)
        self.selector.register(control, selectors.EVENT_READ, "control")
        self.selector.register(self._wake_r, selectors.EVENT_READ, "wake")

    def run(self) -> None:
        """Serve until the control socket closes (or, unless isolated, SIGTERM/SIGINT/SIGHUP), then
        stop the children.

        Isolated, the zygote is pid 1 of its tenant's pid namespace and ignores those signals: a
        function can signal processes of its own tenant, and must not be able to stop the zygote.
        """
        signal.set_wakeup_fd(self._wake_w.fileno())
        signal.signal(signal.SIGCHLD, self._on_sigchld)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN if self.isolated else self._on_stop)
        self._reap()  # children that exited before the handler existed
        while not self.stopping:
            for key, _ in self.selector.select():
                if key.data == "wake":
                    _drain(self._wake_r)
                else:
                    self._serve_one()
            self._log_exits()
        self._shutdown()

    def _serve_one(self) -> None:
        """Answer the next request on the control socket; its end stops the zygote."""
        try:
            received = protocol.receive(self.control)
        except (BlockingIOError, InterruptedError):
            return
        except protocol.ProtocolError as exc:
            self._reply({"error": str(exc)})
            return
        except OSError:
            received = None
        if received is None:
            self.stopping = True
            return
        message, fds = received
        reply, reply_fds = self.handle(message, fds)
        try:
            self._reply(reply, reply_fds)
        finally:
            protocol.close_all(reply_fds)

    def _reply(self, reply: dict[str, Any], fds: list[int] | None = None) -> None:
        try:
            protocol.send(self.control, reply, fds or [])
        except OSError:
            self.stopping = True  # the runtime is gone

    def handle(self, message: dict[str, Any], fds: list[int]) -> tuple[dict[str, Any], list[int]]:
        """The reply to one request and the descriptors that go with it. Closes ``fds``."""
        try:
            op = message.get("op")
            if op == "ping":
                return {"ok": True}, []
            if op == "spawn":
                request = SpawnRequest.parse(message, isolated=self.isolated)
                if len(fds) != SPAWN_FDS + request.cgroups:
                    raise ValueError(f"spawn takes {SPAWN_FDS + request.cgroups} descriptors, got {len(fds)}")
                pid, pidfd = self.spawn(request, fds)
                return {"pid": pid}, [pidfd]
            raise ValueError(f"unknown op {op!r}")
        except Exception as exc:  # noqa: BLE001 - no request may take the zygote down
            return {"error": str(exc) or type(exc).__name__}, []
        finally:
            protocol.close_all(fds)

    def spawn(self, request: SpawnRequest, fds: list[int]) -> tuple[int, int]:
        """Fork the worker; return its pid and a pidfd for it (raises OSError on failure)."""
        # Unflushed output would be written twice (by us and by the child).
        sys.stdout.flush()
        sys.stderr.flush()
        # SIGCHLD stays blocked until the pidfd exists, so a child that dies at once is a zombie
        # (still there to open) rather than reaped and gone, and never left in `children`.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        try:
            pid = isolation.fork_in_new_pid_namespace() if self.isolated else os.fork()
            if pid == 0:
                self._become_worker(request, fds)
            self.children.add(pid)
            return pid, os.pidfd_open(pid)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})

    def _become_worker(self, request: SpawnRequest, fds: list[int]) -> NoReturn:
        """The child's whole life: never returns into the zygote's loop."""
        code = 1
        try:
            _join_cgroups(fds[SPAWN_FDS:])  # first: nothing of the worker's runs outside them
            self._leave_zygote()
            listen_fd, log_fd, out_fd, err_fd = fds[:SPAWN_FDS]
            _redirect_output(out_fd, err_fd)
            _limit_and_isolate(request, isolated=self.isolated)
            rehearse(self.app)
            server.serve(
                listener=UnixListener(socket.socket(fileno=listen_fd), None),
                concurrency=request.concurrency,
                app=self.app,
                log_connection=socket.socket(fileno=log_fd),
                isolated=self.isolated,
            )
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
        self.control.close()
        self._wake_r.close()
        self._wake_w.close()

    def _on_sigchld(self, signum: int, frame: object) -> None:
        self._reap()

    def _on_stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _reap(self) -> None:
        """Collect every exited child (WNOHANG), so none stays a zombie; as pid 1, also the
        orphans of workers (a function's subprocesses) that the kernel hands to us."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.children:
                self.children.discard(pid)
                self.exits.append((pid, status))

    def _log_exits(self) -> None:
        while self.exits:
            pid, status = self.exits.pop(0)
            if status != 0:
                print(f"zygote: worker {pid} ended: {_describe_status(status)}", file=sys.stderr, flush=True)

    def _shutdown(self) -> None:
        """Stop serving, then end the children: SIGTERM, SIGKILL after the grace period."""
        self.selector.close()
        self.control.close()
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


def _join_cgroups(doors: list[int]) -> None:
    """Move this (single-threaded) process into the cgroups whose ``tasks`` files the runtime
    opened for it; raises OSError, which ends the child, when it cannot."""
    for door in doors:
        os.write(door, b"0")
        os.close(door)


def _redirect_output(out_fd: int, err_fd: int) -> None:
    """stdin from /dev/null, stdout and stderr to the runtime's pipes (raw writes, subprocesses)."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    for source, target in ((devnull, 0), (out_fd, 1), (err_fd, 2)):
        os.dup2(source, target)
        os.close(source)


def _limit_and_isolate(request: SpawnRequest, *, isolated: bool) -> None:
    """Killed with the zygote (never orphaned), no core dumps, a private /tmp in a sandbox, the
    memory limit when the runtime asks for one, then the working directory and environment."""
    _set_parent_death_signal(signal.SIGKILL)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if isolated:
        assert request.tmp_bytes is not None  # SpawnRequest.parse checked it
        isolation.private_mounts(request.tmp_bytes)
        isolation.narrow_bounding_set()  # single-threaded still: the worker's threads inherit it
    if request.memory_bytes is not None:
        resource.setrlimit(resource.RLIMIT_AS, (request.memory_bytes, request.memory_bytes))
    os.chdir(request.cwd)
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
    app = server.new_app()
    _serve_once(app, lambda: {"warm": True}, _WARM_UP)
    return app


def rehearse(app: server.FunctionApp | None) -> None:
    """A worker, right after the fork: serve one request in-process, to nobody, with a throwaway
    function.

    Why: a forked worker shares the zygote's memory until it writes to it, and running Python
    writes to every object it touches (reference counts), so the first requests copied page
    after page, on the cold start's clock: the specialization and the first call took about
    0.7 ms more than the same work later. Here they are copied while the worker waits in its
    pool, for about 450 KiB more of its own memory."""
    _serve_once(app, lambda: "rehearsal", _REHEARSAL)


class _Discard:
    """A transport that drops what is written to it."""

    def write(self, data: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return False


_WARM_UP = b"POST /warm-up?x=1 HTTP/1.1\r\nContent-Type: application/json\r\ncontent-length: 2\r\n\r\n{}"
# A request as the router sends one (runtime.router.proxy_headers, runtime.invoke).
_REHEARSAL = (
    b"GET / HTTP/1.1\r\nhost: worker\r\nUser-Agent: rehearsal\r\nForwarded: host=localhost;\r\n"
    b"X-Forwarded-Host: localhost\r\nX-Forwarded-For: 127.0.0.1\r\nX-Fission-Full-Url: /\r\n"
    b"X-Fission-Request-ID: rehearsal\r\nX-Fission-Function-Uid: u\r\nX-Fission-Function-Name: f\r\n"
    b"X-Fission-Function-Namespace: n\r\nX-Fission-Function-Resourceversion: 1\r\ncontent-length: 0\r\n\r\n"
)


def _serve_once(app: server.FunctionApp | None, function: loader.UserFunction, request: bytes) -> None:
    """Serve ``request`` (HTTP/1.1 bytes) with ``function`` in-process, through the worker's own
    request path, the answer written nowhere."""
    worker = server.Worker(None, 1, app)
    worker.function = function
    connection = server.HttpConnection(worker, ("localhost", "80"))
    connection.connection_made(cast(asyncio.Transport, _Discard()))
    connection.data_received(request)


def _set_parent_death_signal(signum: int) -> None:
    """prctl(PR_SET_PDEATHSIG): the kernel sends ``signum`` when the parent process dies."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signum), 0, 0, 0)


def _die_with_parent(signum: signal.Signals) -> None:
    """Get ``signum`` when our parent (the runtime, or bubblewrap) dies, even by SIGKILL, so no
    zygote (and so no worker) outlives it. (A sandbox's uid change cleared bubblewrap's own.)"""
    parent = os.getppid()
    _set_parent_death_signal(signum)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signum)


def _batch_scheduling() -> None:
    """Run as SCHED_BATCH, and so every worker forked from here: waking a worker (the runtime
    writing it a request) then never preempts the process that woke it. A burst of calls (a
    hundred time triggers on one second) is sent whole before the workers take the CPU, instead
    of the runtime losing its core at every write. Workers still get their fair share of CPU."""
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except OSError as exc:  # a kernel or a sandbox that refuses it: scheduled as any process
        print(f"zygote: SCHED_BATCH refused ({exc}): workers are scheduled as SCHED_OTHER", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runtime.worker.zygote", description=__doc__)
    parser.add_argument("--control-fd", type=int, required=True, help="inherited SOCK_SEQPACKET socket")
    parser.add_argument("--isolate", action="store_true", help="running in a tenant sandbox")
    args = parser.parse_args(argv)
    # SIGTERM lets an unsandboxed zygote stop its workers first; a sandboxed one ignores it, and
    # its workers die with it (it is their pid namespace's init).
    _die_with_parent(signal.SIGKILL if args.isolate else signal.SIGTERM)
    if args.isolate:
        isolation.enter_user_namespace()  # first: the process is still single-threaded
    # Nothing but stdio and the control socket: a descriptor left open here (by whatever started
    # us) would be inherited by every worker, and so be open to the functions.
    os.closerange(3, args.control_fd)
    os.closerange(args.control_fd + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    control = socket.socket(fileno=args.control_fd)
    if control.type != socket.SOCK_SEQPACKET:
        parser.error("--control-fd must be a SOCK_SEQPACKET socket")
    _batch_scheduling()
    app = warm_up()
    zygote = Zygote(control, app, isolated=args.isolate)
    # Why: objects that exist now are never freed; freezing keeps the GC from touching (and so
    # copying) their pages in every child.
    gc.freeze()
    zygote.run()


if __name__ == "__main__":
    main()
