"""The record of calls (runtime/calls.py) with a real runtime: each served call is recorded in its
namespace's stream, and only there, with whether it cold started. (The portal's reading of it,
one namespace's stream only, and the what-if on a recorded sequence are tested in
metrics/tests/test_coldstarts.py: the runtime's tests import nothing of the portal.)"""

from __future__ import annotations

import asyncio
import os
import time

import pytest
import redis

from runtime.calls import CallRecorder, stream_name
from runtime.tests.core import gauge
from testsupport.fission import environment, function, httptrigger, package_literal
from testsupport.processes import wait_until
from testsupport.runtime import RuntimeProcess

HELLO = "def main():\n    return 'hello'\n"
ACME, GLOBEX = "faas-acme", "faas-globex"


def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)


def deploy(runtime: RuntimeProcess, namespace: str, name: str, *, poolsize: int = 2, **fn: object) -> None:
    tenant = namespace.removeprefix("faas-")
    for obj in (
        environment(namespace, "python", poolsize=poolsize),
        package_literal(namespace, f"{name}-pkg", HELLO),
        function(namespace, name, package=f"{name}-pkg", **fn),  # type: ignore[arg-type]
        httptrigger(namespace, name, f"/{tenant}/{name}", function_name=name),
    ):
        response = runtime.apply(obj)
        assert response.status_code in (200, 201), response.text


def entries(namespace: str, name: str | None = None) -> list[dict[str, str]]:
    client = _redis()
    found: list[tuple[str, dict[str, str]]] = client.xrange(stream_name(namespace))  # type: ignore[assignment]
    client.close()
    return [fields for _, fields in found if name is None or fields["function"] == name]


def recorded(namespace: str, name: str, count: int) -> list[dict[str, str]]:
    wait_until(lambda: len(entries(namespace, name)) >= count, timeout=10)
    return entries(namespace, name)


@pytest.fixture
def clean_streams() -> None:
    client = _redis()
    client.delete(stream_name(ACME), stream_name(GLOBEX))
    client.close()


@pytest.mark.usefixtures("clean_streams")
def test_each_call_is_recorded_and_only_a_calls_own_cold_start_makes_it_cold(runtime: RuntimeProcess) -> None:
    since = time.time()
    deploy(runtime, ACME, "pooled", poolsize=2, idle_timeout=600)
    deploy(runtime, ACME, "fresh", executor="newdeploy", min_scale=0, max_scale=2, idle_timeout=600)
    deploy(runtime, ACME, "kept", executor="newdeploy", min_scale=1, max_scale=2, idle_timeout=600)
    wait_until(lambda: gauge(runtime, "runtime_pool_warm_workers", namespace=ACME, environment="python") == 2,
               timeout=30)  # fmt: skip
    # "kept" has its MinScale worker before any call: a cold start, but no call's.
    wait_until(lambda: gauge(runtime, "runtime_workers", executor="newdeploy", state="specialized") == 1,
               timeout=30)  # fmt: skip
    for name in ("pooled", "fresh", "kept"):
        for _ in range(3):
            assert runtime.call(f"/acme/{name}").text == "hello"

    pooled = recorded(ACME, "pooled", 3)
    assert [c["cold"] for c in pooled] == ["pool", "", ""]  # a pooled worker specialized for the first
    assert [c["cold"] for c in recorded(ACME, "fresh", 3)] == ["new", "", ""]
    assert [c["cold"] for c in recorded(ACME, "kept", 3)] == ["", "", ""]
    assert {c["status"] for c in pooled} == {"200"}
    starts = [float(c["time"]) for c in pooled]
    assert starts == sorted(starts)
    assert since <= starts[0] <= time.time()
    startups, durations = [float(c["startup"]) for c in pooled], [float(c["duration"]) for c in pooled]
    # The cold call waited for its worker; the warm ones did not, to speak of.
    assert startups[0] > max(startups[1:])
    assert all(0 <= startup <= duration for startup, duration in zip(startups, durations, strict=True))


@pytest.mark.usefixtures("clean_streams")
def test_a_call_is_recorded_in_its_own_namespaces_stream_only(runtime: RuntimeProcess) -> None:
    deploy(runtime, ACME, "f", idle_timeout=600)
    deploy(runtime, GLOBEX, "f", idle_timeout=600)
    for _ in range(2):
        assert runtime.call("/acme/f").status_code == 200
    assert runtime.call("/globex/f").status_code == 200

    recorded(ACME, "f", 2)
    recorded(GLOBEX, "f", 1)
    time.sleep(0.5)  # nothing more arrives late
    assert len(entries(ACME)) == 2
    assert len(entries(GLOBEX)) == 1
    assert not any("namespace" in fields for fields in entries(ACME))  # the stream says whose


def test_the_stream_is_bounded_by_count_and_by_age() -> None:
    namespace = "faas-bounded"
    client = _redis()
    client.delete(stream_name(namespace))
    old = int((time.time() - 30 * 3600) * 1000)
    for i in range(5):  # appended 30 hours ago: past the retention
        client.xadd(stream_name(namespace), {"function": "f-v1", "time": "0"}, id=f"{old + i}-0")

    async def record(maxlen: int) -> None:
        recorder = CallRecorder(os.environ["REDIS_URL"], maxlen=maxlen)
        await recorder.start()
        for _ in range(300):
            recorder.record(namespace, "f-v1", start=time.time(), duration=0.01, startup=0.0, cold="",
                            status=200)  # fmt: skip
        await recorder.stop()

    asyncio.run(record(maxlen=1000))
    kept = entries(namespace)
    assert len(kept) == 300  # the old ones are trimmed by age, the new ones all kept
    assert all(fields["time"] != "0" for fields in kept)
    asyncio.run(record(maxlen=50))
    assert 50 <= client.xlen(stream_name(namespace)) < 300  # by count (about: Redis trims nodes)
    client.delete(stream_name(namespace))
    client.close()


def test_a_recorder_keeps_calls_at_least_a_day() -> None:
    with pytest.raises(ValueError, match="24 hours"):
        CallRecorder(None, retention_s=3600)
