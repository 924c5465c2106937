"""The Prometheus adapter: the only module that imports ``prometheus_api_client``.

It runs only ``PromQL`` built by ``metrics.queries`` and returns our own dataclasses. Every
failure (not configured, refused, timed out, an error answer, a body that is not Prometheus')
becomes ``MetricsUnavailable``, which the API answers with 503 in the error shape. With
``PROMETHEUS_USERNAME`` set every request carries basic auth (``make run``'s Prometheus asks for
it); no message ever holds the password.

A page asks for several values at once (a function's totals are six queries, its charts six
more): ``instant_many`` and ``range_many`` send them as one query, each part's series labelled
with the part's name (``label_replace``) and the parts joined with ``or``, so that a page waits
for one answer instead of a dozen in turn. The label never reaches the caller. Such a query is
sent in a POST's body (the API takes its parameters either way).

Reference: https://prometheus.io/docs/prometheus/latest/querying/api/ (``/api/v1/query`` and
``/api/v1/query_range``; values are strings, "NaN" included).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping
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


# The label that tells the parts of a merged query apart; no series of ours carries it.
PART = "portal_part"
_PART_NAME = re.compile(r"[a-z][a-z0-9_]{0,40}")


def merged(parts: Mapping[str, PromQL]) -> PromQL:
    """One query whose answer holds every series of every part, each labelled ``PART="<name>"``.

    ``or`` keeps every series of both sides whose labels differ, and the part's label makes
    them differ, so nothing of a part is lost to another; values (NaN included) are kept.
    ValueError for a part name that is not a short lowercase identifier."""
    if not parts:
        raise ValueError("nothing to ask")
    for name in parts:
        if not _PART_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a part name")
    labelled = (f'label_replace({query.text}, "{PART}", "{name}", "", "")' for name, query in parts.items())
    return PromQL(" or ".join(labelled))


def _split_part(labels: dict[str, str]) -> tuple[str, dict[str, str]]:
    """A merged answer's labels: the part's name, and the series' own labels."""
    own = {key: value for key, value in labels.items() if key != PART}
    return labels.get(PART, ""), own


def _number(raw: Any) -> float | None:
    value = float(raw)
    return value if math.isfinite(value) else None


def _samples(result: list[dict[str, Any]]) -> list[Sample]:
    """An instant query's result (``/api/v1/query``): one sample per series."""
    try:
        return [Sample(dict(r.get("metric") or {}), _number(r["value"][1])) for r in result]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise MetricsUnavailable(f"Prometheus answered something unexpected: {exc!r}") from None


def _series(result: list[dict[str, Any]]) -> list[Series]:
    """A range query's result (``/api/v1/query_range``): one series of points per series."""
    try:
        return [
            Series(dict(r.get("metric") or {}), [(float(t), _number(v)) for t, v in r["values"]])
            for r in result
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise MetricsUnavailable(f"Prometheus answered something unexpected: {exc!r}") from None


class Prometheus:
    def __init__(self, url: str, *, timeout_s: float, auth: tuple[str, str] | None = None) -> None:
        """``auth``: the basic auth (username, password) every request carries; None: none."""
        self.url = url
        self.timeout_s = timeout_s
        self.auth = auth
        # One quick retry for a dropped connection; the caller's page must not hang on a dead server.
        retry = Retry(total=1, connect=1, read=0, status=0, backoff_factor=0.1)
        # The client's session (it mounts the retry on it), shared with ``_post``; the client
        # sends ``auth=None`` per request, so the session's credentials go with both.
        self._session = requests.Session()
        self._session.auth = auth
        self._client = (
            PrometheusConnect(url=url, retry=retry, timeout=timeout_s, session=self._session) if url else None
        )

    def instant(self, query: PromQL, *, at: float | None = None) -> list[Sample]:
        """The query's value at ``at`` (epoch seconds; now by default), one sample per series."""
        params = {"time": f"{at:.3f}"} if at is not None else None
        return _samples(self._run(lambda client: client.custom_query(query.text, params=params)))

    def instant_many(
        self, parts: Mapping[str, PromQL], *, at: float | None = None
    ) -> dict[str, list[Sample]]:
        """``instant`` of every part in one request (``merged``): part name -> its samples."""
        form = {"query": merged(parts).text, **({"time": f"{at:.3f}"} if at is not None else {})}
        found: dict[str, list[Sample]] = {name: [] for name in parts}
        for sample in _samples(self._run(lambda _: self._post("/api/v1/query", form))):
            part, labels = _split_part(sample.labels)
            if part in found:
                found[part].append(Sample(labels, sample.value))
        return found

    def range(self, query: PromQL, *, start: float, end: float, step_s: int) -> list[Series]:
        """The query at every ``step_s`` seconds from ``start`` to ``end`` (epoch seconds)."""
        begin, finish = (datetime.fromtimestamp(t, UTC) for t in (start, end))
        return _series(
            self._run(lambda client: client.custom_query_range(query.text, begin, finish, step=f"{step_s}s"))
        )

    def range_many(
        self, parts: Mapping[str, PromQL], *, start: float, end: float, step_s: int
    ) -> dict[str, list[Series]]:
        """``range`` of every part in one request (``merged``): part name -> its series."""
        # As the client sends a range: whole seconds.
        form = {"query": merged(parts).text, "start": str(round(start)), "end": str(round(end)),
                "step": f"{step_s}s"}  # fmt: skip
        found: dict[str, list[Series]] = {name: [] for name in parts}
        for series in _series(self._run(lambda _: self._post("/api/v1/query_range", form))):
            part, labels = _split_part(series.labels)
            if part in found:
                found[part].append(Series(labels, series.points))
        return found

    def _post(self, path: str, form: dict[str, str]) -> Any:
        """The result of the API's ``path`` for ``form`` sent in the body. A merged query is long,
        and a long URL is slow to send (urllib3 checks it byte by byte, in Python); the API takes
        the same parameters form-encoded in a POST's body. Errors as the client raises them."""
        response = self._session.post(f"{self.url}{path}", data=form, timeout=self.timeout_s)
        if response.status_code != 200:
            raise PrometheusApiClientException(
                f"HTTP Status Code {response.status_code} ({response.content!r})"
            )
        return response.json()["data"]["result"]

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
            if str(exc).startswith("HTTP Status Code 401 "):
                # The message names the settings, never their values.
                raise MetricsUnavailable(
                    "Prometheus refused the portal's credentials (PROMETHEUS_USERNAME, PROMETHEUS_PASSWORD)."
                ) from None
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
    """The configured server (``PROMETHEUS_URL``, with basic auth when ``PROMETHEUS_USERNAME`` is
    set), with one connection pool per thread: a ``requests.Session`` is not meant to be shared
    between threads."""
    url, timeout_s = settings.PROMETHEUS_URL, float(settings.PROMETHEUS_TIMEOUT_S)
    auth = (
        (settings.PROMETHEUS_USERNAME, settings.PROMETHEUS_PASSWORD) if settings.PROMETHEUS_USERNAME else None
    )
    client: Prometheus | None = getattr(_local, "client", None)
    if client is None or (client.url, client.timeout_s, client.auth) != (url, timeout_s, auth):
        client = _local.client = Prometheus(url, timeout_s=timeout_s, auth=auth)
    return client
