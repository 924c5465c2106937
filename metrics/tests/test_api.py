"""The metrics and logs API: shapes, filters, pagination, errors, and tenant isolation.

Log records are appended to the runtime's Redis streams exactly as its collector does; metrics
run against a Prometheus that is not there: 503 in the error shape, never a 500.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from django.conf import settings

from runtime.logs import stream_name
from testsupport.fixtures import error_of

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_prometheus")]
LOGS = "/t/acme/api/v1/logs/"


def _append(namespace: str, records: list[dict[str, str]]) -> None:
    """As the runtime's collector appends them: the stream id is the append time (ms)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    for record in records:
        entry_id = f"{int(float(record['time']) * 1000) + 3}-0"  # appended 3 ms after the print
        client.xadd(stream_name(namespace), record, id=entry_id)  # type: ignore[arg-type]
    client.close()


def _line(
    function: str, message: str, *, at: float, stream: str = "stdout", request: str = "r1"
) -> dict[str, str]:
    return {"time": f"{at:.6f}", "namespace": "x", "function": function, "request_id": request,
            "stream": stream, "message": message}  # fmt: skip


@pytest.fixture
def acme_logs(world: Any) -> float:
    redis.Redis.from_url(settings.REDIS_URL).delete(stream_name("faas-acme"), stream_name("faas-globex"))
    now = time.time()  # after the tenants were created: nothing older is theirs
    _append("faas-acme", [
        _line("hello-v1", "starting up", at=now + 0.01, request="a"),
        _line("hello-v1", "ERROR: disk full", at=now + 0.02, stream="stderr", request="b"),
        _line("hello-v2", "served /hello", at=now + 0.03, request="c"),
        _line("other-draft", "other function", at=now + 0.04, request="d"),
        _line("hello-draft", "draft says Error too", at=now + 0.05, stream="stderr", request="e"),
    ])  # fmt: skip
    _append("faas-globex", [_line("hello-v1", "globex secret", at=now + 0.06)])
    return now


def _messages(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [r["message"] for r in response.json()["results"]]


def test_logs_are_newest_first_with_every_field(api: Any, world: Any, acme_logs: float) -> None:
    body = api(world.vera).get(LOGS).json()
    assert [r["message"] for r in body["results"]] == [
        "draft says Error too", "other function", "served /hello", "ERROR: disk full", "starting up",
    ]  # fmt: skip
    first = body["results"][0]
    assert set(first) == {"id", "time", "function", "version", "request_id", "stream", "message"}
    assert (first["function"], first["version"], first["stream"], first["request_id"]) == (
        "hello", "draft", "stderr", "e",
    )  # fmt: skip
    assert (body["cursor"], body["next"]) == (None, None)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("function=hello", ["draft says Error too", "served /hello", "ERROR: disk full", "starting up"]),
        ("function=hello&version=v1", ["ERROR: disk full", "starting up"]),
        ("function=hello&version=draft", ["draft says Error too"]),
        ("request_id=c", ["served /hello"]),
        ("stream=stderr", ["draft says Error too", "ERROR: disk full"]),
        ("q=error", ["draft says Error too", "ERROR: disk full"]),
        ("function=other&q=ERROR", []),
    ],
)
def test_logs_filter(api: Any, world: Any, acme_logs: float, query: str, expected: list[str]) -> None:
    assert _messages(api(world.vera).get(f"{LOGS}?{query}")) == expected


def test_logs_filter_by_time_range(api: Any, world: Any, acme_logs: float) -> None:
    from datetime import UTC, datetime

    since = datetime.fromtimestamp(acme_logs + 0.015, UTC).isoformat()
    until = datetime.fromtimestamp(acme_logs + 0.045, UTC).isoformat()
    response = api(world.vera).get(LOGS, {"since": since, "until": until})
    assert _messages(response) == ["other function", "served /hello", "ERROR: disk full"]


def test_logs_page_with_a_cursor_until_the_end(api: Any, world: Any, acme_logs: float) -> None:
    client = api(world.vera)
    first = client.get(LOGS, {"limit": 2}).json()
    assert [r["message"] for r in first["results"]] == ["draft says Error too", "other function"]
    assert first["next"].startswith("http://testserver/t/acme/api/v1/logs/?")
    second = client.get(first["next"]).json()
    assert [r["message"] for r in second["results"]] == ["served /hello", "ERROR: disk full"]
    third = client.get(second["next"]).json()
    assert ([r["message"] for r in third["results"]], third["next"]) == (["starting up"], None)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"), ("limit=501", "limit"), ("stream=stdin", "stream"), ("version=v1", "version"),
        ("function=Bad_Name", "function"), ("since=yesterday", "since"), ("cursor=not-a-cursor", "cursor"),
        ("cursor=1-2-3", "cursor"), ("cursor=5-", "cursor"), ("cursor=-", "cursor"),
        ("cursor=99999999999999999999-1", "cursor"), (f"function={'f' * 41}", "function"),
        (f"function={'f' * 40}&version=v1234567", "version"),
        # Before the epoch no log store has a record, and the local one refused the bound (503).
        ("until=0600-01-25T18:35:58Z", "until"), ("since=1969-12-31T23:59:59Z", "since"),
        ("until=9999-12-31T23:59:59-01:00", "until"),  # past datetime's range once in UTC
    ],
)  # fmt: skip
def test_bad_log_queries_are_400_naming_the_field(
    api: Any, world: Any, acme_logs: float, query: str, field: str
) -> None:
    response = api(world.vera).get(f"{LOGS}?{query}")
    assert response.status_code == 400
    assert field in error_of(response)["detail"]


def test_a_deleted_tenants_lines_never_reach_the_tenant_that_reuses_its_slug(
    api: Any, world: Any, make_tenant: Any
) -> None:
    from tenants import provisioning, services

    old = time.time()
    _append("faas-globex", [_line("hello-v1", "the old globex's line", at=old)])
    services.tenant_delete_request(tenant=world.globex, confirm="globex")
    provisioning.tenant_delete(tenant_id=world.globex.pk)
    assert not redis.Redis.from_url(settings.REDIS_URL).exists(stream_name("faas-globex"))  # dropped
    _append("faas-globex", [_line("hello-v1", "written before the new tenant existed", at=time.time())])
    make_tenant("globex", admin=world.oscar)
    assert _messages(api(world.oscar).get("/t/globex/api/v1/logs/")) == []


def test_another_tenants_logs_stay_out_of_reach(api: Any, world: Any, acme_logs: float) -> None:
    assert _messages(api(world.oscar).get("/t/globex/api/v1/logs/")) == ["globex secret"]
    outsider = api(world.oscar).get(LOGS)
    assert (outsider.status_code, error_of(outsider)["code"]) == (404, "not_found")
    assert api().get(LOGS).status_code == 401


def test_logs_without_redis_are_503(api: Any, world: Any, settings: Any) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = api(world.vera).get(LOGS)
    assert (response.status_code, error_of(response)["code"]) == (503, "logs_unavailable")


# --- metrics without Prometheus ------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/t/acme/api/v1/metrics/", "/t/acme/api/v1/functions/hello/metrics/",
     "/t/acme/api/v1/functions/hello/metrics/series/", "/t/acme/api/v1/functions/hello/metrics/?by=version"],
)  # fmt: skip
def test_metrics_without_prometheus_are_503(api: Any, world: Any, hello: None, path: str) -> None:
    response = api(world.vera).get(path)
    assert response.status_code == 503
    error = error_of(response)
    assert error["code"] == "metrics_unavailable"
    assert "Prometheus" in error["message"]


def test_metrics_not_configured_are_503(api: Any, world: Any, hello: None, settings: Any) -> None:
    settings.PROMETHEUS_URL = ""
    response = api(world.vera).get("/t/acme/api/v1/metrics/")
    assert (response.status_code, error_of(response)["message"]) == (
        503, "Metrics are unavailable: PROMETHEUS_URL is not set.",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("range=2h", 400, "range"), ("by=day", 400, "by"), ("version=3", 400, "version"),
        ("version=v1&alias=live", 400, "non_field_errors"), ("version=v9", 404, None),
        ("alias=live", 404, None), ("path=/nowhere", 404, None),
    ],
)  # fmt: skip
def test_bad_metrics_queries(
    api: Any, world: Any, hello: None, query: str, status: int, field: str | None
) -> None:
    response = api(world.vera).get(f"/t/acme/api/v1/functions/hello/metrics/?{query}")
    assert response.status_code == status
    error = error_of(response)
    if field:
        assert field in error["detail"]


def test_another_tenants_metrics_are_404(api: Any, world: Any, hello: None) -> None:
    for path in ("/t/acme/api/v1/metrics/", "/t/acme/api/v1/functions/hello/metrics/"):
        assert api(world.oscar).get(path).status_code == 404
        assert api().get(path).status_code == 401
    # globex has no function "hello": acme's does not show through
    assert api(world.oscar).get("/t/globex/api/v1/functions/hello/metrics/").status_code == 404


# --- the portal's own /metrics ------------------------------------------------------------------


def test_portal_metrics_need_the_token(client: Any, settings: Any) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    client.get("/healthz")
    client.get("/login/")
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {settings.PORTAL_METRICS_TOKEN}")
    assert response.status_code == 200
    text = response.content.decode()
    assert 'portal_http_requests_total{method="GET",status="200",view="login"}' in text
    assert "portal_http_request_duration_seconds_bucket" in text
    settings.PORTAL_METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404
