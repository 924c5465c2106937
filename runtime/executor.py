"""Executors: poolmgr (warm generic workers per environment, specialized on first call) and
newdeploy (dedicated workers between MinScale and MaxScale), with Fission's semantics.

A function's environment variables reach its worker with its specialization, for both executors
(a poolmgr worker is already running, generic, when it is chosen): the worker sets them before
it imports the function (``runtime.worker.environment``). They are part of the function's
``Deployable.signature``, so a change of them retires its workers and the next call runs with
the new values.

So do its Secrets and ConfigMaps as files (``/secrets/...``, ``/configs/...``;
``runtime.worker.volumes``): their bytes travel in the specialize request, over the worker's own
socket (never through the host's disk, never logged), and a sandboxed worker mounts them
read-only for itself before it drops its capabilities. Their digest is part of the signature: a
change of their data or of the references retires the workers, and the next call reads the new
files. With the sandbox off (``RUNTIME_SANDBOX=off``) a worker could neither make them read-only
nor its own: they are not sent, and the runtime logs a warning at each such cold start.

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
import socket
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from runtime import metrics
from runtime.calls import CallRecorder
from runtime.http import (
    REQUEST_ID_HEADER,
    Outcome,
    Response,
    UpstreamClosed,
    UpstreamConnection,
    request_id_or_new,
)
from runtime.logs import LogCollector, Output
from runtime.objects import Environment, Function, LimitRange, ResourceQuota
from runtime.quota import DEFAULT_MEMORY, QuotaExhausted, Quotas
from runtime.sandbox.cgroups import Cgroup
from runtime.sandbox.tenant import Sandboxes
from runtime.spawner import Spawned, ZygoteGone, kill
from runtime.worker import volumes

log = logging.getLogger(__name__)
FnKey = tuple[str, str]  # namespace, function name
EnvKey = tuple[str, str]  # namespace, environment name
SPECIALIZE_TIMEOUT = 120.0
# After a failed load: how long to wait for the killed worker's output to be read, then stored.
OUTPUT_DRAIN_TIMEOUT = 5.0
LOG_FLUSH_TIMEOUT = 5.0
# How long after a cold start its pool is refilled: a fork meanwhile would slow its first call.
REFILL_DELAY_S = 0.02


class TooManyRequests(Exception):
    """Every worker the function may have is busy (concurrency x requestsPerPod)."""


class Unavailable(Exception):
    """The function cannot be started (bad code, missing package): 502 to the caller."""


class LoadFailed(Unavailable):
    """The function's code did not load: ``reason`` in one line, ``traceback`` what its worker
    wrote to stderr while loading it ("" when nothing), all logged under ``request_id``."""

    def __init__(self, reason: str, traceback: str, request_id: str) -> None:
        super().__init__(f"the function could not be loaded: {reason}")
        self.reason = reason
        self.traceback = traceback
        self.request_id = request_id


@dataclass(frozen=True)
class Deployable:
    """A function ready to run: its spec plus where its code is, its environment, its
    environment variables (from the ConfigMaps it references), and the files its Secrets and
    ConfigMaps are (``{"/secrets/<ns>/<name>/<key>": bytes}``; never in a repr: secrets)."""

    function: Function
    environment: Environment
    code_path: Path
    variables: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict, repr=False)

    @cached_property
    def files_digest(self) -> str:
        """Names the files' paths and contents (hashed once: the signature is compared at every apply)."""
        return volumes.digest(self.files)

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
            self.environment.python,  # its workers come from a zygote of that interpreter
            tuple(sorted(self.variables.items())),  # set once, at specialization
            self.files_digest,  # mounted once, at specialization
        )


@dataclass(eq=False)
class Worker:
    id: str
    pid: int  # as the runtime sees it (the worker's own pid namespace has another)
    pidfd: int  # names this process for as long as it is open: signals never reach another
    socket: Path
    workdir: Path | None  # its working directory on the host; None in a sandbox (it has /tmp)
    env_key: EnvKey
    python: str  # the Python version ("3.12") of the zygote it was forked from
    executor: str
    memory_charge: int  # bytes counted against the namespace's limits.memory quota
    cgroup: Cgroup | None = None  # its memory and pids limits, where the machine has cgroups
    state: str = "warm"  # warm, specializing, specialized, retiring, dead
    function: FnKey | None = None
    function_uid: str = ""  # the Function object's metadata.uid, in its log records
    output: Output | None = None  # its output channels, as the log collector reads them
    active: int = 0
    last_used: float = field(default_factory=time.monotonic)
    connections: list[UpstreamConnection] = field(default_factory=list)
    # The compiled front's idle connections to it (runtime.fastpath: a ``Pool``, made at its first
    # fast call); closed when the worker is destroyed.
    fast_pool: Any = None
    # "pool" or "new" from its cold start until it is first released: the call that acquires it
    # then is the one its cold start was for (runtime/calls.py records the call as cold).
    fresh: str = ""

    def take_connection(self) -> UpstreamConnection | None:
        """An open connection to the worker, taken from those kept; None when none is (one the
        worker closed meanwhile is dropped)."""
        while self.connections:
            connection = self.connections.pop()
            if not connection.closed:
                return connection
        return None

    def owner(self) -> tuple[str, str, str] | None:
        """Whose output this worker's lines are, (namespace, function, function uid); None while
        it is generic."""
        if self.function is None:
            return None
        return (self.function[0], self.function[1], self.function_uid)


class Waiters:
    """Calls waiting for a worker, woken one at a time in arrival order (an ``asyncio.Event``
    woke them all for each free worker: with 30 waiting, 29 went back to sleep, each time).

    A woken call that then finds no free worker (another took it first) waits again at the back.
    A call woken but cancelled before it could look passes its turn on, so none is lost."""

    def __init__(self) -> None:
        self.queue: deque[asyncio.Future[None]] = deque()

    async def wait(self, timeout: float) -> None:
        """Until woken; TimeoutError after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        turn = loop.create_future()
        self.queue.append(turn)
        timer = loop.call_later(timeout, _expire, turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled() and turn.exception() is None:
                self.wake_one()  # woken, but it will not look: the next one does
            raise
        finally:
            timer.cancel()
            if not turn.done():
                turn.cancel()
            with contextlib.suppress(ValueError):
                self.queue.remove(turn)  # still queued only when it timed out or was cancelled

    def wake_one(self) -> None:
        while self.queue:
            turn = self.queue.popleft()
            if not turn.done():
                turn.set_result(None)
                return


def _expire(turn: asyncio.Future[None]) -> None:
    if not turn.done():
        turn.set_exception(TimeoutError())


class Executor:
    def __init__(self, sandboxes: Sandboxes, run_dir: Path, logs: LogCollector,
                 calls: CallRecorder | None = None) -> None:  # fmt: skip
        self.sandboxes = sandboxes
        self.calls = calls  # where each served call is recorded (none: not recorded)
        self.run_dir = run_dir
        self.sockets = run_dir / "workers"
        self.sockets.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.logs = logs
        self.ids = itertools.count(1)
        self.workers: dict[str, Worker] = {}
        self.pools: dict[EnvKey, list[Worker]] = defaultdict(list)
        self.filling: dict[EnvKey, int] = defaultdict(int)  # pool workers being started
        self.pool_sizes: dict[EnvKey, int] = {}
        self.environments: dict[EnvKey, Environment] = {}
        self.deployables: dict[FnKey, Deployable] = {}
        self.min_scaled: dict[FnKey, Deployable] = {}  # the newdeploy ones with MinScale > 0
        self.by_function: dict[FnKey, list[Worker]] = defaultdict(list)
        # Calls waiting for a newdeploy function's worker at MaxScale, first come first served.
        self.freed: dict[FnKey, Waiters] = defaultdict(Waiters)
        # Cold starts under way, counted against the limits before their first await.
        self.starting: dict[FnKey, int] = defaultdict(int)
        # The same, with the calls that wait for each one's worker (``cold_start``).
        self.launching: dict[FnKey, list[_Start]] = defaultdict(list)
        self.quotas = Quotas()
        # (namespace, memory charge) of workers the zygote is forking, counted against the quota.
        self.spawning: list[tuple[str, int]] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.closing = False
        self.app_log_twice = False  # RUNTIME_APP_LOG_TWICE: the app logger's lines on stderr too, as Fission

    # ------------------------------------------------------------ desired state

    def set_quotas(self, quotas: list[ResourceQuota], ranges: list[LimitRange]) -> None:
        """New limits apply to the next worker; running ones stay (Kubernetes does not evict)."""
        self.quotas.set(quotas, ranges)

    def set_environments(self, environments: list[Environment]) -> None:
        self.environments = {(e.meta.namespace, e.meta.name): e for e in environments}
        self.pool_sizes = {key: env.poolsize for key, env in self.environments.items()}
        for key in list(self.pools):
            environment = self.environments.get(key)
            if environment is None:
                for worker in self.pools.pop(key):
                    self.destroy(worker, "environment deleted")
                continue
            # Its functions' workers retire with their signature (Deployable.signature).
            for worker in [w for w in self.pools[key] if w.python != environment.python]:
                self.destroy(worker, f"its environment runs python {environment.python} now")
        self.background(self.fill_pools())

    def set_deployables(self, deployables: list[Deployable]) -> None:
        new = {d.key: d for d in deployables}
        for key, old in self.deployables.items():
            if new.get(key) is old:  # unchanged (Runtime._deployables keeps it): nothing to compare
                continue
            if key not in new or new[key].signature != old.signature:
                self.retire(key)
        self.deployables = new
        # The reaper's tick looks at these only, not at every function (10,000 of them cost it 10 ms).
        self.min_scaled = {
            key: d for key, d in new.items() if d.function.executor == "newdeploy" and d.function.min_scale
        }
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
                   body: bytes, *, request_id: str = "") -> Response:  # fmt: skip
        """``request_id`` names a cold start's specialize request (its load errors are logged so)."""
        deployable = self.deployables.get(key)
        if deployable is None:
            raise Unavailable("the function is not deployed")
        began, clock = time.time(), time.perf_counter()
        worker = self.take_free(deployable) or await self.acquire(deployable, request_id)
        flight = _Flight(self, key, worker, began, clock)  # no await since acquire returned
        connection = flight.connection = worker.take_connection()
        try:
            if connection is None:
                connection = flight.connection = await UpstreamConnection.open(str(worker.socket))
            timeout = deployable.function.timeout
            outcome: Outcome = await connection.send(method, target, headers, body, timeout)
        except (TimeoutError, UpstreamClosed, OSError) as exc:
            outcome = exc
        except BaseException:
            flight.connection = None  # its answer, if any, is nobody's: not kept
            self.finish(flight, None, 502)
            raise
        response = answer_of(outcome)
        self.finish(flight, outcome, response.status)
        return response

    def call_now(self, deployable: Deployable, method: str, target: bytes, headers: list[tuple[bytes, bytes]],
                 body: bytes, done: Callable[[Response], None]) -> bool:  # fmt: skip
        """``call``'s warm path, with no task and no future: when a specialized worker of the
        function is free and has a connection open, send it the call and return True; ``done``
        gets the answer (the same as ``call`` returns) from the connection's callback. Otherwise
        (a cold start, a wait at MaxScale, a connection to open) return False having changed
        nothing: ``call`` is the way then."""
        worker = self._free(deployable)
        connection = worker.take_connection() if worker is not None else None
        if worker is None or connection is None:
            return False
        began, clock = (time.time(), time.perf_counter()) if self.calls is not None else (0.0, 0.0)
        worker.active += 1
        flight = _Flight(self, deployable.key, worker, began, clock, done)
        flight.connection = connection
        connection.start(method, target, headers, body, deployable.function.timeout, flight.settle)
        return True

    def finish(self, flight: _Flight, outcome: Outcome | None, status: int) -> None:
        """The end of a call that had a worker, once its answer (of ``status``) is given, whatever
        its outcome (None: abandoned, cancelled): the worker is released (destroyed when it timed
        out or failed), its connection kept for the next call when it can be, the call recorded."""
        worker, key, connection = flight.worker, flight.key, flight.connection
        if isinstance(outcome, TimeoutError):
            self.destroy(worker, "timed out")
        elif outcome is not None and not isinstance(outcome, Response):
            self.destroy(worker, "crashed")
        self.release(worker, key)
        if self.calls is not None:
            self.calls.record(key[0], key[1], start=flight.began, duration=time.perf_counter() - flight.clock,
                              startup=flight.startup, cold=flight.cold, status=status)  # fmt: skip
        if connection is not None and not connection.closed and worker.state != "dead":
            worker.connections.append(connection)

    def fast_finished(self, worker: Worker, key: FnKey, failure: str, status: int, began: float,
                      duration: float) -> None:  # fmt: skip
        """``finish`` for a call the compiled front made (runtime.fastpath), drained after its
        answer: it has kept or closed its connection, and given back the worker's count unless
        the call failed (``failure``: "timed out", "crashed"; "" when answered), so that no call
        took a worker about to be removed."""
        if failure:
            self.destroy(worker, failure)
            worker.active -= 1
        self._released(worker, key)
        if self.calls is not None:
            self.calls.record(key[0], key[1], start=began, duration=duration, startup=0.0, cold="",
                              status=status)  # fmt: skip

    async def acquire(self, deployable: Deployable, request_id: str = "") -> Worker:
        key, function = deployable.key, deployable.function
        deadline = time.monotonic() + function.timeout
        while True:
            worker = self.take_free(deployable)
            if worker is not None:
                return worker
            start = self._joinable(deployable)
            if start is not None:
                return await self._join(start, key)
            limit = function.concurrency if function.executor == "poolmgr" else function.max_scale
            if len(self.by_function[key]) + self.starting[key] < limit:
                return await self.cold_start(deployable, request_id)
            if function.executor == "poolmgr":
                raise TooManyRequests()
            # newdeploy at MaxScale: wait for a worker like requests queue at a Service
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TooManyRequests()
            with contextlib.suppress(TimeoutError):
                await self.freed[key].wait(remaining)

    def take_free(self, deployable: Deployable) -> Worker | None:
        """``_free``'s worker, counted as taken; None when every one is at its limit."""
        worker = self._free(deployable)
        if worker is not None:
            worker.active += 1
        return worker

    def _free(self, deployable: Deployable) -> Worker | None:
        """The specialized worker of the function with the fewest calls in flight, below its
        ``requestsPerPod`` (the first of them; an idle one ends the search)."""
        best: Worker | None = None
        per_pod = deployable.function.requests_per_pod
        for worker in self.by_function.get(deployable.key, ()):
            if worker.state == "specialized" and worker.active < per_pod:
                if worker.active == 0:
                    return worker
                if best is None or worker.active < best.active:
                    best = worker
        return best

    async def prepare(self, key: FnKey, request_id: str) -> None:
        """Have the function served by a specialized worker without calling it (the control API's
        specialize probe): one is acquired as a first call would, cold-started when none is free,
        and released at once, so it stays (poolmgr: until idle; newdeploy: counted against
        MaxScale). Raises what ``acquire`` does; Unavailable when the function is not deployed."""
        deployable = self.deployables.get(key)
        if deployable is None:
            raise Unavailable("the function is not deployed")
        worker = await self.acquire(deployable, request_id)
        self.release(worker, key)

    def release(self, worker: Worker, key: FnKey) -> None:
        worker.active -= 1
        self._released(worker, key)

    def _released(self, worker: Worker, key: FnKey) -> None:
        """``release`` after the count: the compiled front gives the count back itself, at once."""
        worker.fresh = ""  # a worker warmed without a call (probe, MinScale) is warm for the next
        worker.last_used = time.monotonic()
        if worker.state == "retiring" and worker.active == 0:
            self.destroy(worker, "retired")
        self._wake(key)

    def _wake(self, key: FnKey) -> None:
        """A worker of ``key`` is free, or gone (room for a new one): the first waiting call tries."""
        waiters = self.freed.get(key)
        if waiters is not None:
            waiters.wake_one()

    def _joinable(self, deployable: Deployable) -> _Start | None:
        """A cold start of the function as it is now (not of a version it replaced: that one
        fails) under way, with a seat left for one more call."""
        signature = None
        for start in self.launching.get(deployable.key, ()):
            if start.joined < start.seats:
                signature = signature or deployable.signature
                if start.signature == signature:
                    return start
        return None

    async def _join(self, start: _Start, key: FnKey) -> Worker:
        """Wait for the worker of ``start``, counted for this call once it is there; what the
        cold start raised, when it failed."""
        start.joined += 1
        try:
            return await asyncio.shield(start.worker)
        except asyncio.CancelledError:
            if start.worker.done() and not start.worker.cancelled() and start.worker.exception() is None:
                self.release(start.worker.result(), key)  # counted for this call, which goes away
            else:
                start.joined -= 1
            raise

    async def cold_start(self, deployable: Deployable, request_id: str = "") -> Worker:
        """Specialize a warm worker (poolmgr) or start a dedicated one (newdeploy).

        Calls that come meanwhile may wait for this worker rather than start their own, up to its
        ``requestsPerPod`` with this one (``_join``): a burst at scale zero starts one worker per
        ``requestsPerPod`` calls, not one per call. They get what this one raises.

        Raises QuotaExhausted, before anything is started or counted as a cold start, when the
        worker does not fit the namespace's quota; LoadFailed when the code does not load.
        ``request_id`` (the triggering call's; a new one when "") names the specialize request."""
        key = deployable.key
        start = _Start(deployable.function.requests_per_pod - 1, deployable.signature)
        starts = self.launching[key]
        starts.append(start)
        try:
            worker = await self._start_worker(deployable, request_id)
        except BaseException as exc:
            start.fail(exc)
            raise
        finally:
            starts.remove(start)
            if not starts:
                del self.launching[key]
        worker.active += start.joined
        start.worker.set_result(worker)
        return worker

    async def _start_worker(self, deployable: Deployable, request_id: str) -> Worker:
        key, function = deployable.key, deployable.function
        env_key = (function.meta.namespace, function.environment)
        charge = self.memory_limit(deployable) or DEFAULT_MEMORY
        worker = self.take_warm(env_key, charge) if function.executor == "poolmgr" else None
        pooled = worker is not None
        if worker is None:
            self.admit(env_key[0], charge)
        metrics.COLD_STARTS.labels(function.meta.name, function.meta.namespace).inc()
        if worker is None:
            worker = await self.spawn_for(deployable)
        worker.state, worker.function, worker.active = "specializing", key, 1
        worker.fresh = "pool" if pooled else "new"
        worker.function_uid = function.meta.uid
        self.by_function[key].append(worker)
        try:
            await self.specialize(worker, deployable, request_id or request_id_or_new(None).decode())
        except LoadFailed:
            metrics.COLD_START_ERRORS.labels(function.meta.name, function.meta.namespace).inc()
            raise
        finally:
            # After the cold start's call, not during it: forking the replacement would compete
            # with the specialization and the first call for the CPU.
            self.background(self._refill_after_cold_start())
        current = self.deployables.get(key)
        if current is None or current.signature != deployable.signature:  # changed or removed meanwhile
            self.destroy(worker, "its function changed while it started")
            raise Unavailable("the function changed while it started")
        worker.state = "specialized"
        # While the worker answers the call, not before the call is sent: it reads every worker.
        asyncio.get_running_loop().call_soon(metrics.workers_changed, self)
        return worker

    async def spawn_for(self, deployable: Deployable) -> Worker:
        """A new worker for the function, counted in ``starting`` while it forks."""
        key, function = deployable.key, deployable.function
        memory = self.memory_limit(deployable)
        self.starting[key] += 1
        try:
            env_key = (function.meta.namespace, function.environment)
            charge, python = memory or DEFAULT_MEMORY, deployable.environment.python
            return await self.spawn(env_key, function.executor, memory, charge, python=python)
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

    async def specialize(self, worker: Worker, deployable: Deployable, request_id: str) -> None:
        """Load the function in ``worker`` with a specialize request named ``request_id``.

        Raises LoadFailed when it does not load, once the worker is destroyed and what it wrote
        under ``request_id`` is read and stored (its traceback: the caller may look for it at
        once); when the worker wrote nothing there, the runtime logs why itself."""
        with self.logs.tap(request_id) as stderr:
            try:
                await self._specialize_request(worker, deployable, request_id)
            except (Unavailable, UpstreamClosed, OSError, TimeoutError) as exc:
                reason = _reason(exc)
                self.destroy(worker, f"specialization failed: {reason}")
                if worker.output is not None:  # it ends once the killed worker's lines are read
                    await worker.output.drained(OUTPUT_DRAIN_TIMEOUT)
                owner = worker.owner()
                if not stderr and owner is not None:
                    self.logs.note(owner, request_id, f"the function failed to load: {reason}")
                await self.logs.flushed(LOG_FLUSH_TIMEOUT)
                raise LoadFailed(reason, "\n".join(stderr), request_id) from None

    async def _specialize_request(self, worker: Worker, deployable: Deployable, request_id: str) -> None:
        function = deployable.function
        memory = self.memory_limit(deployable)
        if worker.cgroup is not None:
            worker.cgroup.limit_memory(memory)
            worker.cgroup.limit_pids(self.sandboxes.settings.worker_pids + function.requests_per_pod)
        namespace = function.meta.namespace
        files = volumes.encoded(deployable.files) if self.sandboxes.enabled else {}
        if deployable.files and not self.sandboxes.enabled:
            log.warning("function %s/%s: its Secrets and ConfigMaps are not mounted as files: that needs"
                        " the sandbox (RUNTIME_SANDBOX=off)", namespace, function.meta.name)  # fmt: skip
        body = json.dumps({
            "filepath": self.sandboxes.package_path(namespace, deployable.code_path),
            "functionName": function.entrypoint,
            "FunctionMetadata": {"name": function.meta.name, "namespace": namespace,
                                 "uid": function.meta.uid, "resourceVersion": function.meta.resource_version},
            # Extensions of Fission's body: a generic poolmgr worker learns its limits here
            # (memory only without cgroups: RLIMIT_AS is then the limit).
            "concurrency": function.requests_per_pod,
            "memory_bytes": memory if worker.cgroup is None else None,
            "app_log_twice": self.app_log_twice,
            "environment_variables": deployable.variables,  # in os.environ before the import
            "mounted_files": files,  # read-only files under /secrets and /configs
        }).encode()  # fmt: skip
        # The connection wait_ready opened when the worker started, unless the worker closed it.
        connection = worker.take_connection()
        if connection is None:
            connection = await UpstreamConnection.open(str(worker.socket))
        headers = [(b"content-type", b"application/json"), (REQUEST_ID_HEADER, request_id.encode())]
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

    async def spawn(self, env_key: EnvKey, executor: str, memory: int | None, charge: int, *,
                    python: str) -> Worker:  # fmt: skip
        """Fork a worker of Python ``python`` limited to ``memory`` bytes, charging ``charge`` bytes
        to its namespace.

        Raises QuotaExhausted (before forking) when it does not fit the quota, Unavailable when
        it does not start."""
        self.admit(env_key[0], charge)
        reservation = (env_key[0], charge)
        self.spawning.append(reservation)
        try:
            worker = await self._fork(env_key, executor, memory, charge, python)
        finally:
            self.spawning.remove(reservation)
        self.workers[worker.id] = worker
        self.watch(worker)
        await self.wait_ready(worker)
        metrics.workers_changed(self)
        return worker

    async def _fork(self, env_key: EnvKey, executor: str, memory: int | None, charge: int,
                    python: str) -> Worker:  # fmt: skip
        """The worker process: forked by its namespace's zygote of ``python`` with a listening
        socket, a log connection and stdout/stderr pipes that only the runtime holds the other ends
        of; moved into its cgroup before it can run any function code (that waits for specialization)."""
        namespace, worker_id = env_key[0], f"w{next(self.ids)}"
        path = self.sockets / f"{worker_id}.sock"
        workdir = None if self.sandboxes.enabled else self.run_dir / "workers" / worker_id
        cgroup = self.sandboxes.worker_cgroup(namespace, worker_id)
        channels = _Channels(path)
        spawned: Spawned | None = None
        try:
            if cgroup is not None:
                cgroup.limit_memory(memory)
            if workdir is not None:
                workdir.mkdir(parents=True, exist_ok=True)
            spawned = await self._ask_zygote(namespace, python, worker_id, workdir, memory, cgroup, channels)
            worker = Worker(
                id=worker_id, pid=spawned.pid, pidfd=spawned.pidfd, socket=path, workdir=workdir,
                env_key=env_key, python=python, executor=executor, memory_charge=charge, cgroup=cgroup,
            )  # fmt: skip
            worker.output = await self.logs.attach(worker.owner, *channels.take_ours())
        except BaseException:
            if spawned is not None:  # forked, but not ours to run: it must not live on
                kill(spawned.pidfd)
                os.close(spawned.pidfd)
            channels.close()
            path.unlink(missing_ok=True)
            if cgroup is not None and not cgroup.remove():
                self.background(_remove_when_empty(cgroup))
            raise
        return worker

    async def _ask_zygote(self, namespace: str, python: str, worker_id: str, workdir: Path | None,
                          memory: int | None, cgroup: Cgroup | None,
                          channels: _Channels) -> Spawned:  # fmt: skip
        # The worker moves itself into its cgroups, first thing (see Cgroup.open_doors).
        doors = cgroup.open_doors() if cgroup is not None else []
        request = {
            "id": worker_id, "concurrency": 1,
            "env": {"HOME": str(workdir) if workdir else "/tmp",  # noqa: S108 - the sandbox's own
                    "PATH": self.sandboxes.worker_path(python)},
            "cwd": str(workdir) if workdir else "/tmp",  # noqa: S108
            "memory_bytes": memory if cgroup is None else None,
            "tmp_bytes": self.sandboxes.settings.tmp_bytes if self.sandboxes.enabled else None,
            "cgroups": len(doors),
        }  # fmt: skip
        try:
            zygote = await self.sandboxes.zygote(namespace, python)
            spawned = await zygote.spawn(request, [*channels.theirs(), *doors])
        except (ZygoteGone, RuntimeError, OSError) as exc:
            raise Unavailable(f"the worker could not be started: {exc}") from None
        finally:
            channels.close_theirs()
            for door in doors:
                os.close(door)
        if spawned.pid <= 0:
            os.close(spawned.pidfd)
            raise Unavailable("the worker exited at start")
        return spawned

    def watch(self, worker: Worker) -> None:
        """Get told by the kernel when the worker exits (its pidfd turns readable), whatever
        killed it; then forget it and free what it held."""
        loop = asyncio.get_running_loop()

        def exited() -> None:
            loop.remove_reader(worker.pidfd)
            self.destroy(worker, "exited")
            os.close(worker.pidfd)
            if worker.cgroup is not None and not worker.cgroup.remove():
                self.background(_remove_when_empty(worker.cgroup))

        loop.add_reader(worker.pidfd, exited)

    async def wait_ready(self, worker: Worker) -> None:
        """Open the first connection. The runtime made the listening socket, so this succeeds at
        once; the worker answers once it has set itself up."""
        if worker.state == "dead":
            raise Unavailable("the worker exited while starting")
        try:
            connection = await UpstreamConnection.open(str(worker.socket))
        except OSError as exc:
            self.destroy(worker, "never became ready")
            raise Unavailable(f"the worker did not start: {exc}") from None
        worker.connections.append(connection)

    def destroy(self, worker: Worker, reason: str) -> None:
        """Kill and forget a worker. Idempotent."""
        if worker.state == "dead":
            return
        log.info("worker %s (pid %s, %s) removed: %s", worker.id, worker.pid, worker.function, reason)
        worker.state = "dead"
        kill(worker.pidfd)
        for connection in worker.connections:
            connection.close()
        if worker.fast_pool is not None:
            worker.fast_pool.close()
        self.workers.pop(worker.id, None)
        if worker in self.pools.get(worker.env_key, []):
            self.pools[worker.env_key].remove(worker)
        if worker.function and worker in self.by_function.get(worker.function, []):
            self.by_function[worker.function].remove(worker)
            self._wake(worker.function)
        worker.socket.unlink(missing_ok=True)
        if worker.workdir is not None:
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
            # Counting the workers other fills are starting keeps concurrent calls from overshooting.
            while len(self.pools[env_key]) + self.filling[env_key] < self.pool_sizes.get(env_key, 0):
                python = self.environments[env_key].python  # set with pool_sizes, never without it
                self.filling[env_key] += 1
                try:
                    worker = await self.spawn(env_key, "poolmgr", memory, charge, python=python)
                except QuotaExhausted:
                    break
                except (Unavailable, RuntimeError, OSError):
                    log.exception("could not fill the pool of %s", env_key)
                    return
                finally:
                    self.filling[env_key] -= 1
                current = self.environments.get(env_key)
                if env_key in self.pool_sizes and current is not None and current.python == worker.python:
                    self.pools[env_key].append(worker)
                else:  # the environment went away, or changed its python, while the worker started
                    self.destroy(worker, "environment deleted or changed")
        metrics.workers_changed(self)

    async def keep_min_scale(self) -> None:
        if self.closing:
            return
        for key, deployable in list(self.min_scaled.items()):
            function = deployable.function
            # .get: an idle function gets no entry in these (it would cost it memory, issue 19).
            while len(self.by_function.get(key, ())) + self.starting.get(key, 0) < function.min_scale:
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
            self._forget_if_idle(key)

    def _forget_if_idle(self, key: FnKey) -> None:
        """A function scaled to zero keeps no per-function state (issue 19: idle functions cost
        little); the next call makes it again. Its waiters' line stays while a call is in it."""
        if self.by_function.get(key) or self.starting.get(key):
            return
        self.by_function.pop(key, None)
        self.starting.pop(key, None)
        waiters = self.freed.get(key)
        if waiters is not None and not waiters.queue:
            del self.freed[key]

    async def run_reaper(self, every: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every)
            self.reap_idle()
            await self.keep_min_scale()  # also brings back a MinScale worker that died

    async def _refill_after_cold_start(self) -> None:
        await asyncio.sleep(REFILL_DELAY_S)
        await self.fill_pools()

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


class _Start:
    """A cold start under way: its worker, once specialized, and how many other calls wait for
    it (``joined``), ``seats`` at most."""

    __slots__ = ("joined", "seats", "signature", "worker")

    def __init__(self, seats: int, signature: tuple[object, ...]) -> None:
        self.worker: asyncio.Future[Worker] = asyncio.get_running_loop().create_future()
        self.seats = seats
        self.signature = signature  # of the function it starts a worker for (Deployable.signature)
        self.joined = 0

    def fail(self, exc: BaseException) -> None:
        """The calls waiting get ``exc`` (a cancelled cold start: Unavailable, so that they are
        answered, not cancelled); with none waiting, nothing is left unretrieved."""
        if not self.joined:
            self.worker.cancel()
        elif isinstance(exc, Exception):
            self.worker.set_exception(exc)
        else:
            self.worker.set_exception(Unavailable("the cold start it waited for was abandoned"))


class _Flight:
    """A call between taking its worker and its answer: what ``Executor.finish`` needs."""

    __slots__ = ("began", "clock", "cold", "connection", "done", "executor", "key", "startup", "worker")

    def __init__(self, executor: Executor, key: FnKey, worker: Worker, began: float, clock: float,
                 done: Callable[[Response], None] | None = None) -> None:  # fmt: skip
        self.executor = executor
        self.key = key
        self.worker = worker
        self.began = began  # epoch seconds the call reached the executor
        self.clock = clock  # perf_counter then
        self.startup = time.perf_counter() - clock if clock else 0.0  # waiting for the worker
        self.cold = worker.fresh  # "pool"/"new": this call is the one its cold start was for
        worker.fresh = ""
        self.connection: UpstreamConnection | None = None
        self.done = done

    def settle(self, outcome: Outcome) -> None:
        """The connection's callback (``call_now``): the answer goes out first, then the worker
        is released (no other call can run in between: this is one callback on the loop)."""
        assert self.done is not None
        response = answer_of(outcome)
        try:
            self.done(response)
        finally:
            self.executor.finish(self, outcome, response.status)


def answer_of(outcome: Outcome) -> Response:
    """A call's answer: the worker's, or what its caller is told when there was none."""
    if isinstance(outcome, Response):
        return outcome
    if isinstance(outcome, TimeoutError):
        return Response(504, body=b"the function timed out\n")
    return Response(502, body=b"the function's worker failed during the request\n")


class _Channels:
    """A worker's listening socket and output channels before the fork. The zygote gets
    ``theirs`` (closed here right after, so that the pipes end when the worker does); ``ours`` go
    to the log collector. Each descriptor is closed exactly once."""

    def __init__(self, path: Path) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            path.unlink(missing_ok=True)
            listener.bind(str(path))
            path.chmod(0o600)  # in a 0700 directory already; whoever connects runs code as the tenant
            listener.listen(1024)
        except OSError:
            listener.close()
            raise
        records_ours, records_theirs = socket.socketpair()
        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        self._theirs: list[int] | None = [
            listener.detach(), records_theirs.detach(), stdout_w, stderr_w
        ]  # fmt: skip
        self._ours: tuple[socket.socket, int, int] | None = (records_ours, stdout_r, stderr_r)

    def theirs(self) -> list[int]:
        """Listening socket, log connection, stdout and stderr write ends, in the zygote's order."""
        assert self._theirs is not None
        return list(self._theirs)

    def close_theirs(self) -> None:
        if self._theirs is not None:
            for fd in self._theirs:
                os.close(fd)
            self._theirs = None

    def take_ours(self) -> tuple[socket.socket, int, int]:
        """The runtime's ends; whoever takes them closes them."""
        assert self._ours is not None
        ours, self._ours = self._ours, None
        return ours

    def close(self) -> None:
        self.close_theirs()
        if self._ours is not None:
            records, stdout, stderr = self._ours
            records.close()
            os.close(stdout)
            os.close(stderr)
            self._ours = None


def _reason(exc: BaseException) -> str:
    """Why a specialization failed, in one line."""
    if isinstance(exc, TimeoutError):
        return f"it did not load within {SPECIALIZE_TIMEOUT:.0f}s"
    if isinstance(exc, UpstreamClosed):
        return f"its worker stopped while loading it ({exc})"
    lines = str(exc).strip().splitlines()
    return lines[0][:500] if lines else type(exc).__name__


async def _remove_when_empty(cgroup: Cgroup, attempts: int = 50) -> None:
    """A cgroup can be removed only once the kernel has finished taking the exited process out."""
    for _ in range(attempts):
        await asyncio.sleep(0.1)
        if cgroup.remove():
            return
    log.warning("could not remove cgroup %s", cgroup.paths)
