from __future__ import annotations

import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db


@pytest.mark.django_db
def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_when_everything_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "ok"}


def test_readyz_is_503_when_redis_is_unreachable(client):
    from portal.embedded import free_port

    with override_settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"):
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()["error"]
    assert body["code"] == "not_ready"
    assert set(body["detail"]) == {"redis"}


def test_readyz_is_503_when_the_database_is_unreachable(client, monkeypatch):
    from portal import views

    def broken() -> str:
        return "OperationalError"

    monkeypatch.setattr(views, "_check_database", broken)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert set(response.json()["error"]["detail"]) == {"database"}


def test_healthz_does_not_touch_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert client.get("/healthz").status_code == 200


def test_database_outage_is_503_not_500(world, monkeypatch):
    from django.db import OperationalError
    from django.test import Client

    from tenants import auth

    def down(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(auth, "token_resolve", down)
    client = Client(raise_request_exception=False)
    response = client.get("/t/acme/api/v1/me/", HTTP_AUTHORIZATION="Bearer fpt_000000000000_" + "a" * 43)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"
    assert response["Retry-After"] == "5"
