"""The call metrics' own collector exposes what prometheus_client's Counter and Histogram did:
Fission's names and labels, cumulative buckets with a value on a bound counted in that bound's
bucket, errors for statuses >= 400 only."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from runtime.metrics import CALL_LABELS, CallMetrics


def scrape(collector: CallMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def labels(code: str, **more: str) -> tuple[tuple[str, str], ...]:
    base = dict(zip(CALL_LABELS, ("faas-a", "f", "/a/x", "GET", code), strict=True))
    return tuple(sorted({**base, **more}.items()))


def test_calls_errors_and_cumulative_buckets() -> None:
    collector = CallMetrics((0.001, 0.01, 1.0))
    for seconds in (0.0005, 0.001, 0.002, 0.5, 3.0):
        collector.observe(("faas-a", "f", "/a/x", "GET", 200), seconds)
    collector.observe(("faas-a", "f", "/a/x", "GET", 502), 0.02)

    samples = scrape(collector)

    assert samples[("fission_function_calls_total", labels("200"))] == 5
    assert samples[("fission_function_calls_total", labels("502"))] == 1
    assert ("fission_function_errors_total", labels("200")) not in samples
    assert samples[("fission_function_errors_total", labels("502"))] == 1
    bucket = "fission_function_overhead_seconds_bucket"
    assert samples[(bucket, labels("200", le="0.001"))] == 2  # 0.001 itself is in the 0.001 bucket
    assert samples[(bucket, labels("200", le="0.01"))] == 3
    assert samples[(bucket, labels("200", le="1.0"))] == 4
    assert samples[(bucket, labels("200", le="+Inf"))] == 5
    assert samples[("fission_function_overhead_seconds_count", labels("200"))] == 5
    assert abs(samples[("fission_function_overhead_seconds_sum", labels("200"))] - 3.5035) < 1e-9
    assert samples[(bucket, labels("502", le="0.01"))] == 0
    assert samples[(bucket, labels("502", le="1.0"))] == 1


def test_an_empty_collector_exposes_the_families_without_series() -> None:
    text = generate_latest(_registry(CallMetrics((0.1,)))).decode()

    assert "# TYPE fission_function_calls_total counter" in text
    assert "# TYPE fission_function_overhead_seconds histogram" in text
    assert "{" not in text


def _registry(collector: CallMetrics) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(collector)
    return registry
