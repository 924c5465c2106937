"""The audit trail's own guarantees: one record per action, in the change's transaction,
append-only in the database, and a chain that names the record edited by hand."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from django_tenants.utils import tenant_context

from audit import chain, selectors, services
from audit.models import PLATFORM_CHAIN, AuditRecord
from tenants.models import Membership


def _change(tenant, name="hello", *, before=None, after=None, action="function.update"):
    opened = services.change(action, object_type="function", object_name=name, before=before)
    with tenant_context(tenant), transaction.atomic(), opened as done:
        done.after = after if after is not None else {"memory_mb": 256}
    return AuditRecord.objects.filter(tenant_id=tenant.pk, chain=tenant.pk).latest("seq")


def test_a_change_is_one_record_with_its_diff_actor_and_place_in_the_chain(world):
    first = _change(
        world.acme, before={"memory_mb": 128, "timeout_s": 60}, after={"memory_mb": 256, "timeout_s": 60}
    )
    assert (first.chain, first.seq, first.prev_hash) == (world.acme.pk, 1, chain.GENESIS)
    assert first.changes == {"memory_mb": [128, 256]}  # only what changed
    assert (first.actor_type, first.actor_name, first.tenant_slug) == ("system", "system", "acme")
    second = _change(world.acme, after={"memory_mb": 512})
    assert (second.seq, second.prev_hash) == (2, first.hash)
    assert selectors.verify() == (AuditRecord.objects.count(), [])


def test_a_change_inside_a_change_is_an_effect_of_the_one_record(world):
    before = AuditRecord.objects.count()
    with (
        tenant_context(world.acme),
        transaction.atomic(),
        services.change("alias.set", object_type="alias", object_name="hello/prod") as outer,
    ):
        with services.change("deployment.create", object_type="deployment", object_name="hello") as inner:
            inner.object_name = "hello#7"
        outer.after = {"weights": {"1": 100}}
    assert AuditRecord.objects.count() == before + 1
    record = AuditRecord.objects.latest("id")
    assert (record.action, record.effects) == ("alias.set", ["deployment.create hello#7"])


def test_no_record_without_its_change_and_no_change_without_its_record(world, monkeypatch):
    before = AuditRecord.objects.count()
    with pytest.raises(ValueError, match="the change failed"):
        _failing_change(world.acme)
    assert AuditRecord.objects.count() == before

    def broken(fields):
        raise RuntimeError("the record could not be written")

    monkeypatch.setattr(chain, "digest", broken)
    with pytest.raises(RuntimeError, match="could not be written"):
        _demote_everyone(world.acme)
    assert set(Membership.objects.filter(tenant=world.acme).values_list("role", flat=True)) == {
        "admin",
        "developer",
        "viewer",
    }  # the change rolled back with its record
    assert AuditRecord.objects.count() == before


def _failing_change(tenant):
    opened = services.change("function.update", object_type="function", object_name="hello")
    with tenant_context(tenant), transaction.atomic(), opened:
        raise ValueError("the change failed")


def _demote_everyone(tenant):
    with transaction.atomic():
        Membership.objects.filter(tenant=tenant).update(role="viewer")
        with services.change("member.update", object_type="member", object_name="bob", tenant=tenant):
            pass


def _unwrapped_change(tenant):
    with tenant_context(tenant), services.change("function.update", object_type="function", object_name="x"):
        pass


@pytest.mark.django_db(transaction=True)  # outside the test's own transaction
def test_a_change_outside_a_transaction_is_refused(world):
    with pytest.raises(RuntimeError, match="transaction"):
        _unwrapped_change(world.acme)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditrecord SET action = 'function.delete'",
        "DELETE FROM audit_auditrecord",
        "TRUNCATE audit_auditrecord",
    ],
)
def test_the_database_refuses_to_change_or_remove_a_record(world, statement):
    _change(world.acme)
    with pytest.raises(DatabaseError, match="append-only"):
        _execute_without_truncate(statement)


def _execute_without_truncate(statement):
    with transaction.atomic(), connection.cursor() as cursor:
        # The test session may TRUNCATE (Django's flush between tests); this transaction may not.
        cursor.execute("SELECT set_config('faas_portal.audit_truncate', 'off', true)")
        cursor.execute(statement)


def _edit_by_hand(sql, params):
    """What someone with the database's password could do: switch the trigger off and edit."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditrecord DISABLE TRIGGER audit_record_append_only")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE audit_auditrecord ENABLE TRIGGER audit_record_append_only")


def test_verify_names_a_record_edited_by_hand(world, capsys):
    first, edited, _ = (_change(world.acme, after={"memory_mb": m}) for m in (256, 512, 1024))
    call_command("audit", "verify")
    assert "OK" in capsys.readouterr().out
    _edit_by_hand("UPDATE audit_auditrecord SET actor_name = 'mallory' WHERE id = %s", [edited.pk])
    with pytest.raises(CommandError, match="broken"):
        call_command("audit", "verify")
    err = capsys.readouterr().err
    assert f"record {edited.pk} (#2)" in err
    assert "edited" in err
    assert f"record {first.pk}" not in err


def test_verify_names_the_record_after_one_removed_by_hand(world):
    records = [_change(world.acme, after={"memory_mb": m}) for m in (256, 512, 1024)]
    _edit_by_hand("DELETE FROM audit_auditrecord WHERE id = %s", [records[1].pk])
    _, found = selectors.verify()
    assert [(b.record_id, b.chain) for b in found] == [(records[2].pk, world.acme.pk)]
    assert "missing" in found[0].reason


def test_removing_the_oldest_records_by_hand_is_detected(world):
    records = [_change(world.acme, after={"memory_mb": m}) for m in (256, 512)]
    _edit_by_hand("DELETE FROM audit_auditrecord WHERE id = %s", [records[0].pk])
    _, found = selectors.verify()
    assert [b.record_id for b in found] == [records[1].pk]
    assert "without a prune" in found[0].reason


def test_retention_removes_old_records_and_the_chain_still_verifies(world):
    old = [_change(world.acme, after={"memory_mb": m}) for m in (256, 512)]
    cutoff = timezone.now()
    kept = _change(world.acme, after={"memory_mb": 1024})
    removed = services.prune(before=cutoff)
    assert removed[world.acme.pk] == 2
    assert not AuditRecord.objects.filter(pk__in=[r.pk for r in old]).exists()
    pruned = AuditRecord.objects.get(chain=world.acme.pk, action=chain.PRUNED)
    assert pruned.changes["through_seq"] == [None, old[-1].seq]
    assert AuditRecord.objects.filter(pk=kept.pk).exists()
    assert selectors.verify()[1] == []
    assert services.prune(before=cutoff) == {}  # idempotent: nothing older is left
    # A platform change of the tenant (its creation) is in the platform's chain, pruned too.
    assert removed[PLATFORM_CHAIN] >= 1


def test_the_retention_setting_drives_the_prune_command(world, settings, capsys):
    _change(world.acme)
    settings.AUDIT_RETENTION_DAYS = 0
    call_command("audit", "prune")
    assert "nothing removed" in capsys.readouterr().out
    call_command("audit", "prune", "--days", "1")
    assert "removed 0 records" in capsys.readouterr().out
