"""The runtime process: store, packages, zygote, executor, router, control API, log collector."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from runtime.config import Config
from runtime.control import make_app
from runtime.errors import PackageUnavailable
from runtime.executor import Deployable, Executor
from runtime.http import ServerProtocol
from runtime.logs import LogCollector
from runtime.objects import Environment, Function, HTTPTrigger, LimitRange, Package, ResourceQuota
from runtime.packages import Packages
from runtime.router import Router
from runtime.spawner import Zygote
from runtime.store import Key, Store

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, config: Config) -> None:
        self.config = config
        run_dir = config.state_dir / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(config.state_dir)
        self.packages = Packages(config.state_dir)
        self.zygote = Zygote(run_dir)
        self.executor = Executor(self.zygote, run_dir, run_dir / "logs.sock")
        self.logs = LogCollector(
            run_dir / "logs.sock", config.redis_url, self.owner_of, config.log_stream_maxlen
        )
        self.router = Router(self.executor)
        self.servers: list[Any] = []
        self.apply_lock = asyncio.Lock()

    def owner_of(self, pid: int) -> tuple[str, str] | None:
        worker = self.executor.by_pid.get(pid)
        return worker.function if worker is not None else None

    async def start(self) -> None:
        count = self.store.load()
        await self.logs.start()
        await self.zygote.start()
        await self.apply()
        loop = asyncio.get_running_loop()
        max_body = self.config.max_body_bytes
        router = await loop.create_server(
            lambda: ServerProtocol(self.router.handle, max_body),
            self.config.host,
            self.config.router_port,
            backlog=2048,
        )
        runner = web.AppRunner(make_app(self, self.config.token), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.config.host, self.config.control_port).start()
        self.servers = [router, runner]
        self.executor.background(self.executor.run_reaper())
        log.info(
            "runtime: router on %s:%s, control API on %s:%s, %d objects restored",
            self.config.host, self.config.router_port, self.config.host, self.config.control_port, count,
        )  # fmt: skip

    async def put(self, plural: str, namespace: str, body: dict[str, Any], *, create: bool) -> dict[str, Any]:
        if plural == "packages":
            from runtime.objects import parse_package

            # Fetch and verify before accepting: a bad checksum is the caller's error, now.
            await self.packages.materialize(parse_package(body, namespace).deployment)
        raw = self.store.put(plural, namespace, body, create=create)
        await self.apply()
        return raw

    async def delete(self, key: Key) -> None:
        self.store.delete(key)
        await self.apply()

    async def apply(self) -> None:
        """Make workers and routes match the stored objects. Safe to call any time."""
        async with self.apply_lock:
            quotas: list[ResourceQuota] = list(self.store.items("resourcequotas"))
            ranges: list[LimitRange] = list(self.store.items("limitranges"))
            self.executor.set_quotas(quotas, ranges)  # first: the pools below fill up to them
            environments: list[Environment] = list(self.store.items("environments"))
            self.executor.set_environments(environments)
            self.executor.set_deployables(await self._deployables(environments))
            triggers: list[HTTPTrigger] = list(self.store.items("httptriggers"))
            self.router.set_triggers(triggers)

    async def _deployables(self, environments: list[Environment]) -> list[Deployable]:
        by_env = {(e.meta.namespace, e.meta.name): e for e in environments}
        result = []
        for function in list(self.store.items("functions")):
            assert isinstance(function, Function)
            namespace = function.meta.namespace
            package = self.store.parsed.get(("packages", namespace, function.package))
            environment = by_env.get((namespace, function.environment))
            if not isinstance(package, Package) or environment is None:
                continue  # not servable yet: its package or environment is missing
            try:
                path = await self.packages.materialize(package.deployment)
            except PackageUnavailable as exc:
                log.error("function %s/%s: %s", namespace, function.meta.name, exc.message)
                continue
            result.append(Deployable(function=function, environment=environment, code_path=path))
        return result

    async def stop(self) -> None:
        for server in self.servers:
            if isinstance(server, web.AppRunner):
                await server.cleanup()
            else:
                server.close()
        await self.executor.shutdown()
        await self.zygote.stop()
        await self.logs.stop()
