"""A real ``python -m runtime`` process for tests, with helpers to drive its control API."""

from __future__ import annotations

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

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "test-runtime-token"


@dataclass
class RuntimeProcess:
    state_dir: Path
    router_port: int = field(default_factory=free_port)
    control_port: int = field(default_factory=free_port)
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
            PORTAL_SECRET_KEY="must-not-reach-workers",  # noqa: S106 - a canary, not a secret
        )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "runtime"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
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

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def apply(self, obj: dict[str, Any]) -> httpx.Response:
        """Create, or replace when it exists (as the portal's backend will)."""
        plural = obj["kind"].lower() + "s"
        namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        base = f"{self.control}/apis/fission.io/v1/namespaces/{namespace}/{plural}"
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
        for plural in ("httptriggers", "functions", "packages", "environments"):
            for item in self.list(namespace, plural):
                url = f"{self.control}/apis/fission.io/v1/namespaces/{namespace}/{plural}/"
                httpx.delete(url + item["metadata"]["name"], headers=headers, timeout=30)

    def call(self, path: str, method: str = "GET", **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.router + path, timeout=kwargs.pop("timeout", 30), **kwargs)


@pytest.fixture(scope="session")
def runtime_session(tmp_path_factory: Any) -> Iterator[RuntimeProcess]:
    """One runtime for the portal's end-to-end tests; the portal (in this process and in the
    servers the tests start) is pointed at it through RUNTIME_URL, RUNTIME_ROUTER_URL and
    RUNTIME_TOKEN."""
    from django.conf import settings

    process = RuntimeProcess(state_dir=tmp_path_factory.mktemp("runtime-session")).start()
    urls = {"RUNTIME_URL": process.control, "RUNTIME_ROUTER_URL": process.router, "RUNTIME_TOKEN": TOKEN}
    os.environ.update(urls)
    for name, value in urls.items():
        setattr(settings, name, value)
    yield process
    process.stop()


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[RuntimeProcess]:
    """A fresh runtime with its own state directory, stopped after the test."""
    process = RuntimeProcess(state_dir=tmp_path / "runtime").start()
    yield process
    process.stop()
