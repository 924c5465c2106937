"""Prometheus metrics with Fission's names and labels (FISSION.md section 3), so the same
PromQL serves the local runtime and a real Fission router."""

from __future__ import annotations

import contextlib
import itertools
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from runtime.executor import Executor

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
CALL_LABELS = ("function_namespace", "function_name", "path", "method", "code")

OVERHEAD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class CallMetrics(Collector):
    """``fission_function_calls_total``, ``fission_function_errors_total`` (the calls answered with
    a status >= 400) and ``fission_function_overhead_seconds`` (a histogram of the whole round trip
    at the router, despite the name, as in Fission), labelled ``CALL_LABELS``.

    Why not prometheus_client's metric objects: they take a lock for every increment, three per
    call, and this is the router's hot path. A call here adds to one list of plain numbers (calls,
    sum, one bucket), on the event loop's thread, which is also the only thread that scrapes; the
    families and the cumulative buckets are made at scrape time."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.bounds = buckets
        self.le = [floatToGoString(bound) for bound in buckets] + ["+Inf"]  # type: ignore[no-untyped-call]
        # (namespace, function, path, method, code) -> [calls, sum of seconds, count per bucket...]
        self.series: dict[tuple[str, str, str, str, int], list[float]] = {}

    def observe(self, key: tuple[str, str, str, str, int], seconds: float) -> None:
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = [0, 0.0] + [0] * len(self.le)
        series[0] += 1
        series[1] += seconds
        series[2 + bisect_left(self.bounds, seconds)] += 1

    def collect(self) -> Iterator[Metric]:
        calls = CounterMetricFamily("fission_function_calls", "Function calls through the router.",
                                    labels=CALL_LABELS)  # fmt: skip
        errors = CounterMetricFamily("fission_function_errors", "Calls answered with a status >= 400.",
                                     labels=CALL_LABELS)  # fmt: skip
        overhead = HistogramMetricFamily("fission_function_overhead_seconds",
                                         "Whole round trip at the router, despite the name (as in Fission).",
                                         labels=CALL_LABELS)  # fmt: skip
        for (namespace, function, path, method, code), series in list(self.series.items()):
            labels = [namespace, function, path, method, str(code)]
            calls.add_metric(labels, series[0])
            if code >= 400:
                errors.add_metric(labels, series[0])
            cumulative = list(itertools.accumulate(series[2:]))
            overhead.add_metric(labels, list(zip(self.le, cumulative, strict=True)), series[1])
        yield from (calls, errors, overhead)


CALL_METRICS = CallMetrics(OVERHEAD_BUCKETS)
REGISTRY.register(CALL_METRICS)
COLD_STARTS = Counter(
    "fission_function_cold_starts_total", "Workers specialized or started for a call.",
    ("function_name", "function_namespace"), registry=REGISTRY,
)  # fmt: skip
COLD_START_ERRORS = Counter(
    "fission_function_cold_start_errors_total", "Cold starts that failed.",
    ("function_name", "function_namespace"), registry=REGISTRY,
)  # fmt: skip
WORKERS = Gauge(
    "runtime_workers", "Worker processes by executor and state.", ("executor", "state"), registry=REGISTRY
)
POOL_SIZE = Gauge(
    "runtime_pool_warm_workers", "Warm generic workers per environment.",
    ("namespace", "environment"), registry=REGISTRY,
)  # fmt: skip
POOL_TARGET = Gauge(
    "runtime_pool_size",
    "Configured poolsize per environment.",
    ("namespace", "environment"),
    registry=REGISTRY,
)

# What each event source did: kind timer (outcome fired, failed, skipped_overlap, missed), mq
# (delivered, failed, retried, error_topic, unreachable) or async (accepted, refused, succeeded,
# retried, throttled, dead_lettered, expired, redriven). ``trigger`` is the trigger's name ("" for
# async). Labelled like the call metrics, so the portal's queries select them the same way.
EVENTS = Counter(
    "faas_trigger_events_total", "Fires, messages and asynchronous invocations by outcome.",
    ("function_namespace", "function_name", "kind", "trigger", "outcome"), registry=REGISTRY,
)  # fmt: skip

# Like kube-state-metrics' kube_resourcequota{resource, type}: resource is pods (worker processes),
# limits.memory (bytes: the sum of the workers' memory limits) or concurrency (requests in flight).
QUOTA_LABELS = ("namespace", "resource")
QUOTA_HARD = Gauge(
    "runtime_quota_hard", "A namespace's quota, when it has one.", QUOTA_LABELS, registry=REGISTRY
)
QUOTA_USED = Gauge(
    "runtime_quota_used", "What a namespace uses of what its quota bounds.", QUOTA_LABELS, registry=REGISTRY
)
_quota_namespaces: set[str] = set()


def observe_call(namespace: str, function: str, path: str, method: str, code: int, seconds: float) -> None:
    CALL_METRICS.observe((namespace, function, path, method, code), seconds)


def observe_event(namespace: str, kind: str, trigger: str, function: str, outcome: str) -> None:
    EVENTS.labels(namespace, function, kind, trigger, outcome).inc()


def workers_changed(executor: Executor) -> None:
    tally = Tally((w.executor, w.state) for w in executor.workers.values())
    for executor_name in ("poolmgr", "newdeploy"):
        for state in ("warm", "specializing", "specialized", "retiring"):
            WORKERS.labels(executor_name, state).set(tally.get((executor_name, state), 0))
    for (namespace, environment), size in executor.pool_sizes.items():
        POOL_TARGET.labels(namespace, environment).set(size)
        POOL_SIZE.labels(namespace, environment).set(len(executor.pools.get((namespace, environment), [])))


class FrontPaths(Collector):
    """``faas_router_requests_total{path}``: the requests the router's compiled front answered
    itself (``compiled``) and those it handed to the Python router (``python``); none without the
    front (runtime.fastpath)."""

    def __init__(self) -> None:
        self.counts: Callable[[], tuple[int, int]] | None = None

    def collect(self) -> Iterator[Metric]:
        if self.counts is None:
            return
        served, handed = self.counts()
        family = CounterMetricFamily("faas_router_requests", "Requests by the router's path through them.",
                                     labels=("path",))  # fmt: skip
        family.add_metric(["compiled"], served)
        family.add_metric(["python"], handed)
        yield family


FRONT_PATHS = FrontPaths()
REGISTRY.register(FRONT_PATHS)


def render() -> bytes:
    return generate_latest(REGISTRY)


def quotas_observed(executor: Executor) -> None:
    """Set the quota gauges from the live counts; called when /metrics is scraped, so that the
    router's hot path only moves an integer. A namespace seen once keeps its ``used`` series."""
    quotas = executor.quotas
    _quota_namespaces.update(w.env_key[0] for w in executor.workers.values())
    _quota_namespaces.update(quotas.limits, quotas.in_flight)
    for namespace in _quota_namespaces:
        limits, (pods, memory) = quotas.of(namespace), executor.usage(namespace)
        in_flight = quotas.in_flight.get(namespace, 0)
        for resource, used, hard in (("pods", pods, limits.pods), ("limits.memory", memory, limits.memory),
                                     ("concurrency", in_flight, limits.concurrency)):  # fmt: skip
            QUOTA_USED.labels(namespace, resource).set(used)
            if hard is not None:
                QUOTA_HARD.labels(namespace, resource).set(hard)
            else:
                with contextlib.suppress(KeyError):  # no quota (any more): no series
                    QUOTA_HARD.remove(namespace, resource)
