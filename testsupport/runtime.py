"""A real ``python -m runtime`` process for tests, with helpers to drive its control API."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from portal.embedded import free_port
from testsupport.processes import process_fields, processes_of

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "test-runtime-token"
# The read-only token of the runtime's /metrics (RUNTIME_METRICS_TOKEN), as Prometheus scrapes it.
METRICS_TOKEN = "test-runtime-metrics-token"  # a test's, not a secret
# Each runtime of this test process gets its own range of tenant uids: two runtimes alive at
# once (the session's and a test's) never give one uid to two tenants.
_UID_BASES = itertools.count(400_000 + (os.getpid() % 1000) * 10_000, 100)


@dataclass
class RuntimeProcess:
    state_dir: Path
    router_port: int = field(default_factory=free_port)
    control_port: int = field(default_factory=free_port)
    uid_base: int = field(default_factory=lambda: next(_UID_BASES))
    env: dict[str, str] = field(default_factory=dict)
    # A benchmark's: started as ``make run`` (honcho) starts it, in a session of its own, and so,
    # where the kernel groups CPU time by session (autogroup), not in its caller's CPU group.
    own_session: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def router(self) -> str:
        return f"http://127.0.0.1:{self.router_port}"

    @property
    def control(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "runtime.log"

    def start(self) -> RuntimeProcess:
        env = dict(
            os.environ,
            RUNTIME_STATE_DIR=str(self.state_dir),
            RUNTIME_ROUTER_PORT=str(self.router_port),
            RUNTIME_CONTROL_PORT=str(self.control_port),
            RUNTIME_TOKEN=TOKEN,
            RUNTIME_SANDBOX_UID_BASE=str(self.uid_base),
            PORTAL_SECRET_KEY="must-not-reach-workers",  # noqa: S106 - a canary, not a secret
        )
        env.update({"RUNTIME_METRICS_TOKEN": METRICS_TOKEN, **self.env})  # a test may set another, or none
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "runtime"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=self.own_session,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the runtime exited:\n{self.log_tail()}")
            try:
                if httpx.get(self.router + "/router-healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"the runtime did not start:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def tenant_uid(self, namespace: str) -> int:
        """The uid the runtime gave ``namespace``'s sandbox."""
        uids: dict[str, int] = json.loads((self.state_dir / "sandbox" / "uids.json").read_text())
        return uids[namespace]

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def metrics(self) -> str:
        """The text of the runtime's /metrics, fetched with the metrics token as Prometheus does."""
        token = self.env.get("RUNTIME_METRICS_TOKEN", METRICS_TOKEN)
        response = httpx.get(
            self.control + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        response.raise_for_status()
        return response.text

    def apply(self, obj: dict[str, Any]) -> httpx.Response:
        """Create, or replace when it exists (as the portal's backend will)."""
        kind = obj["kind"].lower()
        plural = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"  # networkpolicy -> ...policies
        namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        group = "api/v1" if obj["apiVersion"] == "v1" else f"apis/{obj['apiVersion']}"
        base = f"{self.control}/{group}/namespaces/{namespace}/{plural}"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        response = httpx.post(base, json=obj, headers=headers, timeout=60)
        if response.status_code == 409:
            response = httpx.put(f"{base}/{name}", json=obj, headers=headers, timeout=60)
        return response

    def list(self, namespace: str, plural: str) -> list[dict[str, Any]]:
        url = f"{self.control}/apis/fission.io/v1/namespaces/{namespace}/{plural}"
        response = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def wipe(self, namespace: str) -> None:
        """Delete every Fission object of ``namespace`` (routes first), so that a test sharing
        the session's runtime starts from an empty namespace."""
        headers = {"Authorization": f"Bearer {TOKEN}"}
        plurals = (
            "httptriggers",
            "timetriggers",
            "messagequeuetriggers",
            "functions",
            "packages",
            "environments",
        )
        for plural in plurals:
            for item in self.list(namespace, plural):
                url = f"{self.control}/apis/fission.io/v1/namespaces/{namespace}/{plural}/"
                httpx.delete(url + item["metadata"]["name"], headers=headers, timeout=30)
        for plural in ("secrets", "configmaps"):
            core = f"{self.control}/api/v1/namespaces/{namespace}/{plural}"
            for item in httpx.get(core, headers=headers, timeout=30).json()["items"]:
                httpx.delete(f"{core}/{item['metadata']['name']}", headers=headers, timeout=30)

    def call(self, path: str, method: str = "GET", **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.router + path, timeout=kwargs.pop("timeout", 30), **kwargs)


# The session's runtime retries asynchronous invocations after 0.1 s and 0.2 s (not 1 s and 2 s), and
# may consume from this machine's brokers (their standard loopback ports).
SESSION_ENV = {
    "RUNTIME_ASYNC_BACKOFF_MS": "100",
    "RUNTIME_MQ_BROKERS": "127.0.0.1:4222,127.0.0.1:5672,127.0.0.1:6379,127.0.0.1:1883",
}


def _set_for_the_session(settings: Any, name: str, value: str) -> None:
    """Set ``name`` in Django's settings and in every layer below: the first test to need the
    session's runtime may be inside an ``override_settings`` (pytest-django's ``settings``
    fixture), whose layer, and what was set in it, goes at the end of that test."""
    holder = settings._wrapped
    while holder is not None:
        setattr(holder, name, value)
        holder = getattr(holder, "default_settings", None)


@pytest.fixture(scope="session")
def runtime_session(tmp_path_factory: Any) -> Iterator[RuntimeProcess]:
    """One runtime for the portal's end-to-end tests; the portal (in this process and in the
    servers the tests start) is pointed at it through RUNTIME_URL, RUNTIME_ROUTER_URL and
    RUNTIME_TOKEN."""
    from django.conf import settings

    process = RuntimeProcess(state_dir=tmp_path_factory.mktemp("runtime-session"), env=SESSION_ENV).start()
    urls = {"RUNTIME_URL": process.control, "RUNTIME_ROUTER_URL": process.router, "RUNTIME_TOKEN": TOKEN}
    os.environ.update(urls)
    for name, value in urls.items():
        _set_for_the_session(settings, name, value)
    yield process
    process.stop()


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[RuntimeProcess]:
    """A fresh runtime with its own state directory, stopped after the test."""
    process = RuntimeProcess(state_dir=tmp_path / "runtime").start()
    yield process
    process.stop()


# A function answering with its pid and its pid namespace, which together name the process.
WHOAMI = "import os\ndef main():\n    return f\"{os.getpid()} {os.readlink('/proc/self/ns/pid')}\"\n"


def host_pid(whoami: str) -> int:
    """The pid, as this process sees it, of the worker that answered ``WHOAMI`` with ``whoami``
    (sandboxed workers have pid namespaces of their own); 0 once it is gone."""
    ns_pid, namespace = whoami.split(" ", 1)
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or os.readlink(entry / "ns" / "pid") != namespace:
                continue
        except OSError:
            continue
        fields = process_fields(entry.name)
        if fields and fields["NSpid"].split()[-1] == ns_pid and not fields["State"].startswith("Z"):
            return int(entry.name)
    return 0


# A function that answers (which worker it ran in) only once the test sends its worker SIGUSR1
# (``open_gates``), so that a test decides when calls finish. A signal, because a sandboxed
# function sees no host file.
GATED = (
    "import os, signal\n"
    "def main():\n"
    "    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})\n"
    "    signal.sigtimedwait({signal.SIGUSR1}, 30)\n"
    "    return os.readlink('/proc/self/ns/pid')\n"  # names the worker (each has a pid namespace)
)


def _gated_processes(uid: int) -> list[int]:
    """Processes of ``uid`` waiting for a signal: the workers in ``GATED``."""
    waiting = []
    for pid in processes_of(uid):
        try:
            if Path(f"/proc/{pid}/wchan").read_text().startswith("do_sigtimedwait"):
                waiting.append(pid)
        except OSError:
            continue
    return waiting


def open_gates(uid: int, expected: int, timeout: float = 20) -> None:
    """Once ``expected`` workers of ``uid`` wait in ``GATED``, let them all answer."""
    deadline = time.monotonic() + timeout
    while len(waiting := _gated_processes(uid)) < expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(waiting)} of {expected} calls reached the gate")
        time.sleep(0.01)
    for pid in waiting:
        os.kill(pid, signal.SIGUSR1)


def memory_limit(pid: int) -> int | None:
    """The hard memory limit of process ``pid``'s cgroup (v1), None when unlimited."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            limit = int(Path("/sys/fs/cgroup/memory", path.lstrip("/"), "memory.limit_in_bytes").read_text())
            return None if limit >= 2**62 else limit
    raise AssertionError(f"process {pid} has no memory cgroup")
