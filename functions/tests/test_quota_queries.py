"""What a tenant's quota footprint reads (the quota page and API, and the check before every
deployment): a fixed number of queries, whatever the number of live functions, their
referenced versions and their triggers (issue 19: a tenant of 1,000 functions read five
queries a function, at every deployment)."""

from __future__ import annotations

from typing import Any

import pytest
from django_tenants.utils import schema_context

from functions import quotas
from functions.models import Deployment, DeploymentState, Function, TargetKind, Trigger
from functions.services import functions as function_services
from functions.services import versions
from tenants.selectors import tenant_quota
from testsupport.list_queries import FEW, MORE, publish_v1

pytestmark = pytest.mark.django_db

# The live functions (their environments joined in); the environments; the referenced
# versions' configurations (one query for every function); the three kinds of trigger, counted
# per function (one query each); the Secrets; the ConfigMaps.
FOOTPRINT_QUERIES = 8


def _add_live_functions(world: Any, count: int) -> None:
    """``count`` live functions, each with version 1 behind an alias and an HTTP trigger on it."""
    start = Function.objects.count()
    for index in range(start, start + count):
        function = function_services.function_create(name=f"fn-{index:03d}")
        version = publish_v1(world, function)
        versions.alias_set(function=function, name="live", version=version.number)
        Trigger.objects.create(function=function, name=f"t{index}", methods=["GET"], path=f"/t{index}",
                               target_kind=TargetKind.VERSION, version=version)  # fmt: skip
        Deployment.objects.create(function=function, state=DeploymentState.LIVE, cause="test")


def test_the_footprint_reads_the_same_queries_for_3_and_30_live_functions(
    world: Any, django_assert_num_queries: Any
) -> None:
    with schema_context(world.acme.schema_name):
        quota = tenant_quota(world.acme)
        total = 0
        for more in (FEW, MORE):
            _add_live_functions(world, more)
            total += more
            with django_assert_num_queries(FOOTPRINT_QUERIES):
                footprint = quotas.footprint(quota)
            # Each function: its draft and its version 1 (two specs), and one HTTP trigger.
            assert (footprint.functions, footprint.packages, footprint.httptriggers) == (
                2 * total,
                2 * total,
                total,
            )


def test_the_footprint_is_what_each_function_s_deployed_specs_make(world: Any) -> None:
    """The bulk read gives what reading function by function (deployed_specs) gives."""
    with schema_context(world.acme.schema_name):
        _add_live_functions(world, 4)
        quota = tenant_quota(world.acme)
        expected = quotas.Footprint()
        environments: set[str] = set()
        for function in Function.objects.select_related("environment"):
            for spec in quotas.deployed_specs(function):
                expected += quotas._spec_footprint(quota, spec, function.environment)
                environments.add(spec.environment)
            expected += quotas.Footprint(httptriggers=function.triggers.count())
        for function in Function.objects.select_related("environment")[:1]:
            expected += quotas._environment_footprint(quota, function.environment)
        assert environments == {"python"}
        assert quotas.footprint(quota) == expected
