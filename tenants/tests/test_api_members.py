from __future__ import annotations

import jsonschema
import pytest

from tenants.models import Invitation, Membership
from tenants.roles import Role
from testsupport.fixtures import error_of

pytestmark = pytest.mark.django_db

URL = "/t/acme/api/v1/members/"


def test_member_list_works_for_every_role(world, api):
    for user in (world.alice, world.bob, world.vera):
        response = api(user).get(URL)
        assert response.status_code == 200
        usernames = sorted(m["username"] for m in response.json()["results"])
        assert usernames == ["alice", "bob", "vera"]


def test_a_member_without_an_email_matches_the_documented_schema(world, api, client):
    members = api(world.alice).get(URL).json()["results"]
    assert {m["email"] for m in members} == {""}  # the personas were made without one
    document = client.get("/api/schema/?format=json").json()
    email = document["components"]["schemas"]["Membership"]["properties"]["email"]
    jsonschema.validate("", email, format_checker=jsonschema.FormatChecker())


def test_member_list_requires_authentication(world, api):
    response = api().get(URL)
    assert response.status_code == 401
    assert error_of(response)["code"] == "not_authenticated"


def test_member_list_hides_other_tenants(world, api):
    response = api(world.oscar).get(URL)
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"
    # ...exactly as for a tenant that does not exist
    assert api(world.oscar).get("/t/nosuch/api/v1/members/").json() == response.json()


@pytest.mark.parametrize("persona", ["alice", "bob", "vera"])
def test_nobody_adds_members_directly_people_join_by_invitation(world, api, persona):
    """Adding by username told an admin whether the user existed anywhere and joined them
    unasked; the collection takes no POST at all (tenants/tests/test_invitations.py)."""
    response = api(getattr(world, persona)).post(URL, {"username": "oscar", "role": "viewer"}, format="json")
    assert response.status_code in (403, 405)
    if persona == "alice":
        assert response.status_code == 405
        assert error_of(response)["code"] == "method_not_allowed"
    assert not Membership.objects.filter(tenant=world.acme, user=world.oscar).exists()


def test_admin_changes_role(world, api):
    bob = Membership.objects.get(tenant=world.acme, user=world.bob)
    response = api(world.alice).patch(f"{URL}{bob.pk}/", {"role": "viewer"}, format="json")
    assert response.status_code == 200
    bob.refresh_from_db()
    assert bob.role == Role.VIEWER


def test_last_admin_cannot_be_demoted_or_removed(world, api):
    alice = Membership.objects.get(tenant=world.acme, user=world.alice)
    response = api(world.alice).patch(f"{URL}{alice.pk}/", {"role": "viewer"}, format="json")
    assert response.status_code == 409
    assert api(world.alice).delete(f"{URL}{alice.pk}/").status_code == 409
    alice.refresh_from_db()
    assert alice.role == Role.ADMIN


def test_admin_removes_member_and_their_tokens_die(world, api, token_for):
    secret = token_for(world.bob, world.acme, "developer")
    bob = Membership.objects.get(tenant=world.acme, user=world.bob)
    assert api(world.alice).delete(f"{URL}{bob.pk}/").status_code == 204
    assert not Membership.objects.filter(pk=bob.pk).exists()
    assert api(token=secret).get(URL).status_code == 401


def test_other_tenants_member_cannot_be_changed(world, api):
    oscar = Membership.objects.get(tenant=world.globex, user=world.oscar)
    response = api(world.alice).patch(f"{URL}{oscar.pk}/", {"role": "viewer"}, format="json")
    assert response.status_code == 404
    assert api(world.alice).delete(f"{URL}{oscar.pk}/").status_code == 404
    oscar.refresh_from_db()
    assert oscar.role == Role.ADMIN


@pytest.mark.parametrize(
    "body",
    [{"email": "x@example.org", "role": "owner"}, {"email": 5, "role": []}, {"role": "viewer"}, ["x"]],
)
def test_bad_invitation_input_is_400_and_changes_nothing(world, api, body):
    response = api(world.alice).post("/t/acme/api/v1/invitations/", body, format="json")
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid"
    assert not Invitation.objects.exists()
