"""LocalBackend: the project's own runtime (``runtime/``), through its control API and router.

# Reference: runtime/control.py (Kubernetes-style paths for fission.io/v1 objects).
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Iterator
from typing import Any

import httpx
from django.conf import settings

from dataplane import namespaces as tenant_manifests
from dataplane.backends import redis_calls, redis_captures, redis_logs
from dataplane.backends.base import (
    CallRecord,
    CapturedRequest,
    DeadLetterPage,
    FunctionAnswer,
    InvokeResult,
    LoadFailed,
    LogPage,
    LogQuery,
    LogRecord,
    NotFound,
    ObjectRef,
    PermanentError,
    TransientError,
)
from dataplane.backends.pool import shared_client
from dataplane.backends.router import invoke_router
from dataplane.namespaces import TenantQuota

SPECIALIZE_TIMEOUT_S = 150.0
# In the order a namespace is built: its fences first, its routes last.
PLURALS = {
    "NetworkPolicy": "networkpolicies",
    "ResourceQuota": "resourcequotas",
    "LimitRange": "limitranges",
    "Environment": "environments",
    "Package": "packages",
    "ConfigMap": "configmaps",
    "Function": "functions",
    "Secret": "secrets",
    "HTTPTrigger": "httptriggers",
    "TimeTrigger": "timetriggers",
    "MessageQueueTrigger": "messagequeuetriggers",
}
# Routes first, fences last: nothing is ever served half deleted or unfenced.
DELETE_ORDER = tuple(reversed(PLURALS))
# Served under the API group Kubernetes serves them under; the rest is fission.io/v1.
GROUPS = {"ResourceQuota": "api/v1", "LimitRange": "api/v1", "Secret": "api/v1", "ConfigMap": "api/v1",
          "NetworkPolicy": "apis/networking.k8s.io/v1"}  # fmt: skip


class LocalBackend:
    name = "local"

    def __init__(
        self, control_url: str | None = None, router_url: str | None = None, token: str | None = None
    ):
        self.control_url = (control_url or settings.RUNTIME_URL).rstrip("/")
        self.router_url = (router_url or settings.RUNTIME_ROUTER_URL).rstrip("/")
        self.token = token if token is not None else settings.RUNTIME_TOKEN

    def _url(self, namespace: str, kind: str, name: str | None = None) -> str:
        group = GROUPS.get(kind, "apis/fission.io/v1")
        base = f"{self.control_url}/{group}/namespaces/{namespace}/{PLURALS[kind]}"
        return f"{base}/{name}" if name else base

    def _request(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                 answered: tuple[int, ...] = (), **kwargs: Any) -> httpx.Response:  # fmt: skip
        """The runtime's answer; TransientError when it is unreachable or answers 429 or 5xx,
        except for the codes in ``answered``, which the caller handles."""
        headers = {**(headers or {}), "Authorization": f"Bearer {self.token}"}
        kwargs.setdefault("timeout", 60)
        try:
            response = shared_client().request(method, url, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise TransientError(f"the runtime is unreachable: {exc}") from None
        if (
            response.status_code == 429 or response.status_code >= 500
        ) and response.status_code not in answered:
            raise TransientError(f"the runtime answered {response.status_code}")
        return response

    def apply(self, objects: list[dict[str, Any]]) -> None:
        for obj in objects:
            namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
            response = self._request("PUT", self._url(namespace, obj["kind"], name), json=obj)
            if response.status_code == 404:
                response = self._request("POST", self._url(namespace, obj["kind"]), json=obj)
                if response.status_code == 409:  # created meanwhile: replace it
                    response = self._request("PUT", self._url(namespace, obj["kind"], name), json=obj)
            if response.status_code >= 400:
                raise PermanentError(_message(response, f"{obj['kind']} {name}"))

    def delete(self, ref: ObjectRef) -> None:
        response = self._request("DELETE", self._url(ref.namespace, ref.kind, ref.name))
        if response.status_code >= 400 and response.status_code != 404:
            raise PermanentError(_message(response, f"{ref.kind} {ref.name}"))

    def list_objects(self, namespace: str, kind: str, labels: dict[str, str]) -> list[ObjectRef]:
        response = self._request("GET", self._url(namespace, kind))
        if response.status_code >= 400:
            raise PermanentError(_message(response, kind))
        refs = []
        for item in response.json()["items"]:
            item_labels = item["metadata"].get("labels") or {}
            if all(item_labels.get(k) == v for k, v in labels.items()):
                refs.append(ObjectRef(kind, namespace, item["metadata"]["name"], item_labels))
        return refs

    def event_status(self, namespace: str, kind: str) -> dict[str, dict[str, Any]]:
        """The runtime's record of each trigger, the ``status`` of its objects."""
        response = self._request("GET", self._url(namespace, kind))
        if response.status_code >= 400:
            raise PermanentError(_message(response, kind))
        return {item["metadata"]["name"]: item.get("status") or {} for item in response.json()["items"]}

    def _dead_letters_url(self, namespace: str, function: str, suffix: str = "") -> str:
        return self._url(namespace, "Function", function) + "/deadletters" + suffix

    def dead_letters(
        self, namespace: str, functions: list[str], limit: int, before: str | None
    ) -> DeadLetterPage:
        """One page over several functions (``DeadLetterPage.merged``)."""
        pages = []
        for function in functions:
            params: dict[str, Any] = {"limit": limit, **({"cursor": before} if before else {})}
            response = self._request("GET", self._dead_letters_url(namespace, function), params=params)
            if response.status_code == 404:
                continue  # not on the runtime (never deployed, or removed): it has none to show
            if response.status_code >= 400:
                raise PermanentError(_message(response, f"dead letters of {function}"))
            page = response.json()
            pages.append((page["items"], page["next"], int(page["total"])))
        return DeadLetterPage.merged(pages, limit)

    def redrive_dead_letters(
        self, namespace: str, function: str, ids: list[str] | None, to: str
    ) -> list[str]:
        body: dict[str, Any] = {"function": to, **({"ids": ids} if ids is not None else {})}
        response = self._request("POST", self._dead_letters_url(namespace, function, "/redrive"), json=body)
        if response.status_code == 404 and ids is None and to == function:
            return []  # all of a function that is not on the runtime: it has none
        if response.status_code == 404:
            raise NotFound(_message(response, f"dead letters of {function}"))
        if response.status_code >= 400:
            raise PermanentError(_message(response, f"redriving the dead letters of {function}"))
        return [str(item["requestId"]) for item in response.json()["redriven"]]

    def purge_dead_letters(self, namespace: str, function: str, ids: list[str] | None) -> int:
        body = {"ids": ids} if ids is not None else None
        response = self._request("DELETE", self._dead_letters_url(namespace, function), json=body)
        if response.status_code == 404:
            return 0
        if response.status_code >= 400:
            raise PermanentError(_message(response, f"purging the dead letters of {function}"))
        return int(response.json()["purged"])

    def provision_tenant(self, slug: str, quota: TenantQuota, *, internet_egress: bool) -> None:
        """The runtime takes the tenant's ResourceQuota and LimitRange (it bounds workers, memory
        and concurrency by them) and its NetworkPolicies (its sandbox's egress follows them), and
        drops the optional policies no longer wanted, as on Kubernetes. Idempotent."""
        prefix = settings.TENANT_NAMESPACE_PREFIX
        network = tenant_manifests.NetworkOptions(internet_egress=internet_egress)
        policies = tenant_manifests.network_policy_manifests(slug, prefix=prefix, network=network)
        self.apply([
            tenant_manifests.resource_quota_manifest(slug, prefix=prefix, quota=quota),
            tenant_manifests.limit_range_manifest(slug, prefix=prefix, quota=quota),
            *policies,
        ])  # fmt: skip
        namespace = tenant_manifests.namespace_for(slug, prefix)
        for name in tenant_manifests.stale_network_policies(policies):
            self.delete(ObjectRef("NetworkPolicy", namespace, name))

    def delete_namespace(self, namespace: str) -> None:
        """Remove every object of the namespace and its log stream (a deleted tenant's routes
        and lines must not survive into a tenant that reuses the slug)."""
        kinds = (
            "HTTPTrigger",
            "TimeTrigger",
            "MessageQueueTrigger",
            "Secret",
            "Function",
            "ConfigMap",
            "Package",
            "Environment",
            "ResourceQuota",
            "LimitRange",
            "NetworkPolicy",
        )
        for kind in kinds:
            for ref in self.list_objects(namespace, kind, {}):
                self.delete(ref)
        redis_logs.drop(namespace)
        redis_calls.drop(namespace)
        redis_captures.drop(namespace)

    def wait_ready(self, namespace: str, functions: list[str], timeout_s: float) -> None:
        """The runtime accepts a Function only once its package is fetched and verified, so
        an object that reads back is ready to specialize. One that does not was deleted since
        the apply (a concurrent change): TransientError, so the deployment applies again."""
        for name in functions:
            response = self._request("GET", self._url(namespace, "Function", name))
            if response.status_code == 404:
                raise TransientError(f"function {name} is not on the runtime after the apply")

    def specialize(self, namespace: str, functions: list[str], request_id: str) -> str:
        """A real specialization of each function in a sandboxed worker, which then serves its
        first call (runtime/control.py, ``.../functions/<name>/specialize``). A function that
        cannot have a worker now (429: every worker it may have is busy, or the namespace's quota
        is used up) is not a failed deployment: it loads at a call once there is room."""
        busy = []
        for name in functions:
            url = self._url(namespace, "Function", name) + "/specialize"
            # A cold start may take the runtime's whole specialization timeout (120 s).
            response = self._request(
                "POST",
                url,
                headers={"X-Fission-Request-ID": f"{request_id}-{name}"},
                timeout=SPECIALIZE_TIMEOUT_S,
                answered=(429,),
            )
            if response.status_code == 429:
                busy.append(name)
                continue
            if response.status_code == 404:
                raise TransientError(f"function {name} is not on the runtime after the apply")
            if response.status_code == 422:
                detail = _detail(response)
                reason = str(detail.get("reason") or _message(response, name))
                raise LoadFailed.of(
                    name, reason, str(detail.get("traceback") or ""), str(detail.get("request_id") or "")
                )
            if response.status_code >= 400:
                raise PermanentError(_message(response, f"specializing {name}"))
        loaded = [name for name in functions if name not in busy]
        notes = [f"specialized {', '.join(loaded)}"] if loaded else []
        if busy:
            notes.append(f"no worker free for {', '.join(busy)} (at its limits): it loads at a call")
        return "; ".join(notes) or "nothing to specialize"

    def invoke(
        self, method: str, path: str, headers: dict[str, str], body: bytes, timeout_s: float
    ) -> InvokeResult:
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
        query = LogQuery(function=function, request_id=request_id, since=since, limit=limit)
        return list(reversed(redis_logs.search(namespace, query).records))

    def search_logs(self, namespace: str, query: LogQuery) -> LogPage:
        return redis_logs.search(namespace, query)

    def tail_logs(
        self, namespace: str, stop: threading.Event, since: float | None = None
    ) -> Iterator[list[LogRecord]]:
        return redis_logs.tail(namespace, stop, since)

    def calls(self, namespace: str, functions: list[str], since: float) -> list[CallRecord]:
        """From the runtime's call stream of the namespace (runtime/calls.py)."""
        return redis_calls.read(namespace, functions, since)

    def captures(self, namespace: str, function: str) -> list[CapturedRequest]:
        """From the function's capture stream (runtime/captures.py)."""
        return redis_captures.read(namespace, function)

    def captures_delete(self, namespace: str, function: str, ids: list[str] | None) -> int:
        return redis_captures.delete(namespace, function, ids)

    def call_function(
        self, namespace: str, fission_name: str, *, method: str, path: str,
        headers: list[tuple[str, str]], body: bytes, timeout_s: float,
    ) -> FunctionAnswer:  # fmt: skip
        """Through the runtime's direct call (runtime/control.py, ``.../functions/<name>/call``),
        which answers 200 with the function's answer whatever its status."""
        url = self._url(namespace, "Function", fission_name) + "/call"
        payload = {"method": method, "path": path, "headers": [list(pair) for pair in headers],
                   "body": base64.b64encode(body).decode()}  # fmt: skip
        # The function's own timeout bounds the call; the runtime answers 504 past it.
        response = self._request("POST", url, json=payload, timeout=timeout_s)
        if response.status_code == 404:
            raise NotFound(_message(response, f"function {fission_name}"))
        if response.status_code >= 400:
            raise PermanentError(_message(response, f"calling {fission_name}"))
        try:
            answer = response.json()
            return FunctionAnswer(
                status=int(answer["status"]), headers=[(str(k), str(v)) for k, v in answer["headers"]],
                body=base64.b64decode(answer["body"]), duration_ms=float(answer["duration_ms"]),
                request_id=str(answer["request_id"]),
            )  # fmt: skip
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise TransientError(f"the runtime's answer to calling {fission_name} is not one") from None


def _detail(response: httpx.Response) -> dict[str, Any]:
    """The ``detail`` object of an error answer ({} when there is none)."""
    try:
        detail = response.json()["error"].get("detail")
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}
    return detail if isinstance(detail, dict) else {}


def _message(response: httpx.Response, what: str) -> str:
    try:
        error = response.json()["error"]
        field = (error.get("detail") or {}).get("field")
        return f"{what}: {error['message']}" + (f" ({field})" if field else "")
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"{what}: the runtime answered {response.status_code}"
