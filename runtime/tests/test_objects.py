"""Validation of fission.io/v1 objects: CRD rules plus FISSION.md section 1's must-set rules."""

from __future__ import annotations

import copy

import pytest

from runtime.errors import InvalidObject
from runtime.objects import (
    parse_environment,
    parse_function,
    parse_httptrigger,
    parse_memory,
    parse_networkpolicy,
    parse_package,
)
from runtime.tenancy import tenant_of
from testsupport.fission import environment, function, httptrigger, package_literal


def _broken(obj, path, value):
    obj = copy.deepcopy(obj)
    *parents, last = path.split(".")
    node = obj
    for part in parents:
        node = node.setdefault(part, {})
    if value is ...:
        node.pop(last, None)
    else:
        node[last] = value
    return obj


def test_valid_objects_parse():
    env = parse_environment(environment("ns", "python", poolsize=2), "ns")
    assert (env.poolsize, env.image) == (2, "ghcr.io/fission/python-env")
    pkg = parse_package(package_literal("ns", "p", "def main():\n    return 'hi'\n"), "ns")
    assert pkg.deployment.type == "literal"
    fn = parse_function(
        function("ns", "f", package="p", executor="newdeploy", min_scale=0, max_scale=3), "ns"
    )
    assert (fn.executor, fn.max_scale, fn.timeout, fn.concurrency, fn.requests_per_pod) == (
        "newdeploy",
        3,
        60.0,
        500,
        1,
    )
    trigger = parse_httptrigger(httptrigger("ns", "t", "/hello", weights={"a": 90, "b": 10}), "ns")
    assert trigger.weights == {"a": 90, "b": 10}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("spec.InvokeStrategy.StrategyType", ...),
        ("spec.InvokeStrategy.ExecutionStrategy.ExecutorType", ...),
        ("spec.InvokeStrategy.ExecutionStrategy.ExecutorType", ""),
        ("spec.InvokeStrategy.ExecutionStrategy.MaxScale", 0),
        ("spec.InvokeStrategy.ExecutionStrategy.MinScale", -1),
        ("spec.functionTimeout", -5),
        ("spec.concurrency", "many"),
        ("spec.environment.namespace", "other"),
        ("spec.package.packageref.namespace", "other"),
        ("metadata.name", "Not_A_Label"),
        ("spec.resources.limits.memory", "lots"),
    ],
)
def test_function_rules_name_the_field(field, value):
    with pytest.raises(InvalidObject) as error:
        parse_function(_broken(function("ns", "f", package="p"), field, value), "ns")
    assert error.value.field is not None
    assert error.value.field.split("[")[0] in field or field.startswith(error.value.field)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("spec.methods", ...),
        ("spec.methods", []),
        ("spec.methods", ["FETCH"]),
        ("spec.relativeurl", "/"),
        ("spec.relativeurl", "no-slash"),
        ("spec.relativeurl", "/a/../b"),
        ("spec.relativeurl", "/router-healthz"),
        ("spec.relativeurl", "/fission-function/x"),
        ("spec.relativeurl", "/items/{id}/parts/{id}"),
        ("spec.functionref.type", "whatever"),
        ("spec.functionref.functionweights", {"a": -1}),
        ("spec.functionref.functionweights", {"a": 0}),
    ],
)
def test_trigger_rules(field, value):
    base = httptrigger("ns", "t", "/hello", weights={"a": 50, "b": 50})
    with pytest.raises(InvalidObject) as error:
        parse_httptrigger(_broken(base, field, value), "ns")
    assert error.value.field


def test_a_template_may_name_different_variables_and_a_prefix_is_not_a_template():
    parsed = parse_httptrigger(httptrigger("ns", "t", "/items/{id}/parts/{part}", function_name="f"), "ns")
    assert parsed.path == "/items/{id}/parts/{part}"
    prefix = httptrigger("ns", "t", "/files/{id}/{id}", function_name="f", prefix=True)
    assert parse_httptrigger(prefix, "ns").is_prefix


def test_trigger_needs_exactly_one_of_relativeurl_and_prefix():
    both = _broken(httptrigger("ns", "t", "/a"), "spec.prefix", "/b")
    with pytest.raises(InvalidObject, match="exactly one"):
        parse_httptrigger(both, "ns")


def test_package_rules():
    with pytest.raises(InvalidObject, match=r"spec\.deployment\.checksum\.sum"):
        parse_package(
            _broken(package_literal("ns", "p", "x"), "spec.deployment", {"type": "url", "url": "http://x/a"}),
            "ns",
        )
    with pytest.raises(InvalidObject, match="oci"):
        parse_package(_broken(package_literal("ns", "p", "x"), "spec.deployment.type", "oci"), "ns")
    with pytest.raises(InvalidObject, match="namespace"):
        parse_package(_broken(package_literal("ns", "p", "x"), "spec.environment.namespace", "x"), "ns")


def test_api_version_kind_and_namespace():
    with pytest.raises(InvalidObject, match="apiVersion"):
        parse_environment(_broken(environment("ns", "e"), "apiVersion", "v1"), "ns")
    with pytest.raises(InvalidObject, match="kind"):
        parse_environment(_broken(environment("ns", "e"), "kind", "Function"), "ns")
    with pytest.raises(InvalidObject, match=r"metadata\.namespace"):
        parse_environment(environment("other", "e"), "ns")


@pytest.mark.parametrize(
    ("value", "expected"), [("128Mi", 134217728), ("1G", 10**9), (1024, 1024), (None, None)]
)
def test_memory_quantities(value, expected):
    assert parse_memory(value, "x") == expected


def _policy(spec: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "p", "namespace": "faas-acme"}, "spec": spec}  # fmt: skip


EVERYWHERE = {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}


@pytest.mark.parametrize(
    ("spec", "grants"),
    [
        ({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}, ()),  # default deny
        ({"podSelector": {}, "policyTypes": ["Ingress"]}, None),  # says nothing about egress
        ({"podSelector": {}, "egress": [{"to": [{"ipBlock": EVERYWHERE}]}]}, ("0.0.0.0/0 - 10.0.0.0/8",)),
        ({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]}, ("0.0.0.0/0",)),  # no "to": all
        # What routes cannot enforce grants nothing: ports, pod selectors, namespace peers, IPv6.
        ({"podSelector": {}, "policyTypes": ["Egress"],
          "egress": [{"to": [{"ipBlock": EVERYWHERE}], "ports": [{"port": 443}]}]}, ()),
        ({"podSelector": {"matchLabels": {"a": "b"}}, "policyTypes": ["Egress"],
          "egress": [{"to": [{"ipBlock": EVERYWHERE}]}]}, ()),
        ({"podSelector": {}, "policyTypes": ["Egress"],
          "egress": [{"to": [{"namespaceSelector": {}}, {"ipBlock": {"cidr": "::/0"}}]}]}, ()),
    ],
)  # fmt: skip
def test_network_policies_grant_what_the_runtime_can_enforce(spec, grants):
    policy = parse_networkpolicy(_policy(spec), "faas-acme")
    if grants is None:
        assert policy.egress is None
        return
    described = tuple(
        f"{g.cidr}" + "".join(f" - {e}" for e in g.excepts)
        for g in policy.egress  # type: ignore[union-attr]
    )
    assert described == grants


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({}, "spec.podSelector"),
        ({"podSelector": {}, "policyTypes": ["Sideways"]}, "spec.policyTypes[0]"),
        ({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "nonsense"}}]}]},
         "spec.egress[0].to[0].ipBlock.cidr"),
        ({"podSelector": {}, "egress": ["x"]}, "spec.egress[0]"),
    ],
)  # fmt: skip
def test_bad_network_policies_name_the_field(spec, field):
    with pytest.raises(InvalidObject) as error:
        parse_networkpolicy(_policy(spec), "faas-acme")
    assert error.value.field == field


@pytest.mark.parametrize(
    ("namespace", "tenant"), [("faas-acme", "acme"), ("faas-a-b", "a-b"), ("faas-", None), ("acme", None),
                              ("xfaas-acme", None)],
)  # fmt: skip
def test_a_namespace_belongs_to_the_tenant_its_name_says(namespace, tenant):
    assert tenant_of(namespace, "faas") == tenant
