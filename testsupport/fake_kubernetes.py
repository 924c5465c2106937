"""A fake Kubernetes API server for tests, driven through the official ``kubernetes`` client.

It is a stateful HTTP server on 127.0.0.1 that speaks enough of the Kubernetes REST protocol for the
portal's Kubernetes adapter and for applying the portal's Helm chart: the core/v1, apps/v1, batch/v1,
autoscaling/v2, policy/v1, networking.k8s.io/v1, rbac.authorization.k8s.io/v1 and fission.io/v1
resources listed in ``RESOURCES``; create / read / list (label and field selectors) /
replace / merge patch / server-side apply / delete; ``resourceVersion`` preconditions (409 on stale
writes); 404s; Status bodies shaped like the real API server's, so the client raises ``ApiException``
with the right ``status``; ``pods/log`` (plain and ``follow``); minimal discovery; and fault injection.

Reference: https://kubernetes.io/docs/reference/using-api/api-concepts/

Differences from a real API server, on purpose (tests stay fast and deterministic):

- Deleting a namespace removes it and everything in it at once (no ``Terminating`` phase); no
  ``default`` service account is created in new namespaces; ``ownerReferences`` are not garbage
  collected and ``propagationPolicy`` is accepted but ignored; finalizers are ignored.
- Strategic merge patch behaves as JSON merge patch (lists are replaced, never merged by key);
  JSON patch (``application/json-patch+json``) is answered with 415.
- Server-side apply tracks field ownership per apply manager (leaf paths; lists are atomic), detects
  conflicts between apply managers only (not with update managers), honours ``force``, and removes the
  fields a manager stops applying. ``metadata.managedFields`` is not returned.
- No watches, no ``limit``/``continue`` paging, no admission or schema validation beyond name syntax.
- A ``timeout`` fault holds the request for ``hold_seconds`` (at most 10 s, cut short when the server
  stops) and then closes the connection without a response: clients must use ``_request_timeout``
  shorter than that.
"""

from __future__ import annotations

import copy
import json
import random
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple, cast
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import utils as k8s_utils

MAX_HOLD_SECONDS = 10.0
Obj = dict[str, Any]
Key = tuple[str, str, str, str | None, str]  # group, version, plural, namespace, name
Fault = int | str  # an HTTP status or "timeout"

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclass(frozen=True)
class Resource:
    """One REST resource type the fake serves."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    name_rule: str = "subdomain"  # "label" (DNS-1123 label), "subdomain" or "path" (RBAC names)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


def _fission(plural: str, kind: str, *, namespaced: bool = True) -> Resource:
    return Resource("fission.io", "v1", plural, kind, namespaced)


_RESOURCE_LIST = [
    Resource("", "v1", "namespaces", "Namespace", namespaced=False, name_rule="label"),
    Resource("", "v1", "resourcequotas", "ResourceQuota"),
    Resource("", "v1", "limitranges", "LimitRange"),
    Resource("", "v1", "serviceaccounts", "ServiceAccount"),
    Resource("", "v1", "pods", "Pod"),
    Resource("", "v1", "secrets", "Secret"),
    Resource("", "v1", "configmaps", "ConfigMap"),
    Resource("", "v1", "services", "Service", name_rule="label"),
    Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"),
    Resource("networking.k8s.io", "v1", "ingresses", "Ingress"),
    # What a Helm chart installs (portal/tests/test_chart.py): stored, never acted on (no controllers).
    Resource("apps", "v1", "deployments", "Deployment"),
    Resource("batch", "v1", "jobs", "Job"),
    Resource("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler"),
    Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget"),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role", name_rule="path"),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", name_rule="path"),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False, "path"),
    Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False, "path"),
    _fission("environments", "Environment"),
    _fission("packages", "Package"),
    _fission("functions", "Function"),
    _fission("httptriggers", "HTTPTrigger"),
    _fission("timetriggers", "TimeTrigger"),
    _fission("messagequeuetriggers", "MessageQueueTrigger"),
    _fission("canaryconfigs", "CanaryConfig"),
    _fission("kuberneteswatchtriggers", "KubernetesWatchTrigger"),
    _fission("fissiontenants", "FissionTenant", namespaced=False),
]
RESOURCES: dict[tuple[str, str, str], Resource] = {(r.group, r.version, r.plural): r for r in _RESOURCE_LIST}


class RequestRecord(NamedTuple):
    """One request the server answered; ``status`` is 0 when the connection was dropped (timeout)."""

    method: str
    path: str
    status: int


class KubeError(Exception):
    """An error answered as a Kubernetes ``Status`` object."""

    def __init__(self, code: int, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def body(self) -> Obj:
        return status_body(self.code, self.message, self.details)


def status_body(code: int, message: str, details: Obj | None = None) -> Obj:
    """A failure ``Status`` exactly as the API server shapes it."""
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": _REASONS.get(code, "Unknown"),
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def _not_found(resource: Resource, name: str) -> KubeError:
    details = {"name": name, "group": resource.group, "kind": resource.plural}
    return KubeError(404, f'{resource.plural} "{name}" not found', details)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- label selectors -----------------------------------------------------------------------------

Requirement = Callable[[dict[str, str]], bool]
_SET_TERM = re.compile(r"([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)")


def parse_label_selector(text: str) -> list[Requirement]:
    """Parse ``a=b,a!=b,a,!a,a in (x,y),a notin (x,y)`` into requirements that must all hold."""
    terms, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [_requirement(term.strip()) for term in terms if term.strip()]


def _requirement(term: str) -> Requirement:
    if match := _SET_TERM.fullmatch(term):
        key, op, raw = match.groups()
        values = {v.strip() for v in raw.split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if term.startswith("!"):
        return lambda labels: term[1:].strip() not in labels
    for op in ("!=", "==", "="):
        if op in term:
            key, value = (part.strip() for part in term.split(op, 1))
            if op == "!=":
                return lambda labels: labels.get(key) != value
            return lambda labels: labels.get(key) == value
    if not re.fullmatch(r"[\w./-]+", term):
        raise KubeError(400, f"unable to parse requirement: {term!r}")
    return lambda labels: term in labels


def _field_matches(obj: Obj, selector: str) -> bool:
    """Field selectors on ``metadata.name`` and ``metadata.namespace`` (``=``, ``==``, ``!=``)."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        negate = "!=" in term
        path, value = re.split(r"!=|==|=", term, maxsplit=1)
        actual = obj.get("metadata", {}).get(path.strip().removeprefix("metadata."))
        if (actual == value.strip()) == negate:
            return False
    return True


# --- patches and server-side apply ---------------------------------------------------------------

Path = tuple[str, ...]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


_IDENTITY: set[Path] = {
    ("apiVersion",),
    ("kind",),
    ("metadata", "name"),
    ("metadata", "namespace"),
    ("metadata", "resourceVersion"),
}


def leaf_paths(obj: Any, prefix: Path = ()) -> set[Path]:
    """Paths of the leaves of an applied configuration; lists and empty maps are leaves (atomic)."""
    if not isinstance(obj, dict) or (not obj and prefix):
        return {prefix} - _IDENTITY
    paths: set[Path] = set()
    for key, value in obj.items():
        paths |= leaf_paths(value, (*prefix, key))
    return paths


def _get(obj: Any, path: Path) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _delete(obj: Obj, path: Path) -> None:
    """Remove the field at ``path``, then each map above it left empty (a map exists in an
    applied configuration only through its fields, as in the real server's field sets)."""
    while path:
        parent = _get(obj, path[:-1])
        if not isinstance(parent, dict):
            return
        parent.pop(path[-1], None)
        if parent or len(path) == 1:
            return
        path = path[:-1]


def _deep_merge(target: Obj, source: Obj) -> Obj:
    """Merge ``source`` into a copy of ``target`` (no ``null`` deletion, lists replaced)."""
    result = copy.deepcopy(target)
    for key, value in source.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _deep_merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


# --- the object store ----------------------------------------------------------------------------


@dataclass
class _Store:
    """Objects in memory, one lock, one global resourceVersion counter."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    items: dict[Key, Obj] = field(default_factory=dict)
    managers: dict[Key, dict[str, set[Path]]] = field(default_factory=dict)
    revision: int = 1000

    def _stamp(self, obj: Obj) -> Obj:
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)
        return copy.deepcopy(obj)

    def _check_namespace(self, resource: Resource, namespace: str | None) -> None:
        if resource.namespaced and ("", "v1", "namespaces", None, namespace) not in self.items:
            raise _not_found(RESOURCES[("", "v1", "namespaces")], str(namespace))

    def get(self, resource: Resource, namespace: str | None, name: str) -> Obj:
        with self.lock:
            obj = self.items.get(_key(resource, namespace, name))
            if obj is None:
                raise _not_found(resource, name)
            return copy.deepcopy(obj)

    def list(self, resource: Resource, namespace: str | None, labels: str = "", fields: str = "") -> Obj:
        requirements = parse_label_selector(labels)
        with self.lock:
            items = [
                copy.deepcopy(obj)
                for key, obj in sorted(self.items.items(), key=lambda kv: (kv[0][3] or "", kv[0][4]))
                if key[:3] == (resource.group, resource.version, resource.plural)
                and (namespace is None or key[3] == namespace)
                and all(req(obj["metadata"].get("labels") or {}) for req in requirements)
                and _field_matches(obj, fields)
            ]
            return {
                "kind": f"{resource.kind}List",
                "apiVersion": resource.api_version,
                "metadata": {"resourceVersion": str(self.revision)},
                "items": items,
            }

    def create(self, resource: Resource, namespace: str | None, body: Obj) -> Obj:
        obj = _normalise(resource, namespace, body)
        metadata = obj["metadata"]
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = metadata["generateName"] + uuid.uuid4().hex[:5]
        _validate_name(resource, metadata.get("name"))
        with self.lock:
            self._check_namespace(resource, namespace)
            key = _key(resource, namespace, metadata["name"])
            if key in self.items:
                name = metadata["name"]
                details = {"name": name, "group": resource.group, "kind": resource.plural}
                raise KubeError(409, f'{resource.plural} "{name}" already exists', details) from None
            metadata.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
            metadata.pop("resourceVersion", None)
            if resource.plural == "namespaces":
                obj.setdefault("status", {"phase": "Active"})
            self.items[key] = obj
            return self._stamp(obj)

    def replace(self, resource: Resource, namespace: str | None, name: str, body: Obj) -> Obj:
        obj = _normalise(resource, namespace, body)
        if obj["metadata"].get("name") != name:
            raise KubeError(400, "the name of the object does not match the name on the URL")
        with self.lock:
            current = self.get(resource, namespace, name)
            return self._write(resource, current, obj)

    def _write(self, resource: Resource, current: Obj, new: Obj) -> Obj:
        """Store ``new`` over ``current``, enforcing its resourceVersion precondition if it has one."""
        wanted = new["metadata"].get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            name = current["metadata"]["name"]
            message = (
                f'Operation cannot be fulfilled on {resource.plural} "{name}": the object has been '
                "modified; please apply your changes to the latest version and try again"
            )
            raise KubeError(409, message, {"name": name, "group": resource.group, "kind": resource.plural})
        for immutable in ("uid", "creationTimestamp", "generation"):
            new["metadata"][immutable] = current["metadata"][immutable]
        if _spec(new) != _spec(current):
            new["metadata"]["generation"] += 1
        key = _key(resource, current["metadata"].get("namespace"), current["metadata"]["name"])
        self.items[key] = new
        return self._stamp(new)

    def patch(self, resource: Resource, namespace: str | None, name: str, patch: Obj) -> Obj:
        with self.lock:
            current = self.get(resource, namespace, name)
            wanted = (patch.get("metadata") or {}).get("resourceVersion")
            merged = _normalise(resource, namespace, merge_patch(current, patch))
            merged["metadata"]["resourceVersion"] = wanted
            return self._write(resource, current, merged)

    def apply(
        self, resource: Resource, namespace: str | None, name: str, config: Obj, *, manager: str, force: bool
    ) -> Obj:
        """Server-side apply: create, or merge ``config`` owning its fields as ``manager``."""
        config = _normalise(resource, namespace, config)
        if config["metadata"].get("name") != name:
            raise KubeError(400, "the name of the object does not match the name on the URL")
        paths = leaf_paths(config)
        with self.lock:
            key = _key(resource, namespace, name)
            if key not in self.items:
                created = self.create(resource, namespace, config)
                self.managers[key] = {manager: paths}
                return created
            current = self.get(resource, namespace, name)
            owners = self.managers.setdefault(key, {})
            self._take_ownership(owners, current, config, manager=manager, force=force)
            others = set().union(*(p for m, p in owners.items() if m != manager))
            for dropped in owners.get(manager, set()) - paths - others:
                _delete(current, dropped)
            owners[manager] = paths
            return self._write(resource, current, _deep_merge(current, config))

    @staticmethod
    def _take_ownership(
        owners: dict[str, set[Path]], current: Obj, config: Obj, *, manager: str, force: bool
    ) -> None:
        conflicts = [
            (other, path)
            for other, owned in owners.items()
            if other != manager
            for path in sorted(owned & leaf_paths(config))
            if _get(current, path) != _get(config, path)
        ]
        if conflicts and not force:
            causes = [
                {
                    "type": "FieldManagerConflict",
                    "message": f'conflict with "{m}"',
                    "field": "." + ".".join(p),
                }
                for m, p in conflicts
            ]
            raise KubeError(409, f"Apply failed with {len(conflicts)} conflicts", {"causes": causes})
        for other, path in conflicts:
            owners[other].discard(path)

    def delete(self, resource: Resource, namespace: str | None, name: str, options: Obj) -> Obj:
        with self.lock:
            current = self.get(resource, namespace, name)
            expected = options.get("preconditions") or {}
            for field_name in ("uid", "resourceVersion"):
                if expected.get(field_name) and expected[field_name] != current["metadata"][field_name]:
                    raise KubeError(409, f"Precondition failed: {field_name} does not match")
            key = _key(resource, namespace, name)
            del self.items[key]
            self.managers.pop(key, None)
            if resource.plural == "namespaces":
                self._delete_contents(name)
            details = {"name": name, "group": resource.group, "kind": resource.plural}
            return {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": details,
            }

    def _delete_contents(self, namespace: str) -> None:
        for key in [k for k in self.items if k[3] == namespace]:
            del self.items[key]
            self.managers.pop(key, None)


def _key(resource: Resource, namespace: str | None, name: str) -> Key:
    return (resource.group, resource.version, resource.plural, namespace, name)


def _spec(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _normalise(resource: Resource, namespace: str | None, body: Any) -> Obj:
    """Copy ``body`` with kind/apiVersion/namespace checked against the URL."""
    if not isinstance(body, dict):
        raise KubeError(400, "the request body must be an object")
    obj = copy.deepcopy(body)
    for field_name, expected in (("kind", resource.kind), ("apiVersion", resource.api_version)):
        if obj.setdefault(field_name, expected) != expected:
            raise KubeError(400, f"{field_name} {obj[field_name]!r} does not match the URL ({expected})")
    metadata = obj.setdefault("metadata", {})
    if not isinstance(metadata, dict):
        raise KubeError(400, "metadata must be an object")
    if resource.namespaced:
        if metadata.setdefault("namespace", namespace) != namespace:
            raise KubeError(400, "the namespace of the object does not match the namespace on the URL")
    else:
        metadata.pop("namespace", None)
    return obj


def _validate_name(resource: Resource, name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise KubeError(422, f"{resource.kind} is invalid: metadata.name: Required value")
    valid = {
        "label": len(name) <= 63 and _DNS_LABEL.fullmatch(name) is not None,
        "subdomain": len(name) <= 253 and _DNS_SUBDOMAIN.fullmatch(name) is not None,
        "path": name not in (".", "..") and not set(name) & {"/", "%"},
    }[resource.name_rule]
    if not valid:
        raise KubeError(422, f'{resource.kind} "{name}" is invalid: metadata.name: Invalid value: "{name}"')


# --- routing -------------------------------------------------------------------------------------


@dataclass
class Route:
    """A parsed resource URL."""

    resource: Resource
    namespace: str | None
    name: str | None
    subresource: str | None


def parse_route(path: str) -> Route:
    """Map ``/api/v1/...`` and ``/apis/<group>/<version>/...`` to a resource, or raise 404."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise KubeError(404, "the server could not find the requested resource")
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    resource = RESOURCES.get((group, version, rest[0]))
    if resource is None or len(rest) > 3 or (namespace is not None and not resource.namespaced):
        raise KubeError(404, "the server could not find the requested resource")
    if resource.namespaced and namespace is None and len(rest) > 1:
        raise KubeError(404, "the server could not find the requested resource")
    return Route(resource, namespace, rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None)


def _discovery(path: str) -> Obj | None:
    """Minimal discovery documents (``/version``, ``/api``, ``/apis``, group and group-version)."""
    groups: dict[str, list[Resource]] = {}
    for resource in _RESOURCE_LIST:
        groups.setdefault(resource.api_version, []).append(resource)
    versions = {gv: {"groupVersion": gv, "version": gv.rsplit("/", 1)[-1]} for gv in groups if "/" in gv}
    named = {gv.split("/")[0]: v for gv, v in versions.items()}
    if path == "/version":
        return {
            "major": "1",
            "minor": "31",
            "gitVersion": "v1.31.0-fake",
            "gitCommit": "0" * 40,
            "gitTreeState": "clean",
            "buildDate": "2024-08-13T00:00:00Z",
            "goVersion": "go1.22.5",
            "compiler": "gc",
            "platform": "linux/amd64",
        }
    if path == "/api":
        return {
            "kind": "APIVersions",
            "apiVersion": "v1",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [],
        }
    if path == "/apis":
        items = [{"name": g, "versions": [v], "preferredVersion": v} for g, v in named.items()]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": items}
    gv = path.removeprefix("/api/").removeprefix("/apis/")
    if gv in named:
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": gv,
            "versions": [named[gv]],
            "preferredVersion": named[gv],
        }
    if gv in groups:
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": gv,
            "resources": _api_resources(groups[gv]),
        }
    return None


def _api_resources(resources: list[Resource]) -> list[Obj]:
    verbs = ["create", "delete", "get", "list", "patch", "update"]
    items = [
        {
            "name": r.plural,
            "singularName": r.kind.lower(),
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": verbs,
        }
        for r in resources
    ]
    if any(r.plural == "pods" for r in resources):
        items.append(
            {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]}
        )
    return items


# --- faults --------------------------------------------------------------------------------------


@dataclass
class _Fault:
    status: Fault
    remaining: int
    verb: str | None
    path_contains: str | None
    after_write: bool
    hold_seconds: float

    def matches(self, method: str, path: str) -> bool:
        return (self.verb is None or self.verb.upper() == method) and (
            self.path_contains is None or self.path_contains in path
        )


@dataclass
class _RandomFaults:
    rate: float
    statuses: tuple[Fault, ...]
    rng: random.Random
    path_contains: str | None

    def draw(self, path: str) -> Fault | None:
        if self.path_contains is not None and self.path_contains not in path:
            return None
        return self.rng.choice(self.statuses) if self.rng.random() < self.rate else None


@dataclass
class Response:
    """What the handler sends: a JSON body, a text body, or a stream of text chunks."""

    status: int
    body: Obj | str | None = None
    stream: Iterator[str] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def fault_response(status: int) -> Response:
    """The Status an injected fault answers with (429 carries ``Retry-After`` like the real server)."""
    messages = {
        409: "Operation cannot be fulfilled: the object has been modified; please apply your changes "
        "to the latest version and try again",
        429: "Too many requests, please try again later.",
        500: "Internal error occurred: injected by the fake Kubernetes API server",
        503: "The server is currently unable to handle the request",
        504: "Timeout: request did not complete within the allowed duration",
    }
    details = {"retryAfterSeconds": 1} if status == 429 else None
    headers = {"Retry-After": "1"} if status == 429 else {}
    return Response(
        status, status_body(status, messages.get(status, "injected fault"), details), headers=headers
    )


# --- the server ----------------------------------------------------------------------------------


@dataclass
class _PodLog:
    text: str = ""
    closed: bool = False


class FakeKubernetes:
    """The fake API server: start it, point the official client at ``url``, inspect and inject."""

    def __init__(self) -> None:
        self.store = _Store()
        self.requests: list[RequestRecord] = []
        self._faults: list[_Fault] = []
        self._random: _RandomFaults | None = None
        self._fault_lock = threading.Lock()
        self._logs: dict[tuple[str, str, str], _PodLog] = {}
        self._log_changed = threading.Condition(self.store.lock)
        self.stopping = threading.Event()
        self._http = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._http.fake = self
        self._thread = threading.Thread(
            target=self._http.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-kubernetes",
            daemon=True,
        )

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeKubernetes:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; held (timeout) requests and followed logs end at once."""
        self.stopping.set()
        with self._log_changed:
            self._log_changed.notify_all()
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)

    # -- fault injection --

    def inject(
        self,
        status: Fault,
        times: int = 1,
        *,
        verb: str | None = None,
        path_contains: str | None = None,
        after_write: bool = False,
        hold_seconds: float = MAX_HOLD_SECONDS,
    ) -> None:
        """Make the next ``times`` matching requests answer ``status`` (or hang, for ``"timeout"``).

        With ``after_write`` the request takes effect first and only its answer is replaced, as when
        a connection drops after etcd committed: the way to test that retries are idempotent.
        """
        if status != "timeout" and not isinstance(status, int):
            raise ValueError(f"status must be an HTTP status or 'timeout', not {status!r}")
        hold = min(hold_seconds, MAX_HOLD_SECONDS)
        with self._fault_lock:
            self._faults.append(_Fault(status, times, verb, path_contains, after_write, hold))

    def inject_random(
        self,
        rate: float,
        statuses: tuple[Fault, ...] = (409, 429, 500, 503, "timeout"),
        *,
        seed: int,
        path_contains: str | None = None,
    ) -> None:
        """Fail about ``rate`` of the requests (after explicit injections), reproducibly from ``seed``."""
        with self._fault_lock:
            self._random = _RandomFaults(rate, statuses, random.Random(seed), path_contains)  # noqa: S311 - not crypto

    def clear_faults(self) -> None:
        with self._fault_lock:
            self._faults.clear()
            self._random = None

    def take_fault(self, method: str, path: str) -> _Fault | None:
        """The fault this request meets, if any (consumes one use of it)."""
        with self._fault_lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
            drawn = self._random.draw(path) if self._random else None
        if drawn is None:
            return None
        return _Fault(drawn, 1, None, None, False, MAX_HOLD_SECONDS)

    # -- state for tests --

    def objects(self, plural: str, namespace: str | None = None) -> list[Obj]:
        """Copies of the stored objects of a resource (any group), optionally in one namespace."""
        with self.store.lock:
            return [
                copy.deepcopy(obj)
                for key, obj in self.store.items.items()
                if key[2] == plural and (namespace is None or key[3] == namespace)
            ]

    def seed(self, obj: Obj) -> Obj:
        """Create an object directly from a test (e.g. a Running pod), namespace included."""
        group, _, version = obj["apiVersion"].rpartition("/")
        resource = next(
            r for r in _RESOURCE_LIST if (r.group, r.version, r.kind) == (group, version, obj["kind"])
        )
        return self.store.create(resource, obj["metadata"].get("namespace"), obj)

    def set_pod_log(self, namespace: str, pod: str, container: str, text: str) -> None:
        """Set a container's log; the pod is created (Running, with that container) if it is missing."""
        with self._log_changed:
            self._ensure_pod(namespace, pod, container)
            self._logs.setdefault((namespace, pod, container), _PodLog()).text = text
            self._log_changed.notify_all()

    def append_pod_log(self, namespace: str, pod: str, container: str, text: str) -> None:
        """Append to a container's log; followers receive it."""
        with self._log_changed:
            self._ensure_pod(namespace, pod, container)
            self._logs.setdefault((namespace, pod, container), _PodLog()).text += text
            self._log_changed.notify_all()

    def end_pod_log(self, namespace: str, pod: str, container: str) -> None:
        """End a followed log (the container exited): its followers' streams finish."""
        with self._log_changed:
            self._logs.setdefault((namespace, pod, container), _PodLog()).closed = True
            self._log_changed.notify_all()

    def _ensure_pod(self, namespace: str, pod: str, container: str) -> None:
        if ("", "v1", "pods", namespace, pod) in self.store.items:
            return
        if ("", "v1", "namespaces", None, namespace) not in self.store.items:
            self.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        spec = {"containers": [{"name": container, "image": "fake"}]}
        meta = {"name": pod, "namespace": namespace}
        self.seed(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": meta,
                "spec": spec,
                "status": {"phase": "Running"},
            }
        )

    def pod_log(self, namespace: str, pod: str, query: dict[str, str]) -> Response:
        """``GET pods/<name>/log``: the text, or with ``follow=true`` a stream until the log ends."""
        spec = self.store.get(RESOURCES[("", "v1", "pods")], namespace, pod).get("spec") or {}
        names = [c["name"] for c in spec.get("containers", [])]
        container = query.get("container") or (names[0] if len(names) == 1 else "")
        if container not in names:
            raise KubeError(400, f"a container name must be specified for pod {pod}, choose one of: {names}")
        with self.store.lock:
            log = self._logs.setdefault((namespace, pod, container), _PodLog())
            text = log.text
            sent = len(text)
        if "sinceTime" in query:  # lines stamped at or after it (the test's lines carry stamps)
            text = "".join(
                line for line in text.splitlines(keepends=True) if _stamp(line) >= _stamp(query["sinceTime"])
            )
        elif "tailLines" in query:  # tailLines=0 is nothing, as on a real API server
            lines = int(query["tailLines"])
            text = "".join(text.splitlines(keepends=True)[-lines:]) if lines > 0 else ""
        if query.get("follow") != "true":
            return Response(200, text)
        return Response(200, stream=self._follow(log, text, sent))

    def _follow(self, log: _PodLog, first: str, sent: int) -> Iterator[str]:
        """Yield ``first``, then what is appended to ``log`` until it ends or the server stops."""
        yield first
        while True:
            with self._log_changed:
                while len(log.text) == sent and not log.closed and not self.stopping.is_set():
                    self._log_changed.wait(0.5)
                chunk, sent, done = log.text[sent:], len(log.text), log.closed or self.stopping.is_set()
            if chunk:
                yield chunk
            if done:
                return

    # -- request dispatch --

    def dispatch(
        self, method: str, path: str, query: dict[str, str], content_type: str, raw: bytes
    ) -> Response:
        """Answer one request; raises ``KubeError`` for a failure Status."""
        discovered = _discovery(path.rstrip("/")) if method == "GET" else None
        if discovered is not None:
            return Response(200, discovered)
        route = parse_route(path)
        if query.get("watch") in ("true", "1"):
            raise KubeError(405, "watch is not supported by the fake API server")
        if route.subresource == "log" and route.resource.plural == "pods" and method == "GET":
            return self.pod_log(str(route.namespace), str(route.name), query)
        if route.subresource is not None:
            raise KubeError(404, "the server could not find the requested resource")
        handler = getattr(self, f"_{method.lower()}", None)
        if handler is None:
            raise KubeError(405, f"{method} is not allowed")
        return cast(Response, handler(route, query, content_type, raw))

    def _get(self, route: Route, query: dict[str, str], _content_type: str, _raw: bytes) -> Response:
        if route.name is None:
            labels, fields = query.get("labelSelector", ""), query.get("fieldSelector", "")
            return Response(200, self.store.list(route.resource, route.namespace, labels, fields))
        return Response(200, self.store.get(route.resource, route.namespace, route.name))

    def _post(self, route: Route, _query: dict[str, str], _content_type: str, raw: bytes) -> Response:
        if route.name is not None:
            raise KubeError(405, "POST to a named object is not allowed")
        return Response(201, self.store.create(route.resource, route.namespace, _decode_json(raw)))

    def _put(self, route: Route, _query: dict[str, str], _content_type: str, raw: bytes) -> Response:
        name = _require_name(route)
        return Response(200, self.store.replace(route.resource, route.namespace, name, _decode_json(raw)))

    def _patch(self, route: Route, query: dict[str, str], content_type: str, raw: bytes) -> Response:
        name = _require_name(route)
        kind = content_type.split(";")[0].strip()
        if kind == "application/apply-patch+yaml":
            manager = query.get("fieldManager")
            if not manager:
                message = "PatchOptions is invalid: fieldManager: Required value: is required for apply patch"
                raise KubeError(422, message)
            config = yaml.safe_load(raw.decode() or "{}")
            force = query.get("force") in ("true", "1")
            # Like the real server, 201 when apply creates. CustomObjectsApi declares only 200 for
            # PATCH, so the official client returns None for that first apply: adapters must cope.
            existed = self._exists(route, name)
            obj = self.store.apply(
                route.resource, route.namespace, name, config, manager=manager, force=force
            )
            return Response(200 if existed else 201, obj)
        if kind in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            return Response(200, self.store.patch(route.resource, route.namespace, name, _decode_json(raw)))
        raise KubeError(415, f"the body of the request was in an unknown format: {kind}")

    def _delete(self, route: Route, _query: dict[str, str], _content_type: str, raw: bytes) -> Response:
        name = _require_name(route)
        options = _decode_json(raw) if raw.strip() else {}
        status = self.store.delete(route.resource, route.namespace, name, options)
        if route.resource.plural in ("pods", "namespaces"):
            with self._log_changed:
                self._forget_logs(route, name)
        return Response(200, status)

    def _forget_logs(self, route: Route, name: str) -> None:
        namespace = name if route.resource.plural == "namespaces" else route.namespace
        for key in [k for k in self._logs if k[0] == namespace]:
            if route.resource.plural == "namespaces" or key[1] == name:
                self._logs.pop(key).closed = True
        self._log_changed.notify_all()

    def _exists(self, route: Route, name: str) -> bool:
        with self.store.lock:
            return _key(route.resource, route.namespace, name) in self.store.items

    def record(self, method: str, path: str, status: int) -> None:
        with self._fault_lock:
            self.requests.append(RequestRecord(method, path, status))


def _require_name(route: Route) -> str:
    if route.name is None:
        raise KubeError(405, "this verb needs an object name")
    return route.name


def _decode_json(raw: bytes) -> Obj:
    try:
        body = json.loads(raw or b"null")
    except ValueError as exc:
        raise KubeError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise KubeError(400, "the request body must be a JSON object")
    return body


# --- HTTP ----------------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeKubernetes


class _Handler(BaseHTTPRequestHandler):
    """Parses the request, applies faults, dispatches, and writes JSON / text / chunked streams."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms delayed ACKs

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr line; ``FakeKubernetes.requests`` records requests."""

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        fake = cast(_HTTPServer, self.server).fake
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fault = fake.take_fault(method, url.path)
        if fault is not None and not fault.after_write:
            self._answer_fault(fake, method, url.path, fault)
            return
        try:
            response = fake.dispatch(method, url.path, query, self.headers.get("Content-Type", ""), raw)
        except KubeError as error:
            response = Response(error.code, error.body())
        if fault is not None:
            self._answer_fault(fake, method, url.path, fault)
            return
        fake.record(method, url.path, response.status)  # before answering: the client may look at once
        self._send(response)

    def _answer_fault(self, fake: FakeKubernetes, method: str, path: str, fault: _Fault) -> None:
        if fault.status == "timeout":
            fake.record(method, path, 0)  # at once: the client gives up before the hold ends
            fake.stopping.wait(fault.hold_seconds)
            self.close_connection = True
            return
        response = fault_response(int(fault.status))
        fake.record(method, path, response.status)
        self._send(response)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.stream is not None:
            self._send_stream(response.stream)
            return
        if isinstance(response.body, str):
            data, content_type = response.body.encode(), "text/plain"
        else:
            data, content_type = json.dumps(response.body).encode(), "application/json"
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, chunks: Iterator[str]) -> None:
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in chunks:
                data = chunk.encode()
                if data:
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


# --- pytest integration --------------------------------------------------------------------------


@pytest.fixture
def fake_kubernetes() -> Iterator[FakeKubernetes]:
    """A fresh fake API server per test, stopped afterwards."""
    server = FakeKubernetes().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def kubernetes_portal(
    fake_kubernetes: FakeKubernetes, settings: Any, tmp_path: Any
) -> Iterator[FakeKubernetes]:
    """The portal in this process on ``PORTAL_BACKEND=kubernetes``, pointed at the fake through a
    kubeconfig file (``KUBECONFIG``), as an operator would point it at a cluster."""
    from dataplane.backends import _adapter

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(kubeconfig_for(fake_kubernetes)))
    settings.PORTAL_BACKEND = "kubernetes"
    settings.KUBECONFIG = str(kubeconfig)
    settings.KUBERNETES_CONTEXT = ""
    settings.KUBERNETES_TIMEOUT_S = 1  # the fake holds a "timeout" fault for longer
    _adapter.cache_clear()
    yield fake_kubernetes
    _adapter.cache_clear()


def kubeconfig_for(server: FakeKubernetes) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": server.url}}],
        "users": [{"name": "portal", "user": {"token": "fake-token"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "portal"}}],
        "current-context": "fake",
    }


def kube_client(server: FakeKubernetes, *, retries: int | bool = False) -> Any:
    """An official-client ``ApiClient`` for ``server`` (plain HTTP, no auth).

    urllib3's own retries are off by default so that each injected fault reaches the caller once;
    the adapter's retry policy is what the tests exercise.
    """
    configuration = k8s.Configuration(host=server.url)
    configuration.verify_ssl = False
    configuration.retries = retries
    return k8s.ApiClient(configuration)


def apply_manifest(server: FakeKubernetes, obj: Obj) -> None:
    """Create ``obj`` (any kind the fake serves) through the official client's typed APIs, as
    ``kubectl create -f`` would: its namespace comes from its own metadata."""
    k8s_utils.create_from_dict(kube_client(server), obj)


def _stamp(line: str) -> float:
    """The RFC 3339 time a test's log line starts with (0 without one)."""
    try:
        return datetime.fromisoformat(line.split(" ", 1)[0].strip()[:26].rstrip("Z") + "+00:00").timestamp()
    except ValueError:
        return 0.0
