"""Real processes for end-to-end tests: the ASGI server and a Celery worker.

They run against the test database (committed data only: use ``transactional_db``) and
the test Redis, exactly as ``make run`` starts them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from portal.embedded import free_port

ROOT = Path(__file__).resolve().parent.parent


def _test_database_url() -> str:
    from django.db import connection

    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))


_MULTIPROC = Path(tempfile.mkdtemp(prefix="portal-metrics-"))


def _environment() -> dict[str, str]:
    """As ``make run`` gives its portal processes: the ASGI server and the Celery worker sum
    their metrics in one multiprocess directory (the test process keeps its own registry)."""
    env = dict(
        os.environ, DATABASE_URL=_test_database_url(), PYTHONUNBUFFERED="1",
        PROMETHEUS_MULTIPROC_DIR=str(_MULTIPROC),
    )  # fmt: skip
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return env


def stop_process(process: subprocess.Popen[Any]) -> None:
    """Terminate, then kill after 10 s if it is still there."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _log_tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@pytest.fixture(scope="session")
def live_server_url(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: Any, runtime_session: Any
) -> Iterator[str]:
    """uvicorn serving portal.asgi (HTTP and websockets) on a free port, wired to the test
    runtime; the runtime fetches package archives from it (PORTAL_INTERNAL_URL)."""
    from django.conf import settings
    from django.db import connection

    from testsupport.fixtures import ensure_public_tenant

    with django_db_blocker.unblock():
        connection.set_schema_to_public()  # type: ignore[attr-defined]  # a test's request may have moved it
        ensure_public_tenant()  # the server routes nothing without it
    port = free_port()
    os.environ["PORTAL_INTERNAL_URL"] = settings.PORTAL_INTERNAL_URL = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("web") / "web.log"
    cmd = [
        sys.executable, "-m", "uvicorn", "portal.asgi:application", "--host", "127.0.0.1",
        "--port", str(port), "--ws", "websockets-sansio", "--lifespan", "off", "--no-access-log",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, cwd=ROOT, env=_environment(), stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the ASGI server exited:\n{_log_tail(log)}")
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    else:
        stop_process(process)
        pytest.fail(f"the ASGI server did not start:\n{_log_tail(log)}")
    yield url
    stop_process(process)


class CeleryWorker:
    """A real ``celery worker`` (solo pool) consuming the test Redis; ``kill`` and ``start`` let a
    test take it down as a crash would (SIGKILL, nothing acknowledged) and bring another up."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.starts = 0
        self.process: subprocess.Popen[Any] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        self.starts += 1
        log = self.log_dir / f"worker-{self.starts}.log"
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "portal",
            "worker",
            "--pool",
            "solo",
            "--loglevel",
            "INFO",
        ]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                cmd, cwd=ROOT, env=_environment(), stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while "ready." not in log.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"the Celery worker did not start:\n{_log_tail(log)}")
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


@pytest.fixture(scope="session")
def celery_worker_process(
    django_db_setup: None, tmp_path_factory: Any, live_server_url: str
) -> Iterator[CeleryWorker]:
    """The session's Celery worker (queue emptied first: earlier tests' committed tasks are not
    this test's business)."""
    from portal.celery import app

    app.control.purge()
    worker = CeleryWorker(tmp_path_factory.mktemp("worker"))
    worker.start()
    yield worker
    worker.stop()


def wait_until(predicate: Any, *, timeout: float = 20.0, interval: float = 0.05, message: str = "") -> Any:
    """Poll ``predicate`` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message or f"condition not met within {timeout} s")
        time.sleep(interval)


def process_fields(pid: int | str) -> dict[str, str]:
    """``/proc/<pid>/status`` as a dict of stripped values; {} once the process is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def command_line(pid: int | str) -> bytes:
    """``/proc/<pid>/cmdline``; b"" once the process is gone (it may exit between a listing of
    /proc and this read)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def processes_of(uid: int) -> list[int]:
    """Live (not zombie) processes whose real uid is ``uid``."""
    found = []
    for entry in Path("/proc").iterdir():
        fields = process_fields(entry.name) if entry.name.isdigit() else {}
        if fields and int(fields["Uid"].split()[0]) == uid and not fields["State"].startswith("Z"):
            found.append(int(entry.name))
    return found
