"""``python -m runtime``: the local Fission-compatible data plane."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import uvloop

from runtime.app import Runtime
from runtime.config import Config, ConfigError


async def serve(config: Config) -> None:
    runtime = Runtime(config)
    await runtime.start()
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
    uvloop.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
