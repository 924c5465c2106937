"""The request body limit against a real uvicorn serving portal.asgi, over real sockets.

Django's ASGI handler reads a whole body before its middleware runs; core/asgi_limits.py keeps
it from reading past the route's limit. These tests send what an attacker's probe sent (a
declared 64 MiB, a chunked 64 MiB) and assert that the 413 comes before the body has been sent,
that the server spilled nothing to its temporary directory, and that the per-route limits let a
legitimate upload through while a form route refuses the same body. The server here has its own
TMPDIR (hence its own process, not the session's live server) and the default limits: 1 MiB on
form routes, 10 MiB on the routes that take code.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from django_tenants.utils import schema_context

from functions.models import Function
from portal.embedded import free_port
from testsupport.fixtures import ensure_public_tenant, slow_password
from testsupport.processes import ROOT, _environment, stop_process  # as the session's live server

pytestmark = pytest.mark.django_db(transaction=True)  # the server sees committed rows only

KiB, MiB = 1024, 1024 * 1024
FORM_LIMIT, UPLOAD_LIMIT = 1 * MiB, 10 * MiB  # the defaults
PROBE = 64 * MiB  # what the attacker's probe sent
PASSWORD = "correct horse battery staple"
CHUNK = 64 * KiB  # of a chunked body
ANSWER_S = 10  # a 413 that is not read at all comes at once; this only bounds a failing test


@dataclass
class Server:
    url: str
    pid: int
    tmp: Path  # the server's TMPDIR: where Django's spooled bodies go past 2.5 MiB
    spills: list[str] = field(default_factory=list)

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        assert parts.hostname
        assert parts.port
        return parts.hostname, parts.port

    def note_spills(self) -> None:
        """Record the server's open files in its TMPDIR. A spooled body there has no name
        (O_TMPFILE, or unlinked), so the folder looks empty while it fills: /proc shows it."""
        fds = Path(f"/proc/{self.pid}/fd")
        for fd in fds.iterdir():
            try:
                target = os.readlink(fd)
            except OSError:  # closed meanwhile
                continue
            if target.startswith(str(self.tmp)):
                self.spills.append(target)


@pytest.fixture(scope="module")
def server(django_db_setup: None, django_db_blocker: Any, tmp_path_factory: Any) -> Iterator[Server]:
    with django_db_blocker.unblock():
        ensure_public_tenant()
    tmp = tmp_path_factory.mktemp("server-tmp")
    log = tmp_path_factory.mktemp("server-log") / "web.log"
    port = free_port()
    cmd = [
        sys.executable, "-m", "uvicorn", "portal.asgi:application", "--host", "127.0.0.1",
        "--port", str(port), "--lifespan", "off", "--no-access-log",
    ]  # fmt: skip
    env = {**_environment(), "TMPDIR": str(tmp)}
    env.pop("PORTAL_MAX_REQUEST_BYTES", None)
    env.pop("PORTAL_MAX_FORM_BYTES", None)
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not _ready(url):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            pytest.fail(f"the ASGI server did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)
    yield Server(url=url, pid=process.pid, tmp=tmp)
    stop_process(process)
    assert "Traceback" not in log.read_text(errors="replace"), log.read_text(errors="replace")[-3000:]


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


# ------------------------------------------------------------------ raw HTTP


def _head(server: Server, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {server.address[0]}:{server.address[1]}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # bytes of the body sent before the answer came
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body)


def _read(sock: socket.socket, sent: int, started: float) -> Answer:
    sock.settimeout(ANSWER_S)
    response = http.client.HTTPResponse(sock)
    response.begin()
    body = response.read()
    headers = {name.lower(): value for name, value in response.getheaders()}
    return Answer(response.status, headers, body, sent, time.monotonic() - started)


def declare_and_wait(server: Server, path: str, length: int, **headers: str) -> Answer:
    """Send only the head of a POST declaring ``length`` bytes, then wait for the answer."""
    with socket.create_connection(server.address) as sock:
        started = time.monotonic()
        sock.sendall(_head(server, path, {"Content-Length": str(length), **headers}))
        return _read(sock, 0, started)


def stream(server: Server, path: str, total: int, **headers: str) -> Answer:
    """POST ``total`` bytes chunked (no Content-Length), a chunk at a time, until the server
    answers; between chunks, note any file the server has open in its TMPDIR."""
    frame = b"%x\r\n" % CHUNK + b"x" * CHUNK + b"\r\n"
    with socket.create_connection(server.address) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * KiB)  # little in flight
        sock.settimeout(ANSWER_S)
        started = time.monotonic()
        sock.sendall(_head(server, path, {"Transfer-Encoding": "chunked", **headers}))
        sent = 0
        while sent < total and not select.select([sock], [], [], 0)[0]:
            server.note_spills()
            try:
                sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                break  # the server stopped reading: its answer is waiting
            sent += CHUNK
        else:
            if sent >= total:
                sock.sendall(b"0\r\n\r\n")
        return _read(sock, sent, started)


def assert_error_shape(answer: Answer, limit: int) -> None:
    error = answer.json()["error"]
    assert set(error) == {"code", "message", "detail"}
    assert error["code"] == "too_large"
    assert f"({limit} bytes)" in error["message"]


# ------------------------------------------------------------------ an attacker's probe


@pytest.mark.parametrize("path", ["/login/", "/t/acme/members/", "/t/nosuch/functions/hello/"])
def test_a_declared_oversized_body_is_refused_before_it_is_sent(server: Server, path: str) -> None:
    answer = declare_and_wait(server, path, PROBE, **{"Content-Type": "application/x-www-form-urlencoded"})
    # Not one byte of the body was sent, and yet here is the answer: nothing waited for it.
    assert answer.status == 413
    assert answer.headers["connection"] == "close"
    assert "Too large to accept" in answer.body.decode()  # the portal's framed 413 page
    limit = UPLOAD_LIMIT if path.endswith("/hello/") else FORM_LIMIT
    assert f"at most {limit // MiB} MiB ({limit} bytes)" in answer.body.decode()


@pytest.mark.parametrize("path", ["/api/v1/tenants/", "/t/acme/api/v1/functions/hello/upload/"])
def test_the_api_refuses_a_declared_oversized_body_in_its_json_shape(server: Server, path: str) -> None:
    answer = declare_and_wait(server, path, PROBE, **{"Content-Type": "application/json"})
    assert answer.status == 413
    assert answer.headers["connection"] == "close"
    assert answer.headers["content-type"] == "application/json"
    assert_error_shape(answer, UPLOAD_LIMIT if path.endswith("/upload/") else FORM_LIMIT)


def test_a_chunked_oversized_body_is_cut_off_at_the_limit_and_nothing_spills(server: Server) -> None:
    server.spills.clear()
    answer = stream(server, "/t/acme/api/v1/members/", PROBE, **{"Content-Type": "application/json"})
    assert answer.status == 413
    assert_error_shape(answer, FORM_LIMIT)
    assert answer.headers["connection"] == "close"
    # The answer came while the probe was sending: after the limit and what the sockets' buffers
    # hold, not after 64 MiB. Read whole (Django reads before it answers), it would be 64 MiB.
    assert FORM_LIMIT < answer.sent < FORM_LIMIT + 8 * MiB, answer.sent
    # Read whole, Django would have spooled the body to a file in TMPDIR past 2.5 MiB.
    assert server.spills == []
    assert list(server.tmp.iterdir()) == []


def test_a_chunked_body_under_the_limit_is_read_whole(server: Server) -> None:
    """The same stream, short of the limit: no 413 (the anonymous caller gets the API's 401)."""
    answer = stream(server, "/t/acme/api/v1/members/", FORM_LIMIT - CHUNK, Accept="application/json")
    assert answer.sent == FORM_LIMIT - CHUNK
    assert answer.status != 413
    assert answer.status in (401, 403, 404)


# ------------------------------------------------------------------ the per-route limits


def _signed_in(server: Server, world: Any) -> httpx.Client:
    """A client signed in as Bob through the sign-in form: a POST under the limit works."""
    slow_password(world.bob, PASSWORD)
    client = httpx.Client(base_url=server.url, timeout=30)
    client.get("/login/")
    answer = client.post(
        "/login/",
        data={"username": "bob", "password": PASSWORD, "csrfmiddlewaretoken": client.cookies["csrftoken"]},
    )
    assert answer.status_code == 302, answer.text
    assert answer.headers["location"] != "/login/"
    client.get("/t/acme/")  # the token is rotated at sign-in
    client.headers["X-CSRFToken"] = client.cookies["csrftoken"]
    return client


def _zip_of(size: int) -> bytes:
    """A valid draft archive of about ``size`` bytes (random, so it does not compress)."""
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("main.py", "def main():\n    return 'big'\n")
        archive.writestr("data.bin", os.urandom(size))
    return buffer.getvalue()


def test_a_body_between_the_limits_is_taken_on_the_upload_route_and_refused_elsewhere(
    server: Server, world: Any, hello: Any
) -> None:
    client = _signed_in(server, world)
    data = _zip_of(2 * MiB)
    assert FORM_LIMIT < len(data) < UPLOAD_LIMIT

    files = {"file": ("big.zip", data, "application/zip")}
    upload = client.post("/t/acme/functions/hello/", data={"action": "upload"}, files=files)
    assert upload.status_code == 302, upload.text[:2000]
    with schema_context(world.acme.schema_name):
        assert Function.objects.get(name="hello").draft.archive_name == "big.zip"

    page = client.post("/t/acme/members/", data={"username": "x" * len(data)})
    assert page.status_code == 413
    assert "at most 1 MiB (1048576 bytes)" in page.text
    assert "bob" in page.text  # the framed page, signed in

    json_type = {"Content-Type": "application/json"}
    api = client.post("/t/acme/api/v1/members/", content=b" " * len(data), headers=json_type)
    assert api.status_code == 413
    assert api.json()["error"]["code"] == "too_large"
