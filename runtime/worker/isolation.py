"""A worker's own view inside its tenant's sandbox: its package only, its own ``/tmp``, no capabilities.

bubblewrap builds the tenant's sandbox (``runtime.sandbox``): mount, pid, network, IPC and UTS
namespaces, the tenant's own uid, a read-only root. Every worker of the tenant is forked from one
zygote in that sandbox, so bubblewrap cannot give each worker a view of its own; these few steps
do, with the same kernel calls bubblewrap uses:

1. ``enter_user_namespace`` (the zygote, once, before any thread exists): a user namespace that maps
   only the tenant's uid to itself. Its capabilities reach nothing outside the sandbox's own mount
   namespaces; it also forbids any further user namespace (``max_user_namespaces = 0``) and makes
   the zygote and every worker non-dumpable, so that no worker can ptrace or read the memory of
   another.
2. ``fork_in_new_pid_namespace`` (the zygote, for each worker): the worker is the init of a pid
   namespace of its own, so that whatever the function starts ends with the worker (the kernel
   kills a namespace whose init exits) and no worker can signal or trace another one, even of its
   own tenant. Then ``private_mounts`` (the worker, right after): a mount namespace of its own with
   a fresh size-limited tmpfs on ``/tmp`` and ``/dev/shm``.
3. ``confine`` (at specialization, before the function's code is imported): its package bound
   read-only at ``/userfunc``, its Secrets and ConfigMaps as files on a tmpfs of its own at
   ``/secrets`` and ``/configs``, made read-only (``mount_files``; ``runtime.worker.volumes``),
   the tenant's other packages hidden, then every capability dropped (bounding, ambient,
   effective, permitted, inheritable) and checked gone in every thread. All but one of the
   bounding set went earlier, when the warm worker started (``narrow_bounding_set``): a cold
   start pays for one drop, not one per capability.

Each step raises ``IsolationError`` when a call fails: a worker that is not isolated never serves.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from runtime.worker import volumes

PACKAGES: Final = "/packages"  # the tenant's packages, read-only (bound by the sandbox)
USERFUNC: Final = "/userfunc"  # where a worker sees its own package (as on Fission)
# Mount points inside the sandbox (not the host's): each worker gets fresh, private ones.
PRIVATE_TMPFS: Final = ("/tmp", "/dev/shm")  # noqa: S108

_CLONE_NEWNS: Final = 0x00020000
_CLONE_NEWPID: Final = 0x20000000
_CLONE_NEWUSER: Final = 0x10000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC = 32, 4096, 16384
_PR_SET_DUMPABLE, _PR_CAPBSET_DROP, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 4, 24, 47, 4
_LINUX_CAPABILITY_VERSION_3: Final = 0x20080522
_CAPABILITY_FIELDS: Final = (b"CapInh:", b"CapPrm:", b"CapEff:", b"CapBnd:", b"CapAmb:")

# Resolved once, in the zygote before it forks: looking up a symbol and building a ctypes type
# cost more than the system calls themselves, and a cold start pays for whatever is left lazy.
_libc = ctypes.CDLL(None, use_errno=True)
_unshare, _prctl, _capset, _mount_call = _libc.unshare, _libc.prctl, _libc.capset, _libc.mount
_LAST_CAPABILITY: Final = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
_PAGE: Final = os.sysconf("SC_PAGE_SIZE")


class IsolationError(OSError):
    """A step of the worker's isolation failed; the worker must not serve."""


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise IsolationError(errno, f"{what}: {os.strerror(errno)}")


def _write(path: str, text: str) -> None:
    """One write(2), as /proc's uid_map and friends require."""
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise IsolationError(exc.errno, f"writing {path}: {exc.strerror}") from None


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    encoded = [value.encode() if value is not None else None for value in (source, target, fstype, data)]
    _check(_mount_call(*encoded[:3], ctypes.c_ulong(flags), encoded[3]), f"mount {target}")


def enter_user_namespace() -> None:
    """Map our own uid and gid in a new user namespace, forbid nested ones, become non-dumpable.

    Must run while the process has a single thread (the kernel refuses otherwise).
    """
    uid, gid = os.getuid(), os.getgid()
    _check(_unshare(_CLONE_NEWUSER), "unshare(CLONE_NEWUSER)")
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1\n")
    _write("/proc/self/gid_map", f"{gid} {gid} 1\n")
    # Why: a user namespace is the usual first step of a kernel exploit; functions get none.
    _write("/proc/sys/user/max_user_namespaces", "0")
    _check(_prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")


def private_mounts(tmp_bytes: int) -> None:
    """A mount namespace of our own, with empty tmpfs of ``tmp_bytes`` on /tmp and /dev/shm."""
    _check(_unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    options = f"size={tmp_bytes},mode=1777"
    for target in PRIVATE_TMPFS:
        _mount("tmpfs", target, "tmpfs", _MS_NOSUID | _MS_NODEV, options)


class _CloneArgs(ctypes.Structure):
    """``struct clone_args`` of clone3(2)."""

    _fields_ = tuple((name, ctypes.c_uint64) for name in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size", "tls",
        "set_tid", "set_tid_size", "cgroup",
    ))  # fmt: skip


_SYS_CLONE3: Final = 435  # the same number on every architecture (Linux >= 5.3)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_python = ctypes.pythonapi  # called with the GIL held, as os.fork calls them
_before_fork, _after_fork_child, _after_fork_parent = (
    _python.PyOS_BeforeFork,
    _python.PyOS_AfterFork_Child,
    _python.PyOS_AfterFork_Parent,
)


def fork_in_new_pid_namespace() -> int:
    """``os.fork``, with the child the init of a new pid namespace: 0 in the child, its pid in ours.

    Why not unshare(CLONE_NEWPID) then os.fork: that changes the namespace of every later child of
    this process, and only a capability over bubblewrap's namespace could change it back; a second
    fork per worker would cost a cold start about 2 ms. clone3 with CLONE_NEWPID changes nothing
    but the child, and Python's own fork hooks run around it exactly as os.fork runs them. The
    caller is single-threaded (the zygote), so no lock is held across the clone.
    """
    args = _CloneArgs(flags=_CLONE_NEWPID, exit_signal=int(signal.SIGCHLD))
    _before_fork()
    pid = _syscall(_SYS_CLONE3, ctypes.byref(args), ctypes.sizeof(args))
    if pid == 0:
        _after_fork_child()
        return 0
    errno = ctypes.get_errno()
    _after_fork_parent()
    if pid < 0:
        raise IsolationError(errno, f"clone3(CLONE_NEWPID): {os.strerror(errno)}")
    return int(pid)


def package_root(filepath: str) -> tuple[str, str]:
    """``(/packages/<digest>, path inside it)`` for a specialization path inside the sandbox.

    Raises IsolationError for a path outside ``PACKAGES`` or one that tries to leave it.
    """
    parts = Path(filepath).parts
    if len(parts) < 3 or Path(*parts[:2]) != Path(PACKAGES) or ".." in parts or parts[2] in (".", ""):
        raise IsolationError(0, f"{filepath!r} is not a package path under {PACKAGES}/")
    return str(Path(*parts[:3])), str(Path(*parts[3:])) if len(parts) > 3 else ""


def confine(filepath: str, files: Mapping[str, bytes] | None = None) -> str:
    """Show only the package of ``filepath`` (at /userfunc) and ``files`` (checked by
    ``volumes.checked``: ``mount_files``), then drop every capability.

    Returns the path to load the function from. Raises IsolationError when any step fails or a
    thread still holds a capability.
    """
    root, inside = package_root(filepath)
    _mount(root, USERFUNC, None, _MS_BIND | _MS_REC, None)
    _mount(None, USERFUNC, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV, None)
    mount_files(files or {})
    _mount("tmpfs", PACKAGES, "tmpfs", _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, "size=4k,mode=555")
    drop_capabilities()
    return str(Path(USERFUNC, inside)) if inside else USERFUNC


def mount_files(files: Mapping[str, bytes]) -> None:
    """Each root of ``files`` (``/secrets``, ``/configs``) that has some: a fresh tmpfs just big
    enough, the files written (``volumes.write``), then remounted read-only, so that once the
    capabilities are gone nothing in the worker can change, add or remove a file. A root with no
    file stays the sandbox's empty, read-only directory. Needs CAP_SYS_ADMIN (before
    ``drop_capabilities``); raises IsolationError."""
    for root, entries in volumes.by_root(files).items():
        pages = sum(-(-len(content) // _PAGE) + 1 for content in entries.values()) + 1
        options = f"size={pages * _PAGE},nr_inodes={3 * len(entries) + 8},mode=0700"
        _mount("tmpfs", root, "tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, options)
        try:
            volumes.write(root, entries)
        except OSError as exc:
            raise IsolationError(exc.errno, f"writing the files of {root}: {exc.strerror}") from None
        _mount(None, root, None, _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None)


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = tuple((name, ctypes.c_uint32) for name in ("effective", "permitted", "inheritable"))


_CapDataPair = _CapData * 2  # version 3 of the capability ABI: two 32-bit halves


_CAP_SETPCAP: Final = 8  # what dropping a capability from the bounding set needs
# The capabilities still in this thread's bounding set, as far as this module knows.
_bounding: list[int] = list(range(_LAST_CAPABILITY + 1))


def narrow_bounding_set() -> None:
    """Drop every capability but CAP_SETPCAP from the bounding set, ahead of specialization (a
    warm worker, before it starts any thread). What it keeps in effect is untouched (confining
    needs CAP_SYS_ADMIN), but nothing can ever gain a capability dropped here, and
    ``drop_capabilities``, on the cold start's path, has one to drop instead of every one."""
    global _bounding
    for capability in _bounding:
        if capability != _CAP_SETPCAP:
            _check(_prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0), f"dropping capability {capability}")
    _bounding = [_CAP_SETPCAP]


def drop_capabilities() -> None:
    """Empty every capability set of this thread, then check that no thread holds any."""
    for capability in _bounding:
        _check(_prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0), f"dropping capability {capability}")
    _check(_prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clearing ambient capabilities")
    header, data = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0), _CapDataPair()
    _check(_capset(ctypes.byref(header), data), "capset")
    held = threads_with_capabilities()
    if held:
        raise IsolationError(0, f"threads {held} still hold capabilities")


def threads_with_capabilities() -> list[int]:
    """Ids of this process's threads with any capability set not empty (capabilities are per thread)."""
    held = []
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/status", "rb") as status:
            lines = status.read().splitlines()
        if any(line.startswith(_CAPABILITY_FIELDS) and int(line.split()[1], 16) for line in lines):
            held.append(int(tid))
    return held
