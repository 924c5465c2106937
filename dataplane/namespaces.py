"""A tenant's Kubernetes objects (DESIGN.md section 4), built as plain dicts by pure functions.

No Django, no I/O. ``tenant_manifests`` returns everything namespace ``<prefix>-<slug>`` needs, in
apply order; the single-object builders let the Kubernetes backend apply or delete them one by one.
Every object validates against the Kubernetes OpenAPI schema (the FissionTenant against
``shared/fission-crds``), and inputs Kubernetes would refuse raise ``ValueError`` here.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from dataplane.manifests import API_VERSION as FISSION_API_VERSION
from dataplane.manifests import dns_label, labels

# Object names, fixed so that the backend can apply and delete them by name.
RESOURCE_QUOTA = "tenant-quota"
LIMIT_RANGE = "tenant-limits"
DEFAULT_DENY_POLICY = "default-deny-all"
ROUTER_INGRESS_POLICY = "allow-ingress-from-router"
DNS_EGRESS_POLICY = "allow-dns-egress"
API_SERVER_EGRESS_POLICY = "allow-api-server-egress"
PORTAL_EGRESS_POLICY = "allow-portal-egress"
INTERNET_EGRESS_POLICY = "allow-internet-egress"
NETWORK_POLICIES = (
    DEFAULT_DENY_POLICY,
    ROUTER_INGRESS_POLICY,
    DNS_EGRESS_POLICY,
    API_SERVER_EGRESS_POLICY,
    PORTAL_EGRESS_POLICY,
    INTERNET_EGRESS_POLICY,
)
"""Every policy name a tenant may have; the optional ones exist only when their option is on."""

# Fission runs function pods as ``fission-fetcher`` and builder pods as ``fission-builder`` in the
# tenant's namespace (fission/fission pkg/apis/core/v1 FissionFetcherSA / FissionBuilderSA).
FETCHER_SERVICE_ACCOUNT = "fission-fetcher"
BUILDER_SERVICE_ACCOUNT = "fission-builder"
# Role and RoleBinding names. Fission's tenant controller creates its own RoleBindings named
# fission-fetcher, fission-builder, fission-fetcher-websocket, create-if-absent: reusing those
# names would silently keep one side's binding and drop the other's.
FETCHER_ROLE = "faas-portal-fetcher"
BUILDER_ROLE = "faas-portal-builder"

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by the API server on every Namespace
# The label CoreDNS/kube-dns pods carry on kubeadm, GKE, EKS and AKS clusters.
DNS_POD_LABELS = {"k8s-app": "kube-dns"}
# The API server's endpoint port after the Service's DNAT: 6443 on kubeadm-style clusters, 443 on
# most managed ones. Policies see the endpoint, not the ``kubernetes`` Service's ClusterIP.
API_SERVER_PORTS = (443, 6443)
# Internet egress never reaches the cluster, the node network or link-local addresses (including
# the cloud metadata endpoint 169.254.169.254). 100.64.0.0/10 (shared address space) is where some
# providers put pod and service ranges. IPv6 has no rule, so it stays denied.
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10")
PSA_LEVEL = "restricted"

_QUANTITY = re.compile(r"\+?(?P<number>\d+(\.\d*)?|\.\d+)(?P<suffix>[eE][-+]?\d+|[KMGTPE]i|[numkMGTPE]?)")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


# --- quantities and quotas -------------------------------------------------------------------------


def parse_quantity(value: str, what: str = "quantity") -> Decimal:
    """The value of a non-negative Kubernetes quantity (``"500m"`` -> 0.5, ``"1Gi"`` -> 1073741824).

    Raises ValueError naming ``what`` for anything the API server would refuse, and for a sign.
    """
    match = _QUANTITY.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{what}: {value!r} is not a Kubernetes quantity such as '500m', '2' or '1Gi'")
    number, suffix = Decimal(match["number"]), match["suffix"]
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    exponent = _DECIMAL[suffix] if suffix in _DECIMAL else int(suffix[1:])
    return number.scaleb(exponent)


@dataclass(frozen=True)
class TenantQuota:
    """What a tenant's namespace may use. Quantities are Kubernetes quantity strings, counts ints.

    ``*_requests``/``*_limits`` bound the namespace's totals (ResourceQuota); ``max_container_*`` and
    ``default_container_*`` bound and fill in each container (LimitRange), so that a function without
    resources still fits. ``package_size`` bounds each deployment archive and ``concurrency`` the
    requests in flight across the tenant; both are enforced by the portal (and the local runtime),
    not by Kubernetes. Construction raises ValueError naming the first bad field.
    """

    cpu_requests: str = "4"
    cpu_limits: str = "16"
    memory_requests: str = "8Gi"
    memory_limits: str = "16Gi"
    pods: int = 50
    functions: int = 50
    packages: int = 100
    httptriggers: int = 50
    timetriggers: int = 20
    messagequeuetriggers: int = 20
    environments: int = 5
    secrets: int = 50  # the tenant's own Secrets and ConfigMaps (Fission's spec.secrets/configmaps)
    configmaps: int = 50
    concurrency: int = 200
    # Failed requests kept for replay across the tenant's functions (the sum of each function's
    # capture_max_requests with capture on): a portal quota, no Kubernetes object.
    captured_requests: int = 500
    package_size: str = "64Mi"
    max_container_cpu: str = "1"
    max_container_memory: str = "1Gi"
    default_container_cpu_request: str = "50m"
    default_container_cpu_limit: str = "250m"
    default_container_memory_request: str = "128Mi"
    default_container_memory_limit: str = "256Mi"

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name in _COUNT_FIELDS:
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"{field.name}: must be an integer >= 0, got {value!r}")
            elif parse_quantity(value, field.name) <= 0:
                raise ValueError(f"{field.name}: must be greater than 0, got {value!r}")
        for smaller, larger in _ORDERING:
            low, high = getattr(self, smaller), getattr(self, larger)
            if parse_quantity(low) > parse_quantity(high):
                raise ValueError(f"{smaller}: {low!r} exceeds {larger} ({high!r})")


_COUNT_FIELDS = frozenset({
    "pods", "functions", "packages", "httptriggers", "timetriggers", "messagequeuetriggers", "environments",
    "secrets", "configmaps", "concurrency", "captured_requests",
})  # fmt: skip
CONCURRENCY_ANNOTATION = "faas-portal/concurrency"
"""Requests in flight at once across the tenant: enforced by the portal's checks and the local
runtime's router; Kubernetes has no such quota, so on a cluster it is an annotation only."""
# (a, b): a <= b. A container default above the maximum, or a maximum above the namespace's total,
# is a quota no pod could ever satisfy.
_ORDERING = (
    ("cpu_requests", "cpu_limits"),
    ("memory_requests", "memory_limits"),
    ("default_container_cpu_request", "default_container_cpu_limit"),
    ("default_container_cpu_limit", "max_container_cpu"),
    ("max_container_cpu", "cpu_limits"),
    ("default_container_cpu_request", "cpu_requests"),
    ("default_container_memory_request", "default_container_memory_limit"),
    ("default_container_memory_limit", "max_container_memory"),
    ("max_container_memory", "memory_limits"),
    ("default_container_memory_request", "memory_requests"),
)


def quota_from(overrides: Mapping[str, object], base: TenantQuota | None = None) -> TenantQuota:
    """``base`` (default: the defaults) with ``overrides`` applied, e.g. from a form or JSON.

    Quantity fields take strings (or integers, read as whole units); count fields take integers.
    Raises ValueError naming the field for an unknown field, a wrong type or a bad quantity.
    """
    known = {field.name for field in dataclasses.fields(TenantQuota)}
    changes: dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in known:
            raise ValueError(f"{name}: not a quota field; known: {sorted(known)}")
        if name not in _COUNT_FIELDS and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if name not in _COUNT_FIELDS and not isinstance(value, str):
            raise ValueError(f"{name}: must be a quantity string, got {value!r}")
        changes[name] = value
    return dataclasses.replace(base or TenantQuota(), **changes)


# --- network options -------------------------------------------------------------------------------


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value))
    except ValueError as error:
        raise ValueError(f"api_server_cidrs: {value!r} is not a CIDR ({error})") from None


@dataclass(frozen=True)
class NetworkOptions:
    """Where a tenant's pods may talk to, besides the default deny.

    Ingress comes only from ``router_namespace`` (and Fission's own namespace, see
    ``network_policy_manifests``). Egress reaches DNS in ``dns_namespace``, and optionally:
    ``api_server_cidrs`` (the API server's endpoint addresses: Fission's fetcher reads the Package,
    Secrets and ConfigMaps through the API when it specializes a pod, so a cluster whose CNI enforces
    egress needs them), ``portal_namespace`` on ``portal_port`` (where the fetcher downloads package
    archives from the portal), and the public internet when ``internet_egress``.
    """

    router_namespace: str = "fission"
    internet_egress: bool = False
    dns_namespace: str = "kube-system"
    api_server_cidrs: tuple[str, ...] = ()
    portal_namespace: str | None = None
    portal_port: int = 8000

    def __post_init__(self) -> None:
        dns_label(self.router_namespace, "router_namespace")
        dns_label(self.dns_namespace, "dns_namespace")
        if self.portal_namespace is not None:
            dns_label(self.portal_namespace, "portal_namespace")
        if not 1 <= self.portal_port <= 65535:
            raise ValueError(f"portal_port: must be between 1 and 65535, got {self.portal_port}")
        for cidr in self.api_server_cidrs:
            _cidr(cidr)


# --- names and metadata ----------------------------------------------------------------------------


def namespace_for(slug: str, prefix: str = "faas") -> str:
    """The tenant's namespace ``<prefix>-<slug>``; ValueError unless it is a DNS-1123 label.
    The one place the name is made: ``Tenant.namespace`` and both backends use it."""
    dns_label(slug, "tenant slug")
    return dns_label(f"{prefix}-{slug}", "namespace")


def _metadata(slug: str, prefix: str, name: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace_for(slug, prefix), "labels": labels(tenant=slug)}


def _core(kind: str, metadata: dict[str, Any], api_version: str = "v1") -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata}


# --- Namespace, ResourceQuota, LimitRange --------------------------------------------------------------


def namespace_manifest(slug: str, *, prefix: str = "faas") -> dict[str, Any]:
    """The tenant's Namespace, labelled for the tenant and enforcing Pod Security ``restricted``
    (latest), with audit and warn at the same level so violations also show in logs and kubectl."""
    psa = {f"pod-security.kubernetes.io/{mode}": PSA_LEVEL for mode in ("enforce", "audit", "warn")}
    versions = {
        f"pod-security.kubernetes.io/{mode}-version": "latest" for mode in ("enforce", "audit", "warn")
    }
    metadata = {"name": namespace_for(slug, prefix), "labels": {**labels(tenant=slug), **psa, **versions}}
    return _core("Namespace", metadata)


def resource_quota_manifest(
    slug: str, *, prefix: str = "faas", quota: TenantQuota | None = None
) -> dict[str, Any]:
    """ResourceQuota ``tenant-quota``: cpu and memory requests and limits, pods, and Fission object
    counts. Kubernetes then refuses any pod without requests and limits, which the LimitRange fills in."""
    quota = quota or TenantQuota()
    hard = {
        "requests.cpu": quota.cpu_requests,
        "requests.memory": quota.memory_requests,
        "limits.cpu": quota.cpu_limits,
        "limits.memory": quota.memory_limits,
        "pods": str(quota.pods),
        "count/functions.fission.io": str(quota.functions),
        "count/packages.fission.io": str(quota.packages),
        "count/httptriggers.fission.io": str(quota.httptriggers),
        "count/timetriggers.fission.io": str(quota.timetriggers),
        "count/messagequeuetriggers.fission.io": str(quota.messagequeuetriggers),
        "count/environments.fission.io": str(quota.environments),
        # The namespace holds more than the tenant's own: a Secret per message-queue trigger (its
        # connection), a ConfigMap of environment variables per Function object, and the
        # kube-root-ca.crt ConfigMap Kubernetes puts in every namespace. The portal counts the
        # tenant's own against ``secrets`` and ``configmaps``; the ResourceQuota leaves room for
        # the rest, so it never refuses what the portal let through.
        "count/secrets": str(quota.secrets + quota.messagequeuetriggers),
        "count/configmaps": str(quota.configmaps + quota.functions + 1),
    }
    metadata = _metadata(slug, prefix, RESOURCE_QUOTA)
    metadata["annotations"] = {CONCURRENCY_ANNOTATION: str(quota.concurrency)}
    return {**_core("ResourceQuota", metadata), "spec": {"hard": hard}}


def limit_range_manifest(
    slug: str, *, prefix: str = "faas", quota: TenantQuota | None = None
) -> dict[str, Any]:
    """LimitRange ``tenant-limits``: per-container defaults (so a container without resources
    still fits the quota) and maxima."""
    quota = quota or TenantQuota()
    container = {
        "type": "Container",
        "default": {"cpu": quota.default_container_cpu_limit, "memory": quota.default_container_memory_limit},
        "defaultRequest": {
            "cpu": quota.default_container_cpu_request,
            "memory": quota.default_container_memory_request,
        },
        "max": {"cpu": quota.max_container_cpu, "memory": quota.max_container_memory},
    }
    return {**_core("LimitRange", _metadata(slug, prefix, LIMIT_RANGE)), "spec": {"limits": [container]}}


# --- NetworkPolicies -----------------------------------------------------------------------------------


def _in_namespace(namespace: str, pod_labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    peer: dict[str, Any] = {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}}
    if pod_labels is not None:
        peer["podSelector"] = {"matchLabels": dict(pod_labels)}
    return peer


def _tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port} for port in ports]


def _policy(slug: str, prefix: str, name: str, direction: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    """A policy selecting every pod of the namespace, with ``rules`` for ``direction``."""
    spec = {"podSelector": {}, "policyTypes": [direction], direction.lower(): rules}
    metadata = _metadata(slug, prefix, name)
    return {**_core("NetworkPolicy", metadata, "networking.k8s.io/v1"), "spec": spec}


def default_deny_policy(slug: str, *, prefix: str = "faas") -> dict[str, Any]:
    """Selects every pod for ingress and egress and allows nothing; the other policies add to it."""
    spec = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    metadata = _metadata(slug, prefix, DEFAULT_DENY_POLICY)
    return {**_core("NetworkPolicy", metadata, "networking.k8s.io/v1"), "spec": spec}


def network_policy_manifests(
    slug: str,
    *,
    prefix: str = "faas",
    network: NetworkOptions | None = None,
    fission_namespace: str = "fission",
) -> list[dict[str, Any]]:
    """Default deny, then the allowances ``network`` asks for (see ``NetworkOptions``).

    Ingress is allowed from the router's namespace and, when it differs, from ``fission_namespace``:
    the executor specializes pods through the fetcher and buildermgr drives builder pods, both from
    there. Any port: the ports Fission uses (8000, 8001, 8888) are its internals, not a contract.
    There is no intra-namespace rule: functions call each other through the router, like any client.
    """
    network = network or NetworkOptions()
    sources = dict.fromkeys((network.router_namespace, dns_label(fission_namespace, "fission_namespace")))
    dns_ports = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    dns_peer = _in_namespace(network.dns_namespace, DNS_POD_LABELS)
    policies = [
        default_deny_policy(slug, prefix=prefix),
        _policy(
            slug, prefix, ROUTER_INGRESS_POLICY, "Ingress", [{"from": [_in_namespace(ns) for ns in sources]}]
        ),
        _policy(slug, prefix, DNS_EGRESS_POLICY, "Egress", [{"to": [dns_peer], "ports": dns_ports}]),
    ]
    if network.api_server_cidrs:
        # ipBlock is the portable way to reach the API server; Cilium users may prefer its
        # kube-apiserver entity, which ipBlock does not match there.
        peers = [{"ipBlock": {"cidr": _cidr(cidr)}} for cidr in network.api_server_cidrs]
        rules = [{"to": peers, "ports": _tcp(*API_SERVER_PORTS)}]
        policies.append(_policy(slug, prefix, API_SERVER_EGRESS_POLICY, "Egress", rules))
    if network.portal_namespace is not None:
        rules = [{"to": [_in_namespace(network.portal_namespace)], "ports": _tcp(network.portal_port)}]
        policies.append(_policy(slug, prefix, PORTAL_EGRESS_POLICY, "Egress", rules))
    if network.internet_egress:
        policies.append(internet_egress_policy(slug, prefix=prefix))
    return policies


def stale_network_policies(policies: list[dict[str, Any]]) -> list[str]:
    """Names of the policies this module may have created earlier that ``policies`` no longer has
    (internet egress switched off): a data plane drops them after applying ``policies``."""
    wanted = {policy["metadata"]["name"] for policy in policies if policy["kind"] == "NetworkPolicy"}
    return sorted(set(NETWORK_POLICIES) - wanted)


def internet_egress_policy(slug: str, *, prefix: str = "faas") -> dict[str, Any]:
    """Egress to any public IPv4 address on any port; never to ``PRIVATE_RANGES``."""
    block = {"cidr": "0.0.0.0/0", "except": list(PRIVATE_RANGES)}
    return _policy(slug, prefix, INTERNET_EGRESS_POLICY, "Egress", [{"to": [{"ipBlock": block}]}])


# --- ServiceAccounts and RBAC ----------------------------------------------------------------------------


def service_account_manifests(slug: str, *, prefix: str = "faas") -> list[dict[str, Any]]:
    """The ServiceAccounts Fission runs the tenant's pods as, with no automounted token.

    Current Fission sets ``automountServiceAccountToken: false`` on its pods and projects the token
    into the fetcher container only, never into user code (GHSA-85g2-pmrx-r49q), so the account need
    not automount it; any other pod that uses the account gets no token either. (A Fission release
    without that fix relies on the automount, and its fetcher would fail to read the API.)
    Fission's tenant controller creates these accounts create-if-absent, so applying them before the
    FissionTenant keeps ours.
    """
    accounts = (FETCHER_SERVICE_ACCOUNT, BUILDER_SERVICE_ACCOUNT)
    return [
        {**_core("ServiceAccount", _metadata(slug, prefix, name)), "automountServiceAccountToken": False}
        for name in accounts
    ]


# Why these rules and no more: the fetcher reads the Package it specializes and the Secrets and
# ConfigMaps the function names (FISSION.md section 1: all in the function's own namespace); the
# builder's fetcher reads the Package whose source it fetches. Only ``get``: no list or watch, so a
# token holder must already know a name; nothing writes; nothing outside the namespace. Fission's
# tenant controller binds its own ClusterRoles (a superset) in dynamic mode; these never widen them.
_RULES: dict[str, list[dict[str, Any]]] = {
    FETCHER_ROLE: [
        {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get"]},
        {"apiGroups": ["fission.io"], "resources": ["packages"], "verbs": ["get"]},
    ],
    BUILDER_ROLE: [{"apiGroups": ["fission.io"], "resources": ["packages"], "verbs": ["get"]}],
}
_SUBJECTS = {FETCHER_ROLE: FETCHER_SERVICE_ACCOUNT, BUILDER_ROLE: BUILDER_SERVICE_ACCOUNT}


def rbac_manifests(slug: str, *, prefix: str = "faas") -> list[dict[str, Any]]:
    """A namespaced Role per service account and the RoleBinding granting it: Roles, then bindings."""
    rbac = "rbac.authorization.k8s.io"
    roles = [
        {**_core("Role", _metadata(slug, prefix, name), f"{rbac}/v1"), "rules": rules}
        for name, rules in _RULES.items()
    ]
    namespace = namespace_for(slug, prefix)
    bindings = [
        {
            **_core("RoleBinding", _metadata(slug, prefix, name), f"{rbac}/v1"),
            "roleRef": {"apiGroup": rbac, "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        }
        for name, account in _SUBJECTS.items()
    ]
    return roles + bindings


# --- FissionTenant and the whole set -------------------------------------------------------------------


def fission_tenant_manifest(slug: str, *, prefix: str = "faas") -> dict[str, Any]:
    """The cluster-scoped FissionTenant named after the namespace; in ``tenancy.mode: dynamic``
    Fission onboards the namespace when it appears, without a restart (FISSION.md section 6)."""
    namespace = namespace_for(slug, prefix)
    metadata = {"name": namespace, "labels": labels(tenant=slug)}
    return {**_core("FissionTenant", metadata, FISSION_API_VERSION), "spec": {"namespace": namespace}}


def tenant_manifests(
    slug: str,
    *,
    prefix: str = "faas",
    quota: TenantQuota | None = None,
    network: NetworkOptions | None = None,
    fission_namespace: str = "fission",
) -> list[dict[str, Any]]:
    """Every object of tenant ``slug``, in apply order: Namespace, ResourceQuota, LimitRange,
    NetworkPolicies, ServiceAccounts, Roles, RoleBindings, FissionTenant.

    Limits and policies come before anything can run, and the FissionTenant last, so Fission starts
    pods only in a namespace that is already fenced. The same inputs give the same objects, so
    applying them twice changes nothing. Deleting the Namespace and the FissionTenant removes all.
    """
    return [
        namespace_manifest(slug, prefix=prefix),
        resource_quota_manifest(slug, prefix=prefix, quota=quota),
        limit_range_manifest(slug, prefix=prefix, quota=quota),
        *network_policy_manifests(slug, prefix=prefix, network=network, fission_namespace=fission_namespace),
        *service_account_manifests(slug, prefix=prefix),
        *rbac_manifests(slug, prefix=prefix),
        fission_tenant_manifest(slug, prefix=prefix),
    ]
