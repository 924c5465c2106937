"""``python -m runtime``: the local Fission-compatible data plane."""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
import signal
import sys

import uvloop

from runtime.app import Runtime
from runtime.config import Config, ConfigError
from runtime.sandbox.cgroups import InstanceInUse
from runtime.sandbox.host import SandboxUnavailable


async def serve(config: Config) -> None:
    runtime = Runtime(config)
    await runtime.start()
    _freeze_startup_heap()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runtime.stop()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config = Config.from_env()
    except ConfigError as exc:
        print(f"runtime: {exc}", file=sys.stderr)
        return 2
    _raise_file_limit()
    try:
        uvloop.run(serve(config))
    except SandboxUnavailable as exc:
        print(f"runtime: cannot sandbox functions: {exc}. Refusing to run them unsandboxed; "
              "RUNTIME_SANDBOX=off runs them as this user, for a machine that runs only your own code.",
              file=sys.stderr)  # fmt: skip
        return 2
    except InstanceInUse as exc:
        print(f"runtime: {exc}", file=sys.stderr)
        return 2
    return 0


def _freeze_startup_heap() -> None:
    """Move what start-up made (modules, the store, the routes: most of the heap) out of the
    collector's sight. A full collection walked all of it: about 40 ms here, a pause that falls on
    whatever runs then, most often a burst of calls (a hundred time triggers on one second
    allocate enough to set one off). Frozen, it is 2-3 ms. Objects are still freed when their
    last reference goes; only cycles among them would never be collected."""
    gc.collect()
    gc.freeze()
    logging.getLogger("runtime").info("start-up heap frozen: %d objects out of the collector's walks",
                                      gc.get_freeze_count())  # fmt: skip


def _raise_file_limit() -> None:
    """Every worker holds a pidfd, its log channels and connections: allow the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


if __name__ == "__main__":
    sys.exit(main())
