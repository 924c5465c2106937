"""Bad input of every kind gets a 4xx in the one error shape; nothing gets a 500."""

from __future__ import annotations

import pytest
from django.test import override_settings

from tenants.models import ApiToken, Membership
from testsupport.fixtures import error_of

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path", ["/t/nosuch/api/v1/members/", "/t/nosuch/api/v1/me/", "/t/Bad_Slug!/api/v1/"]
)
def test_unknown_tenant_anonymous_is_401_like_a_real_one(world, api, path):
    response = api().get(path)
    assert response.status_code == 401
    assert error_of(response) == error_of(api().get("/t/acme/api/v1/members/"))


def test_unknown_api_path_in_a_tenant_is_404_json(world, api):
    response = api(world.alice).get("/t/acme/api/v1/nothing-here/")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_unknown_public_api_path_is_404_json(api):
    response = api().get("/api/v1/nothing/")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_malformed_json_is_400(world, api):
    response = api(world.alice).generic(
        "POST", "/t/acme/api/v1/tokens/", '{"name": "x",', content_type="application/json"
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "malformed"
    assert not ApiToken.objects.exists()


def test_wrong_content_type_is_415(world, api):
    response = api(world.alice).generic("POST", "/t/acme/api/v1/tokens/", "name=x", content_type="text/plain")
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


@pytest.mark.parametrize(
    "body",
    [
        {"name": ["x"], "role": "viewer"},
        {"name": "x", "role": 3},
        {"name": "x", "role": "viewer", "expires_at": "tomorrow"},
        {"name": {"a": 1}},
        "just a string",
        None,
    ],
)
def test_wrong_types_are_400(world, api, body):
    response = api(world.alice).post("/t/acme/api/v1/tokens/", body, format="json")
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid"
    assert not ApiToken.objects.exists()


@override_settings(MAX_REQUEST_BYTES=2048)
def test_oversized_body_is_413(world, api):
    before = Membership.objects.count()
    body = {"username": "x" * 5000, "role": "viewer"}
    response = api(world.alice).post("/t/acme/api/v1/members/", body, format="json")
    assert response.status_code == 413
    assert error_of(response)["code"] == "too_large"
    assert Membership.objects.count() == before


def test_method_not_allowed_is_405(world, api):
    response = api(world.alice).put("/t/acme/api/v1/members/", {}, format="json")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


def test_non_numeric_ids_are_404(world, api):
    assert api(world.alice).get("/t/acme/api/v1/members/abc/").status_code == 404
    assert api(world.alice).delete("/t/acme/api/v1/tokens/1e9/").status_code == 404


def test_pagination_parameters(world, api, token_for):
    for _ in range(3):
        token_for(world.alice, world.acme, "viewer")
    page = api(world.alice).get("/t/acme/api/v1/tokens/?limit=2&offset=0").json()
    assert page["count"] == 3
    assert len(page["results"]) == 2
    assert page["next"]
    bad = api(world.alice).get("/t/acme/api/v1/tokens/?limit=abc")
    assert bad.status_code == 200  # DRF ignores an unusable limit and uses the default
    assert len(bad.json()["results"]) == 3


def test_csrf_is_enforced_for_session_writes(world):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    client.force_login(world.alice)
    response = client.post("/t/acme/api/v1/tokens/", {"name": "x", "role": "viewer"}, format="json")
    assert response.status_code == 403
    assert error_of(response)["code"] == "permission_denied"
    assert not ApiToken.objects.exists()


def test_invalid_content_length_is_400(world, api):
    response = api(world.alice).generic(
        "POST", "/t/acme/api/v1/tokens/", "{}", content_type="application/json", CONTENT_LENGTH="abc"
    )
    assert response.status_code == 400


# PostgreSQL stores no NUL in text or jsonb: a lookup or a save with one failed (a 500).
@pytest.mark.parametrize(
    "url",
    [
        "/t/ac%00me/api/v1/members/",  # the tenant lookup
        "/t/acme/api/v1/environments/py%00thon/",
        "/t/acme/api/v1/logs/?q=a%00b",
        "/api/v1/tenants/?x=%00",
    ],
)
def test_a_nul_in_the_url_is_400(world, api, url):
    response = api(world.alice).get(url)
    assert response.status_code == 400
    assert error_of(response)["code"] == "malformed"


def test_a_nul_in_a_page_url_is_400_too(world, client):
    client.force_login(world.alice)
    response = client.get("/t/ac%00me/functions/")
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "role": "viewer", "expires_at": None, "extra\u0000key": 1}, "extra\u0000key"),
        ({"name": "x\u0000", "role": "viewer"}, "name"),
    ],
)
def test_a_nul_anywhere_in_a_json_body_is_400_naming_the_field(world, api, body, field):
    response = api(world.alice).post("/t/acme/api/v1/tokens/", body, format="json")
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], list(error["detail"])) == ("invalid", [field])
    assert not ApiToken.objects.exists()
