"""The kubernetes backend end to end against the fake API server, through the official client:
tenant provisioning, deployments, alias weights, suspension and deletion, with faults injected.

The portal runs in this process with ``PORTAL_BACKEND=kubernetes`` and a kubeconfig pointing at
the fake; builds are real (pip in a subprocess). Each test asserts the exact objects the fake
holds afterwards, and that each of them passes schema validation.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from django.conf import settings
from django_tenants.utils import schema_context, schema_exists

from dataplane import manifests
from dataplane import namespaces as tenant_manifests
from dataplane.backends.k8s import network_options
from functions.models import FINAL_DEPLOYMENT_STATES, Deployment, DeploymentState
from functions.runs import deployments as deployment_runs
from functions.runs.deployments import desired_objects
from functions.selectors import build_current
from functions.services import deployments, events, triggers, versions
from functions.services import functions as function_services
from runtime import objects as runtime_objects
from tenants import provisioning as tenant_provisioning
from tenants import services as tenant_services
from tenants import tasks as tenant_tasks
from tenants.models import Tenant, TenantState
from testsupport.fake_kubernetes import FakeKubernetes
from testsupport.schemas import SERVER_FIELDS, schema_errors

pytestmark = pytest.mark.django_db
NS = "faas-acme"
FISSION_PLURALS = (
    "environments",
    "packages",
    "functions",
    "httptriggers",
    "timetriggers",
    "messagequeuetriggers",
)


def everything(fake: FakeKubernetes) -> list[dict[str, Any]]:
    with fake.store.lock:
        return [copy.deepcopy(obj) for obj in fake.store.items.values()]


def as_applied(obj: dict[str, Any]) -> dict[str, Any]:
    """A stored object without what the server adds (uid, resourceVersion, status, ...)."""
    meta = {k: v for k, v in obj["metadata"].items() if k not in SERVER_FIELDS}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}


def ids(objects: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((o["kind"], o["metadata"]["name"]) for o in objects)


def fission_objects(fake: FakeKubernetes) -> list[dict[str, Any]]:
    return [o for plural in FISSION_PLURALS for o in fake.objects(plural, NS)]


def assert_holds_exactly(fake: FakeKubernetes, expected: list[dict[str, Any]]) -> None:
    held = {(o["kind"], o["metadata"]["name"]): as_applied(o) for o in fission_objects(fake)}
    assert ids(list(held.values())) == ids(expected)
    for obj in expected:
        assert held[(obj["kind"], obj["metadata"]["name"])] == obj
    for obj in held.values():
        assert schema_errors(obj) == []


def tenant_objects(slug: str, *, quota: tenant_manifests.TenantQuota | None = None) -> list[dict[str, Any]]:
    return tenant_manifests.tenant_manifests(
        slug, prefix=settings.TENANT_NAMESPACE_PREFIX, quota=quota or tenant_manifests.TenantQuota(),
        network=network_options(internet_egress=False), fission_namespace=settings.FISSION_NAMESPACE,
    )  # fmt: skip


def deploy(function: Any) -> Deployment:
    """Queue and run one deployment in this process, as the worker would."""
    deployment = deployments.deployment_create(function=function, cause="test")
    result = deployment_runs.deployment_run(deployment_id=deployment.pk)
    assert result is not None
    return result


@pytest.fixture
def acme(kubernetes_portal: FakeKubernetes, make_tenant: Any) -> Tenant:
    tenant: Tenant = make_tenant("acme")
    return tenant


@pytest.fixture
def in_acme(acme: Tenant, django_capture_on_commit_callbacks: Any) -> Any:
    with schema_context(acme.schema_name), django_capture_on_commit_callbacks(execute=False):
        yield acme


# --- tenants ---------------------------------------------------------------------------------------


def test_provisioning_applies_exactly_the_tenant_objects(
    kubernetes_portal: FakeKubernetes, acme: Tenant
) -> None:
    expected = tenant_objects("acme")
    held = everything(kubernetes_portal)

    assert acme.state == TenantState.READY
    assert ids(held) == ids(expected)
    by_id = {(o["kind"], o["metadata"]["name"]): as_applied(o) for o in held}
    for obj in expected:
        assert by_id[(obj["kind"], obj["metadata"]["name"])] == obj
    assert [schema_errors(as_applied(o)) for o in held] == [[] for _ in held]
    writes = [r for r in kubernetes_portal.requests if r.method == "PATCH"]
    assert len(writes) == len(expected)  # one server-side apply per object


def test_provisioning_twice_changes_nothing(kubernetes_portal: FakeKubernetes, acme: Tenant) -> None:
    before = {
        (o["kind"], o["metadata"]["name"]): o["metadata"]["resourceVersion"]
        for o in everything(kubernetes_portal)
    }
    tenant_provisioning.tenant_apply_data_plane(tenant=acme)
    after = everything(kubernetes_portal)

    generations = {(o["kind"], o["metadata"]["name"]): o["metadata"]["generation"] for o in after}
    assert generations == dict.fromkeys(before, 1)


def test_a_quota_change_reapplies_the_resourcequota(kubernetes_portal: FakeKubernetes, acme: Tenant) -> None:
    tenant_services.tenant_set_quota(
        tenant=acme, quota={"pods": 7, "memory_limits": "12Gi"}, internet_egress=True
    )
    tenant_tasks.tenant_apply_task.apply(args=(acme.pk,)).get()

    (quota,) = kubernetes_portal.objects("resourcequotas", NS)
    assert (quota["spec"]["hard"]["pods"], quota["spec"]["hard"]["limits.memory"]) == ("7", "12Gi")
    policies = {p["metadata"]["name"] for p in kubernetes_portal.objects("networkpolicies", NS)}
    assert tenant_manifests.INTERNET_EGRESS_POLICY in policies
    tenant_services.tenant_set_quota(tenant=acme, internet_egress=False)
    tenant_tasks.tenant_apply_task.apply(args=(acme.pk,)).get()
    policies = {p["metadata"]["name"] for p in kubernetes_portal.objects("networkpolicies", NS)}
    assert tenant_manifests.INTERNET_EGRESS_POLICY not in policies


def test_deleting_a_tenant_removes_its_namespace_and_schema(
    kubernetes_portal: FakeKubernetes, acme: Tenant
) -> None:
    start = len(kubernetes_portal.requests)
    tenant_services.tenant_delete_request(tenant=acme, confirm="acme")
    tenant_provisioning.tenant_delete(tenant_id=acme.pk)

    assert everything(kubernetes_portal) == []
    assert not schema_exists(acme.schema_name)
    assert not Tenant.objects.filter(pk=acme.pk).exists()
    deletes = [r.path for r in kubernetes_portal.requests[start:] if r.method == "DELETE"]
    assert deletes == ["/apis/fission.io/v1/fissiontenants/faas-acme", "/api/v1/namespaces/faas-acme"]


# --- functions ---------------------------------------------------------------------------------------


def test_a_deployment_applies_exactly_the_function_objects(
    kubernetes_portal: FakeKubernetes, in_acme: Tenant
) -> None:
    hello = function_services.function_create(name="hello")
    result = deploy(hello)

    assert result.state == DeploymentState.LIVE, result.reason
    build = build_current(function=hello)
    assert build is not None
    expected = desired_objects(hello, build)
    assert ids(expected) == [
        ("Environment", "python"),
        ("Function", "hello-draft"),
        ("Package", "hello-draft"),
    ]
    assert_holds_exactly(kubernetes_portal, expected)
    (package,) = kubernetes_portal.objects("packages", NS)
    assert package["spec"]["deployment"]["checksum"] == {"type": "sha256", "sum": build.sha256}
    assert package["spec"]["deployment"]["url"].startswith(
        settings.PORTAL_INTERNAL_URL + "/internal/packages/"
    )


def test_alias_weights_reach_the_httptrigger(kubernetes_portal: FakeKubernetes, in_acme: Tenant) -> None:
    hello = function_services.function_create(name="hello")
    assert deploy(hello).state == DeploymentState.LIVE
    versions.version_publish(function=hello)
    function_services.draft_update_files(function=hello, files={"main.py": "def main():\n    return 'v2'\n"})
    assert deploy(hello).state == DeploymentState.LIVE
    versions.version_publish(function=hello)
    versions.alias_set(function=hello, name="live", version=1, canary_version=2, canary_weight=10)
    triggers.trigger_save(
        function=hello, name="hello", methods=["GET"], path="/hello", target_kind="alias", alias="live"
    )

    assert deploy(hello).state == DeploymentState.LIVE
    (trigger,) = kubernetes_portal.objects("httptriggers", NS)
    assert trigger["spec"]["functionref"] == {
        "type": "function-weights",
        "name": "",
        "functionweights": {"hello-v1": 90, "hello-v2": 10},
    }
    assert trigger["spec"]["relativeurl"] == "/acme/hello"
    assert_holds_exactly(kubernetes_portal, desired_objects(hello, build_current(function=hello)))
    assert {f["metadata"]["name"] for f in kubernetes_portal.objects("functions", NS)} == {
        "hello-draft", "hello-v1", "hello-v2",
    }  # fmt: skip

    versions.alias_set(function=hello, name="live", version=2)
    assert deploy(hello).state == DeploymentState.LIVE
    (trigger,) = kubernetes_portal.objects("httptriggers", NS)
    assert trigger["spec"]["functionref"] == {"type": "name", "name": "hello-v2"}
    assert {f["metadata"]["name"] for f in kubernetes_portal.objects("functions", NS)} == {
        "hello-draft",
        "hello-v2",
    }


def test_time_and_queue_triggers_reach_fission_with_the_brokers_secret(
    kubernetes_portal: FakeKubernetes, in_acme: Tenant
) -> None:
    hello = function_services.function_create(name="hello")
    events.time_trigger_save(function=hello, name="nightly", cron="0 30 2 * * *")
    events.queue_trigger_save(
        function=hello, name="orders", mq_type="kafka", topic="orders", error_topic="orders-err",
        metadata={"bootstrapServers": "kafka.kafka:9092"}, connection={"sasl": "plaintext", "password": "pw"},
    )  # fmt: skip
    assert deploy(hello).state == DeploymentState.LIVE
    assert_holds_exactly(kubernetes_portal, [
        o for o in desired_objects(hello, build_current(function=hello)) if o["kind"] != "Secret"
    ])  # fmt: skip
    (timer,) = kubernetes_portal.objects("timetriggers", NS)
    assert timer["spec"]["functionref"] == {"type": "name", "name": "hello-draft"}
    (queue,) = kubernetes_portal.objects("messagequeuetriggers", NS)
    assert queue["spec"]["metadata"]["bootstrapServers"] == "kafka.kafka:9092"
    (secret,) = kubernetes_portal.objects("secrets", NS)
    assert secret["metadata"]["name"] == queue["spec"]["secret"] == "orders-broker"
    assert schema_errors(as_applied(secret)) == []

    events.event_trigger_delete(trigger=hello.queue_triggers.get())
    assert deploy(hello).state == DeploymentState.LIVE
    assert kubernetes_portal.objects("messagequeuetriggers", NS) == []
    assert kubernetes_portal.objects("secrets", NS) == []
    assert len(kubernetes_portal.objects("timetriggers", NS)) == 1


def test_environment_variables_reach_fission_as_the_functions_configmap(
    kubernetes_portal: FakeKubernetes, in_acme: Tenant
) -> None:
    hello = function_services.function_create(
        name="hello", environment_variables={"GREETING": "hi", "LEVEL": "3"}
    )
    assert deploy(hello).state == DeploymentState.LIVE
    (configmap,) = kubernetes_portal.objects("configmaps", NS)
    assert as_applied(configmap) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "hello-draft-env",
            "namespace": NS,
            "labels": manifests.labels(tenant="acme", function="hello"),
            "annotations": {runtime_objects.ENVIRONMENT_VARIABLES_ANNOTATION: "true"},
        },
        "data": {"GREETING": "hi", "LEVEL": "3"},
    }
    assert schema_errors(as_applied(configmap)) == []
    (function,) = kubernetes_portal.objects("functions", NS)
    assert function["spec"]["configmaps"] == [{"namespace": NS, "name": "hello-draft-env"}]
    digest = function["metadata"]["annotations"][manifests.ENVIRONMENT_VARIABLES_SHA256_ANNOTATION]

    function_services.function_update(function=hello, environment_variables={"GREETING": "hello"})
    assert deploy(hello).state == DeploymentState.LIVE
    (configmap,) = kubernetes_portal.objects("configmaps", NS)
    assert configmap["data"] == {"GREETING": "hello"}
    (function,) = kubernetes_portal.objects("functions", NS)
    assert function["metadata"]["annotations"][manifests.ENVIRONMENT_VARIABLES_SHA256_ANNOTATION] != digest

    function_services.function_update(function=hello, environment_variables={})
    assert deploy(hello).state == DeploymentState.LIVE
    assert kubernetes_portal.objects("configmaps", NS) == []
    (function,) = kubernetes_portal.objects("functions", NS)
    assert function["spec"]["configmaps"] == []
    assert manifests.ENVIRONMENT_VARIABLES_SHA256_ANNOTATION not in function["metadata"]["annotations"]


def test_a_newdeploy_function_waits_for_a_ready_pod(
    kubernetes_portal: FakeKubernetes, in_acme: Tenant, monkeypatch: Any
) -> None:
    hello = function_services.function_create(name="hello", executor="newdeploy", min_scale=1, max_scale=2)
    kubernetes_portal.seed(_pod("hello-draft-abc", "hello-draft", ready=True))

    assert deploy(hello).state == DeploymentState.LIVE
    kubernetes_portal.seed(_pod("hello-draft-def", "hello-draft", ready=False, waiting="ImagePullBackOff"))
    function_services.function_update(function=hello, max_scale=3)
    result = deploy(hello)

    assert result.state == DeploymentState.FAILED
    assert "ImagePullBackOff" in result.reason


def _pod(name: str, function: str, *, ready: bool, waiting: str | None = None) -> dict[str, Any]:
    state = (
        {"waiting": {"reason": waiting, "message": "Back-off pulling image"}} if waiting else {"running": {}}
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"functionName": function, "executorType": "newdeploy"},
        },
        "spec": {"containers": [{"name": "fetcher", "image": "f"}, {"name": "python", "image": "p"}]},
        "status": {
            "phase": "Running" if ready else "Pending",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"name": "python", "state": state, "ready": ready}],
        },
    }


def test_logs_come_from_function_pods_without_the_fetcher(
    kubernetes_portal: FakeKubernetes, acme: Tenant
) -> None:
    from dataplane.backends import get_backend

    kubernetes_portal.seed(_pod("hello-draft-abc", "hello-draft", ready=True))
    kubernetes_portal.set_pod_log(NS, "hello-draft-abc", "fetcher", "2026-11-23T10:00:00Z fetched\n")
    kubernetes_portal.set_pod_log(NS, "hello-draft-abc", "python", "2026-11-23T10:00:01.5Z hello from v1\n")

    (record,) = get_backend().logs(NS, function="hello")
    # As on the local runtime: the data plane's name (the draft or a version) of the function.
    assert (record.function, record.message, record.time) == ("hello-draft", "hello from v1", 1795428001.5)
    assert get_backend().logs(NS, function="other") == []


def test_log_search_filters_and_pages_through_pod_logs(
    kubernetes_portal: FakeKubernetes, acme: Tenant
) -> None:
    from dataplane.backends import get_backend
    from dataplane.backends.base import LogQuery

    kubernetes_portal.seed(_pod("hello-v1-abc", "hello-v1", ready=True))
    kubernetes_portal.seed(_pod("other-draft-abc", "other-draft", ready=True))
    lines = "".join(f"2026-11-23T10:00:0{i}Z line {i}{' boom' if i % 2 else ''}\n" for i in range(6))
    kubernetes_portal.set_pod_log(NS, "hello-v1-abc", "python", lines)
    kubernetes_portal.set_pod_log(NS, "hello-v1-abc", "fetcher", "2026-11-23T10:00:00Z fetched boom\n")
    kubernetes_portal.set_pod_log(NS, "other-draft-abc", "python", "2026-11-23T10:00:03Z other boom\n")
    backend = get_backend()

    first = backend.search_logs(NS, LogQuery(function="hello", text="BOOM", limit=2))
    assert [r.message for r in first.records] == ["line 5 boom", "line 3 boom"]
    assert first.cursor is not None
    rest = backend.search_logs(NS, LogQuery(function="hello", text="boom", limit=2, cursor=first.cursor))
    assert ([r.message for r in rest.records], rest.cursor) == (["line 1 boom"], None)
    everything = backend.search_logs(NS, LogQuery(text="boom"))
    assert [r.message for r in everything.records] == [
        "line 5 boom",
        "other boom",
        "line 3 boom",
        "line 1 boom",
    ]
    assert backend.search_logs(NS, LogQuery(fission_name="hello-v2")).records == []
    assert backend.search_logs(NS, LogQuery(request_id="abc")).records == []  # Kubernetes has none


def test_log_pages_split_lines_of_one_instant_exactly_once(
    kubernetes_portal: FakeKubernetes, acme: Tenant
) -> None:
    from dataplane.backends import get_backend
    from dataplane.backends.base import LogQuery

    kubernetes_portal.seed(_pod("hello-v1-abc", "hello-v1", ready=True))
    traceback = "".join(f"2026-11-23T10:00:01Z frame {i}\n" for i in range(5))  # one stamp, five lines
    kubernetes_portal.set_pod_log(NS, "hello-v1-abc", "python", traceback)
    kubernetes_portal.set_pod_log(NS, "hello-v1-abc", "fetcher", "")
    backend, seen, cursor = get_backend(), [], None
    for _ in range(5):
        page = backend.search_logs(NS, LogQuery(limit=2, cursor=cursor))
        seen += [r.message for r in page.records]
        cursor = page.cursor
        if cursor is None:
            break
    assert sorted(seen) == [f"frame {i}" for i in range(5)]  # none skipped, none twice


def test_log_search_skips_pods_gone_or_not_started_and_reports_forbidden(
    kubernetes_portal: FakeKubernetes, in_acme: Tenant
) -> None:
    from metrics.logs import LogsUnavailable, log_search

    kubernetes_portal.seed(_pod("hello-v1-abc", "hello-v1", ready=True))
    kubernetes_portal.set_pod_log(NS, "hello-v1-abc", "python", "2099-01-01T00:00:00Z still here\n")
    kubernetes_portal.seed(_pod("hello-v1-new", "hello-v1", ready=False))
    kubernetes_portal.inject(400, times=1, path_contains="/pods/hello-v1-new/log")  # container waiting
    assert [r["message"] for r in log_search(function="hello").records] == ["still here"]
    kubernetes_portal.inject(403, times=10, path_contains="/log")
    with pytest.raises(LogsUnavailable, match="may not read"):
        log_search(function="hello")


def test_log_tail_follows_function_pods_from_now_on(kubernetes_portal: FakeKubernetes, acme: Tenant) -> None:
    import threading

    from dataplane.backends import get_backend

    kubernetes_portal.seed(_pod("hello-v1-abc", "hello-v1", ready=True))
    kubernetes_portal.set_pod_log(NS, "hello-v1-abc", "python", "2026-11-23T10:00:00Z before the tail\n")
    kubernetes_portal.set_pod_log(NS, "hello-v1-abc", "fetcher", "")
    stop = threading.Event()
    tail = get_backend().tail_logs(NS, stop, since=1795428000.5)  # 2026-11-23T10:00:00.5Z
    try:
        assert next(tail) == []  # the follower connects; nothing new yet
        kubernetes_portal.append_pod_log(NS, "hello-v1-abc", "python", "2026-11-23T10:00:01Z printed\n")
        kubernetes_portal.append_pod_log(NS, "hello-v1-abc", "fetcher", "2026-11-23T10:00:01Z not ours\n")
        seen: list[str] = []
        for _, batch in zip(range(10), tail, strict=False):  # each batch waits at most 1 s
            seen += [f"{r.function}: {r.message}" for r in batch]
            if seen:
                break
        assert seen == ["hello-v1: printed"]
    finally:
        stop.set()
        kubernetes_portal.end_pod_log(NS, "hello-v1-abc", "python")


def test_suspension_scales_to_zero_and_resuming_redeploys(
    kubernetes_portal: FakeKubernetes, in_acme: Tenant
) -> None:
    hello = function_services.function_create(name="hello")
    triggers.trigger_save(function=hello, name="hello", methods=["GET"], path="/hello")
    assert deploy(hello).state == DeploymentState.LIVE

    tenant_services.tenant_set_suspended(tenant=in_acme, suspended=True)
    tenant_provisioning.tenant_sync_suspension(tenant_id=in_acme.pk)

    assert kubernetes_portal.objects("functions", NS) == []
    assert kubernetes_portal.objects("httptriggers", NS) == []
    (environment,) = kubernetes_portal.objects("environments", NS)
    assert environment["spec"]["poolsize"] == 0
    (quota,) = kubernetes_portal.objects("resourcequotas", NS)
    assert quota["spec"]["hard"]["pods"] == "0"
    assert [p["metadata"]["name"] for p in kubernetes_portal.objects("packages", NS)] == ["hello-draft"]

    tenant_services.tenant_set_suspended(tenant=in_acme, suspended=False)
    tenant_provisioning.tenant_sync_suspension(tenant_id=in_acme.pk)
    queued = Deployment.objects.exclude(state__in=FINAL_DEPLOYMENT_STATES)
    assert [d.cause for d in queued] == ["tenant resumed"]
    assert deployment_runs.deployment_run(deployment_id=queued[0].pk).state == DeploymentState.LIVE  # type: ignore[union-attr]
    (quota,) = kubernetes_portal.objects("resourcequotas", NS)
    assert quota["spec"]["hard"]["pods"] == "50"
    assert_holds_exactly(kubernetes_portal, desired_objects(hello, build_current(function=hello)))


# --- faults ---------------------------------------------------------------------------------------


def test_with_faults_on_30_percent_of_calls_everything_completes_once(
    kubernetes_portal: FakeKubernetes, django_capture_on_commit_callbacks: Any
) -> None:
    kubernetes_portal.inject_random(0.3, seed=20261123)
    with django_capture_on_commit_callbacks(execute=False):
        tenant = tenant_services.tenant_create(slug="acme", name="Acme")
    tenant_tasks.tenant_provision_task.apply(args=(tenant.pk,))  # as the worker runs it, retries included
    tenant.refresh_from_db()
    with schema_context(tenant.schema_name), django_capture_on_commit_callbacks(execute=False):
        hello = function_services.function_create(name="hello")
        triggers.trigger_save(function=hello, name="hello", methods=["GET"], path="/hello")
        deployment = deployments.deployment_create(function=hello, cause="test")
        from functions import tasks

        tasks.deploy_task.apply(args=(tenant.schema_name, deployment.pk))
    with schema_context(tenant.schema_name):  # a task leaves the connection in the public schema
        deployment.refresh_from_db()
        expected = desired_objects(hello, build_current(function=hello))

    statuses = [r.status for r in kubernetes_portal.requests]
    kubernetes_portal.clear_faults()
    assert tenant.state == TenantState.READY
    assert deployment.state == DeploymentState.LIVE, deployment.reason
    assert {429, 500, 503} & set(statuses)  # faults did happen
    assert 0 in statuses  # timeouts included
    assert_holds_exactly(kubernetes_portal, expected)
    tenant_ids = ids(tenant_objects("acme"))
    held = [
        o
        for o in everything(kubernetes_portal)
        if o["apiVersion"] != "fission.io/v1" or o["kind"] == "FissionTenant"
    ]
    assert ids(held) == tenant_ids  # each exactly once


def test_a_forbidden_apply_fails_the_deployment_with_a_clear_message(
    kubernetes_portal: FakeKubernetes, in_acme: Tenant
) -> None:
    hello = function_services.function_create(name="hello")
    kubernetes_portal.inject(403, times=10, path_contains="/functions/")

    result = deploy(hello)

    assert result.state == DeploymentState.FAILED
    assert result.reason.startswith(
        "the portal's service account may not apply Function faas-acme/hello-draft"
    )
    assert "403" in result.reason


def test_a_forbidden_namespace_fails_provisioning_with_the_reason(
    kubernetes_portal: FakeKubernetes, make_tenant: Any
) -> None:
    kubernetes_portal.inject(403, times=10, path_contains="/namespaces/faas-acme")
    tenant = tenant_services.tenant_create(slug="acme", name="Acme")

    tenant_tasks.tenant_provision_task.apply(args=(tenant.pk,))

    tenant.refresh_from_db()
    assert tenant.state == TenantState.FAILED
    assert "may not apply Namespace faas-acme" in tenant.state_reason
