"""Builders of the core/v1 quota objects the portal sends (as in dataplane/namespaces.py), and helpers
to drive the runtime's /api/v1 routes and read its gauges."""

from __future__ import annotations

from typing import Any

import httpx

from testsupport.runtime import TOKEN, RuntimeProcess

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def resource_quota(namespace: str, *, pods: int | None = None, memory: str | None = None,
                   concurrency: int | None = None, name: str = "tenant-quota") -> dict[str, Any]:  # fmt: skip
    """The portal's ``tenant-quota``; a bound left out (None) is absent, so unlimited."""
    hard = {
        "requests.cpu": "2", "requests.memory": "2Gi", "limits.cpu": "4",
        "count/functions.fission.io": "50", "count/packages.fission.io": "100",
        "count/httptriggers.fission.io": "50", "count/environments.fission.io": "5",
    }  # fmt: skip
    if pods is not None:
        hard["pods"] = str(pods)
    if memory is not None:
        hard["limits.memory"] = memory
    annotations = {} if concurrency is None else {"faas-portal/concurrency": str(concurrency)}
    metadata = {"name": name, "namespace": namespace, "labels": {"faas-portal/tenant": "acme"},
                "annotations": annotations}  # fmt: skip
    return {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": metadata, "spec": {"hard": hard}}


def limit_range(namespace: str, *, default_memory: str = "256Mi",
                name: str = "tenant-limits") -> dict[str, Any]:  # fmt: skip
    container = {
        "type": "Container",
        "default": {"cpu": "500m", "memory": default_memory},
        "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
        "max": {"cpu": "1", "memory": "1Gi"},
    }
    return {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": name, "namespace": namespace},
            "spec": {"limits": [container]}}  # fmt: skip


def core_url(runtime: RuntimeProcess, namespace: str, plural: str, name: str | None = None) -> str:
    url = f"{runtime.control}/api/v1/namespaces/{namespace}/{plural}"
    return f"{url}/{name}" if name else url


def core(runtime: RuntimeProcess, method: str, namespace: str, plural: str, name: str | None = None,
         body: dict[str, Any] | None = None) -> httpx.Response:  # fmt: skip
    url = core_url(runtime, namespace, plural, name)
    return httpx.request(method, url, json=body, headers=AUTH, timeout=60)


def core_apply(runtime: RuntimeProcess, obj: dict[str, Any]) -> httpx.Response:
    """Create, or replace when it exists (as the portal's backend does)."""
    plural, namespace = obj["kind"].lower() + "s", obj["metadata"]["namespace"]
    response = core(runtime, "POST", namespace, plural, body=obj)
    if response.status_code == 409:
        response = core(runtime, "PUT", namespace, plural, obj["metadata"]["name"], obj)
    return response


def gauge(runtime: RuntimeProcess, name: str, **labels: str) -> float | None:
    """The value of the one series of ``name`` with these labels; None when there is none."""
    text = runtime.metrics()
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        if series.startswith(name + "{") and all(f'{k}="{v}"' in series for k, v in labels.items()):
            return float(value)
    return None


def quota_used(runtime: RuntimeProcess, namespace: str, resource: str) -> float | None:
    return gauge(runtime, "runtime_quota_used", namespace=namespace, resource=resource)


def quota_hard(runtime: RuntimeProcess, namespace: str, resource: str) -> float | None:
    return gauge(runtime, "runtime_quota_hard", namespace=namespace, resource=resource)
