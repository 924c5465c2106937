"""KubernetesBackend: a cluster running Fission >= 1.27 (``tenancy.mode: dynamic``).

Same interface as LocalBackend. Everything goes through ``KubeAdapter`` (the only importer of the
``kubernetes`` package), which retries transient errors; what reaches this module is final.

- Status: a Function is ready when it exists, its Package has not failed to build, and, for
  newdeploy with MinScale >= 1, one of its pods is Ready. A pod stuck pulling its image or crash
  looping fails the deployment with the kubelet's reason instead of waiting forever.
- Logs: ``pods/log`` of the pods Fission labels ``functionName`` (dataplane/backends/k8s_logs.py).
- Asynchronous invocations: Fission's router has none, so the portal queues them in its Redis and
  its dispatcher calls the router (dataplane/backends/k8s_async.py; the local runtime's semantics).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings

from dataplane import namespaces as tenant_manifests
from dataplane.backends import k8s_async, k8s_logs, kube_adapter
from dataplane.backends.base import (
    CallRecord,
    CallsNotRecorded,
    CapturedRequest,
    CapturesNotRecorded,
    DeadLetterPage,
    FunctionAnswer,
    InvokeResult,
    LogPage,
    LogQuery,
    LogRecord,
    ObjectRef,
    PermanentError,
    TransientError,
)
from dataplane.backends.k8s_adapter import KubeAdapter
from dataplane.backends.k8s_logs import FUNCTION_POD_LABEL
from dataplane.backends.router import invoke_router

_STUCK_REASONS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CrashLoopBackOff", "CreateContainerConfigError"}
)
Obj = dict[str, Any]


def network_options(*, internet_egress: bool) -> tenant_manifests.NetworkOptions:
    return tenant_manifests.NetworkOptions(
        router_namespace=settings.FISSION_ROUTER_NAMESPACE,
        internet_egress=internet_egress,
        dns_namespace=settings.KUBERNETES_DNS_NAMESPACE,
        api_server_cidrs=tuple(settings.KUBERNETES_API_SERVER_CIDRS),
        portal_namespace=settings.PORTAL_K8S_NAMESPACE or None,
        portal_port=settings.PORTAL_K8S_PORT,
    )


class KubernetesBackend:
    name = "kubernetes"

    def __init__(
        self,
        adapter: KubeAdapter | None = None,
        *,
        router_url: str | None = None,
        poll_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.adapter = adapter or kube_adapter()
        self.router_url = router_url or settings.KUBERNETES_ROUTER_URL
        self.poll_s = poll_s
        self._clock = clock

    # -- tenants -------------------------------------------------------------------------------

    def provision_tenant(
        self, slug: str, quota: tenant_manifests.TenantQuota, *, internet_egress: bool
    ) -> None:
        """Apply the tenant's namespace and fences (idempotent), and drop optional policies that
        are no longer wanted (internet egress switched off)."""
        prefix = settings.TENANT_NAMESPACE_PREFIX
        objects = tenant_manifests.tenant_manifests(
            slug, prefix=prefix, quota=quota, network=network_options(internet_egress=internet_egress),
            fission_namespace=settings.FISSION_NAMESPACE,
        )  # fmt: skip
        for obj in objects:
            self.adapter.apply(obj)
        namespace = tenant_manifests.namespace_for(slug, prefix)
        for name in tenant_manifests.stale_network_policies(objects):
            self.adapter.delete("NetworkPolicy", namespace, name)

    def delete_namespace(self, namespace: str) -> None:
        """Offboard the namespace from Fission (its FissionTenant), then delete the Namespace with
        everything in it. Idempotent: both deletes accept an object already gone."""
        self.adapter.delete("FissionTenant", None, namespace)
        self.adapter.delete("Namespace", None, namespace)
        k8s_async.drop_namespace(self.adapter, namespace)

    # -- objects -------------------------------------------------------------------------------

    def apply(self, objects: list[Obj]) -> None:
        for obj in objects:
            self.adapter.apply(obj)

    def delete(self, ref: ObjectRef) -> None:
        self.adapter.delete(ref.kind, ref.namespace, ref.name, propagation="Background")

    def list_objects(self, namespace: str, kind: str, labels: dict[str, str]) -> list[ObjectRef]:
        return [
            ObjectRef(kind, namespace, item["metadata"]["name"], item["metadata"].get("labels") or {})
            for item in self.adapter.list(kind, namespace, labels)
        ]

    def event_status(self, namespace: str, kind: str) -> dict[str, dict[str, Any]]:
        """Fission keeps no record of what a timer or a KEDA connector did: nothing to show."""
        return {}

    # -- status --------------------------------------------------------------------------------

    def wait_ready(self, namespace: str, functions: list[str], timeout_s: float) -> None:
        deadline = self._clock() + timeout_s
        waiting = list(functions)
        while True:
            waiting = [name for name in waiting if not self._ready(namespace, name)]
            if not waiting:
                return
            if self._clock() >= deadline:
                raise TransientError(f"not ready after {timeout_s:.0f} s: {', '.join(waiting)}")
            time.sleep(self.poll_s)

    def _ready(self, namespace: str, name: str) -> bool:
        function = self.adapter.get("Function", namespace, name)
        if function is None:
            return False
        spec = function.get("spec") or {}
        package_name = ((spec.get("package") or {}).get("packageref") or {}).get("name", "")
        package = self.adapter.get("Package", namespace, package_name) if package_name else None
        if package is None:
            return False
        status = package.get("status") or {}
        if status.get("buildstatus") == "failed":
            raise PermanentError(
                f"package {package_name} failed to build: {status.get('buildlog', '')[-2000:]}"
            )
        strategy = ((spec.get("InvokeStrategy") or {}).get("ExecutionStrategy")) or {}
        if strategy.get("ExecutorType") != "newdeploy" or int(strategy.get("MinScale") or 0) < 1:
            return True  # poolmgr, or newdeploy from zero: pods start on the first call
        pods = self.adapter.list("Pod", namespace, {FUNCTION_POD_LABEL: name})
        for pod in pods:
            _raise_if_stuck(name, pod)
        return any(_pod_ready(pod) for pod in pods)

    def specialize(self, namespace: str, functions: list[str], request_id: str) -> str:
        """The closest Fission allows: a newdeploy function with MinScale >= 1 has specialized
        pods once ``wait_ready`` returned (its pods load the code at start and are ready only
        then; a pod that cannot is reported by ``wait_ready``). Fission specializes a poolmgr pod
        only for a call (its executor's API is internal and signed), so a poolmgr function's load
        error shows at its first call, under that call's request id."""
        on_demand = [name for name in functions if not self._starts_pods(namespace, name)]
        if not on_demand:
            return "pods ready"
        waiting = ", ".join(on_demand)
        return f"pods ready; {waiting} load at the first call (Fission specializes them on demand)"

    def _starts_pods(self, namespace: str, name: str) -> bool:
        function = self.adapter.get("Function", namespace, name) or {}
        strategy = (((function.get("spec") or {}).get("InvokeStrategy") or {}).get("ExecutionStrategy")) or {}
        return strategy.get("ExecutorType") == "newdeploy" and int(strategy.get("MinScale") or 0) >= 1

    # -- asynchronous invocations ----------------------------------------------------------------
    # Fission has none: the portal's own queue keeps them (dataplane/backends/k8s_async.py).

    def dead_letters(
        self, namespace: str, functions: list[str], limit: int, before: str | None
    ) -> DeadLetterPage:
        return k8s_async.dead_letters(self.adapter, namespace, functions, limit, before)

    def redrive_dead_letters(
        self, namespace: str, function: str, ids: list[str] | None, to: str
    ) -> list[str]:
        return k8s_async.redrive(self.adapter, namespace, function, ids, to)

    def purge_dead_letters(self, namespace: str, function: str, ids: list[str] | None) -> int:
        return k8s_async.purge(self.adapter, namespace, function, ids)

    # -- traffic and logs ----------------------------------------------------------------------

    def invoke(
        self, method: str, path: str, headers: dict[str, str], body: bytes, timeout_s: float
    ) -> InvokeResult:
        """A call through Fission's router; with ``X-Faas-Invocation-Type: Event``, queued by the
        portal and answered 202 at once, as the local router does (``k8s_async.accept``)."""
        if k8s_async.queued(headers):
            return k8s_async.accept(self.adapter, method, path, headers, body)
        headers = k8s_async.synchronous_headers(headers)
        return invoke_router(self.router_url, method, path, headers, body, timeout_s)

    def logs(
        self,
        namespace: str,
        *,
        request_id: str | None = None,
        function: str | None = None,
        since: float | None = None,
        limit: int = 200,
    ) -> list[LogRecord]:
        """Recent lines of the namespace's function pods (of one portal ``function`` if given).

        Kubernetes does not know which request printed a line, so ``request_id`` cannot select;
        callers narrow with ``function`` and ``since`` (epoch seconds) instead.
        """
        query = LogQuery(function=function, since=since)
        return k8s_logs.recent(self.adapter, namespace, query, tail=limit)[-limit:]

    def search_logs(self, namespace: str, query: LogQuery) -> LogPage:
        return k8s_logs.search(self.adapter, namespace, query)

    def tail_logs(
        self, namespace: str, stop: threading.Event, since: float | None = None
    ) -> Iterator[list[LogRecord]]:
        return k8s_logs.tail(self.adapter, namespace, stop, since)

    def calls(self, namespace: str, functions: list[str], since: float) -> list[CallRecord]:
        """Fission's router keeps no record of individual calls (only Prometheus counters), so
        there are no call times to measure or replay."""
        raise CallsNotRecorded(
            "Call times are not recorded on Kubernetes: Fission's router keeps only counters, so the"
            " cold-start what-if needs the local runtime."
        )

    def captures(self, namespace: str, function: str) -> list[CapturedRequest]:
        """Fission's router captures no requests (the capture annotation is ignored there)."""
        raise CapturesNotRecorded(CAPTURES_NOT_RECORDED)

    def captures_delete(self, namespace: str, function: str, ids: list[str] | None) -> int:
        raise CapturesNotRecorded(CAPTURES_NOT_RECORDED)

    def call_function(
        self, namespace: str, fission_name: str, *, method: str, path: str,
        headers: list[tuple[str, str]], body: bytes, timeout_s: float,
    ) -> FunctionAnswer:  # fmt: skip
        """Not on Kubernetes: replay needs the local runtime, which captures the requests and can
        call one version directly (Fission's router reaches functions only through triggers from
        outside the cluster). Raises CapturesNotRecorded."""
        raise CapturesNotRecorded(
            "Replay needs the local runtime: on Kubernetes, requests are not captured and the portal"
            " cannot call one version directly."
        )


CAPTURES_NOT_RECORDED = (
    "Requests are not captured on Kubernetes: Fission's router does not record them, so replay"
    " needs the local runtime."
)


def _pod_ready(pod: Obj) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _raise_if_stuck(function: str, pod: Obj) -> None:
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in _STUCK_REASONS:
            detail = waiting.get("message") or ""
            raise PermanentError(
                f"{function}: container {container.get('name')} is {waiting['reason']}: {detail}".rstrip(": ")
            )
