"""The suite's real Prometheus asks for basic auth as ``make run``'s does (portal/embedded.py's web
config): its API and UI answer nobody without the password; it scrapes the runtime with the
runtime's metrics token; and the portal's adapter gets through with PROMETHEUS_USERNAME /
PROMETHEUS_PASSWORD, and says so, without the password, when they are wrong."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from metrics import prometheus as adapter
from metrics.prometheus import MetricsUnavailable, Prometheus
from metrics.queries import PromQL

pytestmark = pytest.mark.django_db(transaction=True)  # the fixture's Prometheus scrapes the session's portal
PATHS = ("/api/v1/query?query=up", "/", "/graph", "/api/v1/targets", "/federate?match[]=up")


def test_prometheus_answers_nobody_without_the_password(prometheus: Any) -> None:
    user, password = prometheus.auth
    for path in PATHS:
        for auth in (None, (user, "wrong"), (user, password + "x"), ("someone", password)):
            response = httpx.get(prometheus.url + path, auth=auth, timeout=10)
            assert response.status_code == 401, (path, auth and auth[0])
            assert response.headers["WWW-Authenticate"].startswith("Basic")
            assert "runtime" not in response.text
    answer = httpx.get(
        f"{prometheus.url}/api/v1/query", params={"query": "up"}, auth=prometheus.auth, timeout=10
    )
    assert answer.status_code == 200
    assert (
        httpx.get(prometheus.url + "/", auth=prometheus.auth, timeout=10, follow_redirects=True).status_code
        == 200
    )


def test_prometheus_scrapes_the_runtime_with_its_metrics_token(prometheus: Any) -> None:
    # wait_for_scrapes saw up == 1 for both jobs; a 401 from the runtime would have left it at 0.
    (runtime,) = prometheus.query('up{job="runtime"}')
    assert runtime["value"][1] == "1"
    assert prometheus.query('runtime_workers{job="runtime"}')


def test_the_adapter_sends_the_configured_credentials(prometheus: Any, settings: Any) -> None:
    settings.PROMETHEUS_URL = prometheus.url
    settings.PROMETHEUS_USERNAME, settings.PROMETHEUS_PASSWORD = prometheus.auth
    (sample,) = adapter.prometheus().instant(PromQL("vector(1)"))
    assert sample.value == 1.0
    assert adapter.prometheus().instant_many({"one": PromQL("vector(1)")})["one"][0].value == 1.0


@pytest.mark.parametrize("auth", [None, ("portal", "not-the-password")])
def test_without_the_right_credentials_metrics_are_unavailable(prometheus: Any, auth: Any) -> None:
    client = Prometheus(prometheus.url, timeout_s=5, auth=auth)
    for ask in (
        lambda: client.instant(PromQL("vector(1)")),
        lambda: client.instant_many({"one": PromQL("vector(1)")}),
        lambda: client.range(PromQL("vector(1)"), start=1e9, end=1e9 + 30, step_s=15),
    ):
        with pytest.raises(MetricsUnavailable, match="refused the portal's credentials") as raised:
            ask()
        assert (raised.value.status, raised.value.code) == (503, "metrics_unavailable")
        assert "not-the-password" not in str(raised.value)
        assert prometheus.auth[1] not in str(raised.value)
