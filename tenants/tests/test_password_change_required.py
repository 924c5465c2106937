"""A user created with a one-time password must choose their own before anything else: pages
send them to the password change page, the API refuses their session (403
``password_change_required``), a bearer token is not held back. And the members page: the
password shown once, outside the message banner; nothing of another tenant's members."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from dataplane.namespaces import TenantQuota
from functions.quotas import UNITS
from tenants import forms, passwords, services
from tenants.models import Invitation, Membership, PasswordChangeRequired
from testsupport.fixtures import error_of

pytestmark = pytest.mark.django_db

CHANGE = "/account/password/"
NEW_PASSWORD = "a much better secret 42"


@pytest.fixture
def newbie(world: Any) -> Any:
    """A viewer of acme created with a one-time password (services.membership_add: no page or
    API route offers it since people join by invitation, tenants/tests/test_invitations.py)."""
    new = services.membership_add(tenant=world.acme, username="newbie", role="viewer")
    assert new.initial_password
    return new.membership.user


def change_password(client: Any, old: str, new: str = NEW_PASSWORD) -> Any:
    return client.post(CHANGE, {"old_password": old, "new_password1": new, "new_password2": new})


# ------------------------------------------------------------------ the members page


def test_the_new_user_is_held_on_the_password_change_page_an_existing_one_is_not(world, newbie):
    assert passwords.password_change_required(newbie)
    services.membership_add(tenant=world.acme, username="oscar", role="viewer")  # exists: no new password
    assert not passwords.password_change_required(world.oscar)


def test_removing_a_member_is_asked_to_be_confirmed(world, client):
    client.force_login(world.alice)
    html = client.get("/t/acme/members/").content.decode()
    summary = '<summary role="button" class="secondary outline">Remove</summary>'
    assert f'<details class="confirm">{summary}' in html
    assert "Yes, remove bob" in html
    assert "onchange" not in html  # no inline handlers: the Content-Security-Policy will forbid them


# ------------------------------------------------------------------ the middleware


PAGES = ["/", "/t/acme/", "/t/acme/members/", "/t/acme/tokens/", "/platform/tenants/"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_sends_a_flagged_user_to_the_password_change_page(world, client, newbie, path):
    client.force_login(newbie)
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == CHANGE
    response = client.post(path, {"action": "invite", "email": "sneaky@example.org", "role": "viewer"})
    assert response.status_code == 302
    assert response["Location"] == CHANGE
    assert not Invitation.objects.filter(email="sneaky@example.org").exists()


def test_the_change_page_says_why_and_changing_releases_the_user(world, client, newbie):
    newbie.set_password("one-time")
    newbie.save()
    client.force_login(newbie)
    page = client.get(CHANGE)
    assert page.status_code == 200
    assert b"You signed in with a one-time password." in page.content

    wrong = change_password(client, "not-it")
    assert wrong.status_code == 200
    assert passwords.password_change_required(newbie)
    assert client.get("/t/acme/").status_code == 302

    done = change_password(client, "one-time")
    assert done.status_code == 302
    assert not PasswordChangeRequired.objects.filter(user=newbie).exists()
    assert client.get("/t/acme/").status_code == 200
    assert b"You signed in with a one-time password." not in client.get(CHANGE).content


def test_a_flagged_user_may_sign_out(world, client, newbie):
    client.force_login(newbie)
    response = client.post("/logout/")
    assert response.status_code == 302
    assert response["Location"] != CHANGE
    assert "_auth_user_id" not in client.session


def test_htmx_requests_are_sent_to_the_change_page_whole(world, client, newbie):
    client.force_login(newbie)
    response = client.post("/t/acme/tokens/", {"action": "revoke", "token": 1}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert response["HX-Redirect"] == CHANGE
    assert response.content == b""


def test_other_users_are_not_held(world, client):
    client.force_login(world.bob)
    assert client.get("/t/acme/").status_code == 200
    assert client.get(CHANGE).status_code == 200


# ------------------------------------------------------------------ the API


@pytest.mark.parametrize("path", ["/t/acme/api/v1/me/", "/t/acme/api/v1/members/", "/api/v1/me/"])
def test_the_api_refuses_a_flagged_users_session_in_the_error_shape(world, api, newbie, path):
    response = api(newbie).get(path)
    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "password_change_required"
    assert "one-time password" in error["message"]
    assert error["detail"] == {"password_change_url": CHANGE}


def test_a_bearer_token_is_not_held_back(world, api, newbie, token_for):
    secret = token_for(newbie, world.acme, "viewer")
    response = api(token=secret).get("/t/acme/api/v1/me/")
    assert response.status_code == 200
    assert response.json()["username"] == "newbie"


def test_a_bearer_header_does_not_open_the_pages(world, client, newbie, token_for):
    secret = token_for(newbie, world.acme, "viewer")
    client.force_login(newbie)
    response = client.get("/t/acme/", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 302
    assert response["Location"] == CHANGE


def test_a_bad_bearer_token_with_a_flagged_session_is_refused(world, api, newbie):
    client = api(newbie, token="fpt_nope_nope")
    response = client.get("/t/acme/api/v1/me/")
    assert response.status_code == 401
    assert error_of(response)["code"] == "not_authenticated"


# ------------------------------------------------------------------ one tenant's admin, another's members


def test_an_admin_cannot_see_another_tenants_members(world, client):
    client.force_login(world.alice)  # admin of acme; oscar is globex's admin
    assert client.get("/t/globex/members/").status_code == 404
    html = client.get("/t/acme/members/").content.decode()
    assert "oscar" not in html


def test_an_admin_cannot_change_another_tenants_members(world, client):
    oscar = Membership.objects.get(user=world.oscar, tenant=world.globex)
    client.force_login(world.alice)

    invite = {"action": "invite", "email": "intruder@example.org", "role": "admin"}
    assert client.post("/t/globex/members/", invite).status_code == 404
    role = client.post("/t/acme/members/", {"action": "role", "membership": oscar.pk, "role": "viewer"})
    remove = client.post("/t/acme/members/", {"action": "remove", "membership": oscar.pk})

    assert role.status_code == remove.status_code == 404
    oscar.refresh_from_db()
    assert oscar.role == "admin"
    assert not Invitation.objects.exists()
    assert not PasswordChangeRequired.objects.exists()


# ------------------------------------------------------------------ quota labels


def test_every_quota_has_a_label_in_words():
    names = {field.name for field in dataclasses.fields(TenantQuota)} | set(UNITS)
    assert names <= set(forms.QUOTA_LABELS)
    assert forms.QUOTA_LABELS["httptriggers"] == "HTTP triggers"


def test_the_quota_page_names_quotas_in_words(world, client):
    client.force_login(world.vera)
    html = client.get("/t/acme/quota/").content.decode()
    assert '<th scope="row">HTTP triggers</th>' in html
    assert '<th scope="row">Memory limit, all pods</th><td>0.0 KiB</td><td>16384 MiB</td>' in html
    assert ">httptriggers<" not in html


def test_the_platform_quota_form_labels_say_the_unit(world, client):
    client.force_login(world.admin)
    form = client.get("/platform/tenants/acme/").context["quota_form"]
    assert form["httptriggers"].label == "HTTP triggers"
    assert form["memory_limits"].label == "Memory limit, all pods (bytes, e.g. 512Mi or 4Gi)"
    assert form["cpu_requests"].label == "CPU requested, all pods (cores, e.g. 2 or 500m)"


def test_the_one_time_password_cannot_be_chosen_again(world, client, newbie):
    newbie.set_password("one-time-pass-123")  # a one-time password this test knows
    newbie.save()
    client.force_login(newbie)
    response = change_password(client, "one-time-pass-123", "one-time-pass-123")
    assert response.status_code == 200
    assert "Choose a password other than the current one." in response.content.decode()
    assert passwords.password_change_required(newbie)
