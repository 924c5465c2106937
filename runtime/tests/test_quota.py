"""Per-namespace quotas end to end: a real ``python -m runtime``, real workers, real HTTP.

Workers are counted through the runtime's own gauges; functions that must stay busy wait for a
a signal the test sends (``GATED``), so nothing depends on timing.
"""

from __future__ import annotations

import concurrent.futures

import httpx
import pytest

from runtime.tests.core import (
    core,
    core_apply,
    gauge,
    limit_range,
    quota_hard,
    quota_used,
    resource_quota,
)
from testsupport.fission import environment, function, httptrigger, package_literal, tenant_root
from testsupport.processes import wait_until
from testsupport.runtime import GATED, WHOAMI, RuntimeProcess, host_pid, memory_limit, open_gates

NS, OTHER = "faas-acme", "faas-globex"
R = "/acme"  # the tenant root of NS: its routes live under it
Mi = 2**20
HELLO = "def main():\n    return 'hello'\n"


def deploy(runtime: RuntimeProcess, namespace: str, name: str, code: str, *, poolsize: int = 0,
           env_memory: str | None = None, **fn: object) -> None:  # fmt: skip
    objects = [
        environment(namespace, "python", poolsize=poolsize, memory=env_memory),
        package_literal(namespace, f"{name}-pkg", code),
        function(namespace, name, package=f"{name}-pkg", **fn),  # type: ignore[arg-type]
        httptrigger(namespace, name, f"{tenant_root(namespace)}/{name}"),
    ]
    for obj in objects:
        response = runtime.apply(obj)
        assert response.status_code in (200, 201), response.text


def created(response: httpx.Response) -> httpx.Response:
    assert response.status_code in (200, 201), response.text
    return response


def warm(runtime: RuntimeProcess, namespace: str) -> float | None:
    return gauge(runtime, "runtime_pool_warm_workers", namespace=namespace, environment="python")


def newdeploy_workers(runtime: RuntimeProcess) -> float | None:
    return gauge(runtime, "runtime_workers", executor="newdeploy", state="specialized")


# ------------------------------------------------------------------ the control API


@pytest.mark.parametrize(
    ("plural", "obj"),
    [("resourcequotas", resource_quota(NS, pods=3)), ("limitranges", limit_range(NS))],
)
def test_quota_objects_crud(runtime, plural, obj):
    name = obj["metadata"]["name"]
    first = core(runtime, "POST", NS, plural, body=obj)
    assert first.status_code == 201, first.text
    assert core(runtime, "POST", NS, plural, body=obj).status_code == 409
    read = core(runtime, "GET", NS, plural, name).json()
    assert read["spec"] == obj["spec"]
    assert [i["metadata"]["name"] for i in core(runtime, "GET", NS, plural).json()["items"]] == [name]
    assert core(runtime, "GET", OTHER, plural).json() == {"items": []}
    replaced = core(runtime, "PUT", NS, plural, name, read)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["metadata"]["resourceVersion"] != read["metadata"]["resourceVersion"]
    stale = core(runtime, "PUT", NS, plural, name, read)
    assert (stale.status_code, stale.json()["error"]["code"]) == (409, "conflict")
    assert core(runtime, "DELETE", NS, plural, name).status_code == 200
    assert core(runtime, "GET", NS, plural, name).status_code == 404
    assert core(runtime, "DELETE", NS, plural, name).status_code == 404
    assert core(runtime, "PUT", NS, plural, name, obj).status_code == 404


def test_quota_routes_need_the_token_and_their_own_group(runtime):
    url = f"{runtime.control}/api/v1/namespaces/{NS}/resourcequotas"
    assert httpx.post(url, json=resource_quota(NS, pods=1)).status_code == 401
    assert httpx.get(url).status_code == 401
    assert core(runtime, "GET", NS, "functions").status_code == 404
    fission = runtime.apply({**resource_quota(NS, pods=1), "apiVersion": "fission.io/v1"})
    assert fission.status_code == 404


@pytest.mark.parametrize(
    ("plural", "obj", "field"),
    [
        ("resourcequotas", resource_quota(NS, pods=-1), "spec.hard[pods]"),
        ("resourcequotas", resource_quota(NS, memory="lots"), "spec.hard[limits.memory]"),
        ("resourcequotas", {**resource_quota(NS), "kind": "LimitRange"}, "kind"),
        ("resourcequotas", {**resource_quota(NS), "apiVersion": "fission.io/v1"}, "apiVersion"),
        ("resourcequotas", resource_quota(OTHER), "metadata.namespace"),
        ("limitranges", limit_range(NS, default_memory="-1"), "spec.limits[0].default[memory]"),
    ],
)
def test_invalid_quota_objects_get_422_naming_the_field(runtime, plural, obj, field):
    response = core(runtime, "POST", NS, plural, body=obj)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid"
    assert response.json()["error"]["detail"] == {"field": field}
    assert core(runtime, "GET", NS, plural).json() == {"items": []}


def test_quota_objects_and_their_limits_survive_a_restart(runtime):
    quota = created(core_apply(runtime, resource_quota(NS, pods=1))).json()
    limits = created(core_apply(runtime, limit_range(NS))).json()
    deploy(runtime, NS, "hello", HELLO, poolsize=3)
    wait_until(lambda: warm(runtime, NS) == 1, message="the pool did not fill up to the quota")
    runtime.stop()
    runtime.start()
    assert core(runtime, "GET", NS, "resourcequotas", "tenant-quota").json() == quota
    assert core(runtime, "GET", NS, "limitranges", "tenant-limits").json() == limits
    wait_until(lambda: warm(runtime, NS) == 1, message="the pool did not refill after the restart")
    assert quota_used(runtime, NS, "pods") == 1
    assert quota_hard(runtime, NS, "pods") == 1


# ------------------------------------------------------------------ pods


def test_pods_quota_caps_a_pool_and_answers_429_beyond(runtime):
    created(core_apply(runtime, resource_quota(NS, pods=2)))
    for name in ("a", "b", "c"):
        deploy(runtime, NS, name, HELLO, poolsize=3)
    deploy(runtime, OTHER, "a", HELLO, poolsize=3)
    wait_until(lambda: warm(runtime, NS) == 2, message="the pool did not fill up to the quota")
    assert (quota_used(runtime, NS, "pods"), quota_hard(runtime, NS, "pods")) == (2, 2)
    assert runtime.call(f"{R}/a").status_code == 200  # specializes a warm worker: still 2 pods
    assert runtime.call(f"{R}/b").status_code == 200
    refused = runtime.call(f"{R}/c")
    assert refused.status_code == 429
    assert "pods quota is exhausted" in refused.text
    assert quota_used(runtime, NS, "pods") == 2
    wait_until(lambda: warm(runtime, OTHER) == 3, message="another namespace's pool was limited")
    assert runtime.call("/globex/a").status_code == 200
    assert quota_hard(runtime, OTHER, "pods") is None


def test_pods_quota_caps_newdeploy_scale_up(runtime):
    created(core_apply(runtime, resource_quota(NS, pods=2)))
    deploy(runtime, NS, "nd", GATED, executor="newdeploy", min_scale=0, max_scale=4)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        busy = [pool.submit(runtime.call, f"{R}/nd") for _ in range(2)]
        wait_until(lambda: quota_used(runtime, NS, "concurrency") == 2 and newdeploy_workers(runtime) == 2,
                   message="two workers did not start")  # fmt: skip
        refused = runtime.call(f"{R}/nd")
        assert (refused.status_code, refused.text) == (
            429, "too many requests: the namespace's pods quota is exhausted\n",
        )  # fmt: skip
        assert quota_used(runtime, NS, "pods") == 2
        open_gates(runtime.tenant_uid(NS), expected=2)
        answers = [future.result() for future in busy]
    assert [a.status_code for a in answers] == [200, 200]
    assert len({a.text for a in answers}) == 2
    assert runtime.call(f"{R}/nd").status_code == 200  # a worker is free again


def test_pods_quota_caps_min_scale_until_it_is_deleted(runtime):
    created(core_apply(runtime, resource_quota(NS, pods=2)))
    deploy(runtime, NS, "nd", HELLO, executor="newdeploy", min_scale=3, max_scale=3)
    wait_until(lambda: newdeploy_workers(runtime) == 2, message="MinScale did not stop at the quota")
    assert quota_used(runtime, NS, "pods") == 2
    assert core(runtime, "DELETE", NS, "resourcequotas", "tenant-quota").status_code == 200
    wait_until(lambda: newdeploy_workers(runtime) == 3, message="deleting the quota did not lift it")
    assert quota_hard(runtime, NS, "pods") is None
    assert quota_used(runtime, NS, "pods") == 3


# ------------------------------------------------------------------ memory


@pytest.mark.parametrize(
    ("default_memory", "workers", "limit"),
    [(None, 2, None), ("128Mi", 4, 128 * Mi)],
    ids=["fixed-256Mi-charge", "limit-range-default"],
)
def test_memory_quota_caps_min_scale_and_answers_429(runtime, default_memory, workers, limit):
    created(core_apply(runtime, resource_quota(NS, memory="512Mi")))
    if default_memory:
        created(core_apply(runtime, limit_range(NS, default_memory=default_memory)))
    deploy(runtime, NS, "nd", WHOAMI, executor="newdeploy", min_scale=5, max_scale=5)
    deploy(runtime, NS, "extra", HELLO, executor="newdeploy")
    wait_until(lambda: newdeploy_workers(runtime) == workers, message="MinScale did not stop at the quota")
    assert quota_used(runtime, NS, "limits.memory") == 512 * Mi
    assert quota_hard(runtime, NS, "limits.memory") == 512 * Mi
    assert memory_limit(host_pid(runtime.call(f"{R}/nd").text)) == limit  # the worker's cgroup
    refused = runtime.call(f"{R}/extra")
    assert refused.status_code == 429
    assert "limits.memory quota is exhausted" in refused.text
    # A replaced quota applies at once: MinScale reaches 5 and "extra" fits beside it.
    created(core_apply(runtime, resource_quota(NS, memory="2Gi")))
    assert runtime.call(f"{R}/extra").status_code == 200
    wait_until(lambda: newdeploy_workers(runtime) == 6, message="MinScale did not resume")


def test_memory_quota_caps_a_pool_and_a_larger_function(runtime):
    created(core_apply(runtime, resource_quota(NS, memory="384Mi")))
    deploy(runtime, NS, "small", HELLO, poolsize=5, env_memory="128Mi")
    deploy(runtime, NS, "large", HELLO, poolsize=5, env_memory="128Mi", memory="256Mi")
    wait_until(lambda: warm(runtime, NS) == 3, message="the pool did not fill up to the quota")
    assert quota_used(runtime, NS, "limits.memory") == 384 * Mi
    refused = runtime.call(f"{R}/large")  # its 256Mi would not fit in place of a 128Mi warm worker
    assert refused.status_code == 429
    assert "limits.memory quota is exhausted" in refused.text
    assert runtime.call(f"{R}/small").status_code == 200
    assert quota_used(runtime, NS, "limits.memory") == 384 * Mi


# ------------------------------------------------------------------ concurrency


def test_concurrency_annotation_bounds_requests_in_flight(runtime):
    created(core_apply(runtime, resource_quota(NS, concurrency=2)))
    deploy(runtime, NS, "slow", GATED, poolsize=3)
    deploy(runtime, NS, "hello", HELLO, poolsize=3)
    deploy(runtime, OTHER, "hello", HELLO, poolsize=1)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        busy = [pool.submit(runtime.call, f"{R}/slow") for _ in range(2)]
        wait_until(lambda: quota_used(runtime, NS, "concurrency") == 2, message="two calls not in flight")
        for path in (f"{R}/hello", f"{R}/slow"):
            refused = runtime.call(path)
            assert (refused.status_code, refused.text) == (
                429, "too many requests: the namespace's concurrency quota is exhausted\n",
            )  # fmt: skip
        assert runtime.call("/globex/hello").status_code == 200
        assert quota_hard(runtime, NS, "concurrency") == 2
        open_gates(runtime.tenant_uid(NS), expected=2)
        assert [future.result().status_code for future in busy] == [200, 200]
    assert quota_used(runtime, NS, "concurrency") == 0
    assert runtime.call(f"{R}/hello").status_code == 200
