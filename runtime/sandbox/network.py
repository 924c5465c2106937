"""A sandbox's network: nothing but loopback, or egress to allowed IPv4 networks only.

Every sandbox has a network namespace of its own (bwrap ``--unshare-net``): a loopback interface
and nothing else, so nothing on the host (or anywhere) is reachable. Egress, when allowed, goes
through slirp4netns, a user-mode TCP/IP stack run by the runtime outside the sandbox:

- it is started with ``--disable-host-loopback`` (its gateway never leads to the host's 127.0.0.1),
  in a mount namespace and a seccomp filter of its own (``--enable-sandbox --enable-seccomp``);
- the sandbox gets no default route, only a route to each allowed network, computed exactly as a
  union of NetworkPolicy ``ipBlock`` rules (cidr minus except) minus ``ALWAYS_BLOCKED`` and the
  host's own networks: everything else is "network unreachable";
- its DNS is slirp4netns's forwarder at 10.0.2.3 (inside its own subnet, so always reachable).

# Reference: https://github.com/rootless-containers/slirp4netns/blob/master/slirp4netns.1.md
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import select
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from runtime.sandbox.host import Tools

Network = ipaddress.IPv4Network
TAP = "tap0"
GATEWAY = "10.0.2.2"
DNS_SERVER = "10.0.2.3"
ADDRESS = "10.0.2.100/24"
MTU = 65520
READY_TIMEOUT_S = 10.0
# Never routed, whatever a policy allows: "this network", loopback, link-local (cloud metadata
# services), multicast and reserved, and slirp4netns's own subnet (only its DNS is reachable there).
ALWAYS_BLOCKED: tuple[Network, ...] = tuple(
    ipaddress.IPv4Network(cidr)
    for cidr in ("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4", "10.0.2.0/24")
)


class EgressError(RuntimeError):
    """slirp4netns did not start, or the routes could not be set."""


@dataclass(frozen=True)
class Grant:
    """One ``ipBlock`` of an egress rule: ``cidr`` minus ``excepts``."""

    cidr: Network
    excepts: tuple[Network, ...] = ()


def allowed_networks(grants: Iterable[Grant], blocked: Iterable[Network] = ()) -> list[Network]:
    """The networks egress may reach: the union of the grants, minus ``blocked`` and
    ``ALWAYS_BLOCKED``, as disjoint CIDRs (the routes to install)."""
    allowed: list[Network] = []
    for grant in grants:
        allowed += subtract([grant.cidr], grant.excepts)
    return list(ipaddress.collapse_addresses(subtract(allowed, (*ALWAYS_BLOCKED, *blocked))))


def subtract(networks: Iterable[Network], removed: Iterable[Network]) -> list[Network]:
    """``networks`` without the addresses of ``removed``, as CIDRs."""
    result = list(ipaddress.collapse_addresses(networks))
    for hole in removed:
        remaining: list[Network] = []
        for network in result:
            if hole.subnet_of(network):
                remaining += network.address_exclude(hole)
            elif not network.subnet_of(hole):
                remaining.append(network)
        result = remaining
    return result


def route_commands(networks: list[Network]) -> str:
    """``ip -batch`` input: the tap interface up with slirp4netns's address, one route per network,
    no default route. With no networks, only the routing table is emptied."""
    if not networks:
        return "route flush table main\n"
    lines = [
        f"link set {TAP} mtu {MTU}", f"addr flush dev {TAP}", "route flush table main",
        f"addr add {ADDRESS} dev {TAP}", f"link set {TAP} up",
    ]  # fmt: skip
    lines += [f"route add {network} via {GATEWAY} dev {TAP}" for network in networks]
    return "\n".join(lines) + "\n"


def set_routes(tools: Tools, pid: int, networks: list[Network]) -> None:
    """Install ``networks`` as the only routes of process ``pid``'s network namespace."""
    argv = [tools.nsenter, f"--target={pid}", "--net", "--", tools.ip, "-batch", "-"]
    commands = route_commands(networks)
    try:
        done = subprocess.run(argv, input=commands, capture_output=True, text=True, timeout=30)  # noqa: S603
    except subprocess.TimeoutExpired:
        raise EgressError("setting routes timed out") from None
    if done.returncode != 0:
        raise EgressError(f"setting routes failed: {done.stderr.strip()[:500]}")


class Slirp:
    """A slirp4netns process serving one network namespace; it ends when ``stop`` closes its exit fd
    (or when this process dies, which closes it too)."""

    def __init__(self, process: subprocess.Popen[bytes], exit_fd: int, log: Path) -> None:
        self.process = process
        self._exit_fd = exit_fd
        self.log = log

    @classmethod
    def start(cls, tools: Tools, pid: int, log: Path) -> Slirp:
        """Attach to process ``pid``'s network namespace; returns once its tap device exists.
        Its messages are appended to ``log``."""
        ready_r, ready_w = os.pipe()
        exit_r, exit_w = os.pipe()
        argv = [
            tools.slirp4netns, f"--mtu={MTU}", "--disable-host-loopback", "--enable-sandbox",
            "--enable-seccomp", f"--ready-fd={ready_w}", f"--exit-fd={exit_r}",
            # Its own user namespace (root's), not the zygote's: the network namespace belongs to
            # root's, and from the zygote's slirp4netns could not enter it.
            "--userns-path=/proc/self/ns/user", str(pid), TAP,
        ]  # fmt: skip
        try:
            with log.open("ab") as output:
                process = subprocess.Popen(  # noqa: S603 - our argv, no tenant text
                    argv, pass_fds=(ready_w, exit_r), stdin=subprocess.DEVNULL,
                    stdout=output, stderr=subprocess.STDOUT,
                )  # fmt: skip
        finally:
            os.close(ready_w)
            os.close(exit_r)
        slirp = cls(process, exit_w, log)
        try:
            slirp._wait_ready(ready_r)
        except EgressError:
            slirp.stop()
            raise
        finally:
            os.close(ready_r)
        return slirp

    def _wait_ready(self, ready: int) -> None:
        readable, _, _ = select.select([ready], [], [], READY_TIMEOUT_S)
        if not readable or os.read(ready, 1) != b"1":
            said = self.log.read_text(errors="replace").strip()[-500:] if self.log.exists() else ""
            raise EgressError(f"slirp4netns did not start: {said}")

    def stop(self) -> None:
        """End it (closing its exit fd), SIGKILL after 5 s; never raises."""
        with contextlib.suppress(OSError):
            os.close(self._exit_fd)
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
