"""Provisioning and deletion through a real Celery worker process."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_exists

from tenants.models import Tenant
from testsupport.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]


def test_worker_provisions_then_deletes_a_tenant(celery_worker_process, make_user, api):
    root = make_user("root", platform_admin=True)
    response = api(root).post("/api/v1/tenants/", {"slug": "hooli", "name": "Hooli"}, format="json")
    assert response.status_code == 202

    def state() -> str:
        return Tenant.objects.get(slug="hooli").state

    wait_until(lambda: state() == "ready", timeout=30, message="tenant was not provisioned")
    assert schema_exists("t_hooli")

    response = api(root).delete("/api/v1/tenants/hooli/?confirm=hooli")
    assert response.status_code == 202
    wait_until(lambda: not Tenant.objects.filter(slug="hooli").exists(), timeout=30)
    assert not schema_exists("t_hooli")


def test_resume_stuck_requeues_lost_provisioning(celery_worker_process, db):
    from datetime import timedelta

    from django.utils import timezone

    from tenants.tasks import tenants_resume_stuck

    # A tenant whose task was lost (never queued): the periodic task picks it up.
    tenant = Tenant.objects.create(
        slug="lost",
        name="Lost",
        schema_name="t_lost",
        state_changed_at=timezone.now() - timedelta(minutes=10),
    )
    Tenant.objects.filter(pk=tenant.pk).update(state_changed_at=timezone.now() - timedelta(minutes=10))
    assert tenants_resume_stuck() == 1
    wait_until(lambda: Tenant.objects.get(pk=tenant.pk).state == "ready", timeout=30)
    assert schema_exists("t_lost")
