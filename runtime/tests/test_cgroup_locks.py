"""runtime.sandbox.cgroups.RuntimeLock and CgroupTree.sweep_orphans, on plain directories in place
of the cgroup hierarchies (the sweep only lists, reads ``cgroup.procs`` and removes directories);
test_sandbox.py has the same with real runtimes and real cgroups."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.sandbox.cgroups import CgroupTree, InstanceInUse, RuntimeLock

OURS, LIVE, GONE, NO_TREE = "a" * 12, "b" * 12, "c" * 12, "d" * 12


def tree(parents: dict[str, Path], instance: str, locks: Path) -> CgroupTree:
    roots = {name: parent / f"faas-runtime-{instance}" for name, parent in parents.items()}
    for root in roots.values():
        (root / "faas-acme" / "worker-1").mkdir(parents=True)
    made = CgroupTree(roots, RuntimeLock.hold(locks, instance))
    assert made.lock is not None
    return made


def test_a_held_lock_cannot_be_taken_and_a_released_one_can(tmp_path: Path) -> None:
    held = RuntimeLock.hold(tmp_path, LIVE)
    assert held is not None
    assert RuntimeLock.take(tmp_path, LIVE) is None
    with pytest.raises(InstanceInUse, match="uses this state directory"):
        RuntimeLock.hold(tmp_path, LIVE, wait=0.1)
    held.release(remove=True)
    assert not (tmp_path / f"{LIVE}.lock").exists()
    again = RuntimeLock.take(tmp_path, LIVE)
    assert again is not None
    again.release()


def test_only_the_subtrees_and_locks_of_runtimes_that_are_gone_are_swept(tmp_path: Path) -> None:
    parents = {"memory": tmp_path / "memory", "pids": tmp_path / "pids"}
    locks = tmp_path / "locks"
    ours = tree(parents, OURS, locks)
    live = tree(parents, LIVE, locks)
    gone = tree(parents, GONE, locks)
    assert gone.lock is not None
    gone.lock.release()  # its process died: the kernel dropped the lock, the file stays
    early = RuntimeLock.hold(locks, NO_TREE)  # died before it made its subtree
    assert early is not None
    early.release()
    (parents["memory"] / "unrelated").mkdir()

    assert ours.sweep_orphans() == [f"faas-runtime-{GONE}"]

    assert sorted(path.name for path in parents["memory"].iterdir()) == [
        f"faas-runtime-{OURS}", f"faas-runtime-{LIVE}", "unrelated",
    ]  # fmt: skip
    assert not (parents["pids"] / f"faas-runtime-{GONE}").exists()
    assert sorted(path.name for path in locks.iterdir()) == [f"{OURS}.lock", f"{LIVE}.lock"]
    assert all((root / "faas-acme" / "worker-1").is_dir() for root in live.roots.values())
    for alive in (ours, live):
        assert alive.lock is not None
        alive.lock.release(remove=True)
    assert list(locks.iterdir()) == []


def test_without_a_lock_of_its_own_a_runtime_sweeps_nothing(tmp_path: Path) -> None:
    parents = {"memory": tmp_path / "memory"}
    gone = tree(parents, GONE, tmp_path / "locks")
    assert gone.lock is not None
    gone.lock.release()
    unlocked = CgroupTree({"memory": parents["memory"] / f"faas-runtime-{OURS}"})
    assert unlocked.sweep_orphans() == []
    assert (parents["memory"] / f"faas-runtime-{GONE}").is_dir()


def test_where_no_lock_file_can_be_made_the_runtime_runs_without_one(tmp_path: Path) -> None:
    """Another user's lock directory, say: nothing is known of other runtimes, and none is swept."""
    (tmp_path / "not-a-directory").write_text("")
    assert RuntimeLock.hold(tmp_path / "not-a-directory", OURS) is None
    assert RuntimeLock.hold(tmp_path / "not-a-directory" / "locks", OURS) is None
