"""The router's route table: its index finds exactly what the plain rules (exact, then templates
in order, then prefixes longest first, each tried in turn) find, for random tables and paths, and
a lookup's work does not grow with the number of routes."""

from __future__ import annotations

import dataclasses
import random
import re

import pytest

from runtime.objects import HTTPTrigger, parse_httptrigger
from runtime.router import Route, RouteTable
from testsupport.fission import httptrigger

NS = "faas-acme"
SEGMENTS = ("a", "b", "ab", "x", "{id}", "{name}", "v{n}")
METHODS = ("GET", "POST", "PUT")


def linear_match(triggers: list[HTTPTrigger], path: str, method: str) -> tuple[str | None, dict, bool]:
    """The rules as written, route by route: what the table must agree with."""
    routes = [Route.of(t) for t in triggers]
    exact = [r for r in routes if not r.trigger.is_prefix and r.pattern is None]
    templated = [r for r in routes if r.pattern is not None]
    prefixes = sorted((r for r in routes if r.trigger.is_prefix), key=lambda r: -len(r.trigger.path))
    seen = False
    for route in exact:
        if route.trigger.path == path:
            seen = True
            if method in route.trigger.methods:
                return route.trigger.meta.name, {}, True
    for route in templated:
        assert route.pattern is not None
        found = route.pattern.match(path)
        if found:
            seen = True
            if method in route.trigger.methods:
                return route.trigger.meta.name, found.groupdict(), True
    for route in prefixes:
        if path == route.trigger.path or path.startswith(route.subtree):
            seen = True
            if method in route.trigger.methods:
                return route.trigger.meta.name, {}, True
    return None, {}, seen


def random_path(rng: random.Random) -> str:
    parts = [rng.choice(SEGMENTS) for _ in range(rng.randint(1, 4))]
    parts = [p if "{" not in p or p not in parts[:i] else "b" for i, p in enumerate(parts)]  # a name once
    return "/acme/" + "/".join(parts) + ("/" if rng.random() < 0.2 else "")


def random_triggers(rng: random.Random, count: int) -> list[HTTPTrigger]:
    triggers = []
    for index in range(count):
        prefix = rng.random() < 0.4
        path = random_path(rng)
        if prefix:
            path = re.sub(r"\{\w+\}|v\{n\}", "p", path)  # a prefix is literal
        methods = tuple(rng.sample(METHODS, rng.randint(1, 2)))
        obj = httptrigger(NS, f"t{index}", path, function_name="f", methods=methods, prefix=prefix)
        triggers.append(parse_httptrigger(obj, NS))
    return triggers


def concrete(rng: random.Random, path: str) -> str:
    """A request path: template variables filled in, sometimes extended or cut."""
    path = re.sub(r"\{\w+\}", lambda _: rng.choice(("1", "zz", "a")), path)
    if rng.random() < 0.3:
        path += rng.choice(("x", "/x", "/", "/a/b"))
    if rng.random() < 0.1:
        path = path[: rng.randint(1, len(path))]
    return path


@pytest.mark.parametrize("seed", range(40))
def test_the_index_finds_what_the_rules_find(seed: int) -> None:
    rng = random.Random(seed)
    triggers = random_triggers(rng, rng.randint(5, 40))
    table = RouteTable(triggers, "faas")
    paths = [concrete(rng, t.path) for t in triggers] + [random_path(rng) for _ in range(40)]
    paths += ["/", "/acme", "/acme/", "/other/a"]
    checked = 0
    for path in paths:
        for method in METHODS:
            route, params, seen = table.match(path, method)
            expected = linear_match(triggers, path, method)
            assert (route.trigger.meta.name if route else None, params, seen) == expected, (path, method)
            checked += route is not None
    assert checked > 0  # the paths did hit routes


def test_a_template_naming_a_variable_twice_is_left_out_and_the_others_still_route() -> None:
    # The control API refuses such a trigger (runtime.objects); one stored by an older runtime
    # is still left out rather than taking the table down.
    fine = parse_httptrigger(httptrigger(NS, "fine", "/acme/{id}", function_name="f"), NS)
    renamed = dataclasses.replace(fine.meta, name="twice")
    twice = dataclasses.replace(fine, meta=renamed, path="/acme/{id}/{id}")
    triggers = [twice, fine]
    table = RouteTable(triggers, "faas")
    route, params, _ = table.match("/acme/7", "GET")
    assert route is not None
    assert (route.trigger.meta.name, params) == ("fine", {"id": "7"})
    assert table.match("/acme/7/8", "GET") == (None, {}, False)


def test_a_lookup_tries_only_the_routes_on_its_path() -> None:
    """With 10,000 templates and prefixes in 100 tenants, a lookup tries the few whose literal
    directory is on the request's path, not the table."""
    triggers = []
    for tenant in range(100):
        namespace = f"faas-t{tenant}"
        for index in range(50):
            for obj in (
                httptrigger(namespace, f"tpl-{index}", f"/t{tenant}/items{index}/{{id}}", function_name="f"),
                httptrigger(
                    namespace, f"pre-{index}", f"/t{tenant}/files{index}", function_name="f", prefix=True
                ),
            ):
                triggers.append(parse_httptrigger(obj, namespace))
    table = RouteTable(triggers, "faas")
    route, params, _ = table.match("/t99/items49/7", "GET")
    assert route is not None
    assert (route.trigger.meta.name, params) == ("tpl-49", {"id": "7"})
    route, _, _ = table.match("/t0/files0/deep/down", "POST")
    assert route is not None
    assert route.trigger.meta.name == "pre-0"
    assert max(len(routes) for routes in table.templates.values()) == 1
    assert max(len(routes) for routes in table.subtrees.values()) == 1
    assert table.match("/t5/nothing/here", "GET") == (None, {}, False)


def test_a_new_table_takes_over_the_routes_of_unchanged_triggers() -> None:
    """Replacing the table after one trigger changed compiles that one only: the store hands out
    the same object for an unchanged trigger, and its route is taken over."""
    kept = parse_httptrigger(httptrigger(NS, "kept", "/acme/items/{id}", function_name="f"), NS)
    changed = parse_httptrigger(httptrigger(NS, "changed", "/acme/old/{id}", function_name="f"), NS)
    first = RouteTable([kept, changed], "faas")
    replacement = parse_httptrigger(httptrigger(NS, "changed", "/acme/new/{id}", function_name="f"), NS)
    second = RouteTable([kept, replacement], "faas", first)
    assert second.routes[0] is first.routes[0]
    assert second.routes[1] is not first.routes[1]
    route, params, _ = second.match("/acme/new/3", "GET")
    assert route is not None
    assert (route.trigger.meta.name, params) == ("changed", {"id": "3"})
    assert second.match("/acme/old/3", "GET") == (None, {}, False)
