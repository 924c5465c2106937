"""What the machine offers a sandbox: the tools, an interpreter's files, the host's own networks."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from runtime.interpreters import Interpreter
from runtime.worker import isolation

TOOLS = {
    "bwrap": "bubblewrap",
    "setpriv": "util-linux",
    "slirp4netns": "slirp4netns",
    "nsenter": "util-linux",
    "ip": "iproute2",
}
# Top-level names that are symlinks into /usr on merged-/usr systems (Debian 12), else directories.
_USR_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# Read-only files of /etc a Python program expects: TLS roots, the time zone.
_ETC_READONLY = ("/etc/ssl/certs", "/etc/ssl/openssl.cnf")


class SandboxUnavailable(RuntimeError):
    """The machine cannot run sandboxes (a tool is missing, or we are not root)."""


@dataclass(frozen=True)
class Tools:
    bwrap: str
    setpriv: str
    slirp4netns: str
    nsenter: str
    ip: str


def require_tools() -> Tools:
    """The paths of the tools sandboxes need; SandboxUnavailable naming what is missing and how
    to get it, or when this process is not root (it must start sandboxes as other uids)."""
    found = {name: shutil.which(name, path=os.environ.get("PATH", os.defpath) + ":/usr/sbin:/sbin")
             for name in TOOLS}  # fmt: skip
    missing = sorted(name for name, path in found.items() if path is None)
    if missing:
        packages = " ".join(sorted({TOOLS[name] for name in missing}))
        raise SandboxUnavailable(
            f"missing {', '.join(missing)}: install them (Debian: apt-get install {packages})"
        )
    if os.geteuid() != 0:
        raise SandboxUnavailable("sandboxes need root: each tenant runs as its own unprivileged uid")
    return Tools(**{name: str(path) for name, path in found.items()})


def system_binds() -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """``(read-only binds, symlinks)`` of the operating system every sandboxed process needs: /usr,
    the /bin, /lib... links (or directories), TLS roots and the time zone."""
    binds: list[tuple[str, str]] = [("/usr", "/usr")]
    links: list[tuple[str, str]] = []
    for name in _USR_LINKS:
        path = Path("/", name)
        if path.is_symlink():
            links.append((os.readlink(path), str(path)))
        elif path.is_dir():
            binds.append((str(path), str(path)))
    for name in _ETC_READONLY:
        if Path(name).exists():
            binds.append((name, name))
    if Path("/etc/localtime").is_symlink():
        links.append((os.readlink("/etc/localtime"), "/etc/localtime"))
    return tuple(binds), tuple(links)


def python_binds() -> tuple[tuple[str, str], ...]:
    """Read-only binds for this process's own interpreter, at the same paths: its installation and
    its virtualenv (a virtualenv's ``bin/python`` links to the installation by absolute path). For
    the portal's build sandbox; functions run one of ``runtime.interpreters`` (``python_layout``)."""
    paths = dict.fromkeys((sys.base_prefix, sys.prefix))
    return tuple((path, path) for path in paths if not _under_usr(path))


SANDBOX_VIRTUALENV = "/opt/faas/python"


def python_layout(interpreter: Interpreter) -> tuple[tuple[tuple[str, str], ...], str]:
    """``(read-only binds, the interpreter to run)`` for a sandbox running ``interpreter`` (one of
    ``runtime.interpreters``, never the runtime's own virtualenv): the virtualenv goes to a fixed
    path (Python finds its packages from where the executable is), the installation stays where
    the virtualenv's ``pyvenv.cfg`` points, since the virtualenv's binary links to it there.
    Raises SandboxUnavailable when the installation lives where the sandbox mounts a fresh /tmp."""
    # Where each worker mounts fresh tmpfs of its own: nothing it needs may be bound below them.
    if any(interpreter.base.is_relative_to(p) for p in isolation.PRIVATE_TMPFS):
        raise SandboxUnavailable(f"Python {interpreter.version} is installed in {interpreter.base}, "
                                 "which sandboxes replace")  # fmt: skip
    base = str(interpreter.base)
    binds = [] if _under_usr(base) else [(base, base)]
    binds.append((str(interpreter.venv), SANDBOX_VIRTUALENV))
    return tuple(binds), f"{SANDBOX_VIRTUALENV}/bin/{interpreter.python.name}"


def _under_usr(path: str) -> bool:
    return Path(path).is_relative_to("/usr")


def host_networks(tools: Tools) -> tuple[ipaddress.IPv4Network, ...]:
    """The IPv4 networks this machine has addresses in (its loopback included): a sandbox with
    egress must reach none of them, since services listen there."""
    output = subprocess.run(  # noqa: S603 - our argv
        [tools.ip, "-json", "-4", "addr", "show"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    networks = {ipaddress.ip_network("127.0.0.0/8")}
    for link in json.loads(output):
        for address in link.get("addr_info", []):
            interface = ipaddress.ip_interface(f"{address['local']}/{address['prefixlen']}")
            networks.update({interface.network, ipaddress.ip_network(interface.ip)})
    return tuple(sorted(n for n in networks if isinstance(n, ipaddress.IPv4Network)))
