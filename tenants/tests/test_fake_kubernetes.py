"""The shared fake Kubernetes API server, driven through the official client (no database)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from testsupport.fake_kubernetes import FakeKubernetes, fake_kubernetes, kube_client, parse_label_selector

__all__ = ["fake_kubernetes"]  # the fixture is used by name

GROUP, VERSION = "fission.io", "v1"


@pytest.fixture
def api(fake_kubernetes: FakeKubernetes) -> Iterator[Any]:
    """An ApiClient for the fake, closed after the test."""
    client = kube_client(fake_kubernetes)
    yield client
    client.close()


def _any(value: object) -> Any:
    """The client's models are strictly typed; tests read them loosely."""
    return value


def _core(api: Any) -> Any:
    return k8s.CoreV1Api(api)


def _custom(api: Any) -> Any:
    return k8s.CustomObjectsApi(api)


def _networking(api: Any) -> Any:
    return k8s.NetworkingV1Api(api)


def _rbac(api: Any) -> Any:
    return k8s.RbacAuthorizationV1Api(api)


def _namespace(name: str, **labels: str) -> k8s.V1Namespace:
    return k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name, labels=labels or None))


def _quota(name: str, pods: str = "10") -> k8s.V1ResourceQuota:
    return k8s.V1ResourceQuota(
        metadata=k8s.V1ObjectMeta(name=name), spec=k8s.V1ResourceQuotaSpec(hard={"pods": pods})
    )


def _function(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "fission.io/v1",
        "kind": "Function",
        "metadata": {"name": name, "labels": labels},
        "spec": {"environment": {"name": "python", "namespace": "acme"}, "concurrency": 5},
    }


def _status_of(call: Any) -> int:
    with pytest.raises(ApiException) as caught:
        call()
    return int(caught.value.status)


def test_namespace_create_read_list_by_label_and_delete(api: Any) -> None:
    core = _core(api)
    created = core.create_namespace(_namespace("acme", tenant="acme", tier="free"))
    core.create_namespace(_namespace("globex", tenant="globex", tier="paid"))

    assert created.metadata.uid
    assert created.metadata.resource_version
    assert created.status.phase == "Active"
    assert core.read_namespace("acme").metadata.labels == {"tenant": "acme", "tier": "free"}
    names = [ns.metadata.name for ns in core.list_namespace(label_selector="tier in (free,trial)").items]
    assert names == ["acme"]
    core.delete_namespace("acme", body=k8s.V1DeleteOptions(propagation_policy="Foreground"))
    assert _status_of(lambda: core.read_namespace("acme")) == 404
    assert _status_of(lambda: core.delete_namespace("acme")) == 404


def test_create_twice_is_409_and_missing_namespace_is_404(api: Any) -> None:
    core = _core(api)
    core.create_namespace(_namespace("acme"))

    assert _status_of(lambda: core.create_namespace(_namespace("acme"))) == 409
    assert _status_of(lambda: core.create_namespaced_resource_quota("nowhere", _quota("q"))) == 404
    assert _status_of(lambda: core.create_namespace(_namespace("Not_A_Label"))) == 422


def test_resourcequota_replace_and_stale_write_conflicts(api: Any, fake_kubernetes: FakeKubernetes) -> None:
    core = _core(api)
    core.create_namespace(_namespace("acme"))
    first = core.create_namespaced_resource_quota("acme", _quota("compute"))

    first.spec.hard = {"pods": "20"}
    updated = core.replace_namespaced_resource_quota("compute", "acme", first)
    first.spec.hard = {"pods": "30"}  # still carries the old resourceVersion

    assert int(updated.metadata.resource_version) > int(first.metadata.resource_version)
    assert updated.metadata.generation == 2
    assert _status_of(lambda: core.replace_namespaced_resource_quota("compute", "acme", first)) == 409
    assert fake_kubernetes.objects("resourcequotas", "acme")[0]["spec"]["hard"] == {"pods": "20"}
    assert _status_of(lambda: core.replace_namespaced_resource_quota("other", "acme", _quota("other"))) == 404


def test_merge_patch_changes_only_given_fields(api: Any) -> None:
    core = _core(api)
    core.create_namespace(_namespace("acme", tenant="acme", tier="free"))

    patched = core.patch_namespace("acme", {"metadata": {"labels": {"tier": "paid", "tenant": None}}})

    assert patched.metadata.labels == {"tier": "paid"}


def test_fission_functions_are_namespaced_custom_objects(api: Any) -> None:
    _core(api).create_namespace(_namespace("acme"))
    custom = _custom(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, "acme", "functions", _function("hello", app="a"))
    custom.create_namespaced_custom_object(GROUP, VERSION, "acme", "functions", _function("bye", app="b"))

    listed = custom.list_namespaced_custom_object(
        GROUP, VERSION, "acme", "functions", label_selector="app!=b"
    )
    got = custom.get_namespaced_custom_object(GROUP, VERSION, "acme", "functions", "hello")

    assert listed["kind"] == "FunctionList"
    assert [f["metadata"]["name"] for f in listed["items"]] == ["hello"]
    assert listed["items"][0]["apiVersion"] == "fission.io/v1"
    assert got["metadata"]["namespace"] == "acme"
    custom.delete_namespaced_custom_object(GROUP, VERSION, "acme", "functions", "hello")
    get_again = lambda: custom.get_namespaced_custom_object(GROUP, VERSION, "acme", "functions", "hello")  # noqa: E731
    assert _status_of(get_again) == 404


def test_fissiontenants_are_cluster_scoped(api: Any, fake_kubernetes: FakeKubernetes) -> None:
    custom = _custom(api)
    body = {"apiVersion": "fission.io/v1", "kind": "FissionTenant", "metadata": {"name": "acme"}, "spec": {}}

    custom.create_cluster_custom_object(GROUP, VERSION, "fissiontenants", body)

    assert custom.get_cluster_custom_object(GROUP, VERSION, "fissiontenants", "acme")["metadata"]["uid"]
    assert "namespace" not in fake_kubernetes.objects("fissiontenants")[0]["metadata"]


def test_server_side_apply_creates_then_updates(api: Any) -> None:
    _core(api).create_namespace(_namespace("acme"))
    custom = _custom(api)

    def apply(body: dict[str, Any], **options: Any) -> dict[str, Any]:
        return custom.patch_namespaced_custom_object(
            GROUP, VERSION, "acme", "functions", "hello", body,
            field_manager=options.pop("manager", "faas-portal"),
            _content_type="application/apply-patch+yaml", **options,
        )  # fmt: skip

    # The server answers 201 on create, which CustomObjectsApi does not deserialize (its PATCH
    # declares only 200): the client returns None, exactly as against a real API server.
    assert apply(_function("hello", app="a")) is None
    created = custom.get_namespaced_custom_object(GROUP, VERSION, "acme", "functions", "hello")
    body = _function("hello")
    body["spec"]["concurrency"] = 7
    updated = apply(body)

    assert created["metadata"]["labels"] == {"app": "a"}
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]
    assert updated["spec"]["concurrency"] == 7
    assert updated["metadata"].get("labels", {}) == {}  # the manager stopped applying the label
    assert _status_of(lambda: apply(_function("hello"), manager="someone-else")) == 409
    assert apply(_function("hello"), manager="someone-else", force=True)["spec"]["concurrency"] == 5


def test_deleting_a_namespace_deletes_what_is_in_it(api: Any, fake_kubernetes: FakeKubernetes) -> None:
    core = _core(api)
    for name in ("acme", "globex"):
        core.create_namespace(_namespace(name))
        core.create_namespaced_resource_quota(name, _quota("compute"))
        _custom(api).create_namespaced_custom_object(GROUP, VERSION, name, "functions", _function("f"))

    core.delete_namespace("acme")

    assert [q["metadata"]["namespace"] for q in fake_kubernetes.objects("resourcequotas")] == ["globex"]
    assert len(fake_kubernetes.objects("functions")) == 1


def test_networking_and_rbac_resources(api: Any) -> None:
    _core(api).create_namespace(_namespace("acme"))
    policy = k8s.V1NetworkPolicy(
        metadata=k8s.V1ObjectMeta(name="deny"),
        spec=k8s.V1NetworkPolicySpec(pod_selector=k8s.V1LabelSelector()),
    )
    role = k8s.V1Role(metadata=k8s.V1ObjectMeta(name="fission:reader"), rules=[])

    _networking(api).create_namespaced_network_policy("acme", policy)
    _rbac(api).create_namespaced_role("acme", role)

    assert _networking(api).read_namespaced_network_policy("deny", "acme").metadata.name == "deny"
    assert [r.metadata.name for r in _rbac(api).list_namespaced_role("acme").items] == ["fission:reader"]


@pytest.mark.parametrize("status", [409, 429, 500, 503])
def test_injected_status_fails_the_next_call_then_it_succeeds(
    api: Any, fake_kubernetes: FakeKubernetes, status: int
) -> None:
    core = _core(api)
    fake_kubernetes.inject(status)

    assert _status_of(lambda: core.create_namespace(_namespace("acme"))) == status
    assert fake_kubernetes.objects("namespaces") == []
    assert core.create_namespace(_namespace("acme")).metadata.name == "acme"
    assert [r.status for r in fake_kubernetes.requests] == [status, 201]


def test_injection_filters_on_verb_and_path(api: Any, fake_kubernetes: FakeKubernetes) -> None:
    core = _core(api)
    fake_kubernetes.inject(503, times=2, verb="GET", path_contains="/namespaces/acme")

    core.create_namespace(_namespace("acme"))
    assert _status_of(lambda: core.read_namespace("acme")) == 503
    assert _status_of(lambda: core.read_namespace("acme")) == 503
    assert core.read_namespace("acme").metadata.name == "acme"


def test_fault_after_write_still_commits(api: Any, fake_kubernetes: FakeKubernetes) -> None:
    fake_kubernetes.inject(504, after_write=True)

    assert _status_of(lambda: _core(api).create_namespace(_namespace("acme"))) == 504
    assert [ns["metadata"]["name"] for ns in fake_kubernetes.objects("namespaces")] == ["acme"]


def test_injected_timeout_raises_in_the_client(api: Any, fake_kubernetes: FakeKubernetes) -> None:
    core = _core(api)
    fake_kubernetes.inject("timeout", hold_seconds=3)
    started = time.monotonic()

    with pytest.raises((urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.MaxRetryError)):
        core.list_namespace(_request_timeout=1)

    assert time.monotonic() - started < 2.5
    assert core.list_namespace(_request_timeout=1).items == []


def _random_outcomes(seed: int) -> list[int]:
    server = FakeKubernetes().start()
    client = kube_client(server)
    try:
        server.inject_random(0.3, (429, 500, 503), seed=seed)
        core = _core(client)
        outcomes = []
        for _ in range(40):
            try:
                core.list_namespace()
                outcomes.append(200)
            except ApiException as error:
                outcomes.append(int(error.status))
        return outcomes
    finally:
        client.close()
        server.stop()


def test_random_injection_is_reproducible_from_the_seed() -> None:
    first, again = _random_outcomes(seed=7), _random_outcomes(seed=7)

    assert first == again
    assert 4 <= sum(status != 200 for status in first) <= 20


def test_pod_log_returns_the_text_set_by_the_test(api: Any, fake_kubernetes: FakeKubernetes) -> None:
    fake_kubernetes.set_pod_log("acme", "hello-1", "hello", "one\ntwo\nthree\n")
    core = _core(api)

    assert core.read_namespaced_pod_log("hello-1", "acme", container="hello") == "one\ntwo\nthree\n"
    assert core.read_namespaced_pod_log("hello-1", "acme", tail_lines=1) == "three\n"
    assert _status_of(lambda: core.read_namespaced_pod_log("missing", "acme")) == 404


def test_followed_pod_log_streams_until_the_log_ends(api: Any, fake_kubernetes: FakeKubernetes) -> None:
    fake_kubernetes.set_pod_log("acme", "hello-1", "hello", "one\n")
    response = _core(api).read_namespaced_pod_log(
        "hello-1", "acme", container="hello", follow=True, _preload_content=False, _request_timeout=5
    )
    fake_kubernetes.append_pod_log("acme", "hello-1", "hello", "two\n")
    fake_kubernetes.end_pod_log("acme", "hello-1", "hello")

    assert b"".join(response.stream()) == b"one\ntwo\n"


def test_discovery_and_version(api: Any) -> None:
    assert _any(k8s.VersionApi(api)).get_code().git_version.startswith("v1.")
    groups = {g.name for g in _any(k8s.ApisApi(api)).get_api_versions().groups}
    assert {"fission.io", "rbac.authorization.k8s.io", "networking.k8s.io"} <= groups


def test_label_selector_grammar() -> None:
    labels = {"app": "a", "tier": "free"}

    def matches(selector: str) -> bool:
        return all(requirement(labels) for requirement in parse_label_selector(selector))

    assert matches("app=a,tier in (free, trial),!missing,tier")
    assert matches("app==a,tier notin (paid),app!=b")
    assert not matches("app=a,missing")
    assert not matches("tier in (paid)")


def test_dynamic_client_discovers_and_applies(api: Any) -> None:
    from kubernetes import dynamic  # only this test needs discovery

    client = dynamic.DynamicClient(api)
    client.resources.get(api_version="v1", kind="Namespace").create(body={"metadata": {"name": "acme"}})
    functions = client.resources.get(api_version="fission.io/v1", kind="Function")
    functions.server_side_apply(body=_function("hello"), namespace="acme", field_manager="faas-portal")

    assert functions.get(namespace="acme", name="hello").spec.concurrency == 5
