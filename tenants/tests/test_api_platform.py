from __future__ import annotations

import pytest

from tenants.models import Invitation, Tenant, TenantState
from testsupport.fixtures import error_of

pytestmark = pytest.mark.django_db

URL = "/api/v1/tenants/"


def test_platform_admin_lists_tenants_without_the_public_one(world, api):
    response = api(world.admin).get(URL)
    assert response.status_code == 200
    assert [t["slug"] for t in response.json()["results"]] == ["acme", "globex"]


def test_tenant_api_requires_authentication(world, api):
    response = api().get(URL)
    assert response.status_code == 401
    assert error_of(response)["code"] == "not_authenticated"


@pytest.mark.parametrize("persona", ["alice", "bob", "oscar"])
def test_tenant_api_requires_platform_admin(world, api, persona):
    response = api(getattr(world, persona)).post(URL, {"slug": "evil"}, format="json")
    assert response.status_code == 403
    assert api(getattr(world, persona)).get(URL).status_code == 403
    assert not Tenant.objects.filter(slug="evil").exists()


def test_tenant_token_cannot_use_platform_api(world, api, token_for):
    secret = token_for(world.alice, world.acme, "admin")
    assert api(token=secret).get(URL).status_code == 403


def test_platform_token_works(world, api):
    from tenants.services import token_create

    secret = token_create(tenant=None, user=world.admin, name="ops", role="platform_admin").secret
    assert api(token=secret).get(URL).status_code == 200


def test_create_tenant_is_accepted_and_queued(world, api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api(world.admin).post(URL, {"slug": "initech", "name": "Initech"}, format="json")
    assert response.status_code == 202
    assert response.json()["state"] == "provisioning"
    tenant = Tenant.objects.get(slug="initech")
    assert tenant.schema_name == "t_initech"
    assert callbacks  # the provisioning task is queued after commit


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"slug": "Bad Slug"}, 400),
        ({"slug": "-x"}, 400),
        ({"slug": "a" * 41}, 400),
        ({"slug": "public"}, 400),
        ({"slug": 12}, 400),
        ({}, 400),
        ({"slug": "acme"}, 409),
    ],
)
def test_bad_tenant_input(world, api, body, status):
    before = Tenant.objects.count()
    response = api(world.admin).post(URL, body, format="json")
    assert response.status_code == status, response.json()
    error_of(response)
    assert Tenant.objects.count() == before


def test_suspend_and_resume(world, api):
    response = api(world.admin).patch(f"{URL}acme/", {"suspended": True}, format="json")
    assert response.status_code == 200
    assert response.json()["suspended"] is True
    # members can still read but not write
    assert api(world.alice).get("/t/acme/api/v1/members/").status_code == 200
    invite = {"email": "z@example.org", "role": "viewer"}
    write = api(world.alice).post("/t/acme/api/v1/invitations/", invite, format="json")
    assert write.status_code == 403
    assert error_of(write)["code"] == "tenant_suspended"
    assert not Invitation.objects.exists()
    api(world.admin).patch(f"{URL}acme/", {"suspended": False}, format="json")
    ok = api(world.alice).post("/t/acme/api/v1/invitations/", invite, format="json")
    assert ok.status_code == 201


def test_delete_needs_confirmation(world, api):
    response = api(world.admin).delete(f"{URL}acme/")
    assert response.status_code == 400
    assert error_of(response)["detail"] == {"confirm": ["acme"]}
    assert Tenant.objects.get(slug="acme").state == TenantState.READY
    response = api(world.admin).delete(f"{URL}acme/?confirm=acme")
    assert response.status_code == 202
    assert response.json()["state"] == "deleting"


def test_retry_only_for_failed(world, api):
    response = api(world.admin).post(f"{URL}acme/retry/")
    assert response.status_code == 409
    Tenant.objects.filter(slug="acme").update(state=TenantState.FAILED, state_reason="boom")
    response = api(world.admin).post(f"{URL}acme/retry/")
    assert response.status_code == 202
    assert response.json()["state"] == "provisioning"


def test_unknown_tenant_is_404(world, api):
    response = api(world.admin).get(f"{URL}nosuch/")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_me_lists_my_tenants(world, api):
    body = api(world.bob).get("/api/v1/me/").json()
    assert body["username"] == "bob"
    assert body["is_platform_admin"] is False
    assert [(t["slug"], t["role"]) for t in body["tenants"]] == [("acme", "developer")]
    assert api().get("/api/v1/me/").status_code == 401
