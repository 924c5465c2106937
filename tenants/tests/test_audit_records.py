"""Every change of the tenants app leaves exactly one audit record, with the right chain, object
and diff; a refused change leaves none; a tenant's change never lands in another tenant's chain.

Tenant lifecycle, quota, suspension and platform tokens are the platform's (chain 0, the tenant
named by ``tenant_id``); members and tenant tokens are the tenant's own chain.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Max
from django.utils import timezone

from audit import selectors
from audit.models import PLATFORM_CHAIN, AuditRecord
from core.crypto import Keyring, generate_key
from core.errors import Conflict, ValidationFailed
from tenants import provisioning, secrets_keys, services
from tenants.models import ApiToken, Membership, Tenant
from tenants.selectors import token_resolve

pytestmark = pytest.mark.django_db


@dataclass
class New:
    """The records written inside a ``recorded()`` block."""

    records: list[AuditRecord] = field(default_factory=list)

    @property
    def one(self) -> AuditRecord:
        assert len(self.records) == 1, [(r.action, r.object_name) for r in self.records]
        return self.records[0]


@contextmanager
def recorded() -> Iterator[New]:
    """Collect the records the block writes, then check that every chain still verifies."""
    last = AuditRecord.objects.aggregate(last=Max("id"))["last"] or 0
    new = New()
    yield new
    new.records = list(AuditRecord.objects.filter(id__gt=last).order_by("id"))
    assert selectors.verify()[1] == []


def assert_refused(
    error: type[Exception], change: Callable[..., object], *args: object, **kwargs: object
) -> None:
    """``change(*args, **kwargs)`` raises ``error`` and leaves no record."""
    with recorded() as new, pytest.raises(error):
        change(*args, **kwargs)
    assert new.records == []


def assert_platform(record: AuditRecord, tenant: Tenant | None, action: str, name: str) -> None:
    assert (record.chain, record.action, record.object_name) == (PLATFORM_CHAIN, action, name)
    assert record.tenant_id == (tenant.pk if tenant else None)


def assert_tenant(record: AuditRecord, tenant: Tenant, action: str, name: str) -> None:
    assert (record.chain, record.tenant_id, record.tenant_slug) == (tenant.pk, tenant.pk, tenant.slug)
    assert (record.action, record.object_name) == (action, name)


def as_json(record: AuditRecord) -> str:
    """Every column of the record as stored."""
    return json.dumps(AuditRecord.objects.filter(pk=record.pk).values().get(), default=str)


# ---------------------------------------------------------------- tenant lifecycle


def test_tenant_create_is_one_platform_record_of_the_new_tenant(world):
    with recorded() as new:
        tenant = services.tenant_create(slug="initech", name="Initech", admin=world.oscar)
    record = new.one
    assert_platform(record, tenant, "tenant.create", "initech")
    assert (record.object_type, record.tenant_slug, record.actor_type) == ("tenant", "initech", "system")
    assert record.changes == {"admin": [None, "oscar"], "name": [None, "Initech"], "slug": [None, "initech"]}


def test_tenant_create_by_a_platform_admin_names_no_admin(world):
    with recorded() as new:
        services.tenant_create(slug="initech", name="", admin=world.admin)
    assert new.one.changes == {"name": [None, "initech"], "slug": [None, "initech"]}


def test_a_refused_tenant_create_leaves_no_record(world):
    assert_refused(Conflict, services.tenant_create, slug="acme", name="")
    assert_refused(ValidationFailed, services.tenant_create, slug="admin", name="")


def test_provisioning_to_ready_is_one_state_record_of_the_system(world):
    tenant = services.tenant_create(slug="initech", name="")
    with recorded() as new:
        provisioning.tenant_provision(tenant_id=tenant.pk)
    record = new.one  # the schema's defaults are its effects, not records of their own
    assert_platform(record, tenant, "tenant.state", "initech")
    assert (record.changes, record.actor_type) == ({"state": ["provisioning", "ready"]}, "system")
    with recorded() as again:
        provisioning.tenant_provision(tenant_id=tenant.pk)  # already ready: nothing changes
    assert again.records == []


def test_failure_then_retry_are_one_record_each(db):
    tenant = services.tenant_create(slug="flaky", name="")
    with recorded() as failed:
        provisioning.tenant_mark_failed(tenant_id=tenant.pk, reason="database unavailable")
    assert_platform(failed.one, tenant, "tenant.state", "flaky")
    assert failed.one.changes == {"reason": ["", "database unavailable"], "state": ["provisioning", "failed"]}
    tenant.refresh_from_db()
    with recorded() as retried:
        services.tenant_retry(tenant=tenant)
    assert_platform(retried.one, tenant, "tenant.retry", "flaky")
    assert retried.one.changes == {
        "reason": ["database unavailable", ""],
        "state": ["failed", "provisioning"],
    }
    assert retried.one.effects == ["tenant.state flaky"]
    assert_refused(Conflict, services.tenant_retry, tenant=tenant)


def test_marking_a_tenant_failed_that_is_not_provisioning_leaves_no_record(world):
    with recorded() as new:
        provisioning.tenant_mark_failed(tenant_id=world.acme.pk, reason="late")
    assert new.records == []


def test_quota_change_shows_only_the_changed_field(world):
    with recorded() as new:
        services.tenant_set_quota(tenant=world.acme, quota={"functions": 10})
    assert_platform(new.one, world.acme, "tenant.quota", "acme")
    assert new.one.changes == {"quota.functions": [50, 10]}
    with recorded() as egress:
        services.tenant_set_quota(tenant=world.acme, internet_egress=True)
    assert egress.one.changes == {"internet_egress": [False, True]}


def test_a_refused_quota_change_leaves_no_record(world):
    assert_refused(ValidationFailed, services.tenant_set_quota, tenant=world.acme, quota={"pods": "x"})
    assert_refused(ValidationFailed, services.tenant_set_quota, tenant=world.acme, quota={"nope": 1})


def test_suspend_and_resume_are_one_record_each(world):
    with recorded() as suspended:
        services.tenant_set_suspended(tenant=world.acme, suspended=True)
    assert_platform(suspended.one, world.acme, "tenant.suspend", "acme")
    assert suspended.one.changes == {"suspended": [False, True]}
    with recorded() as resumed:
        services.tenant_set_suspended(tenant=world.acme, suspended=False)
    assert_platform(resumed.one, world.acme, "tenant.resume", "acme")
    assert resumed.one.changes == {"suspended": [True, False]}


def test_tenant_update_is_one_record_whose_diff_covers_every_field(world):
    with recorded() as new:
        services.tenant_update(
            tenant=world.acme, name="Acme Corp", quota={"pods": 5}, internet_egress=True, suspended=True
        )
    record = new.one
    assert_platform(record, world.acme, "tenant.update", "acme")
    assert record.changes == {
        "internet_egress": [False, True],
        "name": ["Acme", "Acme Corp"],
        "quota.pods": [50, 5],
        "suspended": [False, True],
    }
    assert record.effects == ["tenant.quota acme", "tenant.suspend acme"]


def test_a_refused_tenant_update_leaves_no_record_and_no_change(world):
    assert_refused(
        ValidationFailed, services.tenant_update, tenant=world.acme, name="Renamed", quota={"pods": -1}
    )
    assert Tenant.objects.get(pk=world.acme.pk).name == "Acme"


def test_applying_a_suspension_is_one_state_record(world):
    services.tenant_set_suspended(tenant=world.acme, suspended=True)
    with recorded() as suspended:
        provisioning.tenant_sync_suspension(tenant_id=world.acme.pk)
    assert_platform(suspended.one, world.acme, "tenant.state", "acme")
    assert (suspended.one.changes, suspended.one.actor_type) == (
        {"data_plane": [None, "suspended"]},
        "system",
    )
    services.tenant_set_suspended(tenant=world.acme, suspended=False)
    with recorded() as resumed:
        provisioning.tenant_sync_suspension(tenant_id=world.acme.pk)
    assert resumed.one.changes == {"data_plane": [None, "resumed"]}


def test_deletion_request_then_deletion_and_the_records_outlive_the_tenant(world):
    acme = world.acme
    assert_refused(ValidationFailed, services.tenant_delete_request, tenant=acme, confirm="wrong")
    with recorded() as requested:
        services.tenant_delete_request(tenant=acme, confirm="acme")
    assert_platform(requested.one, acme, "tenant.delete", "acme")
    assert (requested.one.changes, requested.one.effects) == (
        {"state": ["ready", "deleting"]},
        ["tenant.state acme"],
    )
    with recorded() as deleted:
        provisioning.tenant_delete(tenant_id=acme.pk)
    assert not Tenant.objects.filter(pk=acme.pk).exists()
    assert_platform(deleted.one, acme, "tenant.deleted", "acme")
    assert (deleted.one.changes, deleted.one.tenant_slug) == ({"state": ["deleting", None]}, "acme")
    trail = selectors.tenant_trail(acme.pk)
    assert [r.action for r in trail[:2]] == ["tenant.deleted", "tenant.delete"]
    assert trail.filter(action="tenant.create").exists()  # from the fixture, long before


# ---------------------------------------------------------------- members


def test_member_add_is_one_record_in_the_tenants_chain_only(world):
    globex_chain = AuditRecord.objects.filter(chain=world.globex.pk).count()
    with recorded() as new:
        added = services.membership_add(tenant=world.acme, username="newbie", role="developer")
    assert_tenant(new.one, world.acme, "member.add", "newbie")
    assert (new.one.object_type, new.one.changes) == ("member", {"role": [None, "developer"]})
    assert added.initial_password
    assert added.initial_password not in as_json(new.one)
    assert AuditRecord.objects.filter(chain=world.globex.pk).count() == globex_chain
    assert not selectors.tenant_trail(world.globex.pk).filter(object_name="newbie").exists()


def test_a_refused_member_add_leaves_no_record(world):
    add = services.membership_add
    assert_refused(Conflict, add, tenant=world.acme, username="bob", role="viewer")
    assert_refused(ValidationFailed, add, tenant=world.acme, username="x", role="platform_admin")
    assert_refused(ValidationFailed, add, tenant=world.acme, username="", role="viewer")


def test_a_role_change_shows_the_roles_and_the_tokens_it_revoked(world):
    token = services.token_create(tenant=world.acme, user=world.bob, name="ci", role="developer").token
    membership = Membership.objects.get(tenant=world.acme, user=world.bob)
    with recorded() as new:
        services.membership_set_role(membership=membership, role="viewer")
    assert_tenant(new.one, world.acme, "member.update", "bob")
    assert new.one.changes == {"role": ["developer", "viewer"]}
    assert new.one.effects == [f"token.revoke {token.key_id}"]


def test_a_refused_role_change_leaves_no_record(world):
    alice = Membership.objects.get(tenant=world.acme, user=world.alice)  # the only admin
    assert_refused(Conflict, services.membership_set_role, membership=alice, role="viewer")
    assert_refused(ValidationFailed, services.membership_set_role, membership=alice, role="root")


def test_member_remove_is_one_record_with_its_revoked_tokens(world):
    token = services.token_create(tenant=world.acme, user=world.bob, name="ci", role="viewer").token
    membership = Membership.objects.get(tenant=world.acme, user=world.bob)
    with recorded() as new:
        services.membership_remove(membership=membership)
    assert_tenant(new.one, world.acme, "member.remove", "bob")
    assert (new.one.changes, new.one.effects) == (
        {"role": ["developer", None]},
        [f"token.revoke {token.key_id}"],
    )
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None
    alice = Membership.objects.get(tenant=world.acme, user=world.alice)
    assert_refused(Conflict, services.membership_remove, membership=alice)


# ---------------------------------------------------------------- tokens


def test_token_create_records_its_settings_and_never_its_secret(world):
    expires = timezone.now() + timedelta(days=7)
    with recorded() as new:
        issued = services.token_create(
            tenant=world.acme, user=world.bob, name="ci", role="viewer", expires_at=expires
        )
    record = new.one
    assert_tenant(record, world.acme, "token.create", issued.token.key_id)
    assert record.object_type == "token"
    assert set(record.changes) == {"expires_at", "name", "role"}
    assert (record.changes["name"], record.changes["role"]) == ([None, "ci"], [None, "viewer"])
    stored = as_json(record)
    assert issued.secret not in stored
    assert issued.token.digest not in stored


def test_a_platform_token_is_recorded_in_the_platform_chain(world):
    with recorded() as new:
        issued = services.token_create(tenant=None, user=world.admin, name="ops", role="platform_admin")
    assert_platform(new.one, None, "token.create", issued.token.key_id)
    assert issued.secret not in as_json(new.one)


def test_a_refused_token_create_leaves_no_record(world):
    create, yesterday = services.token_create, timezone.now() - timedelta(days=1)
    assert_refused(ValidationFailed, create, tenant=world.acme, user=world.vera, name="x", role="admin")
    assert_refused(ValidationFailed, create, tenant=None, user=world.bob, name="x", role="platform_admin")
    assert_refused(
        ValidationFailed,
        create,
        tenant=world.acme,
        user=world.bob,
        name="x",
        role="viewer",
        expires_at=yesterday,
    )


def test_token_revoke_is_one_record_and_a_use_is_none(world):
    token = services.token_create(tenant=world.acme, user=world.bob, name="ci", role="viewer").token
    with recorded() as used:
        services.token_touch(token=token)
    assert used.records == []
    with recorded() as new:
        services.token_revoke(token=token)
    assert_tenant(new.one, world.acme, "token.revoke", token.key_id)
    assert list(new.one.changes) == ["revoked_at"]
    assert new.one.changes["revoked_at"][0] is None


def test_acme_changes_never_land_in_globex_chain(world):
    globex = list(AuditRecord.objects.filter(chain=world.globex.pk).values_list("id", flat=True))
    token = services.token_create(tenant=world.acme, user=world.bob, name="ci", role="viewer").token
    services.token_revoke(token=token)
    services.membership_add(tenant=world.acme, username="oscar", role="viewer")
    services.tenant_set_quota(tenant=world.acme, quota={"pods": 7})
    assert list(AuditRecord.objects.filter(chain=world.globex.pk).values_list("id", flat=True)) == globex
    assert not selectors.tenant_trail(world.globex.pk).filter(tenant_id=world.acme.pk).exists()
    assert selectors.tenant_trail(world.acme.pk).filter(action="tenant.quota").count() == 1


# ---------------------------------------------------------------- the secrets' key


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    monkeypatch.delenv("PORTAL_SECRETS_KEYS_FILE", raising=False)

    def use(value: str) -> None:
        monkeypatch.setenv("PORTAL_SECRETS_KEYS", value)
        Keyring.clear_cache()

    yield use
    Keyring.clear_cache()


def test_key_rotation_is_one_platform_record_with_counts_and_no_key(world, keys, monkeypatch):
    old, new_key = generate_key(), generate_key()
    keys(old)
    secrets_keys.verify()
    monkeypatch.setattr(secrets_keys, "_rotations", [lambda keyring: 3])
    keys(f"{new_key},{old}")
    with recorded() as new:
        call_command("secrets", "rotate", stdout=StringIO())
    record = new.one
    assert_platform(record, None, "secrets-key.rotate", "PORTAL_SECRETS_KEYS")
    assert record.object_type == "secrets-key"
    assert record.changes == {"key": [2, 1], "re_encrypted": [None, 6], "tenant_schemas": [None, 2]}
    stored = as_json(record)
    assert old not in stored
    assert new_key not in stored


def test_a_refused_key_rotation_leaves_no_record(db, keys):
    keys(generate_key())
    secrets_keys.verify()
    keys(generate_key())
    assert_refused(CommandError, call_command, "secrets", "rotate", stdout=StringIO())


# ---------------------------------------------------------------- through the API


def test_an_api_change_with_a_token_records_the_token_and_its_user(world, api, token_for):
    secret = token_for(world.alice, world.acme, "admin")
    token = token_resolve(secret)
    assert token is not None
    with recorded() as new:
        response = api(token=secret).post(
            "/t/acme/api/v1/invitations/", {"email": "oscar@example.org", "role": "viewer"}, format="json"
        )
    assert response.status_code == 201, response.json()
    record = new.one
    assert_tenant(record, world.acme, "invitation.create", "oscar@example.org")
    assert (record.actor_type, record.token_id, record.actor_name) == ("token", token.key_id, "alice")
    assert (record.actor_user_id, record.ip) == (world.alice.pk, "127.0.0.1")


def test_a_platform_admins_api_change_is_in_the_platform_chain(world, api):
    with recorded() as new:
        response = api(world.admin).patch("/api/v1/tenants/acme/", {"suspended": True}, format="json")
    assert response.status_code == 200, response.json()
    record = new.one
    assert_platform(record, world.acme, "tenant.update", "acme")
    assert (record.changes, record.effects) == ({"suspended": [False, True]}, ["tenant.suspend acme"])
    assert (record.actor_type, record.actor_name, record.token_id) == ("user", "root", "")


def test_a_change_made_on_a_page_is_the_signed_in_users(world, client):
    client.force_login(world.alice)
    with recorded() as new:
        response = client.post(
            "/t/acme/members/", {"action": "invite", "email": "newbie@example.org", "role": "viewer"},
            HTTP_USER_AGENT="Mozilla/5.0 (page test)",
        )  # fmt: skip
    assert response.status_code == 302
    record = new.one
    assert_tenant(record, world.acme, "invitation.create", "newbie@example.org")
    assert (record.actor_type, record.actor_name, record.actor_user_id) == ("user", "alice", world.alice.pk)
    assert (record.token_id, record.ip, record.user_agent) == ("", "127.0.0.1", "Mozilla/5.0 (page test)")
    assert record.changes["role"] == [None, "viewer"]
    assert record.changes["email"] == [None, "newbie@example.org"]
