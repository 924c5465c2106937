"""Per-request output capture: print, stderr, logging and tracebacks become records of their request."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from runtime.tests.test_worker_support import Rig, call, rig, specialize
from runtime.worker.capture import LineStream, LogShipper, request_id

CHATTY = {
    "main.py": """
        import logging
        import sys
        import threading
        import time

        from flask import request

        # Both requests must be inside the function at the same time, or the test proves nothing.
        both_running = threading.Barrier(2)

        def main():
            tag = request.args["tag"]
            both_running.wait(timeout=10)
            for i in range(5):
                print(tag, "line", i)
                sys.stderr.write(f"{tag} err {i}\\n")
                time.sleep(0.01)
            logging.getLogger("fn").warning("%s logged", tag)
            print(f"{tag} partial", end="")
            return tag
    """
}


LOUD = """
def main():
    for _ in range(200_000):
        print("x" * 100)
    return "done"
"""


@pytest.fixture(scope="module")
def harness() -> Iterator[Rig]:
    with rig() as r:
        yield r


def test_concurrent_requests_keep_their_own_output(harness: Rig) -> None:
    path = harness.function(CHATTY, concurrency=2)

    with ThreadPoolExecutor(2) as pool:
        replies = list(
            pool.map(
                lambda tag: call(path, url=f"/?tag={tag}", headers={"X-Fission-Request-ID": f"rid-{tag}"}),
                ["a", "b"],
            )
        )

    assert [r.text for r in replies] == ["a", "b"]
    logs = harness.logs
    logs.wait_for(lambda _: all(f"{t} partial" in logs.messages(f"rid-{t}", "stdout") for t in "ab"))
    for tag in ("a", "b"):
        rid = f"rid-{tag}"
        assert logs.messages(rid, "stdout") == [f"{tag} line {i}" for i in range(5)] + [f"{tag} partial"]
        assert logs.messages(rid, "stderr") == [f"{tag} err {i}" for i in range(5)] + [
            f"WARNING fn: {tag} logged"
        ]


def test_a_line_arrives_within_a_second(harness: Rig) -> None:
    path = harness.function({"main.py": "def main():\n    print('quick')\n    return 'ok'\n"})

    assert call(path, headers={"X-Fission-Request-ID": "quick"}).status == 200
    start = time.monotonic()

    harness.logs.wait_for(lambda _: harness.logs.messages("quick") == ["quick"], timeout=1.0)
    assert time.monotonic() - start < 1.0
    record = harness.logs.for_request("quick")[0]
    assert set(record) == {"time", "request_id", "stream", "message"}
    assert abs(record["time"] - time.time()) < 5


def test_output_outside_a_request_has_no_request_id(harness: Rig) -> None:
    path = harness.function(
        {
            "main.py": """
                import threading

                def main():
                    # A thread started by the function does not inherit the request's context.
                    thread = threading.Thread(target=print, args=("from a thread",))
                    thread.start()
                    thread.join()
                    return "ok"
            """
        }
    )

    assert call(path, headers={"X-Fission-Request-ID": "outer"}).status == 200

    harness.logs.wait_for(lambda _: "from a thread" in harness.logs.messages(""))
    assert "from a thread" not in harness.logs.messages("outer")


def test_requests_beyond_concurrency_wait_their_turn(harness: Rig) -> None:
    path = harness.function(
        {"main.py": "import time\ndef main():\n    time.sleep(0.05)\n    return 'done'\n"}
    )

    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda _: call(path), range(4)))

    assert [(r.status, r.text) for r in replies] == [(200, "done")] * 4


def test_a_collector_that_never_reads_does_not_block_the_function(harness: Rig) -> None:
    path = harness.worker(deaf=True)  # its log connection is never read
    code = harness.code({"main.py": LOUD})
    assert specialize(path, code).status == 200

    assert call(path, timeout=30).text == "done"


def test_line_stream_splits_lines_per_context() -> None:
    read_fd, write_fd = os.pipe()
    shipper = LogShipper(None, fallback_fd=write_fd)
    stream = LineStream("stdout", shipper, open(os.devnull, "w"))  # noqa: SIM115 - closed below

    def write_as(rid: str) -> None:
        request_id.set(rid)
        stream.write(f"{rid}-a")
        stream.write(f"{rid}-b\n{rid}-c\n{rid}-")
        stream.write("tail")
        stream.flush_request(rid)

    threads = [threading.Thread(target=write_as, args=(rid,)) for rid in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stream.write("outside\n")
    shipper.close()
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        records = [json.loads(line) for line in pipe.read().splitlines()]

    for rid in ("one", "two"):
        assert [r["message"] for r in records if r["request_id"] == rid] == [
            f"{rid}-a{rid}-b",
            f"{rid}-c",
            f"{rid}-tail",
        ]
    assert [r["message"] for r in records if r["request_id"] == ""] == ["outside"]
    assert {r["stream"] for r in records} == {"stdout"}
