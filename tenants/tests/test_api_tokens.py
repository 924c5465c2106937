from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tenants import tokens
from tenants.models import ApiToken
from testsupport.fixtures import error_of

pytestmark = pytest.mark.django_db

URL = "/t/acme/api/v1/tokens/"


def test_create_token_shows_secret_once_and_stores_only_its_hash(world, api):
    response = api(world.bob).post(URL, {"name": "ci", "role": "developer"}, format="json")
    assert response.status_code == 201
    secret = response.json()["token"]
    assert secret.startswith("fpt_")
    stored = ApiToken.objects.get(pk=response.json()["id"])
    assert stored.digest == tokens.digest(secret)
    assert secret not in {getattr(stored, f.name) for f in ApiToken._meta.fields}
    listed = api(world.bob).get(f"{URL}{stored.pk}/").json()
    assert "token" not in listed
    assert listed["active"] is True


def test_token_authenticates_and_records_last_use(world, api, token_for):
    secret = token_for(world.bob, world.acme, "developer")
    response = api(token=secret).get("/t/acme/api/v1/me/")
    assert response.status_code == 200
    assert response.json() == {
        "username": "bob",
        "tenant": "acme",
        "role": "developer",
        "token_role": "developer",
    }
    assert ApiToken.objects.get(user=world.bob).last_used_at is not None


def test_token_role_is_capped_by_owner_role(world, api):
    response = api(world.vera).post(URL, {"name": "x", "role": "admin"}, format="json")
    assert response.status_code == 400
    assert error_of(response)["detail"] == {"role": ["admin"]}
    assert not ApiToken.objects.filter(user=world.vera).exists()


def test_token_cannot_mint_stronger_token(world, api, token_for):
    secret = token_for(world.alice, world.acme, "viewer")
    response = api(token=secret).post(URL, {"name": "x", "role": "admin"}, format="json")
    assert response.status_code == 403
    assert ApiToken.objects.filter(user=world.alice).count() == 1


def test_viewer_token_cannot_write(world, api, token_for):
    secret = token_for(world.alice, world.acme, "viewer")
    response = api(token=secret).post(
        "/t/acme/api/v1/members/", {"username": "z", "role": "viewer"}, format="json"
    )
    assert response.status_code == 403
    assert error_of(response)["code"] == "permission_denied"


def test_tokens_require_authentication(world, api):
    assert api().get(URL).status_code == 401
    assert api().post(URL, {"name": "x"}, format="json").status_code == 401


def test_members_see_only_their_tokens_admins_see_all(world, api, token_for):
    token_for(world.bob, world.acme, "viewer")
    token_for(world.vera, world.acme, "viewer")
    bob_view = api(world.bob).get(URL).json()["results"]
    assert [t["username"] for t in bob_view] == ["bob"]
    admin_view = api(world.alice).get(URL).json()["results"]
    assert sorted(t["username"] for t in admin_view) == ["bob", "vera"]


def test_tokens_of_other_tenants_are_hidden(world, api, token_for):
    token_for(world.oscar, world.globex, "admin")
    globex_token = ApiToken.objects.get(user=world.oscar)
    assert api(world.alice).get(URL).json()["count"] == 0
    assert api(world.alice).get(f"{URL}{globex_token.pk}/").status_code == 404
    assert api(world.alice).delete(f"{URL}{globex_token.pk}/").status_code == 404
    assert api(world.oscar).get(URL).status_code == 404
    globex_token.refresh_from_db()
    assert globex_token.revoked_at is None


def test_token_of_one_tenant_is_worthless_in_another(world, api, token_for):
    secret = token_for(world.oscar, world.globex, "admin")
    response = api(token=secret).get(URL)
    assert response.status_code == 404
    assert response.json() == api(token=secret).get("/t/nosuch/api/v1/tokens/").json()


def test_revoke_own_token(world, api, token_for):
    secret = token_for(world.bob, world.acme, "developer")
    token = ApiToken.objects.get(user=world.bob)
    assert api(world.bob).delete(f"{URL}{token.pk}/").status_code == 204
    token.refresh_from_db()
    assert token.revoked_at is not None
    response = api(token=secret).get(URL)
    assert response.status_code == 401
    assert error_of(response)["code"] == "not_authenticated"


def test_member_cannot_revoke_someone_elses_token(world, api, token_for):
    token_for(world.vera, world.acme, "viewer")
    token = ApiToken.objects.get(user=world.vera)
    assert api(world.bob).delete(f"{URL}{token.pk}/").status_code == 404
    assert api(world.alice).delete(f"{URL}{token.pk}/").status_code == 204


def test_expired_token_is_refused(world, api, token_for):
    secret = token_for(world.bob, world.acme, "developer", expires_at=timezone.now() + timedelta(seconds=60))
    assert api(token=secret).get(URL).status_code == 200
    ApiToken.objects.filter(user=world.bob).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = api(token=secret).get(URL)
    assert response.status_code == 401
    assert error_of(response)["code"] == "not_authenticated"


def test_expiry_in_the_past_is_rejected(world, api):
    past = (timezone.now() - timedelta(days=1)).isoformat()
    response = api(world.bob).post(URL, {"name": "x", "role": "viewer", "expires_at": past}, format="json")
    assert response.status_code == 400
    assert "expires_at" in error_of(response)["detail"]


@pytest.mark.parametrize("header", ["Bearer nonsense", "Bearer fpt_000000000000_" + "a" * 43, "Bearer "])
def test_bad_tokens_are_401(world, api, header):
    client = api()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get(URL)
    assert response.status_code == 401
    assert error_of(response)["code"] == "not_authenticated"


def test_tampered_secret_with_valid_key_id_is_refused(world, api, token_for):
    secret = token_for(world.bob, world.acme, "developer")
    tampered = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert api(token=tampered).get(URL).status_code == 401


def test_removed_member_token_and_role_downgrade(world, api, token_for):
    from tenants.models import Membership
    from tenants.services import membership_set_role

    secret = token_for(world.bob, world.acme, "developer")
    membership_set_role(membership=Membership.objects.get(user=world.bob, tenant=world.acme), role="viewer")
    assert api(token=secret).get(URL).status_code == 401  # revoked: it exceeded the new role
