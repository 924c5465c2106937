"""One sandbox per tenant namespace and Python version, each holding a zygote of that version;
every worker it forks inherits it.

A namespace whose Environments run 3.11 and 3.13 has two sandboxes, alike but for the interpreter:
each zygote has imported its own interpreter's Flask, and a fork cannot change interpreters. Both
are the tenant's: the same uid, the same cgroup subtree, the same egress (``set_egress`` and
``retain`` act on every sandbox of the namespace).

A tenant's sandbox (``RUNTIME_SANDBOX=on``, the default):

- its own unprivileged uid and gid (``uids``), no capabilities, ``no_new_privs``;
- its own pid, mount, network, IPC and UTS namespaces; a read-only root with only: the operating
  system's ``/usr`` (and ``/bin``, ``/lib``... links), TLS roots, the chosen runtime virtualenv
  (``runtime.interpreters``: Fission's image packages) at ``/opt/faas/python`` and the installation
  it was made from, the worker's own code (``runtime/__init__.py`` and ``runtime/worker``, nothing
  else of the runtime and nothing of the portal), the tenant's packages at ``/packages`` (never
  another tenant's), a generated ``/etc/passwd``, ``group``, ``hosts``, ``nsswitch.conf`` and
  ``resolv.conf``, a fresh ``/proc`` and a minimal ``/dev``, and empty ``/userfunc``, ``/secrets``
  and ``/configs`` where each worker mounts its own (``runtime.worker.isolation``);
- no network but loopback, or egress as the namespace's NetworkPolicies allow (``network``);
- the zygote in a cgroup of the tenant, each worker moved into one of its own (``cgroups``).

With ``RUNTIME_SANDBOX=off`` a namespace still gets its own zygotes, but unwrapped: workers run as
the runtime's user with RLIMIT_AS as their memory limit, still with the chosen virtualenv's python
and only the worker's code on their path (a directory of links, ``worker_code``). Only for a
machine that runs nobody else's code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from runtime.interpreters import Interpreter, Interpreters
from runtime.sandbox import bwrap
from runtime.sandbox.cgroups import Cgroup, CgroupTree
from runtime.sandbox.host import SANDBOX_VIRTUALENV, Tools, host_networks, python_layout, system_binds
from runtime.sandbox.network import DNS_SERVER, EgressError, Grant, Slirp, allowed_networks, set_routes
from runtime.sandbox.uids import UidMap
from runtime.spawner import Zygote, ZygoteGone, clean_environment
from runtime.worker import isolation, volumes

log = logging.getLogger(__name__)
RUNTIME_PACKAGE = Path(__file__).resolve().parent.parent  # runtime/
CODE_ROOT = "/opt/faas"  # the worker's code inside a sandbox: /opt/faas/runtime/worker
ZYGOTE_PIDS = 64  # the zygote and workers in the moment between their fork and their own cgroup
ZYGOTE = ("runtime.worker.zygote", "--control-fd", "{fd}")  # python -m ...; {fd}: its control socket
# -P: the zygote's working directory is not on sys.path (the repository, unsandboxed): a function
# imports only the interpreter's stdlib, the virtualenv's packages, the worker code and its own.
PYTHON_FLAGS = ("-P",)
SandboxKey = tuple[str, str]  # namespace, Python version ("3.12")
WORKER_PATH = "/usr/local/bin:/usr/bin:/bin"  # after the virtualenv's bin/ (worker_path)


@dataclass(frozen=True)
class SandboxSettings:
    enabled: bool
    uid_base: int
    tmp_bytes: int
    worker_pids: int


@dataclass
class TenantSandbox:
    """A namespace's running zygote of one Python version and what was started around it."""

    namespace: str
    python: str
    zygote: Zygote
    pid: int | None = None  # the zygote's pid (its network namespace), when sandboxed
    cgroup: Cgroup | None = None
    applied: tuple[Grant, ...] | None = None  # the egress grants in force (None: not set yet)
    slirp: Slirp | None = None


class Sandboxes:
    """The tenants' sandboxes, started on first use, stopped with their namespace."""

    def __init__(self, settings: SandboxSettings, state_dir: Path, tools: Tools | None,
                 cgroups: CgroupTree | None, interpreters: Interpreters) -> None:  # fmt: skip
        if settings.enabled and tools is None:
            raise ValueError("sandboxes need their tools")
        self.settings = settings
        self.root = state_dir / "sandbox"
        self.packages_root = state_dir / "packages"
        self.tools = tools
        self.cgroups = cgroups if settings.enabled else None
        self.interpreters = interpreters
        self.uids = UidMap(self.root / "uids.json", settings.uid_base)
        self.running: dict[SandboxKey, TenantSandbox] = {}
        self.wanted: set[str] | None = None  # namespaces that may have a sandbox (None: any, until told)
        self.grants: dict[str, tuple[Grant, ...]] = {}
        # One per namespace, for all its sandboxes: egress changes wait for a sandbox being started.
        self.locks: dict[str, asyncio.Lock] = {}
        self.blocked = host_networks(tools) if tools is not None else ()

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    # ------------------------------------------------------------ paths

    def packages_dir(self, namespace: str) -> Path:
        """Where the namespace's packages are unpacked on the host (its ``/packages``)."""
        return self.packages_root / namespace

    def package_path(self, namespace: str, host_path: Path) -> str:
        """``host_path`` (inside ``packages_dir``) as the namespace's workers see it."""
        if not self.enabled:
            return str(host_path)
        return str(Path(isolation.PACKAGES) / host_path.relative_to(self.packages_dir(namespace)))

    def of(self, namespace: str) -> list[TenantSandbox]:
        """The namespace's running sandboxes, one per Python version in use."""
        return [sandbox for sandbox in self.running.values() if sandbox.namespace == namespace]

    def worker_code(self) -> Path:
        """A directory holding only the worker's code (``runtime/__init__.py`` and ``runtime/worker``,
        as links): what an unsandboxed zygote gets on its path instead of the repository."""
        code = self.root / "code" / "runtime"
        code.mkdir(mode=0o755, parents=True, exist_ok=True)
        for name in ("__init__.py", "worker"):
            link = code / name
            if not link.is_symlink() or link.readlink() != RUNTIME_PACKAGE / name:
                link.unlink(missing_ok=True)
                link.symlink_to(RUNTIME_PACKAGE / name)
        return code.parent

    def worker_path(self, python: str) -> str:
        """PATH of a worker of Python ``python``: its virtualenv's bin/ first, so that ``python3``
        in a function's subprocess is its own interpreter with its packages, as in Fission's image
        (a worker's environment is exactly what the executor gives it, not the zygote's)."""
        if self.enabled:
            return f"{SANDBOX_VIRTUALENV}/bin:{WORKER_PATH}"
        interpreter = self.interpreters.found.get(python)  # None: zygote() refuses to start it
        return f"{interpreter.python.parent}:{WORKER_PATH}" if interpreter is not None else WORKER_PATH

    def worker_cgroup(self, namespace: str, worker_id: str) -> Cgroup | None:
        """A new cgroup for a worker, or None when the runtime has no cgroups (RLIMIT_AS then)."""
        if self.cgroups is None:
            return None
        group = self.cgroups.group(namespace, worker_id)
        # What a function of one request per pod (Fission's default) gets at specialization
        # (Executor._specialize_request): its cold start then has no limit to write.
        group.limit_pids(self.settings.worker_pids + 1)
        return group

    # ------------------------------------------------------------ lifecycle

    async def zygote(self, namespace: str, python: str) -> Zygote:
        """The namespace's running zygote of Python ``python`` ("3.12"), started (in its sandbox)
        when there is none. Raises ZygoteGone when it cannot start, also when this runtime has no
        ``python`` (the Environment parser refuses such a version: only a bug could ask for one)."""
        if self.wanted is not None and namespace not in self.wanted:
            raise ZygoteGone(f"{namespace} has nothing to run any more")
        lock = self.locks.setdefault(namespace, asyncio.Lock())
        async with lock:
            sandbox = self.running.get((namespace, python))
            if sandbox is not None and sandbox.zygote.alive:
                return sandbox.zygote
            if sandbox is not None:
                await self._teardown(sandbox)
            sandbox = await self._start(namespace, self._interpreter(python))
            self.running[(namespace, python)] = sandbox
            return sandbox.zygote

    def _interpreter(self, python: str) -> Interpreter:
        interpreter = self.interpreters.found.get(python)
        if interpreter is None:
            raise ZygoteGone(self.interpreters.unavailable(python))
        return interpreter

    async def _start(self, namespace: str, interpreter: Interpreter) -> TenantSandbox:
        self.packages_dir(namespace).mkdir(mode=0o755, parents=True, exist_ok=True)
        python = interpreter.version
        zygote = Zygote(f"{namespace} (python {python})")
        if not self.enabled:
            env = clean_environment({"PYTHONPATH": str(self.worker_code())})
            await zygote.start([str(interpreter.python), *PYTHON_FLAGS, "-m", *ZYGOTE], env=env)
            return TenantSandbox(namespace, python, zygote)
        info_r, info_w = os.pipe()
        try:
            argv = self._bwrap(namespace, interpreter, [*ZYGOTE, "--isolate"], info_fd=info_w)
            env = clean_environment({"PYTHONPATH": CODE_ROOT, "HOME": "/tmp"})  # noqa: S108 - the sandbox's
            try:
                await zygote.launch(argv, env=env, pass_fds=(info_w,))
            finally:
                os.close(info_w)
            sandbox = TenantSandbox(namespace, python, zygote)
            try:
                sandbox.pid = await _child_pid(info_r)
                await self._confine_zygote(sandbox)
                await zygote.wait_ready()
            except BaseException:
                await self._teardown(sandbox)
                raise
        finally:
            os.close(info_r)
        return sandbox

    async def _confine_zygote(self, sandbox: TenantSandbox) -> None:
        """The zygote's cgroup and network, set before it forks anything (it forks only when asked,
        once it has answered the start-up ping)."""
        assert sandbox.pid is not None
        if self.cgroups is not None:
            sandbox.cgroup = self.cgroups.group(sandbox.namespace, f"zygote-{sandbox.python}")
            sandbox.cgroup.limit_pids(ZYGOTE_PIDS)
            # In a thread: moving another process waits for an RCU grace period (milliseconds).
            await asyncio.to_thread(sandbox.cgroup.add, sandbox.pid)
        await self._apply_egress(sandbox)

    def _bwrap(self, namespace: str, interpreter: Interpreter, module: list[str], *,
               info_fd: int) -> list[str]:  # fmt: skip
        """The command running ``python -m <module...>`` with ``interpreter`` in a sandbox of the
        namespace."""
        assert self.tools is not None
        uid = self.uids.uid(namespace)
        etc = self._etc(namespace, uid)
        os_binds, links = system_binds()
        python, executable = python_layout(interpreter)
        command = [executable, *PYTHON_FLAGS, "-m", *module]
        binds = (
            *os_binds, *python,
            (str(RUNTIME_PACKAGE / "__init__.py"), f"{CODE_ROOT}/runtime/__init__.py"),
            (str(RUNTIME_PACKAGE / "worker"), f"{CODE_ROOT}/runtime/worker"),
            (str(self.packages_dir(namespace)), isolation.PACKAGES),
            *((str(path), f"/etc/{path.name}") for path in sorted(etc.iterdir())),
        )  # fmt: skip
        spec = bwrap.SandboxSpec(
            uid=uid, gid=uid, command=tuple(command), ro_binds=binds, symlinks=links,
            dirs=(*isolation.PRIVATE_TMPFS, isolation.USERFUNC, *volumes.ROOTS), hostname=namespace[:63],
            chdir="/tmp", info_fd=info_fd,  # noqa: S108 - the sandbox's own
            # The zygote is the pid namespace's init: when it ends, the kernel ends every process
            # of the tenant, and no function can kill it (init gets only the signals it handles).
            extra=("--as-pid-1",),
        )  # fmt: skip
        return bwrap.command(spec, bwrap=self.tools.bwrap, setpriv=self.tools.setpriv)

    def _etc(self, namespace: str, uid: int) -> Path:
        """The namespace's generated /etc files, shared by its sandboxes (resolv.conf is rewritten
        in place on egress changes). A file is written only when it differs: another sandbox of the
        namespace may be reading it (a rewrite in place shows it empty for a moment)."""
        etc = self.root / namespace / "etc"
        etc.mkdir(mode=0o755, parents=True, exist_ok=True)
        files = {
            "passwd": f"function:x:{uid}:{uid}:function:/tmp:/usr/sbin/nologin\n",
            "group": f"function:x:{uid}:\n",
            "hosts": "127.0.0.1 localhost\n::1 localhost ip6-localhost\n",
            "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
        }
        for name, text in files.items():
            path = etc / name
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
            path.chmod(0o644)
        resolv = etc / "resolv.conf"
        if not resolv.exists():
            resolv.write_text("")
            resolv.chmod(0o644)
        return etc

    # ------------------------------------------------------------ network

    async def set_egress(self, namespace: str, grants: tuple[Grant, ...]) -> None:
        """What the namespace's NetworkPolicies allow; applied at once to each of its running
        sandboxes. A sandbox where that fails is stopped (its workers with it) rather than left with
        egress it no longer has, and the next worker starts one with what is wanted. Never raises."""
        self.grants[namespace] = grants
        lock = self.locks.setdefault(namespace, asyncio.Lock())
        async with lock:
            for sandbox in self.of(namespace):
                if sandbox.pid is None or sandbox.applied == grants:
                    continue
                try:
                    await self._apply_egress(sandbox)
                except (EgressError, OSError) as exc:
                    log.error("egress of %s could not be changed (%s): its python %s sandbox stops",
                              namespace, exc, sandbox.python)  # fmt: skip
                    self.running.pop((namespace, sandbox.python), None)
                    await self._teardown(sandbox)

    async def _apply_egress(self, sandbox: TenantSandbox) -> None:
        """slirp4netns on (or off), the routes, then resolv.conf: a worker sees either nothing or
        exactly the allowed networks, never more in between. Raises EgressError or OSError."""
        assert self.tools is not None
        assert sandbox.pid is not None
        grants = self.grants.get(sandbox.namespace, ())
        networks = allowed_networks(grants, self.blocked)
        if networks and sandbox.slirp is None:
            log_path = self.root / sandbox.namespace / f"slirp4netns-{sandbox.python}.log"
            sandbox.slirp = await asyncio.to_thread(Slirp.start, self.tools, sandbox.pid, log_path)
        await asyncio.to_thread(set_routes, self.tools, sandbox.pid, networks)
        if not networks and sandbox.slirp is not None:
            await asyncio.to_thread(sandbox.slirp.stop)
            sandbox.slirp = None
        resolv = self.root / sandbox.namespace / "etc" / "resolv.conf"
        # In place: the namespace's sandboxes have this very file bound (the same for each: they
        # all get the namespace's grants).
        with resolv.open("w") as output:
            output.write(f"nameserver {DNS_SERVER}\n" if networks else "")
        sandbox.applied = grants

    # ------------------------------------------------------------ stopping

    def want(self, namespaces: set[str]) -> None:
        """Only ``namespaces`` may have sandboxes from now on (``retain`` stops the others)."""
        self.wanted = set(namespaces)

    async def retain(self) -> None:
        """Stop every sandbox of the namespaces no longer wanted (deleted tenants)."""
        if self.wanted is None:
            return
        for namespace in {ns for ns, _ in self.running if ns not in self.wanted}:
            async with self.locks.setdefault(namespace, asyncio.Lock()):
                for sandbox in self.of(namespace):
                    self.running.pop((namespace, sandbox.python), None)
                    await self._teardown(sandbox)

    async def stop_all(self) -> None:
        for key in list(self.running):
            await self._teardown(self.running.pop(key))

    async def _teardown(self, sandbox: TenantSandbox) -> None:
        await sandbox.zygote.stop()
        if sandbox.slirp is not None:
            await asyncio.to_thread(sandbox.slirp.stop)
            sandbox.slirp = None
        if sandbox.cgroup is not None:
            sandbox.cgroup.remove()


async def _child_pid(info: int) -> int:
    """The sandboxed process's pid, from what bwrap writes to ``--info-fd`` (JSON, then EOF)."""
    data = await asyncio.wait_for(asyncio.to_thread(_read_all, info), 30)
    try:
        return int(json.loads(data)["child-pid"])
    except (ValueError, KeyError, TypeError):
        raise ZygoteGone(f"bubblewrap did not start the sandbox: {data[:200]!r}") from None


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


def sandbox_settings_summary(settings: SandboxSettings) -> str:
    """One line for the runtime's start-up log."""
    if not settings.enabled:
        return "sandbox: OFF (RUNTIME_SANDBOX=off): functions run as the runtime's own user"
    return (
        f"sandbox: bubblewrap, a uid per tenant from {settings.uid_base}, /tmp {settings.tmp_bytes} bytes, "
        f"{settings.worker_pids} pids per worker"
    )
