"""Executors: poolmgr (warm generic workers per environment, specialized on first call) and
newdeploy (dedicated workers between MinScale and MaxScale), with Fission's semantics.

Everything runs on the runtime's event loop; no locks are needed because no ``await``
sits between reading and updating a worker's counters, nor between admitting a worker
against its namespace's quota and counting it (``spawning``, then ``workers``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from runtime import metrics
from runtime.http import Response, UpstreamClosed, UpstreamConnection
from runtime.objects import Environment, Function, LimitRange, ResourceQuota
from runtime.quota import DEFAULT_MEMORY, QuotaExhausted, Quotas
from runtime.spawner import Zygote, kill

log = logging.getLogger(__name__)
FnKey = tuple[str, str]  # namespace, function name
EnvKey = tuple[str, str]  # namespace, environment name
SPECIALIZE_TIMEOUT = 120.0
READY_TIMEOUT = 10.0


class TooManyRequests(Exception):
    """Every worker the function may have is busy (concurrency x requestsPerPod)."""


class Unavailable(Exception):
    """The function cannot be started (bad code, missing package): 502 to the caller."""


@dataclass(frozen=True)
class Deployable:
    """A function ready to run: its spec plus where its code is and its environment."""

    function: Function
    environment: Environment
    code_path: Path

    @property
    def key(self) -> FnKey:
        return (self.function.meta.namespace, self.function.meta.name)

    @property
    def signature(self) -> tuple[object, ...]:
        """What, if changed, makes running workers stale (re-specialization needed)."""
        f = self.function
        return (
            self.code_path,
            f.entrypoint,
            f.package_version,
            f.memory_limit,
            f.requests_per_pod,
            f.executor,
        )


@dataclass(eq=False)
class Worker:
    id: str
    pid: int
    socket: Path
    workdir: Path
    env_key: EnvKey
    executor: str
    memory_charge: int  # bytes counted against the namespace's limits.memory quota
    state: str = "warm"  # warm, specializing, specialized, retiring, dead
    function: FnKey | None = None
    active: int = 0
    last_used: float = field(default_factory=time.monotonic)
    connections: list[UpstreamConnection] = field(default_factory=list)


class Executor:
    def __init__(self, zygote: Zygote, run_dir: Path, log_socket: Path) -> None:
        self.zygote = zygote
        self.run_dir = run_dir
        self.log_socket = log_socket
        self.ids = itertools.count(1)
        self.workers: dict[str, Worker] = {}
        self.by_pid: dict[int, Worker] = {}
        self.pools: dict[EnvKey, list[Worker]] = defaultdict(list)
        self.pool_sizes: dict[EnvKey, int] = {}
        self.environments: dict[EnvKey, Environment] = {}
        self.deployables: dict[FnKey, Deployable] = {}
        self.by_function: dict[FnKey, list[Worker]] = defaultdict(list)
        self.freed: dict[FnKey, asyncio.Event] = defaultdict(asyncio.Event)
        # Cold starts under way, counted against the limits before their first await.
        self.starting: dict[FnKey, int] = defaultdict(int)
        self.quotas = Quotas()
        # (namespace, memory charge) of workers the zygote is forking, counted against the quota.
        self.spawning: list[tuple[str, int]] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.closing = False

    # ------------------------------------------------------------ desired state

    def set_quotas(self, quotas: list[ResourceQuota], ranges: list[LimitRange]) -> None:
        """New limits apply to the next worker; running ones stay (Kubernetes does not evict)."""
        self.quotas.set(quotas, ranges)

    def set_environments(self, environments: list[Environment]) -> None:
        self.environments = {(e.meta.namespace, e.meta.name): e for e in environments}
        self.pool_sizes = {key: env.poolsize for key, env in self.environments.items()}
        for key in list(self.pools):
            if key not in self.environments:
                for worker in self.pools.pop(key):
                    self.destroy(worker, "environment deleted")
        self.background(self.fill_pools())

    def set_deployables(self, deployables: list[Deployable]) -> None:
        new = {d.key: d for d in deployables}
        for key, old in self.deployables.items():
            if key not in new or new[key].signature != old.signature:
                self.retire(key)
        self.deployables = new
        self.background(self.keep_min_scale())

    def retire(self, key: FnKey) -> None:
        """Stop routing to the function's workers; each is killed once idle."""
        for worker in self.by_function.pop(key, []):
            worker.state = "retiring"
            if worker.active == 0:
                self.destroy(worker, "retired")
        metrics.workers_changed(self)

    # ------------------------------------------------------------ calls

    async def call(self, key: FnKey, method: str, target: bytes, headers: list[tuple[bytes, bytes]],
                   body: bytes) -> Response:  # fmt: skip
        deployable = self.deployables.get(key)
        if deployable is None:
            raise Unavailable("the function is not deployed")
        worker = await self.acquire(deployable)
        connection = worker.connections.pop() if worker.connections else None
        try:
            if connection is None:
                connection = await UpstreamConnection.open(str(worker.socket))
            response = await asyncio.wait_for(
                connection.send(method, target, headers, body), deployable.function.timeout
            )
        except TimeoutError:
            self.destroy(worker, "timed out")
            return Response(504, body=b"the function timed out\n")
        except (UpstreamClosed, OSError):
            self.destroy(worker, "crashed")
            return Response(502, body=b"the function's worker failed during the request\n")
        finally:
            self.release(worker, key)
        if not connection.closed and worker.state != "dead":
            worker.connections.append(connection)
        return response

    async def acquire(self, deployable: Deployable) -> Worker:
        key, function = deployable.key, deployable.function
        deadline = time.monotonic() + function.timeout
        while True:
            free = [
                w
                for w in self.by_function[key]
                if w.state == "specialized" and w.active < function.requests_per_pod
            ]
            if free:
                worker = min(free, key=lambda w: w.active)
                worker.active += 1
                return worker
            limit = function.concurrency if function.executor == "poolmgr" else function.max_scale
            if len(self.by_function[key]) + self.starting[key] < limit:
                return await self.cold_start(deployable)
            if function.executor == "poolmgr":
                raise TooManyRequests()
            # newdeploy at MaxScale: wait for a worker like requests queue at a Service
            self.freed[key].clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TooManyRequests()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.freed[key].wait(), remaining)

    def release(self, worker: Worker, key: FnKey) -> None:
        worker.active -= 1
        worker.last_used = time.monotonic()
        if worker.state == "retiring" and worker.active == 0:
            self.destroy(worker, "retired")
        self.freed[key].set()

    async def cold_start(self, deployable: Deployable) -> Worker:
        """Specialize a warm worker (poolmgr) or start a dedicated one (newdeploy).

        Raises QuotaExhausted, before anything is started or counted as a cold start, when the
        worker does not fit the namespace's quota."""
        key, function = deployable.key, deployable.function
        env_key = (function.meta.namespace, function.environment)
        charge = self.memory_limit(deployable) or DEFAULT_MEMORY
        worker = self.take_warm(env_key, charge) if function.executor == "poolmgr" else None
        if worker is None:
            self.admit(env_key[0], charge)
        metrics.COLD_STARTS.labels(function.meta.name, function.meta.namespace).inc()
        if worker is None:
            worker = await self.spawn_for(deployable)
        worker.state, worker.function, worker.active = "specializing", key, 1
        self.by_function[key].append(worker)
        self.background(self.fill_pools())
        try:
            await self.specialize(worker, deployable)
        except (Unavailable, UpstreamClosed, OSError, TimeoutError) as exc:
            metrics.COLD_START_ERRORS.labels(function.meta.name, function.meta.namespace).inc()
            self.destroy(worker, f"specialization failed: {exc}")
            raise Unavailable(f"the function could not be loaded: {exc}") from None
        worker.state = "specialized"
        metrics.workers_changed(self)
        return worker

    async def spawn_for(self, deployable: Deployable) -> Worker:
        """A new worker for the function, counted in ``starting`` while it forks."""
        key, function = deployable.key, deployable.function
        memory = self.memory_limit(deployable)
        self.starting[key] += 1
        try:
            env_key = (function.meta.namespace, function.environment)
            return await self.spawn(env_key, function.executor, memory, memory or DEFAULT_MEMORY)
        except Unavailable:
            metrics.COLD_START_ERRORS.labels(function.meta.name, function.meta.namespace).inc()
            raise
        finally:
            self.starting[key] -= 1

    def take_warm(self, env_key: EnvKey, charge: int) -> Worker | None:
        """Pop a warm worker of the pool, re-charged at the function's ``charge``; None when the
        pool is empty, QuotaExhausted when the function's larger memory limit does not fit."""
        pool = self.pools.get(env_key)
        if not pool:
            return None
        self.admit(env_key[0], charge - pool[-1].memory_charge, pods=0)
        worker = pool.pop()
        worker.memory_charge = charge
        return worker

    async def specialize(self, worker: Worker, deployable: Deployable) -> None:
        function = deployable.function
        body = json.dumps({
            "filepath": str(deployable.code_path),
            "functionName": function.entrypoint,
            "FunctionMetadata": {"name": function.meta.name, "namespace": function.meta.namespace},
            # Extensions of Fission's body: a generic poolmgr worker learns its limits here.
            "concurrency": function.requests_per_pod,
            "memory_bytes": self.memory_limit(deployable),
        }).encode()  # fmt: skip
        connection = await UpstreamConnection.open(str(worker.socket))
        headers = [(b"content-type", b"application/json")]
        response = await asyncio.wait_for(
            connection.send("POST", b"/v2/specialize", headers, body), SPECIALIZE_TIMEOUT
        )
        if response.status != 200:
            connection.close()
            raise Unavailable(response.body.decode(errors="replace").strip()[:500])
        worker.connections.append(connection)

    # ------------------------------------------------------------ quota

    def memory_limit(self, deployable: Deployable) -> int | None:
        """The function's memory limit, else its environment's, else the namespace's LimitRange
        default (as Kubernetes' admission fills in a container's limit); None means none."""
        function, environment = deployable.function, deployable.environment
        default = self.quotas.of(function.meta.namespace).default_memory
        return function.memory_limit or environment.memory_limit or default

    def pool_memory(self, env_key: EnvKey) -> tuple[int | None, int]:
        """(memory limit, memory charge) of a warm worker: its environment's limit, else the
        LimitRange default, else DEFAULT_MEMORY for the charge only (no limit is imposed)."""
        environment = self.environments.get(env_key)
        memory = environment.memory_limit if environment else None
        return memory, memory or self.quotas.of(env_key[0]).default_memory or DEFAULT_MEMORY

    def usage(self, namespace: str) -> tuple[int, int]:
        """(worker processes, bytes charged) of the namespace, counting workers still forking."""
        charges = [w.memory_charge for w in self.workers.values() if w.env_key[0] == namespace]
        charges += [memory for owner, memory in self.spawning if owner == namespace]
        return len(charges), sum(charges)

    def admit(self, namespace: str, memory: int, pods: int = 1) -> None:
        """Raise QuotaExhausted unless ``pods`` more workers charging ``memory`` more bytes fit."""
        self.quotas.admit(namespace, pods=pods, memory=memory, usage=lambda: self.usage(namespace))

    # ------------------------------------------------------------ worker processes

    async def spawn(self, env_key: EnvKey, executor: str, memory: int | None, charge: int) -> Worker:
        """Fork a worker with ``memory`` as its RLIMIT_AS, charging ``charge`` bytes to its namespace.

        Raises QuotaExhausted (before forking) when it does not fit the quota, Unavailable when
        it does not start."""
        self.admit(env_key[0], charge)
        worker_id = f"w{next(self.ids)}"
        workdir = self.run_dir / "workers" / worker_id
        workdir.mkdir(parents=True, exist_ok=True)
        socket = self.run_dir / f"{worker_id}.sock"
        reservation = (env_key[0], charge)
        self.spawning.append(reservation)
        try:
            pid = await self.zygote.spawn(
                worker_id=worker_id, socket=socket, workdir=workdir, memory=memory, concurrency=1,
                env={"RUNTIME_LOG_SOCKET": str(self.log_socket), "HOME": str(workdir)},
            )  # fmt: skip
        finally:
            self.spawning.remove(reservation)
        worker = Worker(id=worker_id, pid=pid, socket=socket, workdir=workdir, env_key=env_key,
                        executor=executor, memory_charge=charge)  # fmt: skip
        self.workers[worker_id] = worker
        self.by_pid[pid] = worker
        self.watch(worker)
        await self.wait_ready(worker)
        metrics.workers_changed(self)
        return worker

    def watch(self, worker: Worker) -> None:
        """Get told by the kernel when the worker exits (a pidfd), whatever killed it."""
        try:
            fd = os.pidfd_open(worker.pid)
        except ProcessLookupError:
            self.destroy(worker, "exited at start")
            return
        loop = asyncio.get_running_loop()

        def exited() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            self.destroy(worker, "exited")

        loop.add_reader(fd, exited)

    async def wait_ready(self, worker: Worker) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if worker.state == "dead":
                raise Unavailable("the worker exited while starting")
            try:
                connection = await UpstreamConnection.open(str(worker.socket))
            except OSError:
                if time.monotonic() > deadline:
                    self.destroy(worker, "never became ready")
                    raise Unavailable("the worker did not start in time") from None
                await asyncio.sleep(0.001)
                continue
            worker.connections.append(connection)
            return

    def destroy(self, worker: Worker, reason: str) -> None:
        """Kill and forget a worker. Idempotent."""
        if worker.state == "dead":
            return
        log.info("worker %s (pid %s, %s) removed: %s", worker.id, worker.pid, worker.function, reason)
        worker.state = "dead"
        kill(worker.pid)
        for connection in worker.connections:
            connection.close()
        self.workers.pop(worker.id, None)
        self.by_pid.pop(worker.pid, None)
        if worker in self.pools.get(worker.env_key, []):
            self.pools[worker.env_key].remove(worker)
        if worker.function and worker in self.by_function.get(worker.function, []):
            self.by_function[worker.function].remove(worker)
            self.freed[worker.function].set()
        worker.socket.unlink(missing_ok=True)
        shutil.rmtree(worker.workdir, ignore_errors=True)
        metrics.workers_changed(self)
        if not self.closing:
            self.background(self.fill_pools())

    # ------------------------------------------------------------ keeping things warm

    async def fill_pools(self) -> None:
        """Top every pool up to its poolsize, stopping short at the namespace's quota: a worker
        leaving or a quota change calls this again, so nothing retries in a loop."""
        if self.closing:
            return
        for env_key in list(self.pool_sizes):
            memory, charge = self.pool_memory(env_key)
            while len(self.pools[env_key]) < self.pool_sizes.get(env_key, 0):
                try:
                    worker = await self.spawn(env_key, "poolmgr", memory, charge)
                except QuotaExhausted:
                    break
                except (Unavailable, RuntimeError, OSError):
                    log.exception("could not fill the pool of %s", env_key)
                    return
                self.pools[env_key].append(worker)
        metrics.workers_changed(self)

    async def keep_min_scale(self) -> None:
        if self.closing:
            return
        for key, deployable in list(self.deployables.items()):
            function = deployable.function
            while (
                function.executor == "newdeploy"
                and len(self.by_function[key]) + self.starting[key] < function.min_scale
            ):
                try:
                    worker = await self.cold_start(deployable)
                except QuotaExhausted:
                    break  # tried again on the reaper's next tick
                except Unavailable:
                    log.exception("could not keep %s at MinScale", key)
                    break
                self.release(worker, key)

    def reap_idle(self) -> None:
        """poolmgr workers idle past idletimeout go; newdeploy ones down to MinScale."""
        now = time.monotonic()
        for key, workers in list(self.by_function.items()):
            deployable = self.deployables.get(key)
            if deployable is None:
                continue
            function = deployable.function
            keep = function.min_scale if function.executor == "newdeploy" else 0
            idle = [w for w in workers if w.active == 0 and now - w.last_used > function.idle_timeout]
            for worker in idle[: max(0, len(workers) - keep)]:
                self.destroy(worker, "idle")

    async def run_reaper(self, every: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every)
            self.reap_idle()
            await self.keep_min_scale()  # also brings back a MinScale worker that died

    def background(self, coroutine: object) -> None:
        assert asyncio.iscoroutine(coroutine)
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def shutdown(self) -> None:
        self.closing = True
        for task in list(self.tasks):
            task.cancel()
        for worker in list(self.workers.values()):
            self.destroy(worker, "runtime stopping")
