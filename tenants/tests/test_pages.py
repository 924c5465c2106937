"""Tenant and platform pages: access by role, and nothing of one tenant visible from another."""

from __future__ import annotations

import re

import pytest

from tenants.models import ApiToken, Invitation, Membership, Tenant
from tenants.roles import Role

pytestmark = pytest.mark.django_db

TENANT_PAGES = ["/t/acme/", "/t/acme/members/", "/t/acme/tokens/", "/t/acme/quota/"]


@pytest.mark.parametrize("path", TENANT_PAGES)
def test_members_see_tenant_pages(world, client, path):
    for user in (world.alice, world.bob, world.vera):
        client.force_login(user)
        response = client.get(path)
        assert response.status_code == 200
        assert b"Acme" in response.content


@pytest.mark.parametrize("path", [*TENANT_PAGES, "/t/nosuch/", "/t/nosuch/members/"])
def test_anonymous_is_sent_to_login(world, client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={path}"


@pytest.mark.parametrize("path", TENANT_PAGES)
def test_outsider_gets_404_like_for_an_unknown_tenant(world, client, path):
    client.force_login(world.oscar)
    response = client.get(path)
    unknown = client.get(path.replace("acme", "nosuch"))
    assert response.status_code == unknown.status_code == 404
    assert b"Acme" not in response.content


def test_switcher_lists_only_my_tenants(world, client):
    client.force_login(world.bob)
    content = client.get("/t/acme/").content.decode()
    assert 'value="acme"' in content
    assert 'value="globex"' not in content


def test_the_switcher_comes_with_the_role_and_says_the_same_as_on_its_own(world, client):
    """tenant_page reads the role and the switcher's tenants in one query; a page outside it (the
    home page) reads them the other way. Both list the same tenants, by slug, and a role change
    shows at once."""
    Membership.objects.create(user=world.bob, tenant=world.globex, role=Role.VIEWER)
    client.force_login(world.bob)
    options = re.compile(r'<option value="([a-z0-9-]+)"')
    tenant_page = client.get("/t/globex/").content.decode()
    home = client.get("/").content.decode()
    assert options.findall(tenant_page) == options.findall(home) == ["acme", "globex"]
    assert client.post("/t/globex/functions/", {"name": "x"}).status_code == 403  # a viewer there
    Membership.objects.filter(user=world.bob, tenant=world.globex).delete()
    assert client.get("/t/globex/").status_code == 404
    assert options.findall(client.get("/t/acme/").content.decode()) == ["acme"]
    client.force_login(world.admin)  # a platform admin: every tenant, the other way
    assert options.findall(client.get("/t/acme/").content.decode()) == ["acme", "globex"]


def test_admin_invites_through_the_page(world, client):
    client.force_login(world.alice)
    invite = {"action": "invite", "email": "newbie@example.org", "role": "viewer"}
    response = client.post("/t/acme/members/", invite)
    assert response.status_code == 302
    assert Invitation.objects.get(email="newbie@example.org").tenant == world.acme
    follow = client.get("/t/acme/members/")
    assert b"Invitation link for newbie@example.org" in follow.content


def test_developer_cannot_change_members_through_the_page(world, client):
    client.force_login(world.bob)
    invite = {"action": "invite", "email": "newbie@example.org", "role": "admin"}
    response = client.post("/t/acme/members/", invite)
    assert response.status_code == 403
    assert not Invitation.objects.exists()


def test_admin_cannot_touch_other_tenants_member_by_id(world, client):
    oscar = Membership.objects.get(user=world.oscar)
    client.force_login(world.alice)
    response = client.post("/t/acme/members/", {"action": "remove", "membership": oscar.pk})
    assert response.status_code == 404
    assert Membership.objects.filter(pk=oscar.pk).exists()


def test_token_created_in_the_page_is_shown_once(world, client):
    client.force_login(world.vera)
    response = client.post("/t/acme/tokens/", {"action": "create", "name": "laptop", "role": "viewer"})
    assert response.status_code == 200
    token = ApiToken.objects.get(user=world.vera)
    secret = response.context["new_secret"]
    assert secret.startswith(f"fpt_{token.key_id}_")
    assert secret.encode() in response.content
    assert secret.encode() not in client.get("/t/acme/tokens/").content


def test_page_token_role_is_capped(world, client):
    client.force_login(world.vera)
    client.post("/t/acme/tokens/", {"action": "create", "name": "x", "role": "admin"})
    assert not ApiToken.objects.exists()


def test_suspended_tenant_pages_are_read_only(world, client):
    Tenant.objects.filter(pk=world.acme.pk).update(suspended=True)
    client.force_login(world.alice)
    assert client.get("/t/acme/members/").status_code == 200
    invite = {"action": "invite", "email": "newbie@example.org", "role": "viewer"}
    response = client.post("/t/acme/members/", invite)
    assert response.status_code == 403
    assert b"suspended" in response.content
    assert not Invitation.objects.exists()


def test_tenant_not_ready_page(world, client):
    Tenant.objects.filter(pk=world.acme.pk).update(state="provisioning")
    client.force_login(world.alice)
    response = client.get("/t/acme/")
    assert response.status_code == 409
    assert b"provisioning" in response.content


def test_platform_pages_need_platform_admin(world, client):
    client.force_login(world.alice)
    assert client.get("/platform/tenants/").status_code == 403
    assert client.post("/platform/tenants/", {"slug": "evil"}).status_code == 403
    assert not Tenant.objects.filter(slug="evil").exists()
    client.force_login(world.admin)
    response = client.get("/platform/tenants/")
    assert response.status_code == 200
    assert b"acme" in response.content


def test_platform_admin_creates_suspends_and_deletes(world, client, django_capture_on_commit_callbacks):
    client.force_login(world.admin)
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post("/platform/tenants/", {"slug": "initech", "name": "Initech"})
    assert response.status_code == 302
    assert response["Location"] == "/platform/tenants/initech/"
    client.post("/platform/tenants/acme/", {"action": "suspend"})
    assert Tenant.objects.get(slug="acme").suspended
    client.post("/platform/tenants/acme/", {"action": "delete", "confirm": "wrong"})
    assert Tenant.objects.get(slug="acme").state == "ready"
    with django_capture_on_commit_callbacks(execute=False):
        client.post("/platform/tenants/acme/", {"action": "delete", "confirm": "acme"})
    assert Tenant.objects.get(slug="acme").state == "deleting"


def test_home_redirects_to_the_only_tenant(world, client):
    client.force_login(world.bob)
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/t/acme/"
    client.force_login(world.admin)
    assert client.get("/").status_code == 200


def test_revoke_with_htmx_returns_the_row(world, client, token_for):
    token_for(world.bob, world.acme, "viewer")
    token = ApiToken.objects.get(user=world.bob)
    client.force_login(world.bob)
    response = client.post("/t/acme/tokens/", {"action": "revoke", "token": token.pk}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert response.content.decode().strip().startswith(f'<tr id="token-{token.pk}">')
    assert b"revoked" in response.content
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_revoke_someone_elses_token_through_the_page_is_404(world, client, token_for):
    token_for(world.vera, world.acme, "viewer")
    token = ApiToken.objects.get(user=world.vera)
    client.force_login(world.bob)
    response = client.post("/t/acme/tokens/", {"action": "revoke", "token": token.pk})
    assert response.status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_the_quota_page_shows_usage_against_the_limit(world, client):
    Tenant.objects.filter(slug="acme").update(quota={"pods": 30})
    client.force_login(world.vera)

    response = client.get("/t/acme/quota/")

    assert response.status_code == 200
    html = response.content.decode()
    assert '<tr data-quota="pods">' in html
    assert "<td>0</td><td>30</td>" in html
    assert "16384 MiB" in html  # the default memory_limits


def test_the_platform_admin_saves_a_quota_in_the_page(world, client, django_capture_on_commit_callbacks):
    client.force_login(world.admin)
    page = client.get("/platform/tenants/acme/")
    form = page.context["quota_form"]
    data = {name: field.initial for name, field in form.fields.items()}
    data.update(action="quota", pods=12, memory_limits="12Gi", internet_egress="on")

    with django_capture_on_commit_callbacks(execute=False):
        response = client.post("/platform/tenants/acme/", data)

    assert response.status_code == 302
    tenant = Tenant.objects.get(slug="acme")
    assert tenant.quota == {"pods": 12, "memory_limits": "12Gi"}
    assert tenant.internet_egress is True


def test_a_bad_quota_in_the_page_changes_nothing(world, client):
    client.force_login(world.admin)
    form = client.get("/platform/tenants/acme/").context["quota_form"]
    data = {name: field.initial for name, field in form.fields.items()}
    data.update(action="quota", memory_limits="1Mi")  # below the requests

    response = client.post("/platform/tenants/acme/", data, follow=True)

    assert "memory_requests" in response.content.decode()
    assert Tenant.objects.get(slug="acme").quota == {}
