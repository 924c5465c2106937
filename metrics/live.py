"""What a live metrics frame carries (metrics/hub.py polls it once per topic and tick), and
the hub of this event loop, wired to Prometheus and the data plane's log tail."""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

from django.conf import settings

from dataplane.backends import get_backend
from dataplane.backends.base import LogRecord
from metrics.hub import Hub, MetricsTopic
from metrics.queries import Scope
from metrics.selectors import Breakdown, TimeRange, breakdown_point, lifetime_window, totals, version_rows


def poll(topic: MetricsTopic) -> dict[str, Any]:
    """The function's totals and its calls and errors per version (``versions``, the page's
    table) over the topic's range, and the latest chart point: the counts and
    percentiles of the last chart step, so a chart of that range can append it as it is. A topic
    ``by`` version or alias also carries ``breakdown``: that point per line (key -> calls,
    errors, error_rate, p95), as ``selectors.function_series_breakdown`` draws them.

    Needs no database: the topic was built from a function the consumer found in the tenant's
    schema (and, by alias, with the routes it read there). Raises MetricsUnavailable."""
    time_range = TimeRange(topic.range)
    scope = Scope(topic.namespace, function=topic.function, job=settings.METRICS_JOB)
    at = time.time()
    step_window = lifetime_window(time_range.step_s, at, topic.born)
    point = totals(scope, step_window, at)
    range_window = lifetime_window(time_range.seconds, at, topic.born)
    body: dict[str, Any] = {
        "function": topic.function,
        "range": time_range.value,
        "step_s": time_range.step_s,
        "totals": totals(scope, range_window, at).as_dict(),
        "versions": [
            {"key": row.key, "calls": row.calls, "errors": row.errors}
            for row in version_rows(scope, range_window, at)
        ],
        "point": {
            "t": at,
            "calls": point.calls,
            "errors": point.errors,
            "cold_starts": point.cold_starts,
            **point.latency_ms,
        },
    }
    if topic.by:
        body["breakdown"] = breakdown_point(scope, Breakdown(topic.by), topic.routes, step_window, at)
    return body


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def hub() -> Hub:
    """This event loop's hub (one per process in production; tests run a loop per test)."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:

        def tail(namespace: str, stop: threading.Event, since: float) -> Iterator[list[LogRecord]]:
            return get_backend().tail_logs(namespace, stop, since)

        found = _hubs[loop] = Hub(poll=poll, tail=tail)
    return found
