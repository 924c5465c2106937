"""The Kubernetes adapter against the fake API server: retries, error types, logs, configuration;
and the backend's readiness rules. No database."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from dataplane.backends.base import Conflict, Forbidden, PermanentError, TransientError
from dataplane.backends.k8s import KubernetesBackend
from dataplane.backends.k8s_adapter import KubeAdapter, RetryPolicy
from testsupport.fake_kubernetes import FakeKubernetes, kube_client

NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "faas-acme"}}


@pytest.fixture
def slept() -> list[float]:
    return []


@pytest.fixture
def adapter(fake_kubernetes: FakeKubernetes, slept: list[float]) -> Iterator[KubeAdapter]:
    client = KubeAdapter(
        kube_client(fake_kubernetes), timeout_s=0.5, retry=RetryPolicy(attempts=4, base_s=0.01, cap_s=2.0),
        sleep=slept.append,
    )  # fmt: skip
    yield client
    client.close()


def statuses(fake: FakeKubernetes) -> list[int]:
    return [r.status for r in fake.requests]


def test_transient_answers_are_retried_until_the_apply_lands(
    adapter: KubeAdapter, fake_kubernetes: FakeKubernetes, slept: list[float]
) -> None:
    fake_kubernetes.inject(503, times=1)
    fake_kubernetes.inject(429, times=1)

    adapter.apply(NAMESPACE)

    assert statuses(fake_kubernetes) == [503, 429, 201]
    assert len(slept) == 2
    assert 0 <= slept[0] <= 0.01  # full jitter under the first ceiling
    assert slept[1] >= 1.0  # the 429's Retry-After: 1 is honoured
    assert [n["metadata"]["name"] for n in fake_kubernetes.objects("namespaces")] == ["faas-acme"]


def test_a_timeout_is_transient_and_retried(adapter: KubeAdapter, fake_kubernetes: FakeKubernetes) -> None:
    fake_kubernetes.inject("timeout", times=1, hold_seconds=2)

    adapter.apply(NAMESPACE)

    assert statuses(fake_kubernetes) == [0, 201]


def test_after_the_last_attempt_the_error_is_transient(
    adapter: KubeAdapter, fake_kubernetes: FakeKubernetes, slept: list[float]
) -> None:
    fake_kubernetes.inject(500, times=10)

    with pytest.raises(TransientError, match=r"Namespace faas-acme: .*\(HTTP 500\)"):
        adapter.apply(NAMESPACE)

    assert statuses(fake_kubernetes) == [500] * 4
    assert len(slept) == 3
    assert all(delay <= 2.0 for delay in slept)  # bounded by the cap


def test_a_lost_answer_after_the_write_leaves_one_object(
    adapter: KubeAdapter, fake_kubernetes: FakeKubernetes
) -> None:
    fake_kubernetes.inject(503, times=1, after_write=True)

    adapter.apply(NAMESPACE)

    assert statuses(fake_kubernetes) == [503, 200]  # committed, answer lost, applied again
    assert len(fake_kubernetes.objects("namespaces")) == 1


def test_conflicts_are_retried_and_typed(adapter: KubeAdapter, fake_kubernetes: FakeKubernetes) -> None:
    fake_kubernetes.inject(409, times=10)

    with pytest.raises(Conflict):
        adapter.apply(NAMESPACE)
    assert statuses(fake_kubernetes) == [409] * 4


def test_forbidden_and_invalid_are_permanent_and_not_retried(
    adapter: KubeAdapter, fake_kubernetes: FakeKubernetes
) -> None:
    fake_kubernetes.inject(403, times=1)
    with pytest.raises(Forbidden, match="the portal's service account may not apply Namespace faas-acme"):
        adapter.apply(NAMESPACE)
    bad = {**NAMESPACE, "metadata": {"name": "Not_A_Label"}}
    with pytest.raises(PermanentError, match=r"\(HTTP 422\)"):
        adapter.apply(bad)

    assert statuses(fake_kubernetes) == [403, 422]


def test_reads_and_deletes_of_missing_objects(adapter: KubeAdapter, fake_kubernetes: FakeKubernetes) -> None:
    assert adapter.get("Namespace", None, "faas-acme") is None
    assert adapter.delete("Namespace", None, "faas-acme") is False
    adapter.apply(NAMESPACE)
    assert adapter.delete("Namespace", None, "faas-acme") is True
    assert adapter.list("ResourceQuota", "faas-acme") == []  # like the real server: an empty list


def test_list_selects_by_label(adapter: KubeAdapter) -> None:
    adapter.apply({**NAMESPACE, "metadata": {"name": "faas-acme", "labels": {"tenant": "acme"}}})
    adapter.apply({**NAMESPACE, "metadata": {"name": "faas-globex", "labels": {"tenant": "globex"}}})

    assert [n["metadata"]["name"] for n in adapter.list("Namespace", None, {"tenant": "globex"})] == [
        "faas-globex"
    ]
    assert len(adapter.list("Namespace", None, "tenant")) == 2


def test_an_unknown_kind_is_refused(adapter: KubeAdapter) -> None:
    with pytest.raises(PermanentError, match="does not manage objects of kind Deployment"):
        adapter.apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}})


def test_follow_yields_lines_as_they_are_written(
    adapter: KubeAdapter, fake_kubernetes: FakeKubernetes
) -> None:
    fake_kubernetes.set_pod_log("faas-acme", "hello-abc", "python", "2026-11-23T10:00:00Z first\n")
    lines = adapter.follow_pod_log("faas-acme", "hello-abc", "python", tail_lines=10)

    assert next(lines) == "2026-11-23T10:00:00Z first"
    writer = threading.Timer(
        0.2,
        fake_kubernetes.append_pod_log,
        ("faas-acme", "hello-abc", "python", "2026-11-23T10:00:01Z second\n"),
    )
    writer.start()
    assert next(lines) == "2026-11-23T10:00:01Z second"
    fake_kubernetes.end_pod_log("faas-acme", "hello-abc", "python")
    assert list(lines) == []


def test_a_missing_kubeconfig_is_a_clear_permanent_error(tmp_path: Any) -> None:
    with pytest.raises(PermanentError, match="cannot configure the Kubernetes client"):
        KubeAdapter.from_config(kubeconfig=str(tmp_path / "nope"))


def test_outside_a_cluster_without_kubeconfig_is_a_clear_permanent_error(monkeypatch: Any) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(PermanentError, match="cannot configure the Kubernetes client"):
        KubeAdapter.from_config()


# --- readiness -------------------------------------------------------------------------------------


def _seed_function(fake: FakeKubernetes, *, package_status: dict[str, Any] | None) -> None:
    fake.seed(NAMESPACE)
    meta = {"name": "hello-draft", "namespace": "faas-acme"}
    package: dict[str, Any] = {"apiVersion": "fission.io/v1", "kind": "Package", "metadata": meta, "spec": {}}
    if package_status is not None:
        package["status"] = package_status
    fake.seed(package)
    strategy = {"ExecutionStrategy": {"ExecutorType": "newdeploy", "MinScale": 1}}
    spec = {
        "package": {"packageref": {"namespace": "faas-acme", "name": "hello-draft"}},
        "InvokeStrategy": strategy,
    }
    fake.seed({"apiVersion": "fission.io/v1", "kind": "Function", "metadata": dict(meta), "spec": spec})


def test_a_failed_package_build_fails_readiness_with_its_log(
    adapter: KubeAdapter, fake_kubernetes: FakeKubernetes
) -> None:
    _seed_function(
        fake_kubernetes, package_status={"buildstatus": "failed", "buildlog": "pip: no such package"}
    )
    backend = KubernetesBackend(adapter, router_url="http://router", poll_s=0)

    with pytest.raises(PermanentError, match="package hello-draft failed to build: pip: no such package"):
        backend.wait_ready("faas-acme", ["hello-draft"], timeout_s=5)


def test_no_ready_pod_in_time_is_transient(adapter: KubeAdapter, fake_kubernetes: FakeKubernetes) -> None:
    _seed_function(fake_kubernetes, package_status={"buildstatus": "none"})
    ticks = iter(range(100))
    backend = KubernetesBackend(
        adapter, router_url="http://router", poll_s=0, clock=lambda: float(next(ticks))
    )

    with pytest.raises(TransientError, match="not ready after 3 s: hello-draft"):
        backend.wait_ready("faas-acme", ["hello-draft"], timeout_s=3)
