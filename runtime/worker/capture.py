"""Per-request capture of a function's output, shipped as JSON-line log records.

Everything written to ``sys.stdout`` / ``sys.stderr`` (``print``, the ``logging`` module, tracebacks)
becomes records ``{"time", "request_id", "stream", "message"}``, one per line, tagged with the id of
the request whose code wrote it. The id lives in a contextvar, so requests running concurrently in
threads (each in its own context) are never mixed; writes outside a request get the id ``""``.

Records go over a unix SOCK_STREAM connection from one background thread, so the function never
waits for (or fails because of) logging: a connection the runtime handed over at spawn (the zygote's
workers: the runtime knows whose it is), or one opened to ``$RUNTIME_LOG_SOCKET`` (a worker run on its
own). When there is neither, or the connection breaks, the same JSON lines go to the process's real
stderr (fd 2). The thread starts with the first record, so a worker that has printed nothing has no
thread besides its own (see ``runtime.worker.isolation``: capabilities are dropped per thread).
"""

from __future__ import annotations

import io
import json
import logging
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Final, Literal, TextIO

from flask import logging as flask_logging

Stream = Literal["stdout", "stderr"]
Record = tuple[float, str, Stream, str]

#: The id of the request the current thread/context is serving ("" outside any request).
request_id: ContextVar[str] = ContextVar("fission_request_id", default="")

LOG_SOCKET_ENV: Final = "RUNTIME_LOG_SOCKET"
# A partial line longer than this is emitted as is, so a function that never writes "\n" cannot
# grow a buffer without bound.
MAX_LINE_CHARS: Final = 64 * 1024
# Records waiting for the background thread; beyond this they are dropped (and counted) rather
# than blocking the function or growing memory while the log collector is slow.
MAX_QUEUED_RECORDS: Final = 100_000
RECONNECT_SECONDS: Final = 1.0
SEND_TIMEOUT_SECONDS: Final = 5.0
# How long ``sync`` waits for the records before it to be written (a collector that stopped
# reading must not hold the worker for longer).
SYNC_TIMEOUT_SECONDS: Final = 2.0
#: The format of Fission's handler on its app logger (python/server.py).
FISSION_LOG_FORMAT: Final = "%(asctime)s - %(levelname)s - %(message)s"
_STOP: Final = None


def encode_records(records: list[Record]) -> bytes:
    """The wire form: one compact JSON object per record, each ending in ``\\n``."""
    lines = [
        json.dumps({"time": t, "request_id": rid, "stream": stream, "message": message})
        for t, rid, stream, message in records
    ]
    lines.append("")
    return "\n".join(lines).encode("utf-8", "backslashreplace")


def _write_fd(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``, ignoring errors (logging never fails the function)."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        pass


class LogShipper:
    """Sends records from a queue to the log socket on a daemon thread.

    ``emit`` never blocks. ``close`` sends what is queued (bounded by a timeout) and stops.
    """

    def __init__(
        self, socket_path: str | None, fallback_fd: int = 2, connection: socket.socket | None = None
    ) -> None:
        """Ship to ``connection`` when given (never reopened once it breaks), else to ``socket_path``."""
        self._path = None if connection is not None else socket_path or None
        self._fallback_fd = fallback_fd
        # None stops the thread; an Event is set once every record queued before it is written.
        self._queue: queue.Queue[Record | threading.Event | None] = queue.Queue(MAX_QUEUED_RECORDS)
        self._dropped = 0
        self._sock = connection
        if connection is not None:
            connection.settimeout(SEND_TIMEOUT_SECONDS)
        self._retry_at = 0.0
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def emit(self, rid: str, stream: Stream, message: str) -> None:
        """Queue one record; if the queue is full the record is dropped and counted."""
        if self._thread is None:
            self._start()
        try:
            self._queue.put_nowait((time.time(), rid, stream, message))
        except queue.Full:
            self._dropped += 1

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = _start_small_thread(self._run, "log-shipper")

    def sync(self, timeout: float = SYNC_TIMEOUT_SECONDS) -> bool:
        """Wait until every record emitted so far is written (to the connection or the fallback
        descriptor); False when ``timeout`` passed first. Records emitted meanwhile may wait."""
        if self._thread is None:
            return True  # nothing was ever emitted
        written = threading.Event()
        try:
            self._queue.put(written, timeout=timeout)
        except queue.Full:
            return False
        return written.wait(timeout)

    def close(self, timeout: float = 2.0) -> None:
        """Flush queued records (waiting at most ``timeout`` seconds) and stop the thread."""
        if self._thread is None:
            if self._sock is not None:
                self._sock.close()
            return
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch, marker = self._drain(first)
            if batch:
                self._send(encode_records(batch))
            if isinstance(marker, threading.Event):
                marker.set()
            elif marker is _STOP:
                if self._sock is not None:
                    self._sock.close()
                return

    def _drain(
        self, first: Record | threading.Event | None
    ) -> tuple[list[Record], threading.Event | Literal[False] | None]:
        """The records queued right now, up to the first marker (a ``sync`` event or the stop),
        and that marker (False: none). A batch per wake-up keeps syscalls few under load."""
        batch: list[Record] = []
        item: Record | threading.Event | Literal[False] | None = first
        while isinstance(item, tuple):
            batch.append(item)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                item = False
                break
        if self._dropped:
            dropped, self._dropped = self._dropped, 0
            batch.append((time.time(), "", "stderr", f"[runtime] {dropped} log lines dropped"))
        return batch, item

    def _send(self, data: bytes) -> None:
        sock = self._connection()
        if sock is not None:
            try:
                sock.sendall(data)
                return
            except OSError:
                sock.close()
                self._sock = None
                self._retry_at = time.monotonic() + RECONNECT_SECONDS
        _write_fd(self._fallback_fd, data)

    def _connection(self) -> socket.socket | None:
        """The (lazily opened) connection, or None while the collector is unreachable."""
        if self._sock is not None or self._path is None or time.monotonic() < self._retry_at:
            return self._sock
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(SEND_TIMEOUT_SECONDS)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            self._retry_at = time.monotonic() + RECONNECT_SECONDS
            return None
        self._sock = sock
        return sock


def _start_small_thread(target: Callable[[], None], name: str) -> threading.Thread:
    """Start a daemon thread with a small stack.

    Why: under a memory limit (RLIMIT_AS) the default 8 MiB stack reservation counts against the
    function's budget; the shipper needs very little.
    """
    previous = threading.stack_size(256 * 1024)
    try:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
    finally:
        threading.stack_size(previous)
    return thread


class LineStream(io.TextIOBase):
    """A text stream that turns writes into per-request line records.

    Partial lines are kept per request id until their newline arrives or ``flush_request`` runs.
    """

    def __init__(self, name: Stream, shipper: LogShipper, original: TextIO) -> None:
        super().__init__()
        self._name: Stream = name
        self._shipper = shipper
        self._original = original
        self._partial: dict[str, list[str]] = {}
        self._partial_len: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return "strict"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        """The real stream's descriptor (raw writes to it bypass the capture)."""
        return self._original.fileno()

    def write(self, s: str) -> int:
        """Record every complete line of ``s`` for the current request; keep the rest."""
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        rid = request_id.get()
        with self._lock:
            if "\n" in s:
                self._write_lines(rid, s)
            elif s:
                self._keep_partial(rid, s)
        return len(s)

    def flush_request(self, rid: str) -> None:
        """Emit the unfinished line of request ``rid``, if any (called when the request ends)."""
        if not self._partial:  # the common case: nothing pending, no lock needed
            return
        with self._lock:
            parts = self._partial.pop(rid, None)
            self._partial_len.pop(rid, None)
            if parts:
                self._shipper.emit(rid, self._name, "".join(parts))

    def flush_all(self) -> None:
        """Emit every unfinished line (at shutdown)."""
        for rid in list(self._partial):
            self.flush_request(rid)

    def _write_lines(self, rid: str, s: str) -> None:
        parts = self._partial.pop(rid, None)
        if parts:
            self._partial_len.pop(rid, None)
            parts.append(s)
            s = "".join(parts)
        *lines, rest = s.split("\n")
        for line in lines:
            self._shipper.emit(rid, self._name, line)
        if rest:
            self._keep_partial(rid, rest)

    def _keep_partial(self, rid: str, s: str) -> None:
        size = self._partial_len.get(rid, 0) + len(s)
        self._partial.setdefault(rid, []).append(s)
        self._partial_len[rid] = size
        if size >= MAX_LINE_CHARS:
            self._shipper.emit(rid, self._name, "".join(self._partial.pop(rid)))
            del self._partial_len[rid]


class Capture:
    """The installed capture: the shipper plus the stdout/stderr proxies."""

    def __init__(self, shipper: LogShipper, stdout: LineStream, stderr: LineStream) -> None:
        self.shipper = shipper
        self.stdout = stdout
        self.stderr = stderr

    def end_request(self, rid: str) -> None:
        """Flush the partial lines request ``rid`` left behind."""
        self.stdout.flush_request(rid)
        self.stderr.flush_request(rid)

    def sync(self, timeout: float = SYNC_TIMEOUT_SECONDS) -> bool:
        """Wait until every complete record so far is written (see ``LogShipper.sync``)."""
        return self.shipper.sync(timeout)

    def attach_app_logger(self, logger: logging.Logger, *, also_stderr: bool = False) -> None:
        """Give the Flask app's logger Fission's handler: stdout, ``FISSION_LOG_FORMAT``, every
        level the logger lets through (Fission sets the root logger to DEBUG).

        Fission's app logger also keeps Flask's default handler (stderr), so each of its lines
        appears twice there; here it is written once: no default handler, no propagation to the
        root logger's handler (stderr). ``also_stderr`` (``RUNTIME_APP_LOG_TWICE``): Flask's default
        handler too, each line twice, as Fission. Replaces handlers attached before (idempotent).
        """
        for handler in list(logger.handlers):
            if handler is flask_logging.default_handler or isinstance(handler, _AppLogHandler):
                logger.removeHandler(handler)
        handler = _AppLogHandler(self.stdout)
        handler.setFormatter(logging.Formatter(FISSION_LOG_FORMAT))
        logger.addHandler(handler)
        if also_stderr:
            logger.addHandler(flask_logging.default_handler)  # Flask's: wsgi.errors or stderr
        logger.propagate = False

    def close(self, timeout: float = 2.0) -> None:
        """Flush everything and stop shipping (idempotent enough for shutdown paths)."""
        self.stdout.flush_all()
        self.stderr.flush_all()
        self.shipper.close(timeout)


class _AppLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The app logger's handler (a type of its own, so that attaching again replaces it)."""


def install(socket_path: str | None = None, connection: socket.socket | None = None) -> Capture:
    """Replace ``sys.stdout``/``sys.stderr`` with capturing proxies and route logging through them.

    Records go to ``connection`` when given, else to ``socket_path`` (default
    ``$RUNTIME_LOG_SOCKET``). The root logger is set to DEBUG, as Fission sets it, and gets one
    handler writing to the stderr proxy (unless the process already configured one), so
    ``logging.debug`` in a function reaches the log stream with its request id.
    """
    if socket_path is None and connection is None:
        socket_path = os.environ.get(LOG_SOCKET_ENV)
    shipper = LogShipper(socket_path, connection=connection)
    capture = Capture(
        shipper,
        LineStream("stdout", shipper, sys.__stdout__ or sys.stdout),
        LineStream("stderr", shipper, sys.__stderr__ or sys.stderr),
    )
    sys.stdout = capture.stdout
    sys.stderr = capture.stderr
    _configure_logging(capture.stderr)
    return capture


def _configure_logging(stream: LineStream) -> None:
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    if root.handlers:
        return
    # Why a handler at all: Fission's root logger has none, so a function's own loggers print
    # only through logging's last resort (WARNING and up, message only) until the function calls
    # logging.info() & co., which installs basicConfig's (stderr, every level). We behave as that.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
