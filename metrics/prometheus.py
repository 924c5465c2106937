"""The Prometheus adapter: the only module that imports ``prometheus_api_client``.

It runs only ``PromQL`` built by ``metrics.queries`` and returns our own dataclasses. Every
failure (not configured, refused, timed out, an error answer, a body that is not Prometheus')
becomes ``MetricsUnavailable``, which the API answers with 503 in the error shape.

Reference: https://prometheus.io/docs/prometheus/latest/querying/api/ (``/api/v1/query`` and
``/api/v1/query_range``; values are strings, "NaN" included).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
import urllib3
from django.conf import settings
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from core.errors import DomainError
from metrics.queries import PromQL


class MetricsUnavailable(DomainError):
    status = 503
    code = "metrics_unavailable"


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float | None  # None for NaN or infinities (a quantile of no calls)


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float | None]]


def _number(raw: Any) -> float | None:
    value = float(raw)
    return value if math.isfinite(value) else None


class Prometheus:
    def __init__(self, url: str, *, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s
        # One quick retry for a dropped connection; the caller's page must not hang on a dead server.
        retry = Retry(total=1, connect=1, read=0, status=0, backoff_factor=0.1)
        self._client = PrometheusConnect(url=url, retry=retry, timeout=timeout_s) if url else None

    def instant(self, query: PromQL, *, at: float | None = None) -> list[Sample]:
        """The query's value at ``at`` (epoch seconds; now by default), one sample per series."""
        params = {"time": f"{at:.3f}"} if at is not None else None
        result = self._run(lambda client: client.custom_query(query.text, params=params))
        try:
            return [Sample(dict(r.get("metric") or {}), _number(r["value"][1])) for r in result]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise MetricsUnavailable(f"Prometheus answered something unexpected: {exc!r}") from None

    def range(self, query: PromQL, *, start: float, end: float, step_s: int) -> list[Series]:
        """The query at every ``step_s`` seconds from ``start`` to ``end`` (epoch seconds)."""
        begin, finish = (datetime.fromtimestamp(t, UTC) for t in (start, end))
        result = self._run(
            lambda client: client.custom_query_range(query.text, begin, finish, step=f"{step_s}s")
        )
        try:
            return [
                Series(dict(r.get("metric") or {}), [(float(t), _number(v)) for t, v in r["values"]])
                for r in result
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise MetricsUnavailable(f"Prometheus answered something unexpected: {exc!r}") from None

    def _run(self, call: Any) -> list[dict[str, Any]]:
        if self._client is None:
            raise MetricsUnavailable("Metrics are unavailable: PROMETHEUS_URL is not set.")
        try:
            result = call(self._client)
        except requests.Timeout:
            raise MetricsUnavailable(f"Prometheus did not answer within {self.timeout_s:g} s.") from None
        except requests.JSONDecodeError:  # also a RequestException: the server answered, not JSON
            raise MetricsUnavailable("Prometheus answered something that is not a query result.") from None
        except requests.RequestException as exc:
            if _timed_out(exc):
                raise MetricsUnavailable(f"Prometheus did not answer within {self.timeout_s:g} s.") from None
            raise MetricsUnavailable(f"Prometheus is unreachable ({type(exc).__name__}).") from None
        except PrometheusApiClientException as exc:
            raise MetricsUnavailable(f"Prometheus refused the query: {str(exc)[:300]}") from None
        except (ValueError, KeyError, TypeError):
            raise MetricsUnavailable("Prometheus answered something that is not a query result.") from None
        if not isinstance(result, list):
            raise MetricsUnavailable("Prometheus answered something that is not a query result.")
        return result


def _timed_out(exc: requests.RequestException) -> bool:
    """A read timeout after the retries is a ConnectionError wrapping urllib3's timeout."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    refused = isinstance(reason, urllib3.exceptions.NewConnectionError)  # a ConnectTimeoutError, oddly
    return isinstance(reason, urllib3.exceptions.TimeoutError) and not refused


_local = threading.local()


def prometheus() -> Prometheus:
    """The configured server (``PROMETHEUS_URL``), with one connection pool per thread: a
    ``requests.Session`` is not meant to be shared between threads."""
    url, timeout_s = settings.PROMETHEUS_URL, float(settings.PROMETHEUS_TIMEOUT_S)
    client: Prometheus | None = getattr(_local, "client", None)
    if client is None or (client.url, client.timeout_s) != (url, timeout_s):
        client = _local.client = Prometheus(url, timeout_s=timeout_s)
    return client
