"""dataplane/namespaces.py: every Kubernetes object validates strictly against the Kubernetes OpenAPI
schema (kubernetes-validate), the FissionTenant against Fission v1.27.0's CRD, and each object
does what DESIGN.md section 4 asks of it."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from dataplane import namespaces as manifests
from dataplane.namespaces import NetworkOptions, TenantQuota
from testsupport.schemas import strip_extensions

# The repository's parent holds shared/ (/work/main -> /work/shared; in CI, the clone's sibling).
FISSION_TENANT_CRD = (
    Path(__file__).resolve().parents[3] / "shared" / "fission-crds" / "fission.io_fissiontenants.yaml"
)
# The oldest and newest minor versions kubernetes-validate 1.37.0 ships that we promise to support.
KUBERNETES_VERSIONS = ("1.33", kubernetes_validate.latest_version())
TENANT = "acme"
NS = "faas-acme"
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
PRIVATE = [
    ipaddress.IPv4Network(cidr)
    for cidr in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16")
]
OPEN = NetworkOptions(
    router_namespace="fission-router",
    internet_egress=True,
    dns_namespace="dns",
    api_server_cidrs=("172.18.0.2/32", "fd00::1/128"),
    portal_namespace="portal",
    portal_port=8080,
)
OBJECTS = manifests.tenant_manifests(TENANT)
EVERY_OBJECT = OBJECTS + manifests.tenant_manifests(TENANT, network=OPEN, fission_namespace="fission-system")


def object_id(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def of_kind(kind: str, objects: list[dict[str, Any]] = OBJECTS) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def policy(name: str, objects: list[dict[str, Any]] = OBJECTS) -> dict[str, Any]:
    (found,) = [obj for obj in of_kind("NetworkPolicy", objects) if obj["metadata"]["name"] == name]
    return found


every_object = pytest.mark.parametrize("obj", EVERY_OBJECT, ids=object_id)
kubernetes_objects = pytest.mark.parametrize(
    "obj", [obj for obj in EVERY_OBJECT if obj["kind"] != "FissionTenant"], ids=object_id
)


# --- schemas -----------------------------------------------------------------------------------------


@kubernetes_objects
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_validates_against_kubernetes_strictly(obj: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(obj, version, strict=True)


def test_strict_validation_catches_an_unknown_field() -> None:
    quota = of_kind("ResourceQuota")[0]
    typo = {**quota, "spec": {**quota["spec"], "hrad": {}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBERNETES_VERSIONS[-1], strict=True)


@cache
def fission_tenant_validator() -> jsonschema.Draft7Validator:
    crd = yaml.safe_load(FISSION_TENANT_CRD.read_text())
    assert crd["spec"]["scope"] == "Cluster"
    (version,) = crd["spec"]["versions"]
    schema = strip_extensions(version["schema"]["openAPIV3Schema"])
    # Strict, like the API server with field validation: no property the CRD does not declare.
    schema["additionalProperties"] = False
    schema["properties"]["spec"]["additionalProperties"] = False
    return jsonschema.Draft7Validator(schema)


def test_fission_tenant_validates_against_the_crd() -> None:
    (tenant,) = of_kind("FissionTenant")
    assert list(fission_tenant_validator().iter_errors(tenant)) == []
    assert tenant == {
        "apiVersion": "fission.io/v1",
        "kind": "FissionTenant",
        "metadata": {
            "name": NS,
            "labels": {"app.kubernetes.io/managed-by": "faas-portal", "faas-portal/tenant": TENANT},
        },
        "spec": {"namespace": NS},
    }
    assert not fission_tenant_validator().is_valid({**tenant, "spec": {**tenant["spec"], "namspace": NS}})


# --- names, labels, order ----------------------------------------------------------------------------


@every_object
def test_names_labels_and_namespace(obj: dict[str, Any]) -> None:
    metadata = obj["metadata"]
    assert DNS_LABEL.fullmatch(metadata["name"])
    assert metadata["labels"]["app.kubernetes.io/managed-by"] == "faas-portal"
    assert metadata["labels"]["faas-portal/tenant"] == TENANT
    if obj["kind"] in ("Namespace", "FissionTenant"):
        assert metadata["name"] == NS
        assert "namespace" not in metadata
    else:
        assert metadata["namespace"] == NS


def test_apply_order_and_uniqueness() -> None:
    kinds = [obj["kind"] for obj in OBJECTS]
    assert kinds == [
        "Namespace",
        "ResourceQuota",
        "LimitRange",
        *["NetworkPolicy"] * 3,
        *["ServiceAccount"] * 2,
        *["Role"] * 2,
        *["RoleBinding"] * 2,
        "FissionTenant",
    ]
    assert len({object_id(obj) for obj in OBJECTS}) == len(OBJECTS)
    assert {obj["metadata"]["name"] for obj in of_kind("NetworkPolicy", EVERY_OBJECT)} == set(
        manifests.NETWORK_POLICIES
    )


def test_same_inputs_same_objects() -> None:
    assert manifests.tenant_manifests(TENANT) == OBJECTS
    assert manifests.tenant_manifests(TENANT, quota=TenantQuota(), network=NetworkOptions()) == OBJECTS


def test_tenant_namespace() -> None:
    assert manifests.namespace_for("acme") == NS
    assert manifests.namespace_for("acme", "prod") == "prod-acme"
    assert manifests.namespace_manifest("acme", prefix="prod")["metadata"]["name"] == "prod-acme"
    for slug, prefix in (
        ("Acme", "faas"),
        ("acme_1", "faas"),
        ("a" * 60, "faas"),
        ("acme", ""),
        ("-x", "faas"),
    ):
        with pytest.raises(ValueError, match="DNS-1123"):
            manifests.namespace_for(slug, prefix)


# --- Namespace, ResourceQuota, LimitRange ------------------------------------------------------------


def test_namespace_enforces_pod_security_restricted() -> None:
    (namespace,) = of_kind("Namespace")
    psa = {key: value for key, value in namespace["metadata"]["labels"].items() if "pod-security" in key}
    assert psa == {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
        "pod-security.kubernetes.io/audit": "restricted",
        "pod-security.kubernetes.io/audit-version": "latest",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/warn-version": "latest",
    }


def test_quota_has_every_key() -> None:
    (quota,) = of_kind("ResourceQuota")
    assert quota["spec"]["hard"] == {
        "requests.cpu": "4",
        "requests.memory": "8Gi",
        "limits.cpu": "16",
        "limits.memory": "16Gi",
        "pods": "50",
        "count/functions.fission.io": "50",
        "count/packages.fission.io": "100",
        "count/httptriggers.fission.io": "50",
        "count/timetriggers.fission.io": "20",
        "count/messagequeuetriggers.fission.io": "20",
        "count/environments.fission.io": "5",
        "count/secrets": "70",  # 50 of the tenant's own + one per message-queue trigger (20)
        "count/configmaps": "101",  # 50 + one per Function object (50) + kube-root-ca.crt
    }
    for key, value in quota["spec"]["hard"].items():
        manifests.parse_quantity(value, key)
    assert quota["metadata"]["annotations"] == {manifests.CONCURRENCY_ANNOTATION: "200"}


def test_quota_follows_the_tenant_quota() -> None:
    quota = manifests.quota_from({"memory_limits": "8Gi", "functions": 7, "cpu_limits": 6})
    hard = manifests.resource_quota_manifest(TENANT, quota=quota)["spec"]["hard"]
    assert (hard["limits.memory"], hard["count/functions.fission.io"], hard["limits.cpu"]) == (
        "8Gi",
        "7",
        "6",
    )
    quota = manifests.quota_from({"secrets": 3, "configmaps": 4, "functions": 7, "messagequeuetriggers": 2})
    hard = manifests.resource_quota_manifest(TENANT, quota=quota)["spec"]["hard"]
    assert (hard["count/secrets"], hard["count/configmaps"]) == ("5", "12")


@pytest.mark.parametrize(
    "quota",
    [TenantQuota(), manifests.quota_from({"max_container_cpu": "4", "default_container_cpu_limit": "2500m"})],
    ids=["defaults", "custom"],
)
def test_limit_range_defaults_within_maxima(quota: TenantQuota) -> None:
    (limits,) = manifests.limit_range_manifest(TENANT, quota=quota)["spec"]["limits"]
    assert limits["type"] == "Container"
    for resource in ("cpu", "memory"):
        request, limit, most = (
            manifests.parse_quantity(limits[key][resource]) for key in ("defaultRequest", "default", "max")
        )
        assert 0 < request <= limit <= most


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2", Decimal(2)),
        ("500m", Decimal("0.5")),
        ("0.5", Decimal("0.5")),
        (".5", Decimal("0.5")),
        ("1Gi", Decimal(2**30)),
        ("128Mi", Decimal(128 * 2**20)),
        ("1k", Decimal(1000)),
        ("1E", Decimal(10**18)),
        ("1e3", Decimal(1000)),
        ("+2", Decimal(2)),
    ],
)
def test_parse_quantity(value: str, expected: Decimal) -> None:
    assert manifests.parse_quantity(value) == expected


@pytest.mark.parametrize("value", ["", "-1", "1.5.2", "2GB", "1gi", "lots", "1 Gi", "Gi", "0x10"])
def test_bad_quantity(value: str) -> None:
    with pytest.raises(ValueError, match=r"^memory_limits: .*not a Kubernetes quantity"):
        manifests.quota_from({"memory_limits": value})


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"cpu_requests": "2 cores"}, "cpu_requests"),
        ({"max_container_memory": "0"}, "max_container_memory"),
        ({"cpu_requests": 2.5}, "cpu_requests"),
        ({"pods": -1}, "pods"),
        ({"functions": "50"}, "functions"),
        ({"packages": True}, "packages"),
        ({"nodes": 3}, "nodes"),
        ({"cpu_requests": "17"}, "cpu_requests"),  # above cpu_limits
        ({"default_container_memory_limit": "2Gi"}, "default_container_memory_limit"),  # above the max
        ({"default_container_cpu_request": "600m"}, "default_container_cpu_request"),  # above its limit
        ({"max_container_cpu": "32"}, "max_container_cpu"),  # above the namespace's limits
        ({"package_size": "0"}, "package_size"),
        ({"concurrency": -5}, "concurrency"),
    ],
)
def test_bad_quota_names_the_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        manifests.quota_from(overrides)


def test_quota_from_keeps_the_base() -> None:
    base = TenantQuota(pods=3)
    assert manifests.quota_from({}, base) == base
    assert manifests.quota_from({"functions": 0}, base) == dataclasses.replace(base, functions=0)
    assert manifests.quota_from({"memory_limits": "8Gi"}).memory_limits == "8Gi"


# --- NetworkPolicies -----------------------------------------------------------------------------------


def test_default_deny_selects_every_pod_and_allows_nothing() -> None:
    assert policy("default-deny-all")["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


@every_object
def test_every_policy_selects_every_pod(obj: dict[str, Any]) -> None:
    if obj["kind"] == "NetworkPolicy":
        assert obj["spec"]["podSelector"] == {}


def namespaces_allowed(rule_peers: list[dict[str, Any]]) -> list[str]:
    return [peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for peer in rule_peers]


def test_ingress_only_from_the_router_namespace() -> None:
    spec = policy("allow-ingress-from-router")["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    assert namespaces_allowed(rule["from"]) == ["fission"]
    assert set(rule["from"][0]) == {"namespaceSelector"}


def test_ingress_uses_the_configured_namespaces() -> None:
    (rule,) = policy("allow-ingress-from-router", manifests.tenant_manifests(TENANT, network=OPEN))["spec"][
        "ingress"
    ]
    assert namespaces_allowed(rule["from"]) == ["fission-router", "fission"]
    objects = manifests.tenant_manifests(TENANT, network=OPEN, fission_namespace="fission-router")
    (rule,) = policy("allow-ingress-from-router", objects)["spec"]["ingress"]
    assert namespaces_allowed(rule["from"]) == ["fission-router"]


@pytest.mark.parametrize(("network", "namespace"), [(NetworkOptions(), "kube-system"), (OPEN, "dns")])
def test_dns_egress_on_53_udp_and_tcp(network: NetworkOptions, namespace: str) -> None:
    spec = policy("allow-dns-egress", manifests.tenant_manifests(TENANT, network=network))["spec"]
    assert spec["policyTypes"] == ["Egress"]
    (rule,) = spec["egress"]
    assert sorted((port["protocol"], port["port"]) for port in rule["ports"]) == [("TCP", 53), ("UDP", 53)]
    (peer,) = rule["to"]
    assert namespaces_allowed([peer]) == [namespace]
    assert peer["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}


def test_no_other_egress_by_default() -> None:
    egress = [obj for obj in of_kind("NetworkPolicy") if "egress" in obj["spec"]]
    assert [obj["metadata"]["name"] for obj in egress] == ["allow-dns-egress"]


def test_internet_egress_when_enabled_excludes_private_ranges() -> None:
    objects = manifests.tenant_manifests(TENANT, network=NetworkOptions(internet_egress=True))
    spec = policy("allow-internet-egress", objects)["spec"]
    assert spec["policyTypes"] == ["Egress"]
    (rule,) = spec["egress"]
    (peer,) = rule["to"]
    assert peer["ipBlock"]["cidr"] == "0.0.0.0/0"
    excluded = [ipaddress.IPv4Network(cidr) for cidr in peer["ipBlock"]["except"]]
    assert all(any(private.subnet_of(block) for block in excluded) for private in PRIVATE)
    metadata_endpoint = ipaddress.IPv4Address("169.254.169.254")
    assert any(metadata_endpoint in block for block in excluded)
    assert not any(ipaddress.IPv4Address("1.1.1.1") in block for block in excluded)


def test_api_server_and_portal_egress_when_configured() -> None:
    objects = manifests.tenant_manifests(TENANT, network=OPEN)
    (api,) = policy("allow-api-server-egress", objects)["spec"]["egress"]
    assert [peer["ipBlock"]["cidr"] for peer in api["to"]] == ["172.18.0.2/32", "fd00::1/128"]
    assert sorted(port["port"] for port in api["ports"]) == [443, 6443]
    (portal,) = policy("allow-portal-egress", objects)["spec"]["egress"]
    assert namespaces_allowed(portal["to"]) == ["portal"]
    assert portal["ports"] == [{"protocol": "TCP", "port": 8080}]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"router_namespace": "Fission"}, "router_namespace"),
        ({"dns_namespace": ""}, "dns_namespace"),
        ({"portal_namespace": "a.b"}, "portal_namespace"),
        ({"portal_port": 0}, "portal_port"),
        ({"api_server_cidrs": ("10.0.0.1/24",)}, "api_server_cidrs"),
        ({"api_server_cidrs": ("kubernetes",)}, "api_server_cidrs"),
    ],
)
def test_bad_network_options_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        NetworkOptions(**changes)


# --- ServiceAccounts and RBAC ----------------------------------------------------------------------------


def test_service_accounts_fission_uses_without_tokens() -> None:
    accounts = of_kind("ServiceAccount")
    assert [account["metadata"]["name"] for account in accounts] == ["fission-fetcher", "fission-builder"]
    assert all(account["automountServiceAccountToken"] is False for account in accounts)


@every_object
def test_nothing_cluster_wide_but_the_namespace_and_the_fission_tenant(obj: dict[str, Any]) -> None:
    assert obj["kind"] not in ("ClusterRole", "ClusterRoleBinding")
    assert ("namespace" in obj["metadata"]) == (obj["kind"] not in ("Namespace", "FissionTenant"))


def test_roles_grant_only_get_on_named_resources() -> None:
    granted = set()
    for role in of_kind("Role"):
        for rule in role["rules"]:
            assert set(rule) == {"apiGroups", "resources", "verbs"}, "no resourceNames/nonResourceURLs"
            assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"]
            assert rule["verbs"] == ["get"]
            granted |= {
                (role["metadata"]["name"], group, res)
                for group in rule["apiGroups"]
                for res in rule["resources"]
            }
    assert granted == {
        ("faas-portal-fetcher", "", "configmaps"),
        ("faas-portal-fetcher", "", "secrets"),
        ("faas-portal-fetcher", "fission.io", "packages"),
        ("faas-portal-builder", "fission.io", "packages"),
    }


def test_bindings_grant_roles_in_the_namespace_to_its_service_accounts() -> None:
    roles = {role["metadata"]["name"] for role in of_kind("Role")}
    accounts = {account["metadata"]["name"] for account in of_kind("ServiceAccount")}
    bindings = of_kind("RoleBinding")
    assert len(bindings) == len(roles)
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["roleRef"]["name"] in roles
        (subject,) = binding["subjects"]
        assert subject == {"kind": "ServiceAccount", "name": subject["name"], "namespace": NS}
        assert subject["name"] in accounts
    # Fission's tenant controller owns RoleBindings with these names; sharing one would drop a grant.
    assert not {binding["metadata"]["name"] for binding in bindings} & {
        "fission-fetcher",
        "fission-builder",
        "fission-fetcher-websocket",
    }
