"""Memory and pids limits per worker, and the CPU shared fairly between tenants, with cgroup v1's
``memory``, ``pids`` and ``cpu`` controllers.

The runtime makes its groups below its own cgroup (``<own>/faas-runtime-<instance>/<namespace>/
<worker>``), so whatever limits the runtime itself stays above its workers. A worker's memory limit
is a hard limit on what it really uses (resident memory, its ``/tmp``): above it the kernel kills
the worker, as Kubernetes kills a container. ``pids.max`` bounds processes and threads, so a fork
bomb stays inside one worker.

In the ``cpu`` hierarchy the same tree shares the CPU: every tenant's group has the same weight
(``cpu.shares``, 1024 by default), so under contention a tenant with thirty busy workers gets what
a tenant with one gets, rather than a share per process. The whole subtree weighs 1024 per CPU, as
the kubelet weighs the group of a node's pods, against 1024 for the runtime's own group (a
session's, where the kernel groups by session: ``kernel.sched_autogroup_enabled`` 1). Without it
each worker is a scheduling group of its own (workers start a session), so a hundred busy
workers weighed a hundred times the runtime that routes every tenant's calls. ``cpu`` is optional:
without it the runtime still runs, and says so in its log.

A runtime killed outright (SIGKILL, a crash) never sweeps its subtree, and a restart sweeps only
its own state directory's. So each runtime holds an exclusive ``flock`` on a file of its own,
``/run/faas-runtime/<instance>.lock``, for as long as it lives (the kernel drops the lock when the
process dies, however it dies), and one starting sweeps every ``faas-runtime-*`` subtree beside
its own whose lock it can take: that runtime is gone.

Where cgroup v1 is not mounted writable (a cgroup v2-only host), ``CgroupTree.detect`` returns None
and the runtime falls back to RLIMIT_AS; see the README.

# Reference: https://docs.kernel.org/admin-guide/cgroup-v1/memory.html
# Reference: https://docs.kernel.org/admin-guide/cgroup-v1/pids.html
# Reference: https://docs.kernel.org/scheduler/sched-design-CFS.html (group scheduling, cpu.shares)
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import signal
import time
from pathlib import Path

log = logging.getLogger(__name__)
CONTROLLERS = ("memory", "pids")
OPTIONAL = ("cpu",)  # used when it is mounted and writable; the runtime runs without it
UNLIMITED = "-1"
SHARES_PER_CPU = 1024  # a nice-0 process's weight, and a session's group's (autogroup)
LOCKS = Path("/run/faas-runtime")  # a lock file per runtime, held while it lives (see above)
PREFIX = "faas-runtime-"
INSTANCE = re.compile(r"[0-9a-f]{12}")  # runtime.app names its instance after its state directory
LOCK_WAIT = 10.0  # seconds a starting runtime waits for its own lock (another start may sweep)


class Cgroup:
    """One group, in both controllers."""

    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths
        self._limits: dict[str, int | None] = {}  # what we last set, so unchanged limits cost nothing

    def limit_memory(self, limit: int | None) -> None:
        """Set the hard memory limit (None: none), swap included when the kernel accounts for it.

        The kernel keeps memory+swap >= memory at every step, so which goes first depends on the
        direction.
        """
        if self._limits.get("memory", -1) == limit:
            return
        self._limits["memory"] = limit
        memory = self.paths["memory"]
        value = UNLIMITED if limit is None else str(limit)
        swap = memory / "memory.memsw.limit_in_bytes"
        files = [memory / "memory.limit_in_bytes"] + ([swap] if swap.exists() else [])
        current = int((memory / "memory.limit_in_bytes").read_text())
        if limit is None or limit > current:
            files.reverse()
        for path in files:
            path.write_text(value)

    def limit_pids(self, limit: int | None) -> None:
        if self._limits.get("pids", -1) != limit:
            self._limits["pids"] = limit
            (self.paths["pids"] / "pids.max").write_text("max" if limit is None else str(limit))

    def add(self, pid: int) -> None:
        """Move process ``pid`` (all its threads) into the group. Moving a whole process waits for
        an RCU grace period (milliseconds); see ``open_doors`` for the cheap way."""
        for path in self.paths.values():
            (path / "cgroup.procs").write_text(str(pid))

    def open_doors(self) -> list[int]:
        """Descriptors of the group's ``tasks`` files, opened here (as root), for a new process to
        move itself in by writing ``0`` to each: the kernel checks the credentials of whoever
        opened the file, and moving a single thread into a group by itself skips the global lock
        (and the RCU grace period) that moving another process takes. The caller closes them."""
        fds: list[int] = []
        try:
            for path in self.paths.values():
                fds.append(os.open(path / "tasks", os.O_WRONLY | os.O_CLOEXEC))
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        return fds

    def processes(self) -> set[int]:
        procs: set[int] = set()
        for path in self.paths.values():
            with contextlib.suppress(FileNotFoundError):
                procs.update(int(line) for line in (path / "cgroup.procs").read_text().split())
        return procs

    def remove(self) -> bool:
        """Remove the (empty) group; False while a process is still in it."""
        done = True
        for path in self.paths.values():
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                done = False
        return done


class CgroupTree:
    """The runtime's subtree in each controller."""

    def __init__(self, roots: dict[str, Path], lock: RuntimeLock | None = None) -> None:
        self.roots = roots
        self.lock = lock  # held while the runtime lives; None for a tree that is not a runtime's own

    @classmethod
    def detect(cls, instance: str, lock: RuntimeLock | None) -> CgroupTree | None:
        """The subtree ``faas-runtime-<instance>`` below our own cgroup, created; None when cgroup
        v1 memory and pids are not both mounted and writable here. ``cpu`` is in it when it is
        mounted and writable too (its root weighted, see the module's docstring). ``lock``: the
        instance's, which the caller holds (``RuntimeLock.hold``) and releases."""
        mounts, own = _v1_mounts(), _own_paths()
        roots: dict[str, Path] = {}
        for controller in CONTROLLERS + OPTIONAL:
            try:
                if controller not in mounts or controller not in own:
                    raise OSError(f"no cgroup v1 {controller} hierarchy of this process")
                mountpoint, mount_root = mounts[controller]
                relative = os.path.relpath(own[controller], mount_root)
                root = (mountpoint / relative / f"faas-runtime-{instance}").resolve()
                root.mkdir(parents=True, exist_ok=True)
                if controller == "cpu":
                    (root / "cpu.shares").write_text(str(SHARES_PER_CPU * len(os.sched_getaffinity(0))))
            except OSError as exc:
                if controller in CONTROLLERS:
                    log.warning("cgroups unavailable (%s): memory limits fall back to RLIMIT_AS", exc)
                    return None
                log.warning("cgroup %s unavailable (%s): tenants do not share the CPU as groups",
                            controller, exc)  # fmt: skip
                continue
            roots[controller] = root
        return cls(roots, lock)

    def group(self, *parts: str) -> Cgroup:
        """The group at ``parts`` below the root, created with its parents."""
        paths = {name: root.joinpath(*parts) for name, root in self.roots.items()}
        for path in paths.values():
            path.mkdir(parents=True, exist_ok=True)
        return Cgroup(paths)

    def sweep(self, *, remove_root: bool = False, timeout: float = 5.0) -> None:
        """Kill whatever is still in the runtime's groups and remove them, deepest first (and the
        subtree's own root with ``remove_root``). At start-up it clears what an earlier run left
        behind; at shutdown, what this run made. A group is removable only once the kernel has
        taken its last exited process out, so removal is retried until ``timeout``."""
        deadline = time.monotonic() + timeout
        for root in self.roots.values():
            groups = sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
            groups += [root] if remove_root else []
            for path in groups:
                for pid in Cgroup({"x": path}).processes():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            for path in groups:
                while not Cgroup({"x": path}).remove() and time.monotonic() < deadline:
                    time.sleep(0.01)

    def sweep_orphans(self) -> list[str]:
        """Sweep the subtrees beside ours of runtimes that are gone: those whose lock nobody holds
        (taken here for the sweep, so a runtime of that instance starting meanwhile waits for it).
        Returns their names. Needs our own lock: without one (no writable lock directory) no other
        runtime's liveness is known, and nothing is swept."""
        if self.lock is None:
            return []
        subtrees = {path.name for root in self.roots.values() for path in root.parent.glob(f"{PREFIX}*")}
        lock_files = {path.stem for path in self.lock.directory.glob("*.lock")}  # with no subtree, too
        instances = {name.removeprefix(PREFIX) for name in subtrees} | lock_files
        ours = {root.name for root in self.roots.values()}
        names = {PREFIX + i for i in instances if INSTANCE.fullmatch(i)} - ours
        swept = []
        for name in sorted(names):
            lock = RuntimeLock.take(self.lock.directory, name.removeprefix(PREFIX))
            if lock is None:
                continue  # alive
            try:
                found = {c: root.parent / name for c, root in self.roots.items()}
                roots = {c: path for c, path in found.items() if path.is_dir()}
                if roots:
                    CgroupTree(roots).sweep(remove_root=True)
                    swept.append(name)
            finally:
                lock.release(remove=True)
        return swept


class InstanceInUse(RuntimeError):
    """Another live runtime holds this instance's lock: it has the same state directory."""


class RuntimeLock:
    """An exclusive ``flock`` on ``<directory>/<instance>.lock``: held while its runtime lives."""

    def __init__(self, directory: Path, fd: int, path: Path) -> None:
        self.directory, self.fd, self.path = directory, fd, path

    @classmethod
    def take(cls, directory: Path, instance: str) -> RuntimeLock | None:
        """The lock, taken now; None while another process holds it. A file removed by its last
        holder between our open and our flock is opened again (we would hold a lock nobody
        else can see)."""
        path = directory / f"{instance}.lock"
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            except OSError:
                os.close(fd)
                raise
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    return cls(directory, fd, path)
            os.close(fd)

    @classmethod
    def hold(cls, directory: Path, instance: str, wait: float = LOCK_WAIT) -> RuntimeLock | None:
        """Our own instance's lock, waited for while a starting runtime sweeps it (briefly); None
        when no lock file can be made there (another user's directory: orphans are then left
        alone). Raises InstanceInUse when it stays held: another runtime lives on the same state
        directory."""
        deadline = time.monotonic() + wait
        while True:
            try:
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                lock = cls.take(directory, instance)
            except OSError as exc:
                log.warning("no lock file in %s (%s): neither a second runtime on this state directory "
                            "nor a crashed runtime's cgroups are found", directory, exc)  # fmt: skip
                return None
            if lock is not None:
                return lock
            if time.monotonic() > deadline:
                held = directory / f"{instance}.lock"
                raise InstanceInUse(f"{held} is held: another runtime uses this state directory")
            time.sleep(0.05)

    def release(self, *, remove: bool = False) -> None:
        """Unlock (``remove``: and remove the file first, while it is still ours)."""
        if remove:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        os.close(self.fd)


def _v1_mounts() -> dict[str, tuple[Path, str]]:
    """controller -> (mount point, root of the mounted hierarchy), for cgroup v1 mounts."""
    found: dict[str, tuple[Path, str]] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if len(tail) < 3 or tail[0] != "cgroup":
            continue
        for option in tail[2].split(","):
            if option in CONTROLLERS + OPTIONAL:
                found.setdefault(option, (Path(fields[4]), fields[3]))
    return found


def _own_paths() -> dict[str, str]:
    """controller -> this process's cgroup path in that hierarchy (from /proc/self/cgroup)."""
    paths: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            paths[controller] = path
    return paths
