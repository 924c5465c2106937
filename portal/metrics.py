"""The portal's own metrics: HTTP requests and their latency, Celery task outcomes.

Served at ``/metrics`` only to holders of ``PORTAL_METRICS_TOKEN`` (Prometheus sends it as a
bearer token); with no token configured the endpoint does not exist (404). The processes that
share ``PROMETHEUS_MULTIPROC_DIR`` (the ASGI server, Celery workers; ``make run`` sets it) are
summed, as prometheus_client's multiprocess mode does; without it a process reports itself.

Labels are bounded: the URL pattern's name (never the raw path, which holds tenant slugs and
object names), the method and the status; the task's registered name and its outcome.

Reference: https://prometheus.github.io/client_python/multiprocess/
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from core.errors import error_response
from tenants.auth import bearer_from_header

METRICS_PATH = "/metrics"
HTTP_REQUESTS = Counter(
    "portal_http_requests_total", "HTTP requests answered by the portal.", ("method", "view", "status")
)
HTTP_LATENCY = Histogram(
    "portal_http_request_duration_seconds",
    "Time to answer an HTTP request, middleware included.",
    ("method", "view"),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CELERY_TASKS = Counter(
    "portal_celery_tasks_total",
    "Celery task runs by outcome (succeeded, failed, retried).",
    ("task", "outcome"),
)
CELERY_TASK_DURATION = Histogram(
    "portal_celery_task_duration_seconds",
    "Time a Celery task ran, whatever its outcome.",
    ("task",),
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900),
)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetricsMiddleware:
    """Counts and times every request after the health checks; answers ``/metrics`` itself,
    before the tenant lookup, so that scraping never touches the database."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == METRICS_PATH:
            return metrics_view(request)
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        view = (match.view_name or "unnamed") if match is not None else "unmatched"
        method = request.method if request.method in _METHODS else "other"
        HTTP_REQUESTS.labels(method, view, str(response.status_code)).inc()
        HTTP_LATENCY.labels(method, view).observe(time.perf_counter() - started)
        return response


def metrics_view(request: HttpRequest) -> HttpResponse:
    expected = settings.PORTAL_METRICS_TOKEN
    if not expected:
        return error_response(404, "not_found", "Not found.")
    given = bearer_from_header(request.META.get("HTTP_AUTHORIZATION")) or ""
    if not hmac.compare_digest(given.encode(), expected.encode()):
        response = error_response(401, "not_authenticated", "The metrics token is missing or wrong.")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)


def _registry() -> Any:
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


# -- Celery ---------------------------------------------------------------------------------------

_started: dict[str, float] = {}


def task_started(task_id: str) -> None:
    _started[task_id] = time.perf_counter()


def task_finished(task_name: str, task_id: str, outcome: str) -> None:
    """Record one run of ``task_name``; ``outcome`` is succeeded, failed or retried."""
    CELERY_TASKS.labels(task_name, outcome).inc()
    started = _started.pop(task_id, None)
    if started is not None:
        CELERY_TASK_DURATION.labels(task_name).observe(time.perf_counter() - started)
