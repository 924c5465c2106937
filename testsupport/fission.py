"""Builders of fission.io/v1 objects for tests (the portal's manifests come later), and of the
core/v1 Secret and ConfigMap a function references (files under /secrets and /configs; a
ConfigMap may hold its environment variables)."""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from typing import Any

from runtime.objects import ENVIRONMENT_VARIABLES_ANNOTATION

API = "fission.io/v1"


def _meta(namespace: str, name: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace}


def environment(namespace: str, name: str, *, poolsize: int = 1, memory: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "version": 3,
        "runtime": {"image": "ghcr.io/fission/python-env"},
        "poolsize": poolsize,
        "terminationGracePeriod": 5,
    }
    if memory:
        spec["resources"] = {"limits": {"memory": memory}}
    return {"apiVersion": API, "kind": "Environment", "metadata": _meta(namespace, name), "spec": spec}


def zip_bytes(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, content in files.items():
            archive.writestr(path, content)
    return buffer.getvalue()


def package_literal(namespace: str, name: str, code: str | bytes, *, env: str = "python") -> dict[str, Any]:
    data = code.encode() if isinstance(code, str) else code
    return {
        "apiVersion": API,
        "kind": "Package",
        "metadata": _meta(namespace, name),
        "spec": {
            "environment": {"namespace": namespace, "name": env},
            "deployment": {
                "type": "literal",
                "literal": base64.b64encode(data).decode(),
                "checksum": {"type": "sha256", "sum": hashlib.sha256(data).hexdigest()},
            },
        },
    }


def function(
    namespace: str,
    name: str,
    *,
    package: str,
    entrypoint: str = "main",
    env: str = "python",
    executor: str = "poolmgr",
    min_scale: int = 0,
    max_scale: int = 1,
    timeout: int = 60,
    idle_timeout: int = 120,
    concurrency: int = 0,
    requests_per_pod: int = 0,
    memory: str | None = None,
    package_version: str = "1",
    configmaps: tuple[str, ...] = (),
    secrets: tuple[str, ...] = (),
) -> dict[str, Any]:
    """``configmaps`` and ``secrets``: the names of those it references, in its own namespace."""
    spec: dict[str, Any] = {
        "environment": {"namespace": namespace, "name": env},
        "package": {
            "packageref": {"namespace": namespace, "name": package, "resourceversion": package_version},
            "functionName": entrypoint,
        },
        "InvokeStrategy": {
            "StrategyType": "execution",
            "ExecutionStrategy": {
                "ExecutorType": executor,
                "MinScale": min_scale,
                "MaxScale": max_scale,
                "TargetCPUPercent": 80,
                "SpecializationTimeout": 120,
            },
        },
        "functionTimeout": timeout,
        "idletimeout": idle_timeout,
        "concurrency": concurrency,
        "requestsPerPod": requests_per_pod,
    }
    if memory:
        spec["resources"] = {"limits": {"memory": memory}}
    if configmaps:
        spec["configmaps"] = [{"namespace": namespace, "name": configmap} for configmap in configmaps]
    if secrets:
        spec["secrets"] = [{"namespace": namespace, "name": secret} for secret in secrets]
    return {"apiVersion": API, "kind": "Function", "metadata": _meta(namespace, name), "spec": spec}


def configmap(namespace: str, name: str, data: dict[str, Any], *,
              environment_variables: bool = True) -> dict[str, Any]:  # fmt: skip
    """A core/v1 ConfigMap, as the portal sends a function's environment variables (its data)
    unless ``environment_variables`` is False (then it is only a ConfigMap)."""
    metadata: dict[str, Any] = {**_meta(namespace, name), "labels": {"faas-portal/tenant": "test"}}
    if environment_variables:
        metadata["annotations"] = {ENVIRONMENT_VARIABLES_ANNOTATION: "true"}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def secret(namespace: str, name: str, data: dict[str, bytes]) -> dict[str, Any]:
    """A core/v1 Secret holding ``data`` (base64-encoded, as the API takes it)."""
    encoded = {key: base64.b64encode(value).decode() for key, value in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(namespace, name), "type": "Opaque",
            "data": encoded}  # fmt: skip


def httptrigger(
    namespace: str,
    name: str,
    path: str,
    *,
    function_name: str | None = None,
    weights: dict[str, int] | None = None,
    methods: tuple[str, ...] = ("GET", "POST"),
    prefix: bool = False,
    keep_prefix: bool = False,
) -> dict[str, Any]:
    if weights:
        ref: dict[str, Any] = {"type": "function-weights", "functionweights": weights}
    else:
        ref = {"type": "name", "name": function_name or name}
    spec: dict[str, Any] = {"methods": list(methods), "functionref": ref, "keepPrefix": keep_prefix}
    spec["prefix" if prefix else "relativeurl"] = path
    return {"apiVersion": API, "kind": "HTTPTrigger", "metadata": _meta(namespace, name), "spec": spec}


def tenant_root(namespace: str, prefix: str = "faas") -> str:
    """``/acme`` for ``faas-acme``: the runtime serves a namespace's routes only under it."""
    assert namespace.startswith(f"{prefix}-"), namespace
    return "/" + namespace.removeprefix(f"{prefix}-")
