"""The runtime process: store, packages, zygote, executor, router, control API, log collector.

A function is deployed (``Runtime._deployables``) once its environment, its package (fetched) and
every Secret and ConfigMap it references are there; until then it is not deployable (a call gets
502, the specialize probe 404), and it becomes deployable as soon as the missing object is applied.
The files those objects are (``runtime.worker.volumes``) must hold at most ``MAX_FUNCTION_BYTES``
together: past it the function is not deployable either, and the runtime logs why and the probe
says it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import operator
import socket
from typing import Any

from aiohttp import web

from runtime import fastpath
from runtime.calls import CallRecorder
from runtime.captures import CaptureRecorder
from runtime.config import Config
from runtime.control import make_app
from runtime.errors import NotFound, PackageUnavailable
from runtime.events.asynchronous.caller import RuntimeCaller
from runtime.events.asynchronous.dispatcher import Dispatcher
from runtime.events.asynchronous.queue import Queue
from runtime.events.asynchronous.records import AsyncUnavailable, Keys, keyspace
from runtime.events.queues import Consumers
from runtime.events.timers import Timers
from runtime.executor import Deployable, Executor
from runtime.http import ServerProtocol
from runtime.interpreters import installed
from runtime.logs import LogCollector
from runtime.objects import (
    ConfigMap,
    Environment,
    Function,
    HTTPTrigger,
    LimitRange,
    NetworkPolicy,
    Package,
    Parsed,
    ResourceQuota,
    Secret,
    TimeTrigger,
    parse_package,
)
from runtime.packages import Packages
from runtime.router import Router
from runtime.sandbox.cgroups import LOCKS, CgroupTree, RuntimeLock
from runtime.sandbox.host import require_tools
from runtime.sandbox.network import Grant
from runtime.sandbox.tenant import Sandboxes, SandboxSettings, sandbox_settings_summary
from runtime.store import Key, Store
from runtime.tenancy import check_trigger
from runtime.worker import volumes

log = logging.getLogger(__name__)
# A function's environment variables, its files (both None while a reference is missing) and the
# files' size.
_Configuration = tuple[dict[str, str] | None, dict[str, bytes] | None, int]


class Runtime:
    def __init__(self, config: Config) -> None:
        """Raises SandboxUnavailable when sandboxes are on and the machine cannot run them."""
        self.config = config
        # One runtime per state directory, which its lock (held while it lives) names: a second
        # one raises InstanceInUse here, before it touches the first one's store or workers.
        instance = hashlib.sha256(str(config.state_dir).encode()).hexdigest()[:12]
        self.lock = RuntimeLock.hold(LOCKS, instance)
        run_dir = config.state_dir / "run"
        run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.store = Store(config.state_dir, check=self._check)
        self.packages = Packages(config.state_dir / "packages")
        settings = SandboxSettings(config.sandbox, config.sandbox_uid_base, config.worker_tmp_bytes,
                                   config.worker_pids)  # fmt: skip
        tools = require_tools() if config.sandbox else None
        # One subtree per state directory, so that a restart finds (and sweeps) its own.
        cgroups = CgroupTree.detect(instance, self.lock) if config.sandbox else None
        if cgroups is not None:
            cgroups.sweep()
            for name in cgroups.sweep_orphans():
                log.warning("swept %s, left by a runtime that is gone", name)
        self.cgroups = cgroups
        pythons = installed()  # the interpreters functions run with (make runtimes)
        log.log(logging.INFO if pythons.found else logging.ERROR, "%s", pythons.describe())
        self.sandboxes = Sandboxes(settings, config.state_dir, tools, cgroups, pythons)
        self.logs = LogCollector(config.redis_url, config.log_stream_maxlen)
        self.calls = CallRecorder(config.redis_url)  # each served call, for the cold-start insight
        self.executor = Executor(self.sandboxes, run_dir, self.logs, self.calls)
        self.executor.app_log_twice = config.app_log_twice
        caller = RuntimeCaller(self.executor, self.store, self.logs)
        self.invocations = Queue(config.redis_url, Keys(keyspace(config.state_dir)), caller,
                                 limit=config.async_queue_limit)  # fmt: skip
        self.dispatcher = Dispatcher(self.invocations, backoff=config.async_backoff_ms / 1000,
                                     concurrency=config.async_concurrency)  # fmt: skip
        self.captures = CaptureRecorder(config.redis_url)  # failed calls kept for replay
        self.router = Router(self.executor, config.namespace_prefix, self.invocations, self.captures)
        self.timers = Timers(self.executor, config.state_dir / "timers")
        self.consumers = Consumers(self.executor, config, self.logs)
        self.servers: list[Any] = []
        self.front: fastpath.Front | None = None  # the router's compiled front, when it serves
        self.apply_lock = asyncio.Lock()
        # Why a stored function is not deployed, when the probe's generic answer would not say it.
        self.refused: dict[tuple[str, str], str] = {}
        # Each deployed function's Deployable, with the objects it was made of (``_deployables``).
        self._deployed: dict[tuple[str, str], tuple[tuple[object, ...], Deployable]] = {}
        # The triggers the route table was last built from: an apply that changed none (a function
        # or package put) keeps the table, which costs a moment per thousand routes to build.
        self._routed: list[HTTPTrigger] = []
        log.info("%s; cgroups: %s", sandbox_settings_summary(settings),
                 f"v1 {', '.join(cgroups.roots)}" if cgroups else "none (RLIMIT_AS)")  # fmt: skip

    def _check(self, parsed: Parsed) -> None:
        if isinstance(parsed, HTTPTrigger):
            check_trigger(parsed, self.config.namespace_prefix)

    async def start(self) -> None:
        count = self.store.load()
        await self.logs.start()
        await self.calls.start()
        await self.captures.start()
        await self.apply()
        await self._forget_events()  # of namespaces deleted before a crash could forget them
        await self.dispatcher.start()  # once the functions are deployed
        loop = asyncio.get_running_loop()
        max_body = self.config.max_body_bytes
        router: Any
        if self.config.fastpath and fastpath.available():
            listener = socket.create_server(
                (self.config.host, self.config.router_port), backlog=2048,
                family=socket.AF_INET6 if ":" in self.config.host else socket.AF_INET,
            )  # fmt: skip
            router = self.front = fastpath.Front(self.router, self.executor, listener, max_body)
        else:
            if self.config.fastpath:
                log.warning("the router's compiled front is not built (make fastpath): serving without it")
            router = await loop.create_server(
                lambda: ServerProtocol(self.router.dispatch, max_body),
                self.config.host,
                self.config.router_port,
                backlog=2048,
            )
        runner = web.AppRunner(make_app(self, self.config.token, self.config.metrics_token), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.config.host, self.config.control_port).start()
        self.servers = [router, runner]
        self.executor.background(self.executor.run_reaper())
        log.info(
            "runtime: router on %s:%s (%s), control API on %s:%s, %d objects restored",
            self.config.host, self.config.router_port, "compiled front" if self.front else "Python",
            self.config.host, self.config.control_port, count,
        )  # fmt: skip

    async def put(self, plural: str, namespace: str, body: dict[str, Any], *, create: bool) -> dict[str, Any]:
        if plural == "packages":
            # Fetch and verify before accepting: a bad checksum is the caller's error, now.
            await self.packages.materialize(parse_package(body, namespace).deployment, namespace)
        raw = self.store.put(plural, namespace, body, create=create)
        await self.apply()
        return raw

    async def delete(self, key: Key) -> None:
        self.store.delete(key)
        await self.apply()
        await self._forget_events()  # the namespace's last object may have gone

    async def prepare(self, namespace: str, name: str, request_id: str) -> None:
        """The specialize probe: a worker specialized for the function as its first call would have
        it (``Executor.prepare``, which says what it raises). NotFound when the function does not
        exist or is not deployed (its package or environment is missing or could not be fetched)."""
        self.store.get(("functions", namespace, name))
        if (namespace, name) not in self.executor.deployables:
            reason = self.refused.get((namespace, name), "its package, environment or a Secret or"
                                      " ConfigMap it references is missing")  # fmt: skip
            raise NotFound(f"function {namespace}/{name} is not deployed: {reason}")
        await self.executor.prepare((namespace, name), request_id)

    def event_status(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """What the event source behind a stored trigger last did; None for other kinds."""
        sources: dict[str, Any] = {"timetriggers": self.timers, "messagequeuetriggers": self.consumers}
        source = sources.get(plural)
        return None if source is None else source.status(namespace, name)

    async def apply(self) -> None:
        """Make sandboxes, workers and routes match the stored objects. Safe to call any time."""
        async with self.apply_lock:
            quotas: list[ResourceQuota] = list(self.store.items("resourcequotas"))
            ranges: list[LimitRange] = list(self.store.items("limitranges"))
            self.executor.set_quotas(quotas, ranges)  # first: the pools below fill up to them
            environments: list[Environment] = list(self.store.items("environments"))
            # A namespace with nothing to run keeps no sandbox (and gets no new one meanwhile).
            self.sandboxes.want({e.meta.namespace for e in environments})
            await self._apply_network()
            self.executor.set_environments(environments)
            self.executor.set_deployables(await self._deployables(environments))
            triggers: list[HTTPTrigger] = list(self.store.items("httptriggers"))
            if len(triggers) != len(self._routed) or not all(map(operator.is_, triggers, self._routed)):
                self.router.set_triggers(triggers)
                self._routed = triggers
            if self.front is not None:  # before any await: no call sees the old functions' table
                self.front.refresh()
            self.dispatcher.watch({key[1] for key in self.store.raw if key[0] == "functions"})
            timetriggers: list[TimeTrigger] = list(self.store.items("timetriggers"))
            self.timers.set_triggers(timetriggers)
            secrets = {(s.meta.namespace, s.meta.name): s for s in self.store.items("secrets")}
            self.consumers.set_triggers(list(self.store.items("messagequeuetriggers")), secrets)
            await self.sandboxes.retain()
            for namespace in self.packages.namespaces() - self._namespaces():
                self.packages.remove_namespace(namespace)

    def _namespaces(self) -> set[str]:
        """The namespaces that hold at least one object."""
        return {key[1] for key in self.store.raw}

    async def _forget_events(self) -> None:
        """A namespace with no object left (its tenant was deleted) keeps no queued event and no
        dead letter: a tenant created later under the same name must not see them."""
        try:
            for namespace in await self.invocations.known_namespaces() - self._namespaces():
                log.info("namespace %s is gone: dropped its asynchronous invocations (%d keys)",
                         namespace, await self.invocations.drop_namespace(namespace))  # fmt: skip
        except AsyncUnavailable as exc:
            log.warning("could not drop the events of deleted namespaces: %s", exc)

    async def _apply_network(self) -> None:
        """Each namespace's egress: the union of what its NetworkPolicies grant; none without one."""
        policies: list[NetworkPolicy] = list(self.store.items("networkpolicies"))
        grants: dict[str, list[Grant]] = {namespace: [] for namespace in {k[1] for k in self.store.raw}}
        for policy in policies:
            grants.setdefault(policy.meta.namespace, []).extend(policy.egress or ())
        for namespace in set(grants) | set(self.sandboxes.grants):
            await self.sandboxes.set_egress(namespace, tuple(grants.get(namespace, ())))

    async def _deployables(self, environments: list[Environment]) -> list[Deployable]:
        """The deployable functions. One whose objects (itself, its package, its environment, the
        Secrets and ConfigMaps it references) are the very ones of the last apply keeps its
        Deployable: an apply, which runs at every object put, then costs an unchanged function a
        few lookups (issue 19: a runtime of 10,000 functions), not a package check and a copy of
        its files."""
        by_env = {(e.meta.namespace, e.meta.name): e for e in environments}
        result = []
        refused: dict[tuple[str, str], str] = {}
        # Functions referencing the same Secrets and ConfigMaps share one (variables, files): the
        # Deployables only read them, and a tenant's functions mostly reference the same few.
        configuration: dict[tuple[str, tuple[str, ...], tuple[str, ...]], _Configuration] = {}
        deployed: dict[tuple[str, str], tuple[tuple[object, ...], Deployable]] = {}
        for function in list(self.store.items("functions")):
            assert isinstance(function, Function)
            key = (function.meta.namespace, function.meta.name)
            inputs = self._inputs(function, by_env)
            last = self._deployed.get(key)
            if last is not None and len(last[0]) == len(inputs) and all(map(operator.is_, last[0], inputs)):
                deployable: Deployable | None = last[1]
            else:
                deployable = await self._deployable(function, by_env, configuration, refused)
            if deployable is not None:
                deployed[key] = (inputs, deployable)
                result.append(deployable)
        self._deployed = deployed
        self.refused = refused
        return result

    def _inputs(self, function: Function, by_env: dict[tuple[str, str], Environment]) -> tuple[object, ...]:
        """The stored objects a function's Deployable is made of (None for a missing one)."""
        namespace, parsed = function.meta.namespace, self.store.parsed
        return (
            function,
            parsed.get(("packages", namespace, function.package)),
            by_env.get((namespace, function.environment)),
            *(parsed.get(("configmaps", namespace, name)) for name in function.configmaps),
            *(parsed.get(("secrets", namespace, name)) for name in function.secrets),
        )

    async def _deployable(self, function: Function, by_env: dict[tuple[str, str], Environment],
                          configuration: dict[tuple[str, tuple[str, ...], tuple[str, ...]], _Configuration],
                          refused: dict[tuple[str, str], str]) -> Deployable | None:  # fmt: skip
        """The function's Deployable; None (and why in ``refused`` when not only missing) when it
        cannot be deployed now."""
        namespace = function.meta.namespace
        package = self.store.parsed.get(("packages", namespace, function.package))
        environment = by_env.get((namespace, function.environment))
        references = (namespace, function.configmaps, function.secrets)
        if references not in configuration:
            configuration[references] = self._configuration(function)
        variables, files, size = configuration[references]
        if not isinstance(package, Package) or environment is None or variables is None or files is None:
            return None  # not servable yet: its package, environment, a Secret or a ConfigMap is missing
        if size > volumes.MAX_FUNCTION_BYTES:
            refused[(namespace, function.meta.name)] = reason = (
                f"the files of its Secrets and ConfigMaps hold {size} bytes, more than"
                f" the {volumes.MAX_FUNCTION_BYTES} a function may have")  # fmt: skip
            log.error("function %s/%s: %s", namespace, function.meta.name, reason)
            return None
        try:
            path = await self.packages.materialize(package.deployment, namespace)
        except PackageUnavailable as exc:
            log.error("function %s/%s: %s", namespace, function.meta.name, exc.message)
            return None
        return Deployable(function=function, environment=environment, code_path=path,
                          variables=variables, files=files)  # fmt: skip

    def _configuration(self, function: Function) -> _Configuration:
        """The function's variables and files (None while a reference is missing), and the size
        of the files."""
        variables, files = self._variables(function), self._files(function)
        return variables, files, 0 if files is None else volumes.size(files)

    def _variables(self, function: Function) -> dict[str, str] | None:
        """The function's environment variables: the data of the ConfigMaps it references that hold
        some, a later reference's value winning (as Kubernetes' envFrom); None while one it
        references is missing (it may hold some: the function waits for it, as for its package)."""
        variables: dict[str, str] = {}
        for name in function.configmaps:
            configmap = self.store.parsed.get(("configmaps", function.meta.namespace, name))
            if not isinstance(configmap, ConfigMap):
                return None
            if configmap.environment_variables:
                variables.update(configmap.data)
        return variables

    def _files(self, function: Function) -> dict[str, bytes] | None:
        """The files the function's Secrets and ConfigMaps are (``runtime.worker.volumes``), every
        ConfigMap's included, as Fission mounts them all; None while one it references is missing."""
        namespace, files = function.meta.namespace, {}
        for name in function.secrets:
            secret = self.store.parsed.get(("secrets", namespace, name))
            if not isinstance(secret, Secret):
                return None
            for key, content in secret.data.items():
                files[volumes.path(volumes.SECRETS, namespace, name, key)] = content
        for name in function.configmaps:
            configmap = self.store.parsed.get(("configmaps", namespace, name))
            if not isinstance(configmap, ConfigMap):
                return None
            entries = {
                **{key: text.encode() for key, text in configmap.data.items()},
                **configmap.binary_data,
            }
            for key, content in entries.items():
                files[volumes.path(volumes.CONFIGS, namespace, name, key)] = content
        return files

    async def stop(self) -> None:
        for server in self.servers:
            if isinstance(server, web.AppRunner):
                await server.cleanup()
            else:
                server.close()
        await self.consumers.stop()  # before the workers go: messages in flight finish or go back
        await self.timers.stop()  # before the workers go: a fire in flight is cancelled, not failed
        await self.dispatcher.stop()  # before the workers go: a call in flight stays pending, not failed
        await self.executor.shutdown()
        await self.sandboxes.stop_all()
        if self.cgroups is not None:
            await asyncio.to_thread(self.cgroups.sweep, remove_root=True)
        await self.invocations.close()
        await self.calls.stop()
        await self.captures.stop()
        await self.logs.stop()
        if self.lock is not None:  # last: until here this state directory is ours
            self.lock.release(remove=True)
