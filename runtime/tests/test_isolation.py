"""The pure parts of a worker's isolation and of the sandbox's command line (the rest needs a
sandbox: runtime/tests/test_sandbox.py)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from runtime.sandbox import bwrap, uids
from runtime.sandbox.network import Grant, allowed_networks, route_commands
from runtime.worker.isolation import IsolationError, package_root


@pytest.mark.parametrize(
    ("filepath", "expected"),
    [
        ("/packages/abc/deploy", ("/packages/abc", "deploy")),
        ("/packages/abc/function.py", ("/packages/abc", "function.py")),
        ("/packages/abc", ("/packages/abc", "")),
    ],
)
def test_a_package_path_names_one_package(filepath: str, expected: tuple[str, str]) -> None:
    assert package_root(filepath) == expected


@pytest.mark.parametrize(
    "filepath",
    ["/packages", "/packages/..", "/packages/../etc/passwd", "/etc/passwd", "packages/abc", "/tmp/x"],
)
def test_anything_else_is_refused(filepath: str) -> None:
    with pytest.raises(IsolationError):
        package_root(filepath)


def test_the_command_drops_to_the_uid_inside_a_read_only_root() -> None:
    spec = bwrap.SandboxSpec(
        uid=1234, gid=1234, command=("python", "-V"), ro_binds=(("/opt/x", "/deep/in/x"),),
        rw_binds=(("/tmp/build", "/tmp/build"),), tmpfs=(("/tmp", 1024),),
    )  # fmt: skip
    argv = bwrap.command(spec)

    assert argv[-4:] == ["--no-new-privs", "--", "python", "-V"]
    assert "--reuid=1234" in argv
    assert "--clear-groups" in argv
    assert {"--unshare-pid", "--unshare-net", "--die-with-parent", "--new-session"} <= set(argv)
    joined = " ".join(argv)
    # The tmpfs comes before what is bound inside it, and every parent is world-readable.
    assert joined.index("--tmpfs /tmp") < joined.index("--bind /tmp/build /tmp/build")
    assert "--perms 0755 --dir /deep --perms 0755 --dir /deep/in" in joined
    assert joined.index("--remount-ro /") > joined.index("--ro-bind /opt/x /deep/in/x")


def test_a_sandbox_never_runs_as_root() -> None:
    with pytest.raises(ValueError, match="never runs as root"):
        bwrap.SandboxSpec(uid=0, gid=0, command=("id",))


def net(cidr: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(cidr)


def test_egress_is_the_union_of_the_grants_without_what_is_always_blocked() -> None:
    grants = [
        Grant(net("0.0.0.0/0"), (net("10.0.0.0/8"), net("192.168.0.0/16"))),
        Grant(net("10.1.0.0/16")),  # a second rule may allow part of what the first excepts
    ]
    allowed = allowed_networks(grants, blocked=[net("198.51.100.0/24")])

    def reachable(address: str) -> bool:
        return any(ipaddress.IPv4Address(address) in network for network in allowed)

    assert reachable("8.8.8.8")
    assert reachable("10.1.2.3")
    for address in ("10.2.0.1", "192.168.1.1", "127.0.0.1", "169.254.169.254", "224.0.0.1",
                    "10.0.2.2", "198.51.100.7", "0.1.2.3"):  # fmt: skip
        assert not reachable(address), address


def test_no_grant_no_route() -> None:
    assert allowed_networks([]) == []
    assert route_commands([]) == "route flush table main\n"
    commands = route_commands([net("8.8.8.0/24")])
    assert "route add 8.8.8.0/24 via 10.0.2.2 dev tap0" in commands
    assert "default" not in commands


def test_tenant_uids_are_unique_kept_and_clear_of_accounts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    subuid = tmp_path / "subuid"
    subuid.write_text("alice:200001:3\nbroken line\n")
    read = uids._subordinate_ranges
    monkeypatch.setattr(uids, "_subordinate_ranges", lambda: read((str(subuid),)))
    mapping = uids.UidMap(tmp_path / "uids.json", base=200_000)

    first, second = mapping.uid("faas-a"), mapping.uid("faas-b")

    assert first == 200_000
    assert second == 200_004  # 200001..200003 are alice's subordinate uids
    assert uids.UidMap(tmp_path / "uids.json", base=200_000).uid("faas-b") == second  # kept
    assert mapping.uid("faas-a") == first
