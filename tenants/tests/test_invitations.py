"""Invitations (tenants/invitations.py): a tenant admin invites an e-mail address and learns
nothing about the platform's accounts; nobody joins until they open the link and accept."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from audit.models import AuditRecord
from portal.models import User
from tenants import invitations
from tenants.models import Invitation, Membership
from testsupport.fixtures import error_of

pytestmark = pytest.mark.django_db

MEMBERS = "/t/acme/members/"
API = "/t/acme/api/v1/invitations/"
LINK = re.compile(
    r'<p class="secret" id="invitation-link" data-secret>(http://testserver/invitations/(fpi_\S+)/)</p>'
)
# What differs between any two invitations: their links, expiry times and CSRF tokens.
VARYING = re.compile(
    r'http://testserver/invitations/fpi_\S+/|<time.*?</time>|name="csrfmiddlewaretoken" value="[^"]+"'
)
CSRF = re.compile(r'"X-CSRFToken": "[^"]+"')
GOOD_PASSWORD = "a long and unusual passphrase 42"


def invite(client: Any, email: str, role: str = "viewer", tenant: str = "acme") -> Any:
    return client.post(f"/t/{tenant}/members/", {"action": "invite", "email": email, "role": role})


def invite_page(client: Any, email: str, role: str = "viewer") -> tuple[Any, str]:
    """Invite through the page: the members page that shows the link, and the link's path."""
    assert invite(client, email, role).status_code == 302
    page = client.get(MEMBERS)
    match = LINK.search(page.content.decode())
    assert match, page.content.decode()
    return page, f"/invitations/{match.group(2)}/"


def issued(world: Any, email: str = "new@example.org", role: str = "developer") -> tuple[Invitation, str]:
    made = invitations.invitation_create(tenant=world.acme, email=email, role=role, invited_by=world.alice)
    return made.invitation, f"/invitations/{made.secret}/"


# ------------------------------------------------------------------ the admin's side


def test_an_invitation_link_is_shown_once_outside_the_banner_and_in_its_tenant_only(world, client):
    client.force_login(world.admin)  # a platform admin manages both tenants
    page, path = invite_page(client, "carol@example.org", "developer")

    html = page.content.decode()
    assert 'data-copy="invitation-link"' in html
    assert [str(m) for m in page.context["messages"]] == [
        "Invitation for carol@example.org made: send them the link below."
    ]
    assert path not in str(list(page.context["messages"]))
    assert page["Cache-Control"].startswith("max-age=0")  # never_cache: the link is in it
    assert path not in client.get(MEMBERS).content.decode()  # once
    assert client.get("/t/globex/members/").context["new_invitation"] is None
    invitation = Invitation.objects.get()
    assert (invitation.email, invitation.role, invitation.invited_by) == (
        "carol@example.org",
        "developer",
        world.admin,
    )
    assert path.split("/")[2] not in (invitation.digest, invitation.key_id)  # only its digest is kept


def test_inviting_reveals_nothing_about_accounts_and_adds_nobody(world, client):
    """oscar@example.org is globex's admin; nobody has ghost@example.org: the admin sees the
    same answer for both, and neither joins nor changes until the link is accepted."""
    world.oscar.email = "oscar@example.org"
    world.oscar.save()
    users_before = list(User.objects.order_by("pk").values_list("pk", "username", "email", "password"))
    client.force_login(world.alice)

    seen = {}
    for email in ("oscar@example.org", "ghost@example.org"):
        response = invite(client, email)
        page = client.get(MEMBERS)
        html = page.content.decode()
        box = re.search(r"<article data-one-time-link.*?</article>", html, re.S)
        row = re.search(rf'<tr data-invitation="{re.escape(email)}">.*?</tr>', html, re.S)
        assert box, html
        assert row, html
        shown = box.group(0) + row.group(0) + str([str(m) for m in page.context["messages"]])
        shown = re.sub(r'value="\d+"', "", VARYING.sub("", shown).replace(email, "<email>"))
        seen[email] = (response.status_code, response["Location"], shown)

    assert seen["oscar@example.org"] == seen["ghost@example.org"]
    assert (
        list(User.objects.order_by("pk").values_list("pk", "username", "email", "password")) == users_before
    )
    assert not Membership.objects.filter(tenant=world.acme, user=world.oscar).exists()


def test_a_bad_invitation_is_refused_under_its_field_and_changes_nothing(world, client):
    client.force_login(world.alice)
    response = invite(client, "not an address", "developer")
    assert response.status_code == 302
    page = client.get(MEMBERS)
    assert "Enter a valid email address." in page.content.decode()
    assert not Invitation.objects.exists()


@pytest.mark.parametrize("persona", ["bob", "vera", "oscar"])
def test_only_the_tenants_admins_invite(world, client, persona):
    client.force_login(getattr(world, persona))
    response = invite(client, "x@example.org", "admin")
    assert response.status_code == (404 if persona == "oscar" else 403)
    assert not Invitation.objects.exists()


def test_an_admin_withdraws_an_invitation_and_its_link_stops_working(world, client):
    invitation, path = issued(world)
    client.force_login(world.alice)
    assert f'data-invitation="{invitation.email}"' in client.get(MEMBERS).content.decode()

    response = client.post(MEMBERS, {"action": "withdraw", "invitation": invitation.pk})

    assert response.status_code == 302
    invitation.refresh_from_db()
    assert invitation.revoked_at is not None
    assert client.get(path).status_code == 404
    assert f'data-invitation="{invitation.email}"' not in client.get(MEMBERS).content.decode()


def test_another_tenants_invitation_cannot_be_withdrawn(world, client):
    made = invitations.invitation_create(
        tenant=world.globex, email="g@example.org", role="viewer", invited_by=None
    )
    client.force_login(world.alice)
    assert client.post(MEMBERS, {"action": "withdraw", "invitation": made.invitation.pk}).status_code == 404
    assert client.post(MEMBERS, {"action": "withdraw", "invitation": "1 OR 1=1"}).status_code == 404
    made.invitation.refresh_from_db()
    assert made.invitation.revoked_at is None


# ------------------------------------------------------------------ the invitee's side


def test_a_new_person_creates_their_account_from_the_link_and_joins(world, client):
    invitation, path = issued(world, "carol@example.org", "developer")

    page = client.get(path)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Join Acme" in html
    assert "Developer" in html

    response = client.post(
        path, {"username": "carol", "password1": GOOD_PASSWORD, "password2": GOOD_PASSWORD}
    )

    assert response.status_code == 302
    assert response["Location"] == "/t/acme/"
    carol = User.objects.get(username="carol")
    assert carol.email == "carol@example.org"
    assert carol.check_password(GOOD_PASSWORD)
    assert Membership.objects.get(tenant=world.acme, user=carol).role == "developer"
    assert client.get("/t/acme/api/v1/me/").json()["role"] == "developer"  # signed in as carol
    invitation.refresh_from_db()
    assert invitation.accepted_by == carol
    assert invitation.accepted_at is not None
    client.logout()
    assert client.get(path).status_code == 404  # once


def test_a_weak_password_or_a_taken_name_is_refused_in_words_and_nothing_is_made(world, client):
    invitation, path = issued(world)
    weak = client.post(path, {"username": "carol", "password1": "password", "password2": "password"})
    taken = client.post(path, {"username": "bob", "password1": GOOD_PASSWORD, "password2": GOOD_PASSWORD})
    assert weak.status_code == taken.status_code == 200
    assert "This password is too common." in weak.content.decode()
    assert "A user with that username already exists." in taken.content.decode()
    assert not User.objects.filter(username="carol").exists()
    assert Membership.objects.filter(tenant=world.acme).count() == 3
    invitation.refresh_from_db()
    assert invitation.accepted_at is None


def test_another_tenants_user_joins_only_by_accepting_signed_in(world, client):
    _invitation, path = issued(world, "oscar@example.org", "viewer")
    client.force_login(world.oscar)

    page = client.get(path)
    assert "You join as <strong>oscar</strong>" in page.content.decode()
    assert not Membership.objects.filter(tenant=world.acme, user=world.oscar).exists()  # not yet

    response = client.post(path)

    assert response.status_code == 302
    assert response["Location"] == "/t/acme/"
    assert Membership.objects.get(tenant=world.acme, user=world.oscar).role == "viewer"
    assert Membership.objects.get(tenant=world.globex, user=world.oscar).role == "admin"  # unchanged


def test_a_member_accepting_again_is_told_and_the_invitation_stays_usable(world, client):
    invitation, path = issued(world)
    client.force_login(world.bob)
    response = client.post(path, follow=True)
    assert "You are already a member of Acme." in response.content.decode()
    assert Membership.objects.get(tenant=world.acme, user=world.bob).role == "developer"
    invitation.refresh_from_db()
    assert invitation.accepted_at is None


def test_every_link_that_cannot_be_accepted_gets_the_same_answer(world, client):
    used, used_path = issued(world, "a@example.org")
    invitations.invitation_accept(invitation=used, user=world.oscar)
    withdrawn, withdrawn_path = issued(world, "b@example.org")
    invitations.invitation_revoke(invitation=withdrawn)
    expired, expired_path = issued(world, "c@example.org")
    Invitation.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    _, good_path = issued(world, "d@example.org")
    forged = good_path[:-4] + ("AAA/" if not good_path.endswith("AAA/") else "BBB/")
    paths = [
        used_path,
        withdrawn_path,
        expired_path,
        forged,
        "/invitations/fpi_000000000000_x/",
    ]

    answers = [client.get(path) for path in paths]

    assert {a.status_code for a in answers} == {404}
    assert len({CSRF.sub("", a.content.decode()) for a in answers}) == 1  # a masked token differs
    assert b"This invitation link does not work" in answers[0].content
    assert all(client.post(path).status_code == 404 for path in paths)
    assert not Membership.objects.filter(tenant=world.acme, user__username="").exists()


def test_the_audit_trail_records_invitations_without_their_secret(world, client):
    invitation, path = issued(world, "carol@example.org", "viewer")
    client.post(path, {"username": "carol", "password1": GOOD_PASSWORD, "password2": GOOD_PASSWORD})
    _, other = issued(world, "dave@example.org")
    invitations.invitation_revoke(invitation=Invitation.objects.get(email="dave@example.org"))

    records = AuditRecord.objects.filter(object_type="invitation").order_by("pk")
    assert [r.action for r in records] == [
        "invitation.create",
        "invitation.accept",
        "invitation.create",
        "invitation.revoke",
    ]
    text = str([(r.changes, r.object_name) for r in records])
    for secret in (path.split("/")[2], other.split("/")[2], invitation.digest):
        assert secret not in text


# ------------------------------------------------------------------ the API


def test_the_api_invites_lists_and_withdraws(world, api):
    response = api(world.alice).post(API, {"email": "carol@example.org", "role": "developer"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert re.fullmatch(r"http://testserver/invitations/fpi_[0-9a-f]{12}_[\w-]{43}/", body["url"])
    assert (body["email"], body["role"], body["invited_by"]) == ("carol@example.org", "developer", "alice")

    listed = api(world.alice).get(API).json()["results"]
    assert [i["email"] for i in listed] == ["carol@example.org"]
    assert "url" not in listed[0]

    assert api(world.alice).delete(f"{API}{body['id']}/").status_code == 204
    assert api(world.alice).get(API).json()["results"] == []


def test_the_api_refuses_a_bad_invitation_in_the_error_shape(world, api):
    response = api(world.alice).post(API, {"email": "nope", "role": "owner"}, format="json")
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid"
    assert set(error["detail"]) == {"email", "role"}
    assert not Invitation.objects.exists()


@pytest.mark.parametrize("persona", ["bob", "vera"])
def test_only_tenant_admins_see_or_make_invitations_by_api(world, api, persona):
    issued(world)
    client = api(getattr(world, persona))
    assert client.get(API).status_code == 403
    assert client.post(API, {"email": "x@example.org", "role": "viewer"}, format="json").status_code == 403
    assert Invitation.objects.count() == 1


def test_another_tenants_invitations_are_not_found_by_api(world, api):
    made = invitations.invitation_create(
        tenant=world.globex, email="g@example.org", role="viewer", invited_by=None
    )
    assert api(world.alice).get(f"{API}{made.invitation.pk}/").status_code == 404
    assert api(world.alice).delete(f"{API}{made.invitation.pk}/").status_code == 404
    made.invitation.refresh_from_db()
    assert made.invitation.revoked_at is None
