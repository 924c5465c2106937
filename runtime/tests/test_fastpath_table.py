"""The compiled front's table (runtime.fastpath.Compiler), in-process: which routes the front may
serve itself, and that an apply which changed nothing for a route reuses what was compiled."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from runtime import fastpath
from runtime.executor import Deployable, Executor
from runtime.objects import parse_environment, parse_function, parse_httptrigger, parse_resourcequota
from runtime.quota import Quotas
from runtime.router import RouteTable
from runtime.tests.core import resource_quota
from testsupport.fission import environment, function, httptrigger

NS = "faas-acme"
R = "/acme"


def _deployable(name: str, version: str = "1") -> Deployable:
    raw = function(NS, name, package=f"{name}-pkg")
    raw["metadata"]["resourceVersion"] = version
    env = parse_environment(environment(NS, "python"), NS)
    return Deployable(parse_function(raw, NS), env, Path("/code"))


def _executor(*deployables: Deployable) -> Executor:
    executor = Executor.__new__(Executor)  # only what the table reads
    executor.deployables = {d.key: d for d in deployables}
    executor.quotas = Quotas()
    executor.by_function = defaultdict(list)
    return executor


def _routes(*triggers: dict[str, Any]) -> RouteTable:
    return RouteTable([parse_httptrigger(t, NS) for t in triggers], "faas")


@pytest.fixture(autouse=True)
def _built() -> None:
    assert fastpath.available(), "the compiled front is not built: make fastpath"


def test_only_exact_routes_of_one_deployed_function_without_a_capture_are_compiled() -> None:
    executor = _executor(_deployable("hello"), _deployable("other"))
    routes = _routes(
        httptrigger(NS, "plain", f"{R}/plain", function_name="hello", methods=("GET", "POST")),
        httptrigger(NS, "split", f"{R}/split", function_name="hello", weights={"hello": 50, "other": 50}),
        httptrigger(NS, "gone", f"{R}/gone", function_name="nowhere"),
        httptrigger(NS, "prefix", f"{R}/p", function_name="hello", prefix=True),
        httptrigger(NS, "template", f"{R}/items/{{id}}", function_name="hello"),
    )
    table = fastpath.Compiler(executor).table(routes)
    assert sorted(table) == [f"{R}/gone".encode(), f"{R}/plain".encode(), f"{R}/split".encode()]
    (methods, plain), = table[f"{R}/plain".encode()]  # fmt: skip
    assert sorted(methods) == [b"GET", b"POST"]
    assert (plain.namespace, plain.function, plain.path) == (NS, "hello", f"{R}/plain")
    assert plain.key == (NS, "hello")
    assert table[f"{R}/split".encode()][0][1] is None  # weights: drawn by the Python router
    assert table[f"{R}/gone".encode()][0][1] is None  # nothing deployed: the Python router's 502


def test_an_apply_that_changed_nothing_keeps_what_was_compiled() -> None:
    hello = _deployable("hello")
    executor = _executor(hello, _deployable("other"))
    triggers = [httptrigger(NS, f"t{i}", f"{R}/p{i}", function_name="hello") for i in range(3)]
    routes = _routes(*triggers)
    compiler = fastpath.Compiler(executor)
    first = compiler.table(routes)
    assert not compiler.changed(routes)
    executor.deployables = dict(executor.deployables)  # a new dict of the same Deployables
    assert not compiler.changed(routes)

    executor.deployables[hello.key] = _deployable("hello", version="2")  # hello changed
    assert compiler.changed(routes)
    second = compiler.table(routes)
    assert all(second[path][0][1] is not first[path][0][1] for path in first)

    # a trigger added: the table takes over the others' routes (the store keeps their objects)
    added = parse_httptrigger(httptrigger(NS, "t3", f"{R}/p3", function_name="other"), NS)
    more = RouteTable([route.trigger for route in routes.routes] + [added], "faas", routes)
    assert compiler.changed(more)
    third = compiler.table(more)
    assert all(third[path][0][1] is second[path][0][1] for path in second)  # the same three, reused
    assert third[f"{R}/p3".encode()][0][1].function == "other"


def test_a_quota_change_compiles_the_namespaces_routes_again() -> None:
    executor = _executor(_deployable("hello"))
    routes = _routes(httptrigger(NS, "t", f"{R}/t", function_name="hello"))
    compiler = fastpath.Compiler(executor)
    before = compiler.table(routes)
    executor.quotas.set([parse_resourcequota(resource_quota(NS, concurrency=3), NS)], [])
    assert compiler.changed(routes)
    after = compiler.table(routes)
    assert after[f"{R}/t".encode()][0][1] is not before[f"{R}/t".encode()][0][1]
