"""The zygote: spawning, isolation (session, environment, memory limit), reaping, shutdown."""

from __future__ import annotations

import http.client
import os
import signal
from collections.abc import Iterator

import pytest

from runtime.tests.test_worker_support import (
    Rig,
    Zygote,
    call,
    healthy,
    kill_quietly,
    process_state,
    rig,
    short_tmpdir,
    specialize,
)
from testsupport.processes import wait_until

MB = 1024 * 1024

INSPECT = {
    "main.py": """
        import os

        def main():
            return {"env": dict(os.environ), "cwd": os.getcwd(), "sid": os.getsid(0), "pid": os.getpid(),
                    "batch": os.sched_getscheduler(0) == os.SCHED_BATCH}
    """
}

ALLOCATE = {
    "main.py": """
        from flask import request

        def main():
            block = bytearray(int(request.args["mb"]) * 1024 * 1024)
            return str(len(block))
    """
}


@pytest.fixture(scope="module")
def harness() -> Iterator[Rig]:
    with rig() as r:
        yield r


def test_ping(harness: Rig) -> None:
    assert harness.zygote.request({"op": "ping"}) == {"ok": True}


def test_child_runs_in_its_own_session_with_exactly_the_given_environment(harness: Rig) -> None:
    env = {"ONLY": "this"}
    path = str(harness.root / "inspect.sock")
    pid = harness.zygote.spawn(path, harness.root, env)
    harness.pids.append(pid)
    assert specialize(path, harness.code(INSPECT)).status == 200

    seen = call(path).json()

    assert seen["env"] == env  # nothing inherited from the zygote
    assert seen["cwd"] == str(harness.root)
    assert seen["pid"] == pid
    assert seen["sid"] == pid  # os.setsid(): a session (and process group) of its own
    assert seen["batch"] is True  # SCHED_BATCH, the zygote's (zygote._batch_scheduling)
    assert os.environ.get("PORTAL_SECRET_KEY")  # the zygote had more (the suite sets it)
    assert os.stat(path).st_mode & 0o777 == 0o600  # only our user may connect (and run code)


def test_memory_limit_fails_the_request_not_the_zygote(harness: Rig) -> None:
    path = harness.worker(memory_bytes=128 * MB)
    assert specialize(path, harness.code(ALLOCATE)).status == 200
    assert call(path, url="/?mb=1").text == str(MB)  # small allocations still work

    try:
        status = call(path, url="/?mb=512", headers={"X-Fission-Request-ID": "oom"}).status
    except (ConnectionError, http.client.HTTPException):
        status = None  # the worker died: the connection dropped
    assert status is None or status >= 500
    if status == 500:  # MemoryError was raised in the function and reported as its failure
        harness.logs.wait_for(lambda _: "MemoryError" in harness.logs.messages("oom", "stderr"))

    assert harness.zygote.request({"op": "ping"}) == {"ok": True}
    again = harness.worker()
    assert specialize(again, harness.code(ALLOCATE)).status == 200
    assert call(again, url="/?mb=512").text == str(512 * MB)  # no limit given: no limit


def test_children_are_reaped(harness: Rig) -> None:
    pids = [harness.zygote.spawn(harness.root / f"reap{i}.sock", harness.root) for i in range(3)]
    for pid in pids:
        assert process_state(pid) in {"S", "R"}

    for pid in pids:
        kill_quietly(pid, signal.SIGKILL)

    # A zombie keeps its /proc entry (state Z) until its parent waits for it.
    wait_until(
        lambda: all(process_state(pid) is None for pid in pids),
        timeout=5,
        message="the zygote to reap its children",
    )
    assert harness.zygote.request({"op": "ping"}) == {"ok": True}


SPAWN = {"op": "spawn", "cwd": "/", "env": {}}


@pytest.mark.parametrize(
    ("message", "fds", "error"),
    [
        ({"op": "dance"}, 0, "unknown op"),
        (SPAWN, 3, "spawn takes 4 descriptors"),
        ({**SPAWN, "cwd": "/nonexistent/dir"}, 4, "not a directory"),
        ({**SPAWN, "env": {"A": 1}}, 4, "env"),
        ({**SPAWN, "memory_bytes": -1}, 4, "memory_bytes"),
        ({**SPAWN, "tmp_bytes": 0}, 4, "tmp_bytes"),
        ({**SPAWN, "concurrency": 0}, 4, "concurrency"),
    ],
)
def test_bad_requests_get_an_error_reply_and_leak_no_descriptor(
    harness: Rig, message: dict[str, object], fds: int, error: str
) -> None:
    read, write = os.pipe()
    try:
        reply = harness.zygote.request(message, [write] * fds)
        os.close(write)
        write = -1
        assert os.read(read, 1) == b""  # EOF: the zygote closed every copy it was sent
    finally:
        os.close(read)
        if write >= 0:
            os.close(write)

    assert error in reply["error"]
    assert harness.zygote.request({"op": "ping"}) == {"ok": True}


def test_a_message_that_is_not_json_gets_an_error_reply(harness: Rig) -> None:
    reply, _ = harness.zygote.exchange_raw(b"not json")
    assert "error" in reply
    assert harness.zygote.request({"op": "ping"}) == {"ok": True}


def test_closing_the_control_socket_stops_the_zygote_and_its_children() -> None:
    with short_tmpdir() as root:
        zygote = Zygote()
        pid = zygote.spawn(root / "w.sock", root)
        assert healthy(str(root / "w.sock"))

        zygote.close()  # closes the control socket

        assert zygote.process.returncode == 0
        assert process_state(pid) is None  # ended and reaped before the zygote exited


def test_workers_inherit_nothing_the_zygote_was_started_with() -> None:
    read, write = os.pipe()
    leaked = f"pipe:[{os.fstat(read).st_ino}]"
    with short_tmpdir() as root:
        zygote = Zygote(extra_fds=(read, write))
        try:
            pid = zygote.spawn(root / "w.sock", root)
            seen = {name: _descriptors(p) for name, p in (("zygote", zygote.process.pid), ("worker", pid))}
        finally:
            zygote.close()
            os.close(read)
            os.close(write)

    assert leaked not in seen["zygote"]  # the zygote closed it at start
    assert leaked not in seen["worker"]


def _descriptors(pid: int) -> set[str]:
    return {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
