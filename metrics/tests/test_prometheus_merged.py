"""Several queries in one request (metrics/prometheus.py: ``merged``, ``instant_many``,
``range_many``, sent in a POST's body): each part gets exactly its own series, with its own
labels and values, as if asked alone (against the real Prometheus of the suite); and every
failure is "metrics unavailable", as for one query (against servers that misbehave on purpose).
"""

from __future__ import annotations

from typing import Any

import pytest

from metrics.prometheus import MetricsUnavailable, Prometheus, Sample, Series, merged
from metrics.queries import PromQL
from metrics.tests.test_prometheus import _serve, silent  # noqa: F401 (silent: a fixture)

PARTS = {
    "one": PromQL("vector(1)"),
    "nan": PromQL("vector(0) / 0"),
    "labelled": PromQL('label_replace(vector(2), "code", "500", "", "")'),
    "two_series": PromQL(
        'label_replace(vector(3), "k", "a", "", "") or label_replace(vector(4), "k", "b", "", "")'
    ),
    "nothing": PromQL("vector(1) unless vector(1)"),
}


@pytest.mark.django_db(transaction=True)  # the fixture's Prometheus scrapes the session's portal
def test_each_part_gets_its_own_samples(prometheus: Any) -> None:
    client = Prometheus(prometheus.url, timeout_s=5, auth=prometheus.auth)
    alone = {name: client.instant(query, at=1e9) for name, query in PARTS.items()}
    together = client.instant_many(PARTS, at=1e9)
    assert together == alone
    assert together["labelled"] == [Sample({"code": "500"}, 2.0)]
    assert together["nan"] == [Sample({}, None)]
    assert sorted(s.labels["k"] for s in together["two_series"]) == ["a", "b"]
    assert together["nothing"] == []


@pytest.mark.django_db(transaction=True)
def test_each_part_gets_its_own_series(prometheus: Any) -> None:
    client = Prometheus(prometheus.url, timeout_s=5, auth=prometheus.auth)
    alone = {name: client.range(query, start=1e9, end=1e9 + 30, step_s=15) for name, query in PARTS.items()}
    together = client.range_many(PARTS, start=1e9, end=1e9 + 30, step_s=15)
    assert together == alone
    assert together["one"] == [Series({}, [(1e9, 1.0), (1e9 + 15, 1.0), (1e9 + 30, 1.0)])]


def test_part_names_are_checked() -> None:
    for name in ("", "Calls", "p95;", 'x") or vector(1', "a" * 42):
        with pytest.raises(ValueError, match="part name"):
            merged({name: PromQL("vector(1)")})
    with pytest.raises(ValueError, match="nothing to ask"):
        merged({})
    assert merged({"a": PromQL("vector(1)")}).text == 'label_replace(vector(1), "portal_part", "a", "", "")'


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (500, b"oops", "refused the query"),
        (400, b'{"status":"error","error":"parse error"}', "refused the query"),
        (200, b"<html>not prometheus</html>", "not a query result"),
        (200, b'{"status":"success","data":{"result":[{"metric":{},"value":"x"}]}}', "unexpected"),
        (200, b'{"status":"success","data":{"result":[{"metric":{},"values":[["x", "1"]]}]}}', "unexpected"),
        (200, b'{"status":"success","data":{"result":{"oops":1}}}', "not a query result"),
        (200, b'{"status":"success"}', "not a query result"),
    ],
)
def test_bad_answers_are_unavailable(status: int, body: bytes, message: str) -> None:
    seen: list[bytes] = []
    for url in _serve(status, body, seen):
        client = Prometheus(url, timeout_s=2)
        with pytest.raises(MetricsUnavailable, match=message) as instant:
            client.instant_many(PARTS, at=1e9)
        with pytest.raises(MetricsUnavailable, match=message) as ranged:
            client.range_many(PARTS, start=0, end=60, step_s=15)
        for raised in (instant, ranged):
            assert (raised.value.status, raised.value.code) == (503, "metrics_unavailable")
    assert len(seen) == 2
    assert all(b"query=label_replace" in body for body in seen)  # the query is in the body


def test_a_silent_server_times_out_and_nothing_configured(silent: str) -> None:  # noqa: F811
    with pytest.raises(MetricsUnavailable, match="did not answer within 1 s"):
        Prometheus(silent, timeout_s=1).range_many(PARTS, start=0, end=60, step_s=15)
    with pytest.raises(MetricsUnavailable, match="PROMETHEUS_URL is not set"):
        Prometheus("", timeout_s=1).instant_many(PARTS)
