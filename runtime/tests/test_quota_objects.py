"""Validation of the core/v1 ResourceQuota and LimitRange, and how several combine."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from runtime.errors import InvalidObject
from runtime.objects import parse_cpu, parse_limitrange, parse_resourcequota
from runtime.quota import QuotaExhausted, Quotas, combine
from runtime.tests.core import limit_range, resource_quota

Gi, Mi = 2**30, 2**20
ANNOTATION = ["metadata", "annotations", "faas-portal/concurrency"]


def _with(obj: dict[str, Any], path: list[str], value: object) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    node = obj
    for part in path[:-1]:
        node = node[part] if not isinstance(node, list) else node[int(part)]
    node[path[-1]] = value
    return obj


def test_the_portals_quota_parses():
    quota = parse_resourcequota(resource_quota("ns", pods=20, memory="4Gi", concurrency=100), "ns")
    assert (quota.pods, quota.memory_limit, quota.concurrency) == (20, 4 * Gi, 100)
    assert parse_limitrange(limit_range("ns"), "ns").default_memory == 256 * Mi


def test_absent_bounds_are_unlimited():
    quota = parse_resourcequota(resource_quota("ns"), "ns")
    assert (quota.pods, quota.memory_limit, quota.concurrency) == (None, None, None)


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (["spec", "hard", "pods"], "-1", "spec.hard[pods]"),
        (["spec", "hard", "pods"], "twenty", "spec.hard[pods]"),
        (["spec", "hard", "count/functions.fission.io"], "-5", "spec.hard[count/functions.fission.io]"),
        (["spec", "hard", "limits.memory"], "lots", "spec.hard[limits.memory]"),
        (["spec", "hard", "limits.memory"], "-1Gi", "spec.hard[limits.memory]"),
        (["spec", "hard", "requests.cpu"], "two", "spec.hard[requests.cpu]"),
        (["spec", "hard", "limits.cpu"], True, "spec.hard[limits.cpu]"),
        (["spec", "hard"], ["pods"], "spec.hard"),
        (ANNOTATION, "many", "metadata.annotations[faas-portal/concurrency]"),
        (ANNOTATION, "-3", "metadata.annotations[faas-portal/concurrency]"),
        (ANNOTATION, 4, "metadata.annotations[faas-portal/concurrency]"),
        (["kind"], "LimitRange", "kind"),
        (["apiVersion"], "fission.io/v1", "apiVersion"),
        (["metadata", "namespace"], "other", "metadata.namespace"),
        (["metadata", "name"], "Tenant_Quota", "metadata.name"),
    ],
)  # fmt: skip
def test_quota_errors_name_the_field(path, value, field):
    with pytest.raises(InvalidObject) as error:
        parse_resourcequota(_with(resource_quota("ns", pods=1), path, value), "ns")
    assert error.value.field == field


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (["spec", "limits", "0", "type"], "Thing", "spec.limits[0].type"),
        (["spec", "limits", "0", "default", "memory"], "x", "spec.limits[0].default[memory]"),
        (["spec", "limits", "0", "max", "cpu"], "-1", "spec.limits[0].max[cpu]"),
        (["spec", "limits", "0", "defaultRequest"], "128Mi", "spec.limits[0].defaultRequest"),
        (["spec", "limits"], None, "spec.limits"),
        (["kind"], "ResourceQuota", "kind"),
    ],
)
def test_limit_range_errors_name_the_field(path, value, field):
    with pytest.raises(InvalidObject) as error:
        parse_limitrange(_with(limit_range("ns"), path, value), "ns")
    assert error.value.field == field


@pytest.mark.parametrize(("value", "expected"), [("2", 2000), ("500m", 500), ("0.5", 500), (3, 3000)])
def test_cpu_quantities(value, expected):
    assert parse_cpu(value, "x") == expected


def test_several_quotas_in_a_namespace_all_apply():
    quotas = [
        parse_resourcequota(resource_quota("ns", pods=5, memory="1Gi", name="a"), "ns"),
        parse_resourcequota(resource_quota("ns", pods=3, concurrency=7, name="b"), "ns"),
    ]
    ranges = [parse_limitrange(limit_range("ns", default_memory="64Mi"), "ns")]
    limits = combine(quotas, ranges)["ns"]
    assert (limits.pods, limits.memory, limits.concurrency, limits.default_memory) == (3, Gi, 7, 64 * Mi)


def test_admission_counts_against_the_tightest_bound():
    quotas = Quotas()
    quotas.set([parse_resourcequota(resource_quota("ns", pods=2, memory="512Mi"), "ns")], [])
    quotas.admit("ns", pods=1, memory=256 * Mi, usage=lambda: (1, 256 * Mi))
    with pytest.raises(QuotaExhausted) as pods:
        quotas.admit("ns", pods=1, memory=Mi, usage=lambda: (2, 0))
    assert pods.value.resource == "pods"
    with pytest.raises(QuotaExhausted) as memory:
        quotas.admit("ns", pods=0, memory=Mi, usage=lambda: (1, 512 * Mi))
    assert memory.value.resource == "limits.memory"
    quotas.admit("other", pods=100, memory=100 * Gi, usage=lambda: (10**6, 10**12))


def test_concurrency_counts_requests_in_flight():
    quotas = Quotas()
    quotas.set([parse_resourcequota(resource_quota("ns", concurrency=1), "ns")], [])
    assert quotas.enter("ns") is True
    assert quotas.enter("ns") is False
    assert quotas.enter("other") is True
    quotas.leave("ns")
    assert quotas.enter("ns") is True
