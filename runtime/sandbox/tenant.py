"""One sandbox per tenant namespace, holding that tenant's zygote; every worker it forks inherits it.

A tenant's sandbox (``RUNTIME_SANDBOX=on``, the default):

- its own unprivileged uid and gid (``uids``), no capabilities, ``no_new_privs``;
- its own pid, mount, network, IPC and UTS namespaces; a read-only root with only: the operating
  system's ``/usr`` (and ``/bin``, ``/lib``... links), TLS roots, the interpreter and its packages,
  the worker's own code (``runtime/worker``), the tenant's packages at ``/packages`` (never another
  tenant's), a generated ``/etc/passwd``, ``group``, ``hosts``, ``nsswitch.conf`` and
  ``resolv.conf``, a fresh ``/proc`` and a minimal ``/dev``;
- no network but loopback, or egress as the namespace's NetworkPolicies allow (``network``);
- the zygote in a cgroup of the tenant, each worker moved into one of its own (``cgroups``).

With ``RUNTIME_SANDBOX=off`` a namespace still gets its own zygote, but unwrapped: workers run as
the runtime's user with RLIMIT_AS as their memory limit. Only for a machine that runs nobody
else's code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from runtime.sandbox import bwrap
from runtime.sandbox.cgroups import Cgroup, CgroupTree
from runtime.sandbox.host import Tools, host_networks, python_layout, system_binds
from runtime.sandbox.network import DNS_SERVER, EgressError, Grant, Slirp, allowed_networks, set_routes
from runtime.sandbox.uids import UidMap
from runtime.spawner import Zygote, ZygoteGone, clean_environment
from runtime.worker import isolation

log = logging.getLogger(__name__)
RUNTIME_PACKAGE = Path(__file__).resolve().parent.parent  # runtime/
CODE_ROOT = "/opt/faas"  # the worker's code inside a sandbox: /opt/faas/runtime/worker
ZYGOTE_PIDS = 64  # the zygote and workers in the moment between their fork and their own cgroup
ZYGOTE = ("runtime.worker.zygote", "--control-fd", "{fd}")  # python -m ...; {fd}: its control socket


@dataclass(frozen=True)
class SandboxSettings:
    enabled: bool
    uid_base: int
    tmp_bytes: int
    worker_pids: int


@dataclass
class TenantSandbox:
    """A namespace's running zygote and what was started around it."""

    namespace: str
    zygote: Zygote
    pid: int | None = None  # the zygote's pid (its network namespace), when sandboxed
    cgroup: Cgroup | None = None
    applied: tuple[Grant, ...] | None = None  # the egress grants in force (None: not set yet)
    slirp: Slirp | None = None


class Sandboxes:
    """The tenants' sandboxes, started on first use, stopped with their namespace."""

    def __init__(self, settings: SandboxSettings, state_dir: Path, tools: Tools | None,
                 cgroups: CgroupTree | None) -> None:  # fmt: skip
        if settings.enabled and tools is None:
            raise ValueError("sandboxes need their tools")
        self.settings = settings
        self.root = state_dir / "sandbox"
        self.packages_root = state_dir / "packages"
        self.tools = tools
        self.cgroups = cgroups if settings.enabled else None
        self.uids = UidMap(self.root / "uids.json", settings.uid_base)
        self.running: dict[str, TenantSandbox] = {}
        self.wanted: set[str] | None = None  # namespaces that may have a sandbox (None: any, until told)
        self.grants: dict[str, tuple[Grant, ...]] = {}
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

    def worker_cgroup(self, namespace: str, worker_id: str) -> Cgroup | None:
        """A new cgroup for a worker, or None when the runtime has no cgroups (RLIMIT_AS then)."""
        if self.cgroups is None:
            return None
        group = self.cgroups.group(namespace, worker_id)
        group.limit_pids(self.settings.worker_pids)
        return group

    # ------------------------------------------------------------ lifecycle

    async def zygote(self, namespace: str) -> Zygote:
        """The namespace's running zygote, started (in its sandbox) when there is none."""
        if self.wanted is not None and namespace not in self.wanted:
            raise ZygoteGone(f"{namespace} has nothing to run any more")
        lock = self.locks.setdefault(namespace, asyncio.Lock())
        async with lock:
            sandbox = self.running.get(namespace)
            if sandbox is not None and sandbox.zygote.alive:
                return sandbox.zygote
            if sandbox is not None:
                await self._teardown(sandbox)
            sandbox = await self._start(namespace)
            self.running[namespace] = sandbox
            return sandbox.zygote

    async def _start(self, namespace: str) -> TenantSandbox:
        self.packages_dir(namespace).mkdir(mode=0o755, parents=True, exist_ok=True)
        zygote = Zygote(namespace)
        if not self.enabled:
            env = clean_environment({"PYTHONPATH": str(RUNTIME_PACKAGE.parent)})
            await zygote.start([sys.executable, "-m", *ZYGOTE], env=env)
            return TenantSandbox(namespace, zygote)
        info_r, info_w = os.pipe()
        try:
            argv = self._bwrap(namespace, [*ZYGOTE, "--isolate"], info_fd=info_w)
            env = clean_environment({"PYTHONPATH": CODE_ROOT, "HOME": "/tmp"})  # noqa: S108 - the sandbox's
            try:
                await zygote.launch(argv, env=env, pass_fds=(info_w,))
            finally:
                os.close(info_w)
            sandbox = TenantSandbox(namespace, zygote)
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
            sandbox.cgroup = self.cgroups.group(sandbox.namespace, "zygote")
            sandbox.cgroup.limit_pids(ZYGOTE_PIDS)
            # In a thread: moving another process waits for an RCU grace period (milliseconds).
            await asyncio.to_thread(sandbox.cgroup.add, sandbox.pid)
        await self._apply_egress(sandbox)

    def _bwrap(self, namespace: str, module: list[str], *, info_fd: int) -> list[str]:
        """The command running ``python -m <module...>`` in the namespace's sandbox."""
        assert self.tools is not None
        uid = self.uids.uid(namespace)
        etc = self._etc(namespace, uid)
        os_binds, links = system_binds()
        python, interpreter = python_layout()
        command = [interpreter, "-m", *module]
        binds = (
            *os_binds, *python,
            (str(RUNTIME_PACKAGE / "__init__.py"), f"{CODE_ROOT}/runtime/__init__.py"),
            (str(RUNTIME_PACKAGE / "worker"), f"{CODE_ROOT}/runtime/worker"),
            (str(self.packages_dir(namespace)), isolation.PACKAGES),
            *((str(path), f"/etc/{path.name}") for path in sorted(etc.iterdir())),
        )  # fmt: skip
        spec = bwrap.SandboxSpec(
            uid=uid, gid=uid, command=tuple(command), ro_binds=binds, symlinks=links,
            dirs=(*isolation.PRIVATE_TMPFS, isolation.USERFUNC), hostname=namespace[:63],
            chdir="/tmp", info_fd=info_fd,  # noqa: S108 - the sandbox's own
            # The zygote is the pid namespace's init: when it ends, the kernel ends every process
            # of the tenant, and no function can kill it (init gets only the signals it handles).
            extra=("--as-pid-1",),
        )  # fmt: skip
        return bwrap.command(spec, bwrap=self.tools.bwrap, setpriv=self.tools.setpriv)

    def _etc(self, namespace: str, uid: int) -> Path:
        """The namespace's generated /etc files (resolv.conf is rewritten in place on egress changes)."""
        etc = self.root / namespace / "etc"
        etc.mkdir(mode=0o755, parents=True, exist_ok=True)
        files = {
            "passwd": f"function:x:{uid}:{uid}:function:/tmp:/usr/sbin/nologin\n",
            "group": f"function:x:{uid}:\n",
            "hosts": "127.0.0.1 localhost\n::1 localhost ip6-localhost\n",
            "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
        }
        for name, text in files.items():
            (etc / name).write_text(text)
            (etc / name).chmod(0o644)
        resolv = etc / "resolv.conf"
        if not resolv.exists():
            resolv.write_text("")
            resolv.chmod(0o644)
        return etc

    # ------------------------------------------------------------ network

    async def set_egress(self, namespace: str, grants: tuple[Grant, ...]) -> None:
        """What the namespace's NetworkPolicies allow; applied at once to a running sandbox. When
        that fails, the sandbox is stopped (its workers with it) rather than left with egress it no
        longer has, and the next worker starts a sandbox with what is wanted. Never raises."""
        self.grants[namespace] = grants
        lock = self.locks.setdefault(namespace, asyncio.Lock())
        async with lock:
            sandbox = self.running.get(namespace)
            if sandbox is None or sandbox.pid is None or sandbox.applied == grants:
                return
            try:
                await self._apply_egress(sandbox)
            except (EgressError, OSError) as exc:
                log.error("egress of %s could not be changed (%s): its sandbox stops", namespace, exc)
                self.running.pop(namespace, None)
                await self._teardown(sandbox)

    async def _apply_egress(self, sandbox: TenantSandbox) -> None:
        """slirp4netns on (or off), the routes, then resolv.conf: a worker sees either nothing or
        exactly the allowed networks, never more in between. Raises EgressError or OSError."""
        assert self.tools is not None
        assert sandbox.pid is not None
        grants = self.grants.get(sandbox.namespace, ())
        networks = allowed_networks(grants, self.blocked)
        if networks and sandbox.slirp is None:
            log_path = self.root / sandbox.namespace / "slirp4netns.log"
            sandbox.slirp = await asyncio.to_thread(Slirp.start, self.tools, sandbox.pid, log_path)
        await asyncio.to_thread(set_routes, self.tools, sandbox.pid, networks)
        if not networks and sandbox.slirp is not None:
            await asyncio.to_thread(sandbox.slirp.stop)
            sandbox.slirp = None
        resolv = self.root / sandbox.namespace / "etc" / "resolv.conf"
        with resolv.open("w") as output:  # in place: the sandbox has this very file bound
            output.write(f"nameserver {DNS_SERVER}\n" if networks else "")
        sandbox.applied = grants

    # ------------------------------------------------------------ stopping

    def want(self, namespaces: set[str]) -> None:
        """Only ``namespaces`` may have sandboxes from now on (``retain`` stops the others)."""
        self.wanted = set(namespaces)

    async def retain(self) -> None:
        """Stop the sandboxes of namespaces no longer wanted (deleted tenants)."""
        wanted = self.wanted if self.wanted is not None else set(self.running)
        for namespace in [ns for ns in self.running if ns not in wanted]:
            async with self.locks.setdefault(namespace, asyncio.Lock()):
                sandbox = self.running.pop(namespace, None)
                if sandbox is not None:
                    await self._teardown(sandbox)

    async def stop_all(self) -> None:
        for namespace in list(self.running):
            await self._teardown(self.running.pop(namespace))

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
