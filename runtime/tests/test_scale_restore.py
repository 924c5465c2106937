"""What makes the runtime scale to tens of thousands of functions (issue 19), and that it still does
everything it did: the store keeps objects as their JSON and reads a restart's files without a
collection per few hundred, packages unpacked before a restart are neither fetched nor unpacked
again, parsed objects are slotted and share their repeated parts, per-function executor state
exists only while a function runs; and a restart restores triggers, scaling, Secrets, ConfigMaps and
warm pools.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import gc
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.errors import Conflict, NotFound, PackageUnavailable
from runtime.executor import Deployable, Executor, Waiters
from runtime.objects import Archive, HTTPTrigger, parse_environment, parse_function, parse_httptrigger
from runtime.packages import Packages
from runtime.store import Store
from testsupport.fission import configmap, environment, function, httptrigger, package_literal, secret
from testsupport.processes import wait_until
from testsupport.runtime import RuntimeProcess

NS, OTHER = "faas-acme", "faas-globex"
R = "/acme"


def _put_all(store: Store, objects: list[tuple[str, dict[str, Any]]]) -> None:
    for plural, obj in objects:
        store.put(plural, obj["metadata"]["namespace"], obj, create=True)


def _objects() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("environments", environment(NS, "python")),
        ("packages", package_literal(NS, "p", "def main():\n    return 'p'\n")),
        ("functions", function(NS, "b", package="p")),
        ("functions", function(NS, "a", package="p")),
        ("functions", function(OTHER, "c", package="p")),
        ("httptriggers", httptrigger(NS, "t2", f"{R}/items/{{id}}", function_name="a")),
        ("httptriggers", httptrigger(NS, "t1", f"{R}/items/{{name}}", function_name="b")),
    ]


# ------------------------------------------------------------------ the store


def test_a_restart_reads_back_every_object_as_it_was_stored(tmp_path: Path) -> None:
    store = Store(tmp_path)
    _put_all(store, _objects())
    again = Store(tmp_path)
    assert again.load() == len(_objects())
    assert sorted(again.raw) == sorted(store.raw)
    for key in store.raw:
        assert again.get(key) == store.get(key)
        assert again.parsed[key] == store.parsed[key]
    # The version counter goes on from the highest stored one: no resourceVersion is given twice.
    created = again.put("functions", NS, function(NS, "d", package="p"), create=True)
    assert int(created["metadata"]["resourceVersion"]) == len(_objects()) + 1


def test_objects_of_a_kind_come_in_the_order_of_their_files(tmp_path: Path) -> None:
    """The route table's template order (runtime.router) is the order of the triggers: a restart
    must give the one the files sort in, whatever order they were written in."""
    store = Store(tmp_path)
    _put_all(store, _objects())
    again = Store(tmp_path)
    again.load()
    triggers: list[HTTPTrigger] = list(again.items("httptriggers"))
    assert [t.meta.name for t in triggers] == ["t1", "t2"]
    assert [f.meta.name for f in again.items("functions")] == ["a", "b", "c"]
    assert [(f.meta.namespace, f.meta.name) for f in store.items("functions")] == [
        (NS, "b"), (NS, "a"), (OTHER, "c")]  # fmt: skip


def test_a_read_object_is_the_callers_own_copy(tmp_path: Path) -> None:
    store = Store(tmp_path)
    _put_all(store, _objects())
    key = ("functions", NS, "a")
    read = store.get(key)
    read["spec"]["functionTimeout"] = 1
    read["metadata"]["name"] = "changed"
    assert store.get(key)["metadata"]["name"] == "a"
    assert store.raw[key]["spec"]["functionTimeout"] == 60
    assert key in store.raw
    assert ("functions", NS, "nope") not in store.raw
    assert store.raw.get(("functions", NS, "nope")) is None


def test_lists_select_by_kind_and_namespace_sorted(tmp_path: Path) -> None:
    store = Store(tmp_path)
    _put_all(store, _objects())
    assert [o["metadata"]["name"] for o in store.list("functions", NS)] == ["a", "b"]
    assert [o["metadata"]["name"] for o in store.list("functions")] == ["a", "b", "c"]
    assert store.list("functions", "faas-nobody") == []
    assert store.list("timetriggers") == []


def test_deleted_objects_are_gone_from_every_view_and_from_disk(tmp_path: Path) -> None:
    store = Store(tmp_path)
    _put_all(store, _objects())
    key = ("functions", NS, "a")
    store.delete(key)
    assert key not in store.raw
    assert key not in store.parsed
    assert [f.meta.name for f in store.items("functions")] == ["b", "c"]
    with pytest.raises(NotFound):
        store.get(key)
    again = Store(tmp_path)
    again.load()
    assert key not in again.raw


def test_create_and_replace_keep_their_rules(tmp_path: Path) -> None:
    store = Store(tmp_path)
    _put_all(store, _objects())
    with pytest.raises(Conflict):
        store.put("functions", NS, function(NS, "a", package="p"), create=True)
    stale = function(NS, "a", package="p")
    stale["metadata"]["resourceVersion"] = "1"
    with pytest.raises(Conflict):
        store.put("functions", NS, stale, create=False)
    replaced = store.put("functions", NS, function(NS, "a", package="p", timeout=5), create=False)
    assert store.get(("functions", NS, "a")) == replaced
    assert store.parsed[("functions", NS, "a")].timeout == 5.0
    # Replaced in place: its kind's order does not change.
    assert [f.meta.name for f in store.items("functions")] == ["b", "a", "c"]


def test_unreadable_files_are_skipped_and_collection_comes_back_on(tmp_path: Path) -> None:
    store = Store(tmp_path)
    _put_all(store, _objects())
    directory = tmp_path / "objects" / "functions" / NS
    (directory / "broken.json").write_text("{not json")
    (directory / "wrong.json").write_text(json.dumps(function(NS, "wrong", package="p", timeout=-1)))
    (directory / "left.tmp").write_text("{}")  # a write a crash interrupted
    again = Store(tmp_path)
    assert gc.isenabled()
    assert again.load() == len(_objects())
    assert gc.isenabled()
    gc.disable()
    try:
        Store(tmp_path).load()
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()


def test_a_store_with_no_state_loads_nothing(tmp_path: Path) -> None:
    assert Store(tmp_path / "none").load() == 0


# ------------------------------------------------------------------ packages


def _literal(code: bytes) -> Archive:
    digest = hashlib.sha256(code).hexdigest()
    return Archive(type="literal", literal=base64.b64encode(code).decode(), url=None, checksum=digest)


def _unreachable(code: bytes) -> Archive:
    """The same archive as ``_literal(code)``, from a URL that cannot be fetched."""
    digest = hashlib.sha256(code).hexdigest()
    return Archive(type="url", literal=None, url="http://127.0.0.1:9/gone.zip", checksum=digest)


def test_a_package_unpacked_before_a_restart_is_neither_fetched_nor_unpacked(tmp_path: Path) -> None:
    code = b"def main():\n    return 'x'\n"
    first = asyncio.run(Packages(tmp_path).materialize(_literal(code), NS))
    marker = first.parent / ".complete"
    unpacked_at = marker.stat().st_mtime_ns
    restarted = Packages(tmp_path)
    again = asyncio.run(restarted.materialize(_unreachable(code), NS))
    assert again == first
    assert marker.stat().st_mtime_ns == unpacked_at
    assert first.read_bytes() == code


def test_a_package_removed_with_its_namespace_is_unpacked_again(tmp_path: Path) -> None:
    code = b"def main():\n    return 'y'\n"
    packages = Packages(tmp_path)

    async def scenario() -> None:
        path = await packages.materialize(_literal(code), NS)
        assert await packages.materialize(_unreachable(code), NS) == path  # remembered
        packages.remove_namespace(NS)
        assert not path.exists()
        with pytest.raises(PackageUnavailable):
            await packages.materialize(_unreachable(code), NS)
        assert await packages.materialize(_literal(code), NS) == path
        assert path.read_bytes() == code

    asyncio.run(scenario())


# ------------------------------------------------------------------ parsed objects


def test_parsed_objects_are_slotted_and_share_their_repeated_parts() -> None:
    one = parse_function(function(NS, "one", package="p"), NS)
    two = parse_function(function(NS, "two", package="p"), NS)
    assert not hasattr(one, "__dict__")
    assert not hasattr(one.meta, "__dict__")
    for name in ("environment", "executor", "entrypoint", "package_version"):
        assert getattr(one, name) is getattr(two, name), name
    first = parse_httptrigger(httptrigger(NS, "a", f"{R}/a", methods=("GET", "POST")), NS)
    second = parse_httptrigger(httptrigger(NS, "b", f"{R}/b", methods=("POST", "GET")), NS)
    assert first.methods is second.methods
    assert first.methods == frozenset({"GET", "POST"})
    with pytest.raises(AttributeError):
        one.timeout = 1  # type: ignore[misc]


# ------------------------------------------------------------------ executor state


class _Workerless(Executor):
    """An Executor without sandboxes or workers: only its per-function bookkeeping is exercised."""

    def __init__(self) -> None:  # as Executor.__init__ makes them
        self.by_function = defaultdict(list)
        self.starting = defaultdict(int)
        self.freed = defaultdict(Waiters)
        self.deployables = {}
        self.min_scaled = {}
        self.tasks = set()
        self.closing = False


def test_keeping_min_scale_makes_no_state_for_idle_functions() -> None:
    executor = _Workerless()
    env = parse_environment(environment(NS, "python"), NS)
    deployables = []
    for name, executor_type in (("pooled", "poolmgr"), ("dedicated", "newdeploy")):
        fn = parse_function(function(NS, name, package="p", executor=executor_type, min_scale=0), NS)
        deployables.append(Deployable(function=fn, environment=env, code_path=Path("/x")))

    async def scenario() -> None:
        executor.set_deployables(deployables)  # starts keep_min_scale in the background
        await asyncio.gather(*executor.tasks)
        await executor.keep_min_scale()

    asyncio.run(scenario())
    assert set(executor.deployables) == {(NS, "pooled"), (NS, "dedicated")}
    assert executor.min_scaled == {}
    assert dict(executor.by_function) == {}
    assert dict(executor.starting) == {}
    assert dict(executor.freed) == {}


def test_a_function_scaled_to_zero_forgets_its_state_but_not_a_waiting_call() -> None:
    executor = _Workerless()
    key = (NS, "f")

    async def scenario() -> None:
        executor.by_function[key].clear()  # made on first use, as acquire does
        executor.starting[key] += 1  # a cold start under way: nothing is forgotten
        waiting = asyncio.create_task(executor.freed[key].wait(5))
        await asyncio.sleep(0)
        executor._forget_if_idle(key)
        assert key in executor.starting
        executor.starting[key] -= 1
        executor._forget_if_idle(key)
        assert key not in executor.by_function
        assert key not in executor.starting
        # A call is in the line: it stays, and the next free worker still wakes it.
        assert key in executor.freed
        executor._wake(key)
        await asyncio.wait_for(waiting, 1)
        executor._forget_if_idle(key)
        assert key not in executor.freed
        # Waiting again after that works with a new line, woken as before.
        again = asyncio.create_task(executor.freed[key].wait(5))
        await asyncio.sleep(0)
        executor._wake(key)
        await asyncio.wait_for(again, 1)

    asyncio.run(scenario())


# ------------------------------------------------------------------ a real restart

READER = (
    "import os\n"
    "def main():\n"
    "    with open('/secrets/faas-acme/db/password') as handle:\n"
    "        secret = handle.read()\n"
    "    return f\"{secret} {os.environ.get('GREETING')}\"\n"
)


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[RuntimeProcess]:
    process = RuntimeProcess(state_dir=tmp_path / "runtime").start()
    yield process
    process.stop()


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_restart_restores_triggers_scaling_secrets_and_warm_pools(restartable: RuntimeProcess) -> None:
    runtime = restartable
    objects = [
        environment(NS, "python", poolsize=2),
        secret(NS, "db", {"password": b"hunter2"}),
        configmap(NS, "settings", {"GREETING": "hi"}),
        package_literal(NS, "reader-pkg", READER),
        function(
            NS,
            "reader",
            package="reader-pkg",
            executor="newdeploy",
            min_scale=1,
            max_scale=2,
            secrets=("db",),
            configmaps=("settings",),
        ),
        httptrigger(NS, "reader", f"{R}/reader/{{id}}", function_name="reader", methods=("GET",)),
        httptrigger(NS, "prefixed", f"{R}/files", function_name="reader", prefix=True),
    ]
    for obj in objects:
        response = runtime.apply(obj)
        assert response.status_code in (200, 201), response.text
    assert runtime.call(f"{R}/reader/7").text == "hunter2 hi"
    runtime.stop()
    runtime.start()
    assert runtime.call(f"{R}/reader/7").text == "hunter2 hi"
    assert runtime.call(f"{R}/files/a/b").text == "hunter2 hi"
    assert runtime.call(f"{R}/reader/7", method="POST").status_code == 405

    def restored() -> bool:
        text = runtime.metrics()
        pool = _metric(text, "runtime_pool_warm_workers", namespace=NS, environment="python")
        dedicated = _metric(text, "runtime_workers", executor="newdeploy", state="specialized")
        return pool == 2 and dedicated >= 1

    wait_until(restored, timeout=30)
    # Calls at once, more than its MaxScale: the per-function state made on first use after the
    # restart (its workers' list, its line of waiting calls) queues and serves every one.
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: runtime.call(f"{R}/reader/1").text, range(16)))
    assert answers == ["hunter2 hi"] * 16
    assert [o["metadata"]["name"] for o in runtime.list(NS, "httptriggers")] == ["prefixed", "reader"]


# Names its worker (each has a pid namespace of its own) and says its variable.
VARIABLE = (
    "import os\n"
    "def main():\n"
    "    return f\"{os.readlink('/proc/self/ns/pid')} {os.environ.get('GREETING')}\"\n"
)


def test_an_apply_keeps_unchanged_functions_workers_and_retires_changed_ones(
    restartable: RuntimeProcess,
) -> None:
    """Runtime._deployables keeps the Deployable of a function whose objects did not change: its
    worker serves on across puts of other objects; a change of a ConfigMap it references still
    gives it a new worker with the new value."""
    runtime = restartable
    for obj in (
        environment(NS, "python", poolsize=1),
        configmap(NS, "settings", {"GREETING": "hi"}),
        package_literal(NS, "var-pkg", VARIABLE),
        function(NS, "var", package="var-pkg", configmaps=("settings",)),
        httptrigger(NS, "var", f"{R}/var", function_name="var"),
    ):
        assert runtime.apply(obj).status_code in (200, 201)
    worker, greeting = runtime.call(f"{R}/var").text.split()
    assert greeting == "hi"
    for obj in (
        package_literal(NS, "other-pkg", "def main():\n    return 'other'\n"),
        function(NS, "other", package="other-pkg"),
        httptrigger(NS, "other", f"{R}/other", function_name="other"),
    ):
        assert runtime.apply(obj).status_code in (200, 201)
    assert runtime.call(f"{R}/other").text == "other"
    assert runtime.call(f"{R}/var").text == f"{worker} hi"
    assert runtime.apply(configmap(NS, "settings", {"GREETING": "hello"})).status_code == 200
    new_worker, greeting = runtime.call(f"{R}/var").text.split()
    assert greeting == "hello"
    assert new_worker != worker
