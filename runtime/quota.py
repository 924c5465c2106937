"""Per-namespace quotas, as a cluster's ResourceQuota admission would enforce them here.

The executor asks ``Quotas`` whether one more worker fits (``pods``, ``limits.memory``); the
router asks it whether one more request may be in flight (the ``faas-portal/concurrency``
annotation). A namespace without a ResourceQuota is unlimited. Limits are read at every check,
so a replaced or deleted quota takes effect at once; lowering a quota, as in Kubernetes, stops
new workers but does not evict running ones.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from runtime.objects import LimitRange, ResourceQuota

# The memory charged for a worker whose function, environment and LimitRange declare no limit.
DEFAULT_MEMORY = 256 * 2**20


class QuotaExhausted(Exception):
    """One more worker would exceed the namespace's ``resource`` (pods, limits.memory): 429."""

    def __init__(self, namespace: str, resource: str) -> None:
        super().__init__(f"the {resource} quota of {namespace} is exhausted")
        self.namespace = namespace
        self.resource = resource


@dataclass(frozen=True)
class Limits:
    """What a namespace may use; None is unlimited."""

    pods: int | None = None
    memory: int | None = None
    concurrency: int | None = None
    default_memory: int | None = None


UNLIMITED = Limits()


def _tighter(a: int | None, b: int | None) -> int | None:
    """Several ResourceQuotas in a namespace all apply, so the smallest hard limit wins."""
    return b if a is None else a if b is None else min(a, b)


def combine(quotas: Iterable[ResourceQuota], ranges: Iterable[LimitRange]) -> dict[str, Limits]:
    """The effective limits per namespace; of several LimitRanges, the first by name that sets a
    Container default memory limit gives it (Kubernetes leaves the choice undefined)."""
    limits: dict[str, Limits] = {}
    for quota in quotas:
        old = limits.get(quota.meta.namespace, UNLIMITED)
        limits[quota.meta.namespace] = replace(
            old,
            pods=_tighter(old.pods, quota.pods),
            memory=_tighter(old.memory, quota.memory_limit),
            concurrency=_tighter(old.concurrency, quota.concurrency),
        )
    for limit_range in sorted(ranges, key=lambda r: r.meta.name):
        old = limits.get(limit_range.meta.namespace, UNLIMITED)
        if old.default_memory is None and limit_range.default_memory is not None:
            limits[limit_range.meta.namespace] = replace(old, default_memory=limit_range.default_memory)
    return limits


class Quotas:
    """The current limits per namespace and the requests in flight per namespace."""

    def __init__(self) -> None:
        self.limits: dict[str, Limits] = {}
        self.in_flight: dict[str, int] = defaultdict(int)

    def set(self, quotas: Iterable[ResourceQuota], ranges: Iterable[LimitRange]) -> None:
        self.limits = combine(quotas, ranges)

    def of(self, namespace: str) -> Limits:
        return self.limits.get(namespace, UNLIMITED)

    def admit(self, namespace: str, *, pods: int, memory: int, usage: Callable[[], tuple[int, int]]) -> None:
        """Raise QuotaExhausted unless ``pods`` more workers charging ``memory`` more bytes fit
        beside ``usage()`` (pods, bytes), which is only computed when the namespace has limits."""
        limits = self.of(namespace)
        if limits.pods is None and limits.memory is None:
            return
        used_pods, used_memory = usage()
        if pods and limits.pods is not None and used_pods + pods > limits.pods:
            raise QuotaExhausted(namespace, "pods")
        if memory > 0 and limits.memory is not None and used_memory + memory > limits.memory:
            raise QuotaExhausted(namespace, "limits.memory")

    def enter(self, namespace: str) -> bool:
        """Count one more request in flight; False (count unchanged) when the namespace is full."""
        limit = self.of(namespace).concurrency
        if limit is not None and self.in_flight[namespace] >= limit:
            return False
        self.in_flight[namespace] += 1
        return True

    def leave(self, namespace: str) -> None:
        self.in_flight[namespace] -= 1
