"""The sandbox a build's pip runs in: the same kind as a function's (``runtime.sandbox``), with
egress to the package index only.

- bubblewrap with new pid, mount, network, IPC and UTS namespaces, as the build uid
  (``PORTAL_BUILD_UID``), no capabilities, ``no_new_privs``, a read-only root holding the operating
  system, the interpreter and pip, and the machine's pip configuration with the local paths it
  names (``find-links``, ``file://`` indexes, certificates, constraints);
- the build's own directory, writable, at its own path; a private ``/tmp``;
- a network with routes to the package index's addresses only: its hosts (``index-url``,
  ``extra-index-url``, ``find-links``, a proxy; ``pypi.org`` and ``files.pythonhosted.org`` when
  none is configured) are resolved here, pinned in the sandbox's ``/etc/hosts``, and reached
  through slirp4netns; everything else, the host's own services included, is unreachable.

Nothing of the build's can linger: the sandbox's pid namespace ends with it.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import itertools
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from runtime import interpreters
from runtime.sandbox import bwrap
from runtime.sandbox.host import (
    SandboxUnavailable,
    Tools,
    host_networks,
    python_binds,
    require_tools,
    system_binds,
)
from runtime.sandbox.network import Grant, Slirp, allowed_networks, set_routes

PYPI_HOSTS = ("pypi.org", "files.pythonhosted.org")
# pip settings that name where packages come from, or files pip reads.
_LOCATION_KEYS = ("index-url", "extra-index-url", "find-links", "cert", "client-cert", "constraint", "proxy")
_LOCATION_FLAGS = ("--index-url", "-i", "--extra-index-url", "--find-links", "-f", "--proxy")
_CONFIG_FILES = ("/etc/pip.conf", "/etc/xdg/pip")
TMP_BYTES = 256 * 1024 * 1024
START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class PipLocations:
    """What pip reads on this machine: local paths (bound read-only) and hosts (reachable)."""

    paths: tuple[str, ...]
    hosts: tuple[str, ...]


def pip_locations(env: dict[str, str], index_args: tuple[str, ...] = ()) -> PipLocations:
    """Where pip, run with ``env`` and ``index_args``, gets packages from (its configuration files,
    environment variables and arguments); cached per environment."""
    return _pip_locations(tuple(sorted(env.items())), index_args)


@functools.cache
def _pip_locations(env: tuple[tuple[str, str], ...], index_args: tuple[str, ...]) -> PipLocations:
    settings = _pip_config(dict(env))
    values = [value for key, value in settings if key in _LOCATION_KEYS]
    values += [value for flag, value in itertools.pairwise(index_args) if flag in _LOCATION_FLAGS]
    paths: set[str] = set()
    hosts: set[str] = set()
    for word in (word for value in values for word in value.split()):
        _classify(word, paths, hosts)
    if not any(key == "index-url" for key, _ in settings) and "--index-url" not in index_args:
        hosts.update(PYPI_HOSTS)  # pip's default index
    if hosts & set(PYPI_HOSTS):
        hosts.update(PYPI_HOSTS)  # the index links to its files there
    paths.update(p for p in (*_CONFIG_FILES, dict(env).get("PIP_CONFIG_FILE", "")) if p and os.path.exists(p))
    return PipLocations(tuple(sorted(paths)), tuple(sorted(hosts)))


def _pip_config(env: dict[str, str]) -> list[tuple[str, str]]:
    """``(key, value)`` of every setting pip sees (``pip config list``: files and environment)."""
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], env=env, capture_output=True, text=True, timeout=60
    ).stdout
    settings = []
    for line in listing.splitlines():
        name, _, quoted = line.partition("=")
        settings.append((name.rpartition(".")[2], quoted.strip().strip("'\"")))
    return settings


def _classify(value: str, paths: set[str], hosts: set[str]) -> None:
    url = urlparse(value)
    if url.scheme in ("http", "https") and url.hostname:
        hosts.add(url.hostname)
    elif url.scheme == "file":
        paths.add(unquote(url.path))
    elif value.startswith("/") and os.path.exists(value):
        paths.add(value)


def resolve(hosts: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """IPv4 addresses of each host (a host that does not resolve is left out: pip reports it)."""
    addresses: dict[str, tuple[str, ...]] = {}
    for host in hosts:
        try:
            infos = socket.getaddrinfo(host, 443, socket.AF_INET, socket.SOCK_STREAM)
        except OSError:
            continue
        addresses[host] = tuple(sorted({str(info[4][0]) for info in infos}))
    return addresses


class BuildSandbox:
    """Runs a build's commands sandboxed as ``uid``. Needs root and the sandbox tools."""

    def __init__(self, uid: int, tools: Tools | None = None) -> None:
        if uid < 1000:
            raise ValueError("the build uid must be 1000 or above")
        self.uid = uid
        self.tools = tools or require_tools()

    @contextlib.contextmanager
    def popen(self, argv: list[str], *, workdir: Path, cwd: Path, env: dict[str, str],
              index_args: tuple[str, ...] = (), python: Path | None = None,
              ) -> Iterator[subprocess.Popen[bytes]]:  # fmt: skip
        """Start ``argv`` in the sandbox, which holds ``python``'s virtualenv and installation (None:
        the portal's own interpreter) (stdout and stderr together on one pipe, in a session of
        its own) once its network is in place; ``workdir`` is the only writable host directory.
        The caller ends the process (its process group) before leaving the block. Raises OSError
        when the sandbox cannot start."""
        locations = pip_locations(env, index_args)
        addresses = resolve(locations.hosts)
        grants = [Grant(ipaddress.IPv4Network(ip)) for ips in addresses.values() for ip in ips]
        _give(workdir, self.uid)
        with tempfile.TemporaryDirectory(prefix="build-etc-") as private, contextlib.ExitStack() as stack:
            etc = _etc(Path(private), self.uid, addresses)
            info_r, info_w = os.pipe()
            block_r, block_w = os.pipe()
            stack.callback(os.close, info_r)
            stack.callback(os.close, block_w)
            spec = self._spec(argv, workdir, cwd, locations, etc, python, info_fd=info_w, block_fd=block_r)
            try:
                process = subprocess.Popen(  # noqa: S603 - bwrap with our spec
                    bwrap.command(spec, bwrap=self.tools.bwrap, setpriv=self.tools.setpriv), cwd="/",
                    env=env, pass_fds=(info_w, block_r), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
            finally:
                os.close(info_w)
                os.close(block_r)
            try:
                pid = _child_pid(info_r)
                # Not even the index may be on this machine: routes cannot tell its port apart.
                allowed = allowed_networks(grants, host_networks(self.tools))
                if allowed:
                    stack.callback(Slirp.start(self.tools, pid, Path(private) / "slirp4netns.log").stop)
                set_routes(self.tools, pid, allowed)
            except BaseException:
                _end(process)
                raise
            os.write(block_w, b"1")  # the command starts now, with its network in place
            yield process

    def _spec(self, argv: list[str], workdir: Path, cwd: Path, locations: PipLocations, etc: dict[str, Path],
              python: Path | None, *, info_fd: int, block_fd: int) -> bwrap.SandboxSpec:  # fmt: skip
        os_binds, links = system_binds()
        interpreter = python_binds() if python is None else virtualenv_binds(python)
        return bwrap.SandboxSpec(
            uid=self.uid, gid=self.uid, command=tuple(argv), hostname="build", chdir=str(cwd),
            ro_binds=(*os_binds, *interpreter, *((p, p) for p in locations.paths),
                      *((str(path), f"/etc/{name}") for name, path in etc.items())),
            rw_binds=((str(workdir), str(workdir)),), symlinks=links,
            tmpfs=(("/tmp", TMP_BYTES),), info_fd=info_fd, block_fd=block_fd,  # noqa: S108 - the sandbox's
        )  # fmt: skip


def virtualenv_binds(python: Path) -> tuple[tuple[str, str], ...]:
    """Read-only binds, at their own paths, for the runtime virtualenv of ``python``
    (``<venv>/bin/python``) and the installation it was made from, whose binary it links to."""
    found = interpreters.at(python.parent.parent)
    if found is None:
        raise SandboxUnavailable(f"{python} is not the python of a complete runtime virtualenv")
    paths = dict.fromkeys(str(path) for path in (found.venv, found.base) if not path.is_relative_to("/usr"))
    return tuple((path, path) for path in paths)


def _end(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _child_pid(info: int) -> int:
    readable, _, _ = select.select([info], [], [], START_TIMEOUT_S)
    data = b""
    while readable:
        chunk = os.read(info, 4096)
        if not chunk:
            break
        data += chunk
        with contextlib.suppress(ValueError):
            return int(json.loads(data)["child-pid"])
    raise OSError(f"the build sandbox did not start: {data[:200]!r}")


def _give(workdir: Path, uid: int) -> None:
    """The build's directory belongs to the build uid (the portal, as root, still reads it)."""
    for path in (workdir, *workdir.rglob("*")):
        os.lchown(path, uid, uid)


def _etc(directory: Path, uid: int, addresses: dict[str, tuple[str, ...]]) -> dict[str, Path]:
    """The sandbox's /etc files: the build user, no DNS, the index's hosts pinned."""
    pinned = "".join(f"{ip} {host}\n" for host, ips in addresses.items() for ip in ips)
    files = {
        "passwd": f"build:x:{uid}:{uid}:build:/tmp:/usr/sbin/nologin\n",
        "group": f"build:x:{uid}:\n",
        "hosts": "127.0.0.1 localhost\n" + pinned,
        "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
        "resolv.conf": "",
    }
    paths = {}
    for name, text in files.items():
        path = directory / name
        path.write_text(text)
        path.chmod(0o644)
        paths[name] = path
    directory.chmod(0o755)
    return paths


__all__ = ["BuildSandbox", "PipLocations", "SandboxUnavailable", "pip_locations", "resolve"]
