"""Starts worker processes through the zygote (a pre-loaded process that forks them).

Forking from a process that already imported Flask and the worker code is what makes a
cold start cost milliseconds instead of an interpreter start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Workers get exactly this environment: none of the runtime's or the portal's secrets.
CLEAN_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "TZ")


def clean_environment(extra: dict[str, str]) -> dict[str, str]:
    env = {key: os.environ[key] for key in CLEAN_ENV_KEYS if key in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return {**env, **extra}


class Zygote:
    """One zygote process and a serialized JSON-line channel to it."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.control = run_dir / "zygote.sock"
        self.process: asyncio.subprocess.Process | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.lock = asyncio.Lock()

    async def start(self) -> None:
        self.control.unlink(missing_ok=True)
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runtime.worker.zygote", "--control", str(self.control),
            env=clean_environment({"PYTHONPATH": str(Path(__file__).resolve().parent.parent)}),
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                self.reader, self.writer = await asyncio.open_unix_connection(str(self.control))
                break
            except OSError:
                if self.process.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError("the zygote did not start") from None
                await asyncio.sleep(0.02)

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        async with self.lock:
            if self.writer is None or self.reader is None:
                raise RuntimeError("the zygote is not running")
            self.writer.write(json.dumps(message).encode() + b"\n")
            await self.writer.drain()
            line = await self.reader.readline()
        if not line:
            raise RuntimeError("the zygote closed its control connection")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def spawn(self, *, worker_id: str, socket: Path, workdir: Path, memory: int | None,
                    concurrency: int, env: dict[str, str]) -> int:  # fmt: skip
        answer = await self.request({
            "op": "spawn", "id": worker_id, "socket": str(socket), "workdir": str(workdir),
            "memory_bytes": memory, "concurrency": concurrency, "env": clean_environment(env),
        })  # fmt: skip
        if "pid" not in answer:
            raise RuntimeError(f"the zygote could not spawn a worker: {answer}")
        return int(answer["pid"])

    async def stop(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)


def kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
