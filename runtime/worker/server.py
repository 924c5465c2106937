"""The function host: HTTP/1.1 (keep-alive) on asyncio + uvloop + httptools, Flask semantics inside.

Endpoints, as Werkzeug routes them for Fission's Python environment (FISSION.md section 2):

- ``POST /v2/specialize`` ``{"filepath", "functionName", "FunctionMetadata"}`` (plus our
  ``memory_bytes``, ``concurrency``, ``app_log_twice``, ``environment_variables`` and
  ``mounted_files``): load the function, replacing one loaded before (as Fission does; a warning
  is logged); 200 ``{"status": "specialized"}``, 400 for a bad body, 500 with a one-line message
  when loading fails (the function loaded before, if any, stays, with its environment variables).
  The module is imported inside this request's Flask context, as Fission imports it in its view.
- ``environment_variables`` ``{NAME: value}`` (absent: none) are set in ``os.environ`` before the
  module is imported, replacing those of a function loaded before; a name or value that breaks
  ``runtime.worker.environment``'s rules (a reserved name such as ``PATH``) is a 400 and sets
  nothing.
- ``mounted_files`` ``{"/secrets/<ns>/<name>/<key>": base64, "/configs/...": ...}`` (absent: none):
  the function's Secrets and ConfigMaps as read-only files (``runtime.worker.volumes``), mounted by
  an isolated worker at its first specialization, before it drops its capabilities. A bad path or
  content, or files for a worker that is not isolated (it could not make them read-only nor its
  own), is a 400; a later specialization must bring the same files (409 otherwise: they cannot
  change once the capabilities are gone). Error messages name paths, never contents, and the
  request is never logged.
- ``POST /specialize`` (version 1): the same for the single file ``<USERFUNCVOL>/user``, function
  ``main``; the body is empty or a JSON object with our extensions.
- ``GET``/``HEAD /healthz``: 200. ``OPTIONS`` on these three paths: Flask's automatic answer.
- any other path, and these paths with a method their route lacks: the function, for ``GET``,
  ``POST``, ``PUT``, ``HEAD``, ``OPTIONS`` and ``DELETE`` (``FUNCTION_METHODS``); any other method
  is Werkzeug's 405 with ``Allow``. The function is called with no arguments inside a Flask request
  context; its return value goes through ``Flask.make_response``. An uncaught exception gives 500
  "Internal Server Error" and its traceback as stderr log records of that request.

Every response echoes the request's ``X-Fission-Request-ID``. The app logger logs as Fission's
(``capture.Capture.attach_app_logger``). A specialization's log records are written before its
reply, so the runtime has a load error's traceback even if it stops the worker at once.

With ``concurrency == 1`` the function runs inline on the event loop thread (no thread hop);
otherwise on a pool of that many threads. Requests beyond that wait in the pool's queue (the
router enforces limits).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import io
import json
import os
import resource
import signal
import socket
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate
from pathlib import Path
from typing import Any, Final, NamedTuple, cast
from urllib.parse import unquote_to_bytes

import flask
import httptools
import uvloop
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import MapAdapter
from werkzeug.wrappers import Response as WerkzeugResponse

from runtime.worker import capture as capture_module
from runtime.worker import environment, isolation, volumes
from runtime.worker.capture import Capture, request_id
from runtime.worker.loader import LoadedCode, LoadError, UserFunction

Environ = dict[str, Any]
Headers = list[tuple[str, str]]

REQUEST_ID_HEADER: Final = "X-Fission-Request-ID"
_REQUEST_ID_KEY: Final = "HTTP_X_FISSION_REQUEST_ID"
_TEXT: Final = [("Content-Type", "text/plain; charset=utf-8")]
_JSON: Final = [("Content-Type", "application/json")]
# Hop-by-hop framing is ours to decide: the body is always buffered and sent with Content-Length.
_FRAMING_HEADERS: Final = frozenset({"content-length", "transfer-encoding", "connection"})
_MAX_PIPELINED: Final = 32  # requests queued on one connection before we stop reading it
LISTEN_BACKLOG: Final = 1024
#: The methods of Fission's function routes (``/`` and ``/<path:path>``).
FUNCTION_METHODS: Final = ("GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE")
_FUNCTION_METHODS: Final = frozenset(FUNCTION_METHODS)
# Fission's own routes; with a method they lack, Werkzeug matches the function's route instead.
_CONTROL_PATHS: Final = frozenset((b"/healthz", b"/v2/specialize", b"/specialize"))
#: Where Fission's version-1 specialization finds the file ``user`` (outside a sandbox).
USERFUNCVOL_ENV: Final = "USERFUNCVOL"
DEFAULT_USERFUNCVOL: Final = "/userfunc"


class Reply(NamedTuple):
    """A response ready to frame: status code, encoded status line + headers, complete body."""

    code: int
    head: bytes
    body: bytes


def make_reply(status: str, headers: Headers, body: bytes, head_request: bool = False) -> Reply:
    """Encode ``status`` ("200 OK") and ``headers`` as HTTP/1.1 (raises for non-latin-1 text).

    Framing headers are dropped (``render`` decides them), except a HEAD reply's Content-Length,
    which describes the body a GET would have had.
    """
    lines = [b"HTTP/1.1 ", status.encode("latin-1"), b"\r\n"]
    for name, value in headers:
        lower = name.lower()
        if lower in _FRAMING_HEADERS and not (head_request and lower == "content-length"):
            continue
        lines.append(f"{name}: {value}\r\n".encode("latin-1"))
    return Reply(int(status[:3]), b"".join(lines), body)


def text_reply(status: str, message: str) -> Reply:
    return make_reply(status, _TEXT, message.encode())


def http_error_reply(error: HTTPException) -> Reply:
    """Werkzeug's own response for ``error`` (its HTML page and headers)."""
    response = error.get_response()
    return make_reply(response.status, list(response.headers.items()), response.get_data())


INTERNAL_ERROR: Final = text_reply("500 INTERNAL SERVER ERROR", "Internal Server Error")
_HEALTHY: Final = make_reply("200 OK", [], b"")
_SPECIALIZED: Final = make_reply("200 OK", _JSON, b'{"status":"specialized"}')
_FILES_NEED_ISOLATION: Final = text_reply(
    "400 BAD REQUEST", "bad specialize request: mounted_files need an isolated (sandboxed) worker"
)
_OTHER_FILES: Final = text_reply(
    "409 CONFLICT", "this worker shows the files of its first specialization: other files need a fresh worker"
)
METHOD_NOT_ALLOWED: Final = http_error_reply(MethodNotAllowed(valid_methods=list(FUNCTION_METHODS)))
# What Flask answers OPTIONS with on a route that does not list it (the function's routes do).
_OPTIONS: Final = make_reply(
    "200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Allow", ", ".join(FUNCTION_METHODS))], b""
)


class FunctionApp(flask.Flask):
    """A Flask app without routes: the function answers every path.

    Why: binding and matching the URL map costs about a quarter of a hello-world request and can
    only fail here (there are no rules), so request contexts get no URL adapter.
    """

    def create_url_adapter(self, request: flask.Request | None) -> MapAdapter | None:
        if request is not None:
            return None
        return super().create_url_adapter(None)


def new_app() -> FunctionApp:
    return FunctionApp("fission_function", root_path=os.getcwd(), static_folder=None)


class Worker:
    """The process-wide state: the Flask app, the loaded function and the thread pool."""

    def __init__(
        self,
        capture: Capture | None,
        concurrency: int = 1,
        app: FunctionApp | None = None,
        *,
        isolated: bool = False,
    ) -> None:
        """``app`` may be built ahead (the zygote builds it once, before forking). ``isolated``: the
        worker runs in a tenant sandbox and confines itself to its package before loading it."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.capture = capture
        self.isolated = isolated
        self.concurrency = concurrency
        self.executor = ThreadPoolExecutor(concurrency, "function") if concurrency > 1 else None
        # A real Flask app, so request contexts and make_response behave exactly as under Flask.
        self.app = app or new_app()
        if capture is not None:
            capture.attach_app_logger(self.app.logger)
        self.function: UserFunction | None = None
        self.metadata: dict[str, Any] = {}
        self.code = LoadedCode()
        self.variables = environment.Variables()  # the loaded function's, in os.environ
        self.package: str | None = None  # the package an isolated worker is confined to
        self.files: str | None = None  # the digest of the files it mounted then (volumes.digest)
        self.unusable: str | None = None  # why an isolated worker can never load anything

    def in_request(self, rid: str, handler: Callable[..., Reply], *args: Any) -> Reply:
        """Run ``handler(*args)`` with ``rid`` as the current request id, then flush its output."""
        token = request_id.set(rid)
        try:
            return handler(*args)
        finally:
            request_id.reset(token)
            if self.capture is not None:
                self.capture.end_request(rid)

    def in_control_request(self, rid: str, handler: Callable[..., Reply], *args: Any) -> Reply:
        """``in_request``, then wait until the records it wrote are sent.

        Why: the runtime may stop the worker as soon as it has the reply (a failed
        specialization), and the traceback that explains it must not die with the worker.
        """
        try:
            return self.in_request(rid, handler, *args)
        finally:
            if self.capture is not None:
                self.capture.sync()

    def specialize(self, environ: Environ, body: bytes) -> Reply:
        """``POST /v2/specialize``: load the function the JSON ``body`` names (see the module)."""
        try:
            spec = json.loads(body)
            filepath = spec["filepath"]
            function_name = spec.get("functionName") or ""
            if not isinstance(filepath, str) or not isinstance(function_name, str):
                raise TypeError("filepath and functionName must be strings")
            limits = _function_limits(spec)
            variables = environment.checked(spec.get("environment_variables"))
            files = volumes.checked(spec.get("mounted_files"))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return text_reply("400 BAD REQUEST", f"bad specialize request: {exc}")
        if files and not self.isolated:
            return _FILES_NEED_ISOLATION
        if self.isolated:
            where = self._confined_path(filepath, files)
            if not isinstance(where, str):
                return where
            filepath = where
        if spec.get("app_log_twice") is True and self.capture is not None:
            self.capture.attach_app_logger(self.app.logger, also_stderr=True)
        metadata = spec.get("FunctionMetadata")
        metadata = metadata if isinstance(metadata, dict) else {}
        return self._load(environ, filepath, function_name, limits, metadata, variables)

    def specialize_v1(self, environ: Environ, body: bytes) -> Reply:
        """``POST /specialize``: load ``main`` of the single file ``user`` in the code's directory:
        ``$USERFUNCVOL`` (default ``/userfunc``), or an isolated worker's own package (so only
        once a ``/v2/specialize`` confined it: v1 names no package)."""
        try:
            spec = json.loads(body) if body.strip() else {}
            limits = _function_limits(spec)
            variables = environment.checked(spec.get("environment_variables"))
            files = volumes.checked(spec.get("mounted_files"))
        except (ValueError, TypeError, AttributeError) as exc:
            return text_reply("400 BAD REQUEST", f"bad specialize request: {exc}")
        if self.unusable is not None:
            return self._unusable_reply()
        if files and not self.isolated:
            return _FILES_NEED_ISOLATION
        if not self.isolated:
            volume = os.environ.get(USERFUNCVOL_ENV, DEFAULT_USERFUNCVOL)
        elif self.package is not None:
            if volumes.digest(files) != self.files:
                return _OTHER_FILES
            volume = isolation.USERFUNC
        else:
            return text_reply(
                "400 BAD REQUEST",
                "an isolated worker is first specialized by /v2/specialize with its package",
            )
        return self._load(environ, os.path.join(volume, "user"), "", limits, {}, variables)

    def _confined_path(self, filepath: str, files: dict[str, bytes]) -> str | Reply:
        """Where an isolated worker loads the package path ``filepath`` from, or the refusal.

        The first specialization confines the worker to the package of ``filepath`` and mounts
        ``files``. Later ones may only name a path in that same package, with the same files: the
        worker has no capability left to show it another, and has run this one's code. So another
        package or other files are a 409 (the runtime must use a fresh worker), a path outside the
        packages a 400 (nothing was done), and once confining failed (the worker may be half
        confined) every specialization is a 500.
        """
        if self.unusable is not None:
            return self._unusable_reply()
        try:
            root, inside = isolation.package_root(filepath)
        except isolation.IsolationError as exc:
            return text_reply("400 BAD REQUEST", f"bad specialize request: {exc.strerror}")
        if self.package is None:
            # Before any thread is started (apply_limits may start a pool) and any code imported.
            try:
                where = isolation.confine(filepath, files)
            except isolation.IsolationError as exc:
                self.unusable = str(exc)
                self.function = _refuse
                return self._unusable_reply()
            self.package, self.files = root, volumes.digest(files)
            return where
        if root != self.package:
            return text_reply("409 CONFLICT", f"this worker is confined to {self.package}, not {root}")
        if volumes.digest(files) != self.files:
            return _OTHER_FILES
        return str(Path(isolation.USERFUNC, inside)) if inside else isolation.USERFUNC

    def _unusable_reply(self) -> Reply:
        return text_reply("500 INTERNAL SERVER ERROR", f"the sandbox could not be set up: {self.unusable}")

    def _load(
        self,
        environ: Environ,
        filepath: str,
        function_name: str,
        limits: tuple[int | None, int | None],
        metadata: dict[str, Any],
        variables: dict[str, str],
    ) -> Reply:
        """Apply ``limits`` and set ``variables`` in ``os.environ``, then load the function inside
        the Flask context of ``environ`` (the specialize request), replacing the one loaded before;
        it stays, with its variables, when loading fails."""
        self.apply_limits(*limits)
        if self.function is not None:
            # Fission logs "Found state.json, overwriting", and replaces the function too.
            self.app.logger.warning("already specialized: replacing the function with %s", filepath)
        previous = self.variables.set(variables)  # before the import: module-level code reads them
        try:
            # As Fission imports in its view: a module may use current_app or request at import.
            with self.app.request_context(environ):
                function = self.code.load(filepath, function_name)
        except LoadError as exc:
            self.variables.set(previous)
            traceback.print_exception(exc)  # to the stderr log stream, with this request's id
            return text_reply("500 INTERNAL SERVER ERROR", str(exc))
        self.function = function
        self.metadata = metadata
        return _SPECIALIZED

    def apply_limits(self, memory_bytes: int | None, concurrency: int | None) -> None:
        """The function's own limits, known only now for a generic (poolmgr) worker.

        A process may always lower its own RLIMIT_AS, so the limit holds before any of the
        function's code runs.
        """
        if memory_bytes:
            soft, _ = resource.getrlimit(resource.RLIMIT_AS)
            if soft == resource.RLIM_INFINITY or memory_bytes < soft:
                resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        if concurrency and concurrency != self.concurrency:
            previous = self.executor
            self.concurrency = concurrency
            self.executor = ThreadPoolExecutor(concurrency, "function") if concurrency > 1 else None
            if previous is not None:  # a second specialization: calls running there finish
                previous.shutdown(wait=False)

    def invoke(self, environ: Environ) -> Reply:
        """Call the function in a Flask request context built from ``environ``; buffer the reply."""
        function = self.function
        if function is None:
            return text_reply("500 INTERNAL SERVER ERROR", "not specialized")
        app = self.app
        with app.request_context(environ):
            try:
                try:
                    value = function()
                    plain = text_or_bytes_reply(app, value, environ["REQUEST_METHOD"])
                    if plain is not None:
                        return plain
                    response = app.make_response(value)  # type: ignore[arg-type]
                except HTTPException as exc:  # flask.abort(): Flask turns it into its response
                    response = app.make_response(exc)
                return buffer_response(response, environ)  # inside: a failing stream is a 500 too
            except Exception:  # noqa: BLE001 - any error of the function is a 500, never a crash
                traceback.print_exc()
                return INTERNAL_ERROR


def _refuse() -> object:
    """Stands in for the function of a worker that failed to isolate itself (it is replaced)."""
    raise RuntimeError("this worker could not isolate itself and serves nothing")


def _function_limits(spec: dict[str, Any]) -> tuple[int | None, int | None]:
    """Optional ``memory_bytes`` and ``concurrency`` of a specialize request (extensions of
    Fission's body, sent by our runtime)."""
    memory, concurrency = spec.get("memory_bytes"), spec.get("concurrency")
    for name, value in (("memory_bytes", memory), ("concurrency", concurrency)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{name} must be a positive integer")
    return memory, concurrency


_HTML_HEAD: Final = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"


def text_or_bytes_reply(app: flask.Flask, value: object, method: str) -> Reply | None:
    """The reply ``app.make_response(value)`` and ``buffer_response`` would give for a ``str`` or
    ``bytes`` return value (200, ``text/html; charset=utf-8``, the value UTF-8 encoded; to HEAD the
    headers and the Content-Length a GET would have), without building a Werkzeug response: that
    costs a hello-world call about a quarter of its time. None for any other value, or when the app's
    response class or its default type is not Flask's own: then Flask builds the response."""
    kind = type(value)
    if (kind is not str and kind is not bytes) or app.response_class is not flask.Response:
        return None
    if flask.Response.default_mimetype != "text/html":
        return None
    body = cast(str, value).encode() if kind is str else cast(bytes, value)
    if method == "HEAD":
        return Reply(200, _HTML_HEAD + b"Content-Length: %d\r\n" % len(body), b"")
    return Reply(200, _HTML_HEAD, body)


def buffer_response(response: WerkzeugResponse, environ: Environ) -> Reply:
    """The WSGI view of ``response`` (HEAD and 204/304 have no body) with the body read fully.

    Streamed (generator) and file responses are buffered here, inside the request context. Raises
    whatever the stream raises, or UnicodeEncodeError for a header that is not latin-1.
    """
    app_iter, status, headers = response.get_wsgi_response(environ)
    try:
        body = b"".join(app_iter)
    finally:
        close = getattr(app_iter, "close", None)
        if close is not None:
            close()
        response.close()
    return make_reply(status, headers, body, environ["REQUEST_METHOD"] == "HEAD")


class DateHeader:
    """``Date`` header bytes, formatted at most once per second."""

    def __init__(self) -> None:
        self._second = 0
        self._value = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self._value


_date_header = DateHeader()


def render(reply: Reply, rid: str, keep_alive: bool, head: bool) -> bytes:
    """The HTTP/1.1 response bytes for ``reply``, framed with Content-Length.

    No Content-Length of ours for HEAD (see ``make_reply``) and 1xx/204 (no body allowed).
    """
    code, head_bytes, body = reply
    out = [head_bytes, _date_header()]
    if not head and code >= 200 and code != 204:
        out.append(b"Content-Length: %d\r\n" % len(body))
    if rid:
        out.append(f"{REQUEST_ID_HEADER}: {rid}\r\n".encode("latin-1"))
    if not keep_alive:
        out.append(b"Connection: close\r\n")
    out.append(b"\r\n")
    if not head:
        out.append(body)
    return b"".join(out)


class Request:
    """One parsed HTTP request; ``fields`` are its headers as WSGI environ entries (``Fields``)."""

    __slots__ = ("body", "fields", "keep_alive", "method", "url")

    def __init__(
        self, method: str, url: bytes, fields: dict[str, str], body: bytes, keep_alive: bool
    ) -> None:
        self.method = method
        self.url = url
        self.fields = fields
        self.body = body
        self.keep_alive = keep_alive


def split_url(url: bytes) -> tuple[bytes, bytes]:
    """``(decoded path, raw query)`` of a request target (origin-form, or absolute-form from proxies)."""
    if url.startswith(b"/"):
        path, _, query = url.partition(b"?")
    else:
        parsed = httptools.parse_url(url)
        path, query = parsed.path or b"/", parsed.query or b""
    if b"%" in path:
        path = unquote_to_bytes(path)
    return path, query


_ENVIRON_KEYS: dict[bytes, str] = {}  # header name as received -> its environ key
_ENVIRON_KEYS_MAX: Final = 1024  # names remembered at most (callers choose them)


def environ_key(name: bytes) -> str:
    """The WSGI environ key of header ``name`` (``X-Fission-Function-Name`` ->
    ``HTTP_X_FISSION_FUNCTION_NAME``), remembered for the next request: the router sends the same
    dozen names every time."""
    key = name.decode("latin-1").upper().replace("-", "_")
    if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        key = "HTTP_" + key
    if len(_ENVIRON_KEYS) < _ENVIRON_KEYS_MAX:
        _ENVIRON_KEYS[name] = key
    return key


class FieldsPy:
    """A request's headers as WSGI environ entries (``X-Fission-Function-Name: f`` as
    ``HTTP_X_FISSION_FUNCTION_NAME: "f"``), added one by one as the parser finds them: an
    ``HttpConnection``'s ``on_header``, which httptools calls for every header.

    A repeated header is one comma-separated value (cookies are joined with "; "), as PEP 3333
    servers give it. ``expect``: an ``Expect: 100-continue`` was among them.

    ``runtime.worker._fields.Fields`` is the same in C (``make workerext``): this one runs where
    it is not built. Why C: the router sends eleven headers with every call, and read with a
    Python call each they cost a worker woken for the call 5-24 us of its latency at 1
    connection (docs/router-data-path.md).
    """

    __slots__ = ("expect", "fields", "key_of", "keys")

    def __init__(self, keys: dict[bytes, str], key_of: Callable[[bytes], str]) -> None:
        self.keys = keys
        self.key_of = key_of
        self.fields: dict[str, str] = {}
        self.expect = False

    def __call__(self, name: bytes, value: bytes) -> None:
        key = self.keys.get(name) or self.key_of(name)
        text = value.decode("latin-1")
        fields = self.fields
        if key in fields:
            text = fields[key] + ("; " if key == "HTTP_COOKIE" else ",") + text
        fields[key] = text
        if key == "HTTP_EXPECT" and value.lower() == b"100-continue":
            self.expect = True

    def take(self) -> dict[str, str]:
        """The entries so far, and start afresh."""
        fields, self.fields, self.expect = self.fields, {}, False
        return fields

    def clear(self) -> None:
        """Forget the entries so far."""
        self.fields.clear()
        self.expect = False


try:
    from runtime.worker._fields import Fields
except ImportError:  # not built for this interpreter (make workerext): the same, in Python
    Fields = FieldsPy  # type: ignore[assignment,misc]


def build_environ(
    request: Request, path: bytes, query: bytes, worker: Worker, server: tuple[str, str]
) -> Environ:
    """The WSGI environ (PEP 3333) for ``request``; the body is already complete (dechunked)."""
    environ: Environ = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path.decode("latin-1"),
        "QUERY_STRING": query.decode("latin-1"),
        "SERVER_NAME": server[0],
        "SERVER_PORT": server[1],
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(request.body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": worker.executor is not None,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        # Why: without a Content-Length (chunked upload) Werkzeug only reads a terminated input.
        "wsgi.input_terminated": True,
    }
    # No header's key (HTTP_*, CONTENT_TYPE, CONTENT_LENGTH) is one of the keys above.
    environ.update(request.fields)
    return environ


class HttpConnection(asyncio.Protocol):
    """One client connection: parses requests with httptools and answers them in order.

    Requests pipelined on one connection are answered one after the other (HTTP/1.1 ordering);
    concurrency comes from several connections.
    """

    def __init__(self, worker: Worker, server: tuple[str, str]) -> None:
        self._worker = worker
        self._server = server
        # httptools calls on_header(name, value) for every header: the headers' environ entries
        # are made as they come. Set before the parser, which looks it up once.
        self.on_header = Fields(_ENVIRON_KEYS, environ_key)
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._pending: deque[Request | None] = deque()  # None: a parse error, answer 400 then close
        self._busy = False
        self._paused = False
        self._url = b""
        self._body: list[bytes] = []

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._pending.clear()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # no upgrades (websockets) here: the request is answered as a plain one
        except httptools.HttpParserError:
            self._pending.append(None)
        self._process()

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._body = []
        self.on_header.clear()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_headers_complete(self) -> None:
        # curl and others wait for "100 Continue" before sending a large body.
        if self.on_header.expect and self._transport is not None:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        self._pending.append(
            Request(
                parser.get_method().decode("latin-1"),
                self._url,
                self.on_header.take(),
                b"".join(self._body),
                parser.should_keep_alive(),
            )
        )

    # dispatch

    def _process(self) -> None:
        """Answer queued requests until one goes to the thread pool or the queue is empty."""
        while self._pending and not self._busy and self._transport is not None:
            request = self._pending.popleft()
            if request is None:
                self._send(text_reply("400 BAD REQUEST", "bad request"), "", False, False)
                return
            self._dispatch(request)
        self._flow_control()

    def _dispatch(self, request: Request) -> None:
        path, query = split_url(request.url)
        worker = self._worker
        environ = build_environ(request, path, query, worker, self._server)
        # Repeated headers are joined with "," in the environ; a proxy appends its own id last.
        rid = environ.get(_REQUEST_ID_KEY, "").rpartition(",")[2].strip()
        method = request.method
        head = method == "HEAD"
        if path in _CONTROL_PATHS and self._control(request, path, environ, rid):
            return
        if method not in _FUNCTION_METHODS:
            self._send(METHOD_NOT_ALLOWED, rid, request.keep_alive, head)
        elif worker.executor is None or worker.function is None:
            self._send(worker.in_request(rid, worker.invoke, environ), rid, request.keep_alive, head)
        else:
            self._busy = True
            future = asyncio.get_running_loop().run_in_executor(
                worker.executor,
                contextvars.copy_context().run,
                worker.in_request,
                rid,
                worker.invoke,
                environ,
            )
            future.add_done_callback(lambda f: self._finished(f, rid, request.keep_alive, head))

    def _control(self, request: Request, path: bytes, environ: Environ, rid: str) -> bool:
        """Answer one of Fission's own routes; False when its route lacks the method (Werkzeug
        then matches the function's route: the request is the function's, or a 405)."""
        method, worker = request.method, self._worker
        if method == "OPTIONS":
            reply = _OPTIONS
        elif path == b"/healthz":
            if method != "GET" and method != "HEAD":
                return False
            reply = _HEALTHY
        elif method != "POST":
            return False
        elif path == b"/v2/specialize":
            reply = worker.in_control_request(rid, worker.specialize, environ, request.body)
        else:
            reply = worker.in_control_request(rid, worker.specialize_v1, environ, request.body)
        self._send(reply, rid, request.keep_alive, method == "HEAD")
        return True

    def _finished(self, future: asyncio.Future[Reply], rid: str, keep_alive: bool, head: bool) -> None:
        self._busy = False
        if self._transport is None:
            return  # the client went away; the reply has nowhere to go
        reply = INTERNAL_ERROR if future.cancelled() or future.exception() else future.result()
        self._send(reply, rid, keep_alive, head)
        self._process()

    def _send(self, reply: Reply, rid: str, keep_alive: bool, head: bool) -> None:
        transport = self._transport
        if transport is None:
            return
        transport.write(render(reply, rid, keep_alive, head))
        if not keep_alive:
            transport.close()
            self._transport = None
            self._pending.clear()

    def _flow_control(self) -> None:
        """Stop reading a connection that pipelines faster than we answer (bounded memory)."""
        transport = self._transport
        if transport is None:
            return
        if len(self._pending) >= _MAX_PIPELINED and not self._paused:
            transport.pause_reading()
            self._paused = True
        elif self._paused and len(self._pending) < _MAX_PIPELINED // 2:
            transport.resume_reading()
            self._paused = False


# Serving


class UnixListener:
    """A bound, listening unix socket that is unlinked on close only if the path is still ours.

    Why the inode check: after a restart the router may already have a new worker on the same path.
    """

    def __init__(self, sock: socket.socket, path: str | None) -> None:
        """``path`` None: a listening socket handed over by its owner, who also removes its file."""
        self.sock = sock
        self.path = path
        self._identity = (0, 0)
        if path is not None:
            stat = os.stat(path)
            self._identity = (stat.st_dev, stat.st_ino)

    @classmethod
    def bind(cls, path: str) -> UnixListener:
        """Bind and listen on ``path`` (replacing a stale socket file), mode 0600."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            # Whoever can connect can run code as us (specialize, spawn): owner only. Before
            # listen(), so nobody connects in between.
            os.chmod(path, 0o600)
            sock.listen(LISTEN_BACKLOG)
        except OSError:
            sock.close()
            raise
        return cls(sock, path)

    def unlink(self) -> None:
        if self.path is None:
            return
        try:
            stat = os.stat(self.path)
            if (stat.st_dev, stat.st_ino) == self._identity:
                os.unlink(self.path)
        except OSError:
            pass


def serve(
    *,
    listener: UnixListener | None = None,
    port: int | None = None,
    concurrency: int = 1,
    host: str = "127.0.0.1",
    app: FunctionApp | None = None,
    log_connection: socket.socket | None = None,
    isolated: bool = False,
) -> None:
    """Serve until SIGTERM/SIGINT on ``listener`` and/or TCP ``host:port``, on a fresh uvloop loop.

    Installs the output capture first (to ``log_connection``, else ``$RUNTIME_LOG_SOCKET``) and
    flushes it before returning. ``isolated``: see ``Worker``.
    """
    if listener is None and port is None:
        raise ValueError("give a unix socket, a TCP port, or both")
    capture = capture_module.install(connection=log_connection)
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    worker = Worker(capture, concurrency, app, isolated=isolated)
    try:
        loop.run_until_complete(_serve_until_signal(worker, listener, port, host))
    finally:
        if worker.executor is not None:
            worker.executor.shutdown(wait=False, cancel_futures=True)
        if listener is not None:
            listener.unlink()
        loop.close()
        capture.close()


async def _serve_until_signal(
    worker: Worker, listener: UnixListener | None, port: int | None, host: str
) -> None:
    loop = asyncio.get_running_loop()
    servers: list[asyncio.Server] = []
    if listener is not None:
        address = ("localhost", "80")
        servers.append(
            await loop.create_unix_server(lambda: HttpConnection(worker, address), sock=listener.sock)
        )
    if port is not None:
        tcp_address = (host, str(port))
        servers.append(
            await loop.create_server(
                lambda: HttpConnection(worker, tcp_address), host, port, backlog=LISTEN_BACKLOG
            )
        )
    stop = loop.create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _set_once, stop)
    await stop
    for server in servers:
        server.close()


def _set_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
