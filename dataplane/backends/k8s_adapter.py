"""The Kubernetes adapter: the only module that imports ``kubernetes`` (pinned 37.0.1).

It speaks plain dicts. Writes are server-side apply with one field manager and ``force``, so an
apply is idempotent and never races on ``resourceVersion``: repeating it after a lost answer, or
after a worker was killed half-way, leaves exactly one object. Failures become our own types
(dataplane/backends/base.py): ``NotFound``, ``Conflict``, ``Forbidden``, ``PermanentError`` for
what retrying cannot fix, ``TransientError`` for timeouts, refused connections, 429 and 5xx.
Transient errors and conflicts are retried here with bounded exponential backoff and full jitter
(honouring ``Retry-After``); callers see them only once the attempts are spent.

Reference: https://kubernetes.io/docs/reference/using-api/server-side-apply/ and
https://kubernetes.io/docs/reference/using-api/api-concepts/ (Status bodies, propagation).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from dataplane.backends.base import (
    BackendError,
    Conflict,
    Forbidden,
    NotFound,
    PermanentError,
    TransientError,
)

FIELD_MANAGER = "faas-portal"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
Obj = dict[str, Any]


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None, name: str | None = None) -> str:
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        scope = f"/namespaces/{namespace}" if self.namespaced else ""
        return f"{root}{scope}/{self.plural}" + (f"/{name}" if name else "")


KINDS: dict[str, Kind] = {
    "Namespace": Kind("", "v1", "namespaces", namespaced=False),
    "ResourceQuota": Kind("", "v1", "resourcequotas"),
    "LimitRange": Kind("", "v1", "limitranges"),
    "ServiceAccount": Kind("", "v1", "serviceaccounts"),
    "Secret": Kind("", "v1", "secrets"),
    "ConfigMap": Kind("", "v1", "configmaps"),
    "Pod": Kind("", "v1", "pods"),
    "NetworkPolicy": Kind("networking.k8s.io", "v1", "networkpolicies"),
    "Role": Kind("rbac.authorization.k8s.io", "v1", "roles"),
    "RoleBinding": Kind("rbac.authorization.k8s.io", "v1", "rolebindings"),
    "Environment": Kind("fission.io", "v1", "environments"),
    "Package": Kind("fission.io", "v1", "packages"),
    "Function": Kind("fission.io", "v1", "functions"),
    "HTTPTrigger": Kind("fission.io", "v1", "httptriggers"),
    "TimeTrigger": Kind("fission.io", "v1", "timetriggers"),
    "MessageQueueTrigger": Kind("fission.io", "v1", "messagequeuetriggers"),
    "FissionTenant": Kind("fission.io", "v1", "fissiontenants", namespaced=False),
}


def kind_of(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise PermanentError(f"the portal does not manage objects of kind {name}") from None


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter: attempt n waits U(0, min(cap, base * 2**n))."""

    attempts: int = 6
    base_s: float = 0.2
    cap_s: float = 5.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        ceiling = min(self.cap_s, self.base_s * 2**attempt)
        drawn = random.uniform(0, ceiling)  # noqa: S311 - jitter, not crypto
        return min(self.cap_s, max(drawn, retry_after or 0.0))


def _selector(labels: Mapping[str, str] | str) -> str:
    if isinstance(labels, str):
        return labels
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


class KubeAdapter:
    """Dict-in, dict-out access to the API server through the official client's ``ApiClient``."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api = api_client
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self._sleep = sleep

    @classmethod
    def from_config(cls, *, kubeconfig: str = "", context: str = "", **kwargs: Any) -> KubeAdapter:
        """From ``kubeconfig`` (a path; ``KUBECONFIG`` usually) or, without one, in-cluster."""
        configuration = k8s.Configuration()
        try:
            if kubeconfig:
                k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=kubeconfig, context=context or None, client_configuration=configuration
                )
            else:
                k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except (ConfigException, OSError) as exc:
            raise PermanentError(f"cannot configure the Kubernetes client: {exc}") from None
        configuration.retries = False  # one retry policy, ours: urllib3's would hide faults and double waits
        return cls(k8s.ApiClient(configuration), **kwargs)

    def close(self) -> None:
        self.api.close()  # type: ignore[no-untyped-call]

    # -- verbs ----------------------------------------------------------------------------------

    def apply(self, obj: Obj) -> Obj:
        """Server-side apply ``obj`` (create or update) as ``faas-portal``; returns the stored object."""
        meta = obj.get("metadata") or {}
        kind = kind_of(str(obj.get("kind")))
        path = kind.path(meta.get("namespace"), meta["name"])
        query = {"fieldManager": FIELD_MANAGER, "force": "true"}
        what = f"{obj['kind']} {meta.get('namespace', '')}/{meta['name']}".replace(" /", " ")
        stored = self._call("PATCH", path, what, query=query, body=obj, content_type=APPLY_CONTENT_TYPE)
        return stored if isinstance(stored, dict) else obj

    def get(self, kind: str, namespace: str | None, name: str) -> Obj | None:
        try:
            found = self._call("GET", kind_of(kind).path(namespace, name), f"{kind} {name}")
        except NotFound:
            return None
        return found if isinstance(found, dict) else None

    def list(self, kind: str, namespace: str | None, labels: Mapping[str, str] | str = "") -> list[Obj]:
        query = {"labelSelector": _selector(labels)} if labels else {}
        listed = self._call("GET", kind_of(kind).path(namespace), f"{kind} list", query=query)
        return list(listed.get("items") or []) if isinstance(listed, dict) else []

    def delete(self, kind: str, namespace: str | None, name: str, *, propagation: str = "Foreground") -> bool:
        """Delete with ``propagation``; False when it was already gone (so retrying is harmless)."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        try:
            self._call("DELETE", kind_of(kind).path(namespace, name), f"{kind} {name}", body=body)
        except NotFound:
            return False
        return True

    def pod_log(
        self, namespace: str, pod: str, container: str, *, tail_lines: int = 200, since_s: int | None = None
    ) -> str:
        """The container's recent log, each line prefixed with its RFC 3339 timestamp."""
        query = {"container": container, "timestamps": "true", "tailLines": str(tail_lines)}
        if since_s is not None:
            query["sinceSeconds"] = str(max(1, since_s))
        path = kind_of("Pod").path(namespace, pod) + "/log"
        text = self._call("GET", path, f"log of {pod}/{container}", query=query)
        return text if isinstance(text, str) else ""

    def follow_pod_log(
        self,
        namespace: str,
        pod: str,
        container: str,
        *,
        tail_lines: int = 0,
        since_time: str | None = None,
        idle_timeout_s: float | None = None,
    ) -> Iterator[str]:
        """Lines of the container's log as they are written (timestamped), until the stream ends;
        from ``since_time`` (RFC 3339) if given, else the last ``tail_lines``. TransientError
        when the stream breaks or stays silent longer than ``idle_timeout_s``."""
        query = {"container": container, "timestamps": "true", "follow": "true"}
        query |= {"sinceTime": since_time} if since_time else {"tailLines": str(tail_lines)}
        path = kind_of("Pod").path(namespace, pod) + "/log"
        what = f"log of {pod}/{container}"
        response = self._open("GET", path, what, query, None, "", stream=True, read_timeout=idle_timeout_s)
        pending = b""
        try:
            for chunk in response.response.stream(4096, decode_content=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                yield from (line.decode(errors="replace") for line in lines)
            if pending:
                yield pending.decode(errors="replace")
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransientError(f"{what}: the stream broke ({exc})") from None
        finally:
            response.response.release_conn()

    # -- transport ------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Obj | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """One request with retries; the decoded JSON body (or text), or one of our errors."""
        response = self._open(method, path, what, query or {}, body, content_type)
        data = response.read()
        if "json" in (response.getheader("Content-Type") or ""):
            return json.loads(data or b"null")
        return data.decode(errors="replace")

    def _open(
        self,
        method: str,
        path: str,
        what: str,
        query: Mapping[str, str],
        body: Obj | None,
        content_type: str,
        *,
        stream: bool = False,
        read_timeout: float | None = None,
    ) -> Any:
        for attempt in range(self.retry.attempts):
            try:
                response = self._send(method, path, query, body, content_type, stream, read_timeout)
            except (urllib3.exceptions.HTTPError, OSError, k8s.ApiException) as exc:
                error: BackendError = TransientError(f"{what}: the Kubernetes API did not answer ({exc})")
                retry_after = None
            else:
                if response.status < 400:
                    return response
                error, retry_after = _translate(response, method, what)
            if not isinstance(error, TransientError) or attempt + 1 == self.retry.attempts:
                raise error
            self._sleep(self.retry.delay(attempt, retry_after))
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        body: Obj | None,
        content_type: str,
        stream: bool,
        read_timeout: float | None = None,
    ) -> Any:
        headers = {"Accept": "application/json, */*", "Content-Type": content_type}
        method, url, headers, body_out, post = self.api.param_serialize(
            method, path, query_params=list(query.items()), header_params=headers, body=body,
            auth_settings=["BearerToken"],
        )  # fmt: skip
        timeout = (self.timeout_s, read_timeout if stream else self.timeout_s)
        return self.api.call_api(method, url, headers, body_out, post, _request_timeout=timeout)


def _translate(response: Any, method: str, what: str) -> tuple[BackendError, float | None]:
    """Our error for a failed answer, and the server's ``Retry-After`` (seconds) if it sent one."""
    status = int(response.status)
    try:
        message = json.loads(response.read() or b"{}").get("message") or ""
    except (ValueError, AttributeError):
        message = ""
    text = f"{what}: {message or response.reason or 'error'} (HTTP {status})"
    retry_after = _seconds(response.getheader("Retry-After"))
    if status == 404:
        return NotFound(text), None
    if status == 409:
        return Conflict(text), retry_after
    if status in (401, 403):
        verb = {"GET": "read", "PATCH": "apply", "DELETE": "delete"}.get(method, method.lower())
        denied = f"the portal's service account may not {verb} {what}: {message} (HTTP {status})"
        return Forbidden(denied), None
    if status == 429 or status >= 500:
        return TransientError(text), retry_after
    return PermanentError(text), None


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
