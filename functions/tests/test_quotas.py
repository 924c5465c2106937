"""Quotas: the platform admin sets them, members see usage, and every change that would exceed
one is refused with a 4xx naming it, before anything reaches the data plane, changing nothing."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest
from django_tenants.utils import schema_context

from functions.models import Build, BuildState, Deployment, DeploymentState, Draft, Function, Trigger
from functions.runs import deployments as deployment_runs
from functions.services import deployments
from functions.services import functions as function_services
from tenants.models import Tenant
from testsupport.fake_kubernetes import FakeKubernetes
from testsupport.fixtures import error_of
from testsupport.runtime import TOKEN

pytestmark = pytest.mark.django_db
API = "/t/acme/api/v1"


def set_quota(api: Any, world: Any, **quota: Any) -> Any:
    return api(world.admin).patch("/api/v1/tenants/acme/", {"quota": quota}, format="json")


@pytest.fixture
def live(world: Any) -> Function:
    """``hello`` in acme, built and deployed (as far as the database knows)."""
    with schema_context(world.acme.schema_name):
        function = function_services.function_create(name="hello")
        revision = Draft.objects.get(function=function).revision
        Build.objects.create(function=function, draft_revision=revision, state=BuildState.SUCCEEDED,
                             sha256="a" * 64, size=2048,
                             python_version=function.environment.runtime_version)  # fmt: skip
        Deployment.objects.create(function=function, state=DeploymentState.LIVE, cause="fixture")
    return function


def test_the_platform_admin_sets_a_quota_and_members_see_usage(api: Any, world: Any, live: Function) -> None:
    response = set_quota(api, world, pods=12, memory_limits="6Gi", memory_requests="2Gi")

    assert response.status_code == 200, response.content
    assert (response.json()["quota"]["pods"], response.json()["quota"]["memory_limits"]) == (12, "6Gi")
    usage = api(world.vera).get(f"{API}/quota/")
    assert usage.status_code == 200
    items = {item["quota"]: item for item in usage.json()["items"]}
    assert items["pods"] == {
        "quota": "pods",
        "used": 3 + 3,
        "limit": 12,
        "unit": "count",
    }  # pool + concurrency
    assert items["memory_limits"]["limit"] == 6 * 2**30
    assert items["memory_limits"]["used"] == 6 * 256 * 2**20
    assert items["functions"]["used"] == 1
    assert items["package_size"]["used"] == 2048
    assert usage.json()["suspended"] is False


def test_only_platform_admins_set_quotas(api: Any, world: Any) -> None:
    response = api(world.alice).patch("/api/v1/tenants/acme/", {"quota": {"pods": 999}}, format="json")

    assert response.status_code == 403
    assert Tenant.objects.get(slug="acme").quota == {}


def test_a_bad_quota_is_refused_naming_the_field(api: Any, world: Any) -> None:
    response = set_quota(api, world, pods=5, memory_limits="lots")

    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid"
    assert "memory_limits" in error_of(response)["message"]
    assert Tenant.objects.get(slug="acme").quota == {}


def test_outsiders_cannot_read_a_tenants_quota(api: Any, world: Any) -> None:
    assert api(world.oscar).get(f"{API}/quota/").status_code == 404


# (quota overrides, request, expected quota name)
EXCEEDING = [
    ({"functions": 1}, ("post", "/functions/", {"name": "second"}), "functions"),
    ({"pods": 8}, ("patch", "/functions/hello/", {"concurrency": 10}), "pods"),
    ({"memory_limits": "2Gi", "memory_requests": "2Gi"}, ("patch", "/functions/hello/", {"memory_mb": 512}),
     "memory_limits"),
    ({"cpu_limits": "2", "cpu_requests": "1"}, ("patch", "/functions/hello/", {"cpu_millis": 500}),
     "cpu_limits"),
    ({"concurrency": 8}, ("patch", "/functions/hello/", {"requests_per_pod": 4}), "concurrency"),
    ({"httptriggers": 0},
     ("post", "/functions/hello/triggers/", {"name": "t", "methods": ["GET"], "path": "/t"}), "httptriggers"),
    ({}, ("patch", "/functions/hello/", {"memory_mb": 2048}), "max_container_memory"),
    ({"packages": 0}, ("post", "/functions/hello/deployments/", None), "packages"),
    ({"environments": 0}, ("post", "/functions/hello/deployments/", None), "environments"),
    ({"memory_requests": "1Gi"}, ("patch", "/functions/hello/", {"memory_mb": 256}), "memory_requests"),
    ({}, ("patch", "/functions/hello/", {"cpu_millis": 1500}), "max_container_cpu"),
    ({}, ("patch", "/environments/python/", {"poolsize": 49}), "pods"),
]  # fmt: skip


@pytest.mark.parametrize(("quota", "call", "name"), EXCEEDING, ids=[e[2] + "-" + e[1][1] for e in EXCEEDING])
def test_exceeding_a_quota_is_refused_naming_it_and_changes_nothing(
    api: Any, world: Any, live: Function, quota: dict[str, Any], call: tuple[str, str, Any], name: str
) -> None:
    if quota:
        assert set_quota(api, world, **quota).status_code == 200
    with schema_context(world.acme.schema_name):
        before = (list(Function.objects.values()), list(Trigger.objects.values()), Deployment.objects.count())
    method, path, body = call

    response = getattr(api(world.bob), method)(f"{API}{path}", body, format="json")

    assert response.status_code == 403, response.content
    error = error_of(response)
    assert error["code"] == "quota_exceeded"
    assert error["detail"]["quota"] == name
    assert f"Quota {name} exceeded" in error["message"]
    with schema_context(world.acme.schema_name):
        after = (list(Function.objects.values()), list(Trigger.objects.values()), Deployment.objects.count())
    assert after == before


def test_a_refused_deployment_applies_nothing(
    kubernetes_portal: FakeKubernetes, api: Any, world: Any, live: Function
) -> None:
    assert set_quota(api, world, pods=4).status_code == 200
    requests_before = len(kubernetes_portal.requests)

    response = api(world.bob).post(f"{API}/functions/hello/deployments/", format="json")

    assert response.status_code == 403
    assert error_of(response)["detail"] == {"quota": "pods", "requested": 6, "limit": 4, "unit": "count"}
    assert kubernetes_portal.requests[requests_before:] == []


def test_an_archive_over_the_package_size_fails_the_deployment_before_applying(
    kubernetes_portal: FakeKubernetes, api: Any, world: Any, django_capture_on_commit_callbacks: Any
) -> None:
    assert set_quota(api, world, package_size="1Ki").status_code == 200
    with schema_context(world.acme.schema_name), django_capture_on_commit_callbacks(execute=False):
        hello = function_services.function_create(name="hello")
        noise = {"main.py": f"# {secrets.token_hex(2048)}\n"}  # does not compress below 1 KiB
        function_services.draft_update_files(function=hello, files=noise)
        deployment = deployments.deployment_create(function=hello, cause="test")
        result = deployment_runs.deployment_run(deployment_id=deployment.pk)

    assert result is not None
    assert result.state == DeploymentState.FAILED
    assert result.reason.startswith("Quota package_size exceeded")
    assert kubernetes_portal.objects("functions", "faas-acme") == []


def test_the_local_runtime_gets_the_tenants_quota(
    api: Any, world: Any, runtime_session: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from tenants import tasks

    url = f"{runtime_session.control}/api/v1/namespaces/faas-acme/resourcequotas/tenant-quota"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(url, headers=headers).json()["spec"]["hard"]["pods"] == "50"

    with django_capture_on_commit_callbacks(execute=False):
        assert set_quota(api, world, pods=9, concurrency=4).status_code == 200
    tasks.tenant_apply_task.apply(args=(world.acme.pk,)).get()

    applied = httpx.get(url, headers=headers).json()
    assert applied["spec"]["hard"]["pods"] == "9"
    assert applied["metadata"]["annotations"] == {"faas-portal/concurrency": "4"}


@pytest.mark.parametrize("kind", ["secrets", "configmaps"])
def test_secrets_and_config_maps_count_against_their_quota(api: Any, world: Any, kind: str) -> None:
    assert set_quota(api, world, **{kind: 2}).status_code == 200
    bob = api(world.bob)
    for name in ("one", "two"):
        created = bob.post(f"{API}/{kind}/", {"name": name, "data": {"k": "v"}}, format="json")
        assert created.status_code == 201
    refused = bob.post(f"{API}/{kind}/", {"name": "three", "data": {"k": "v"}}, format="json")
    assert refused.status_code == 403
    assert error_of(refused)["code"] == "quota_exceeded"
    assert error_of(refused)["detail"] == {"quota": kind, "requested": 3, "limit": 2, "unit": "count"}
    assert [o["name"] for o in bob.get(f"{API}/{kind}/").json()["results"]] == ["one", "two"]
    # Replacing the values of one that exists claims nothing new.
    assert bob.put(f"{API}/{kind}/two/", {"data": {"k": "w"}}, format="json").status_code == 200
    items = {item["quota"]: item for item in api(world.vera).get(f"{API}/quota/").json()["items"]}
    assert (items[kind]["used"], items[kind]["limit"]) == (2, 2)
