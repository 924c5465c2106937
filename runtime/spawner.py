"""The runtime's side of a zygote (``runtime.worker.zygote``): start it, ask it to fork workers.

Forking from a process that already imported Flask and the worker code is what makes a cold start
cost milliseconds instead of an interpreter start-up. The zygote's control channel is an inherited
``SOCK_SEQPACKET`` socketpair (``runtime.worker.protocol``): it has no name anywhere, so nothing but
the runtime can reach it. Each worker comes back as a pidfd, which names exactly that process for
as long as we hold it (no pid reuse, whichever pid namespace the worker is in).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.worker import protocol

log = logging.getLogger(__name__)
START_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0

# Workers get exactly this environment: none of the runtime's or the portal's secrets.
CLEAN_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "TZ")


def clean_environment(extra: dict[str, str]) -> dict[str, str]:
    env = {key: os.environ[key] for key in CLEAN_ENV_KEYS if key in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return {**env, **extra}


class ZygoteGone(RuntimeError):
    """The zygote exited, or stopped answering: start a new one."""


@dataclass(frozen=True)
class Spawned:
    """A forked worker: its pid as this process sees it, and a pidfd for it (ours to close)."""

    pid: int
    pidfd: int


def pidfd_pid(pidfd: int) -> int:
    """The pid, in our pid namespace, of the process ``pidfd`` refers to; <= 0 once it is gone."""
    for line in Path(f"/proc/self/fdinfo/{pidfd}").read_text().splitlines():
        if line.startswith("Pid:"):
            return int(line.split()[1])
    raise RuntimeError("the kernel does not report a pidfd's pid (Linux >= 5.4 is needed)")


class Zygote:
    """One zygote process, however it is wrapped (``argv`` may start with a sandbox)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.process: asyncio.subprocess.Process | None = None
        self.sock: socket.socket | None = None
        self.lock = asyncio.Lock()
        self._output: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None and self.sock is not None

    async def start(self, argv: list[str], *, env: dict[str, str], pass_fds: tuple[int, ...] = ()) -> None:
        """``launch`` then ``wait_ready``."""
        await self.launch(argv, env=env, pass_fds=pass_fds)
        await self.wait_ready()

    async def launch(self, argv: list[str], *, env: dict[str, str], pass_fds: tuple[int, ...] = ()) -> None:
        """Run ``argv``, with ``{fd}`` in it replaced by the control socket's descriptor."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            argv = [arg.replace("{fd}", str(theirs.fileno())) for arg in argv]
            self.process = await asyncio.create_subprocess_exec(
                *argv, env=env, pass_fds=(theirs.fileno(), *pass_fds), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self.sock = ours
        self._output = asyncio.get_running_loop().create_task(self._log_output())

    async def wait_ready(self) -> None:
        """Wait until the zygote answers; ZygoteGone (and the zygote stopped) when it does not."""
        try:
            await asyncio.wait_for(self.request({"op": "ping"}), START_TIMEOUT_S)
        except (ZygoteGone, TimeoutError) as exc:
            await self.stop()
            raise ZygoteGone(f"the zygote of {self.name} did not start: {exc}") from None

    async def _log_output(self) -> None:
        """The zygote's (and its sandbox's) own messages, into the runtime's log."""
        assert self.process is not None
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            log.info("zygote %s: %s", self.name, line.decode(errors="replace").rstrip())

    async def request(self, message: dict[str, Any], fds: list[int] | tuple[int, ...] = ()) -> tuple[
        dict[str, Any], list[int]
    ]:  # fmt: skip
        """Send one request (with ``fds``, which stay ours) and return the reply and its descriptors.
        Raises ZygoteGone when the zygote has exited or does not answer in time."""
        async with self.lock:
            if not self.alive:
                raise ZygoteGone(f"the zygote of {self.name} is not running")
            try:
                return await asyncio.wait_for(self._exchange(message, fds), REQUEST_TIMEOUT_S)
            except (TimeoutError, OSError, protocol.ProtocolError) as exc:
                await self._kill()
                raise ZygoteGone(f"the zygote of {self.name} failed: {exc or type(exc).__name__}") from None

    async def _exchange(self, message: dict[str, Any], fds: list[int] | tuple[int, ...]) -> tuple[
        dict[str, Any], list[int]
    ]:  # fmt: skip
        assert self.sock is not None
        while True:
            try:
                protocol.send(self.sock, message, list(fds))
                break
            except BlockingIOError:
                await self._ready(writable=True)
        while True:
            try:
                received = protocol.receive(self.sock)
            except BlockingIOError:
                await self._ready(writable=False)
                continue
            if received is None:
                raise OSError("the zygote closed its control socket")
            return received

    async def _ready(self, *, writable: bool) -> None:
        assert self.sock is not None
        loop, fd = asyncio.get_running_loop(), self.sock.fileno()
        waiter: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not waiter.done():
                waiter.set_result(None)

        if writable:
            loop.add_writer(fd, wake)
        else:
            loop.add_reader(fd, wake)
        try:
            await waiter
        finally:
            (loop.remove_writer if writable else loop.remove_reader)(fd)

    async def spawn(self, request: dict[str, Any], fds: list[int]) -> Spawned:
        """Fork a worker with ``fds`` (listening socket, log connection, stdout, stderr).

        Raises ZygoteGone (start another zygote) or RuntimeError (the zygote refused)."""
        reply, reply_fds = await self.request({"op": "spawn", **request}, fds)
        if "pid" not in reply or len(reply_fds) != 1:
            protocol.close_all(reply_fds)
            raise RuntimeError(f"the zygote could not spawn a worker: {reply.get('error', reply)}")
        pidfd = reply_fds[0]
        return Spawned(pid=pidfd_pid(pidfd), pidfd=pidfd)

    async def stop(self) -> None:
        """Close the control socket (the zygote then stops its workers and exits); kill it if it
        has not exited after the grace period."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.process is not None and self.process.returncode is None:
            try:
                await asyncio.wait_for(self.process.wait(), STOP_GRACE_S * 2)
            except TimeoutError:
                await self._kill()
        if self._output is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._output, 1)

    async def _kill(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()


def kill(pidfd: int) -> None:
    """SIGKILL the process behind ``pidfd`` (nothing if it is gone)."""
    with contextlib.suppress(ProcessLookupError):
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
