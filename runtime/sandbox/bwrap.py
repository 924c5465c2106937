"""The bubblewrap command line for a sandbox: a pure function of ``SandboxSpec``.

# Reference: https://github.com/containers/bubblewrap/blob/main/bwrap.xml (options of bwrap 0.8)
# Reference: https://man7.org/linux/man-pages/man1/setpriv.1.html
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

# Namespaces every sandbox gets; "try" for cgroup: older kernels lack cgroup namespaces.
NAMESPACES = ("--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try")


@dataclass(frozen=True)
class SandboxSpec:
    """What a sandbox holds and who runs in it.

    ``ro_binds`` and ``rw_binds`` are (host path, sandbox path) pairs; ``symlinks`` are (target,
    sandbox path); ``tmpfs`` are (sandbox path, size in bytes or None). Every parent directory of a
    mount point is created world-readable (bwrap would make it 0700, which the sandbox's own uid
    could not enter). The root is read-only. ``info_fd`` and ``block_fd``: bwrap's ``--info-fd``
    (it writes the sandboxed process's pid there) and ``--block-fd`` (the command starts only once
    that descriptor is readable).
    """

    uid: int
    gid: int
    command: tuple[str, ...]
    ro_binds: tuple[tuple[str, str], ...] = ()
    rw_binds: tuple[tuple[str, str], ...] = ()
    symlinks: tuple[tuple[str, str], ...] = ()
    tmpfs: tuple[tuple[str, int | None], ...] = ()
    dirs: tuple[str, ...] = ()
    hostname: str = "sandbox"
    chdir: str = "/"
    info_fd: int | None = None
    block_fd: int | None = None
    extra: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.uid <= 0 or self.gid <= 0:
            raise ValueError("a sandbox never runs as root: uid and gid must be > 0")
        if not self.command:
            raise ValueError("a sandbox needs a command")


def command(spec: SandboxSpec, *, bwrap: str = "bwrap", setpriv: str = "setpriv") -> list[str]:
    """The argv that runs ``spec.command`` in the sandbox."""
    argv = [bwrap, *NAMESPACES, "--die-with-parent", "--new-session", "--hostname", spec.hostname]
    # Held only by setpriv, which gives them up (and every other capability) with the uid change.
    argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    argv += list(_filesystem(spec))
    argv += ["--chdir", spec.chdir]
    if spec.info_fd is not None:
        argv += ["--info-fd", str(spec.info_fd)]
    if spec.block_fd is not None:
        argv += ["--block-fd", str(spec.block_fd)]
    argv += list(spec.extra)
    argv += [
        "--", setpriv, f"--reuid={spec.uid}", f"--regid={spec.gid}", "--clear-groups",
        "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--no-new-privs",
        "--", *spec.command,
    ]  # fmt: skip
    return argv


def _filesystem(spec: SandboxSpec) -> Iterator[str]:
    made: set[str] = {"/"}
    # tmpfs first: what is bound below one (a build's directory in /tmp) must land on it, not under.
    for dest, size in spec.tmpfs:
        yield from _parents(dest, made)
        made.add(dest)
        yield from ("--perms", "1777", *(("--size", str(size)) if size else ()), "--tmpfs", dest)
    targets = [dest for _, dest in (*spec.ro_binds, *spec.rw_binds, *spec.symlinks)] + list(spec.dirs)
    for target in targets:
        yield from _parents(target, made)
    for source, dest in spec.ro_binds:
        yield from ("--ro-bind", source, dest)
    for source, dest in spec.rw_binds:
        yield from ("--bind", source, dest)
    for target, dest in spec.symlinks:
        yield from ("--symlink", target, dest)
    yield from ("--proc", "/proc", "--dev", "/dev")
    for dest in spec.dirs:
        if dest not in made:
            made.add(dest)
            yield from ("--perms", "0755", "--dir", dest)
    yield from ("--remount-ro", "/")


def _parents(path: str, made: set[str]) -> Iterator[str]:
    """``--dir`` options for the missing ancestors of ``path``, world-readable, outermost first."""
    for parent in reversed(PurePosixPath(path).parents):
        name = str(parent)
        if name not in made:
            made.add(name)
            yield from ("--perms", "0755", "--dir", name)
