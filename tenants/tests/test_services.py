from __future__ import annotations

import pytest
from django.db import connection
from django_tenants.utils import schema_exists

from core.errors import Conflict, ValidationFailed
from tenants import provisioning, selectors, services
from tenants.models import ApiToken, Membership, Tenant, TenantState

pytestmark = pytest.mark.django_db


def _tables(schema: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [schema])
        return {row[0] for row in cursor.fetchall()}


def test_create_then_provision_makes_the_schema(make_user):
    alice = make_user("alice")
    tenant = services.tenant_create(slug="initech", name="Initech", admin=alice)
    assert tenant.state == TenantState.PROVISIONING
    assert not schema_exists("t_initech")
    assert Membership.objects.get(tenant=tenant, user=alice).role == "admin"
    provisioning.tenant_provision(tenant_id=tenant.pk)
    tenant.refresh_from_db()
    assert tenant.state == TenantState.READY
    assert "django_migrations" in _tables("t_initech")


def test_provision_is_idempotent_and_finishes_a_half_made_schema(db):
    tenant = services.tenant_create(slug="half", name="")
    with connection.cursor() as cursor:
        cursor.execute('CREATE SCHEMA "t_half"')  # as if a worker died right after this
    provisioning.tenant_provision(tenant_id=tenant.pk)
    tables = _tables("t_half")
    provisioning.tenant_provision(tenant_id=tenant.pk)  # already ready: nothing changes
    tenant.refresh_from_db()
    assert tenant.state == TenantState.READY
    assert _tables("t_half") == tables
    assert provisioning.tenant_provision(tenant_id=999999) is None


def test_mark_failed_then_retry(db, django_capture_on_commit_callbacks):
    tenant = services.tenant_create(slug="flaky", name="")
    provisioning.tenant_mark_failed(tenant_id=tenant.pk, reason="database unavailable")
    tenant.refresh_from_db()
    assert (tenant.state, tenant.state_reason) == (TenantState.FAILED, "database unavailable")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.tenant_retry(tenant=tenant)
    tenant.refresh_from_db()
    assert (tenant.state, tenant.state_reason) == (TenantState.PROVISIONING, "")
    assert len(callbacks) >= 1
    with pytest.raises(Conflict):
        services.tenant_retry(tenant=tenant)


def test_delete_drops_schema_and_rows(world, token_for, runtime_session):
    token_for(world.alice, world.acme, "admin")
    with pytest.raises(ValidationFailed):
        services.tenant_delete_request(tenant=world.acme, confirm="wrong")
    services.tenant_delete_request(tenant=world.acme, confirm="acme")
    provisioning.tenant_delete(tenant_id=world.acme.pk)
    assert not schema_exists("t_acme")
    assert not Tenant.objects.filter(slug="acme").exists()
    assert not Membership.objects.filter(tenant_id=world.acme.pk).exists()
    assert not ApiToken.objects.filter(tenant_id=world.acme.pk).exists()
    provisioning.tenant_delete(tenant_id=world.acme.pk)  # idempotent
    assert schema_exists("t_globex")


def test_delete_removes_the_tenants_objects_from_the_runtime(world, runtime_session):
    from testsupport.fission import environment, httptrigger

    runtime_session.apply(environment("faas-acme", "python"))
    runtime_session.apply(httptrigger("faas-acme", "route", "/acme/route", function_name="f"))
    runtime_session.apply(environment("faas-globex", "python"))
    services.tenant_delete_request(tenant=world.acme, confirm="acme")
    provisioning.tenant_delete(tenant_id=world.acme.pk)
    assert runtime_session.list("faas-acme", "httptriggers") == []
    assert runtime_session.list("faas-acme", "environments") == []
    assert [o["metadata"]["name"] for o in runtime_session.list("faas-globex", "environments")] == ["python"]


def test_delete_of_a_tenant_not_marked_deleting_does_nothing(world):
    provisioning.tenant_delete(tenant_id=world.acme.pk)
    assert schema_exists("t_acme")


def test_stuck_tenants_are_found(db):
    from datetime import timedelta

    from django.utils import timezone

    tenant = services.tenant_create(slug="stuck", name="")
    assert selectors.tenants_stuck(older_than=timedelta(minutes=2)) == []
    Tenant.objects.filter(pk=tenant.pk).update(state_changed_at=timezone.now() - timedelta(minutes=5))
    assert selectors.tenants_stuck(older_than=timedelta(minutes=2)) == [(tenant.pk, "provisioning")]
