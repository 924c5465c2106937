"""The tenant's quota, enforced by the portal before anything reaches the data plane.

The footprint of a tenant is what its deployed functions may claim at full scale, counted the way
the ResourceQuota counts (DESIGN.md section 4): one Fission Function and one Package per deployed
draft or version, its HTTP triggers, and ``max pods x (memory, cpu, requests per pod)`` where max
pods is MaxScale for newdeploy and ``concurrency`` for poolmgr; plus each environment's warm pool.
Checks run inside the caller's transaction after the change is written, so a refusal rolls the
change back and the tenant keeps exactly what it had.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, Max, Sum

from core.errors import DomainError
from dataplane.manifests import FunctionSpec
from dataplane.namespaces import TenantQuota, parse_quantity
from functions import selectors
from functions.models import (
    Build,
    BuildState,
    ConfigMap,
    DeploymentState,
    Environment,
    Function,
    QueueTrigger,
    Secret,
    TimeTrigger,
    Trigger,
)
from functions.specs import function_spec, spec_from_config
from tenants.selectors import current_tenant, tenant_quota

MI = 2**20


class QuotaExceeded(DomainError):
    status = 403
    code = "quota_exceeded"


@dataclass(frozen=True)
class Footprint:
    functions: int = 0
    packages: int = 0
    httptriggers: int = 0
    timetriggers: int = 0
    messagequeuetriggers: int = 0
    environments: int = 0
    secrets: int = 0  # the tenant's own Secrets and ConfigMaps: counted whether used or not
    configmaps: int = 0
    pods: int = 0
    memory_limits: int = 0  # bytes
    memory_requests: int = 0
    cpu_limits: int = 0  # millicores
    cpu_requests: int = 0
    concurrency: int = 0

    def __add__(self, other: Footprint) -> Footprint:
        pairs = zip(dataclasses.astuple(self), dataclasses.astuple(other), strict=True)
        return Footprint(*(a + b for a, b in pairs))


# quota field -> unit, in display order
UNITS = {
    "functions": "count",
    "packages": "count",
    "httptriggers": "count",
    "timetriggers": "count",
    "messagequeuetriggers": "count",
    "environments": "count",
    "secrets": "count",
    "configmaps": "count",
    "pods": "count",
    "concurrency": "count",
    "memory_limits": "bytes",
    "memory_requests": "bytes",
    "cpu_limits": "millicores",
    "cpu_requests": "millicores",
}


def limit_of(quota: TenantQuota, name: str) -> int:
    value = getattr(quota, name)
    if UNITS[name] == "count":
        return int(value)
    scale = 1000 if UNITS[name] == "millicores" else 1
    return int(parse_quantity(value, name) * scale)


def _container(quota: TenantQuota, memory_mb: int | None, cpu_millis: int | None) -> tuple[int, ...]:
    """(memory limit, memory request, cpu limit, cpu request) of one pod: its own resources
    (requests equal limits, dataplane/manifests.py) or the LimitRange's defaults."""
    if memory_mb is not None:
        memory = (memory_mb * MI, memory_mb * MI)
    else:
        memory = (limit_of_quantity(quota.default_container_memory_limit),
                  limit_of_quantity(quota.default_container_memory_request))  # fmt: skip
    if cpu_millis is not None:
        cpu = (cpu_millis, cpu_millis)
    else:
        cpu = (limit_of_quantity(quota.default_container_cpu_limit, 1000),
               limit_of_quantity(quota.default_container_cpu_request, 1000))  # fmt: skip
    return (*memory, *cpu)


def limit_of_quantity(value: str, scale: int = 1) -> int:
    return int(parse_quantity(value) * Decimal(scale))


def _spec_footprint(quota: TenantQuota, spec: FunctionSpec, env: Environment | None) -> Footprint:
    pods = spec.max_scale if spec.executor == "newdeploy" else spec.concurrency
    memory_mb = spec.memory_mb if spec.memory_mb is not None else (env.memory_mb if env else None)
    cpu_millis = spec.cpu_millis if spec.cpu_millis is not None else (env.cpu_millis if env else None)
    mem_l, mem_r, cpu_l, cpu_r = _container(quota, memory_mb, cpu_millis)
    return Footprint(
        functions=1, packages=1, pods=pods, memory_limits=pods * mem_l, memory_requests=pods * mem_r,
        cpu_limits=pods * cpu_l, cpu_requests=pods * cpu_r, concurrency=pods * spec.requests_per_pod,
    )  # fmt: skip


def _environment_footprint(quota: TenantQuota, env: Environment) -> Footprint:
    mem_l, mem_r, cpu_l, cpu_r = _container(quota, env.memory_mb, env.cpu_millis)
    n = env.poolsize
    return Footprint(
        environments=1, pods=n, memory_limits=n * mem_l, memory_requests=n * mem_r,
        cpu_limits=n * cpu_l, cpu_requests=n * cpu_r,
    )  # fmt: skip


def deployed_specs(function: Function) -> list[FunctionSpec]:
    """The draft and every version an alias or trigger references: what a deployment applies."""
    versions = selectors.referenced_versions(function=function)
    return [function_spec(function), *(spec_from_config(v.config) for v in versions)]


def _per_function(model: type[Trigger] | type[TimeTrigger] | type[QueueTrigger]) -> dict[int, int]:
    """Function id -> how many of ``model`` (a kind of trigger) it has."""
    return dict(model.objects.order_by().values_list("function_id").annotate(count=Count("id")))


def footprint(quota: TenantQuota, *, deploying: Function | None = None) -> Footprint:
    """What the tenant claims with its deployed functions (and ``deploying``, as it is now)."""
    live = Function.objects.filter(deployments__state=DeploymentState.LIVE).distinct()
    functions = {f.pk: f for f in live.select_related("environment")}
    if deploying is not None:
        functions[deploying.pk] = deploying
    environments = {e.name: e for e in Environment.objects.all()}
    # Read for every function at once (a fixed number of queries, whatever their number:
    # functions/tests/test_quota_queries.py); deployed_specs reads the same, one function at a time.
    versions = selectors.referenced_version_configs()
    http, timed, queued = (_per_function(model) for model in (Trigger, TimeTrigger, QueueTrigger))
    total, used_envs = Footprint(), set()
    for function in functions.values():
        specs = [function_spec(function), *(spec_from_config(c) for c in versions.get(function.name, ()))]
        for spec in specs:
            total += _spec_footprint(quota, spec, environments.get(spec.environment))
            used_envs.add(spec.environment)
        total += Footprint(httptriggers=http.get(function.pk, 0), timetriggers=timed.get(function.pk, 0),
                           messagequeuetriggers=queued.get(function.pk, 0))  # fmt: skip
    for name in sorted(used_envs & environments.keys()):
        total += _environment_footprint(quota, environments[name])
    return total + Footprint(secrets=Secret.objects.count(), configmaps=ConfigMap.objects.count())


def _refuse(name: str, used: int, limit: int, what: str) -> QuotaExceeded:
    unit = UNITS.get(name, "bytes" if name in ("package_size", "max_container_memory") else "count")
    if name == "max_container_cpu":
        unit = "millicores"

    def shown(value: int) -> str:
        return {"bytes": f"{value / MI:.0f}Mi", "millicores": f"{value}m"}.get(unit, str(value))

    return QuotaExceeded(
        f"Quota {name} exceeded: {what} needs {shown(used)}, the tenant's quota is {shown(limit)}.",
        detail={"quota": name, "requested": used, "limit": limit, "unit": unit},
    )


def enforce(*, deploying: Function | None = None, what: str = "this change") -> Footprint:
    """Raise QuotaExceeded naming the first quota the tenant would exceed with ``deploying``."""
    quota = tenant_quota(current_tenant())
    if deploying is not None:
        _check_containers(quota, deploying)
    total = footprint(quota, deploying=deploying)
    for name in UNITS:
        used, limit = getattr(total, name), limit_of(quota, name)
        if used > limit:
            raise _refuse(name, used, limit, what)
    return total


def _check_containers(quota: TenantQuota, function: Function) -> None:
    """Each pod must fit the LimitRange's maxima, or Kubernetes refuses it at scale-up."""
    for spec in deployed_specs(function):
        if spec.memory_mb is not None and spec.memory_mb * MI > limit_of_quantity(quota.max_container_memory):
            raise _refuse(
                "max_container_memory", spec.memory_mb * MI, limit_of_quantity(quota.max_container_memory),
                f"{spec.name}'s memory",
            )  # fmt: skip
        max_cpu = limit_of_quantity(quota.max_container_cpu, 1000)
        if spec.cpu_millis is not None and spec.cpu_millis > max_cpu:
            raise _refuse("max_container_cpu", spec.cpu_millis, max_cpu, f"{spec.name}'s cpu")


def enforce_function_count() -> None:
    """A new function must fit the ``functions`` quota (each deploys at least one Function)."""
    quota = tenant_quota(current_tenant())
    count = Function.objects.count()
    if count > quota.functions:
        raise _refuse("functions", count, quota.functions, "a new function")


def captured_requests() -> int:
    """The failed requests the tenant's functions may keep for replay: the sum of their
    ``capture_max_requests``, for those whose capture is on."""
    functions = Function.objects.exclude(capture_codes=[])
    return int(functions.aggregate(total=Sum("capture_max_requests"))["total"] or 0)


def enforce_captured_requests() -> None:
    """Raise QuotaExceeded when the capture settings would keep more than the quota allows."""
    quota = tenant_quota(current_tenant())
    used = captured_requests()
    if used > quota.captured_requests:
        raise _refuse("captured_requests", used, quota.captured_requests, "capturing failed requests")


def enforce_package_size(builds: list[Build]) -> None:
    quota = tenant_quota(current_tenant())
    limit = limit_of_quantity(quota.package_size)
    for build in builds:
        if build.size > limit:
            raise _refuse("package_size", build.size, limit, f"build {build.pk}'s archive")


def usage() -> list[dict[str, object]]:
    """Each quota with what the tenant uses of it now, for pages and the API."""
    tenant = current_tenant()
    quota = tenant_quota(tenant)
    total = footprint(quota)
    rows: list[dict[str, object]] = [
        {"quota": name, "used": getattr(total, name), "limit": limit_of(quota, name), "unit": unit}
        for name, unit in UNITS.items()
    ]
    succeeded = Build.objects.filter(state=BuildState.SUCCEEDED)
    largest = succeeded.aggregate(largest=Max("size"))["largest"] or 0
    rows.append({"quota": "package_size", "used": largest, "limit": limit_of_quantity(quota.package_size),
                 "unit": "bytes"})  # fmt: skip
    rows.append({"quota": "captured_requests", "used": captured_requests(), "limit": quota.captured_requests,
                 "unit": "count"})  # fmt: skip
    return rows
