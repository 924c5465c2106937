"""``migrate_schemas`` over the tenants (tenants/schemas.py): the schemas that have every
migration recorded are left alone; one that is behind is migrated as before; the template is
created and migrated first; a run that does something else than apply what is missing (an app
label, ``--fake``, ...) still goes through every schema."""

from __future__ import annotations

from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django_tenants.signals import schema_pre_migration

from tenants import schemas
from tenants.models import Tenant

pytestmark = pytest.mark.django_db


@pytest.fixture
def migrated() -> Iterator[list[str]]:
    """The schemas that django-tenants' migrate ran in (its signal, sent once per schema)."""
    seen: list[str] = []

    def record(sender: Any, schema_name: str, **kwargs: Any) -> None:
        seen.append(schema_name)

    schema_pre_migration.connect(record)
    yield seen
    schema_pre_migration.disconnect(record)


def _tenant(slug: str) -> Tenant:
    tenant = Tenant.objects.create(slug=slug, name=slug, schema_name=f"t_{slug}")
    schemas.schema_create(tenant.schema_name)
    return tenant


def _statements_in(schema: str, run: Any) -> list[str]:
    """The SQL statements ``run()`` sent that name ``schema``."""
    sent: list[str] = []

    def wrapper(execute: Any, sql: str, *args: Any) -> Any:
        sent.append(sql)
        return execute(sql, *args)

    with connection.execute_wrapper(wrapper):
        run()
    return [sql for sql in sent if schema in sql]


def _migrate_all(*args: str, **options: Any) -> str:
    out = StringIO()
    call_command("migrate_schemas", *args, tenant=True, interactive=False, stdout=out, **options)
    return out.getvalue()


def test_a_no_op_run_does_not_touch_the_tenants(migrated, capsys):
    for slug in ("one", "two", "three"):
        _tenant(slug)
    statements = _statements_in("t_two", _migrate_all)
    assert migrated == []  # not even the template, which is current
    # One read of what each schema recorded (all in one query), nothing in the schema itself.
    assert len(statements) == 1, statements
    assert statements[0].startswith("SELECT")
    assert statements[0].count("django_migrations") == 3
    assert "3 of 3 tenant schema(s) have every migration recorded: skipped." in capsys.readouterr().out


def test_a_tenant_that_is_behind_is_migrated(migrated, capsys):
    _tenant("current")
    behind = _tenant("behind")
    empty = Tenant.objects.create(slug="empty", name="empty", schema_name="t_empty")
    with connection.cursor() as cursor:
        cursor.execute('CREATE SCHEMA "t_empty"')  # a schema with nothing in it at all
    # "behind" lacks releases' migrations (and its tables), as if they were new in this release.
    call_command("migrate_schemas", "releases", "zero", schema_name=behind.schema_name, verbosity=0)
    assert schemas.schemas_behind(["t_current", "t_behind", "t_empty"]) == ["t_behind", "t_empty"]
    migrated.clear()
    command_output = _migrate_all(verbosity=1)
    assert migrated == ["t_behind", "t_empty"]
    assert schemas.schemas_behind(["t_current", "t_behind", empty.schema_name]) == []
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('t_behind.releases_rollout') IS NOT NULL")
        assert cursor.fetchone()[0]
    output = capsys.readouterr().out + command_output
    assert "1 of 3 tenant schema(s) have every migration recorded: skipped." in output
    assert "t_behind" in output
    assert "Applying releases.0001" in output


def test_the_template_is_created_and_migrated_first(migrated):
    template = schemas.template_schema()
    with connection.cursor() as cursor:
        cursor.execute(f'DROP SCHEMA "{template}" CASCADE')
    _tenant("late")  # no template: migrated
    migrated.clear()
    _migrate_all(verbosity=0)
    assert migrated == [template]
    assert schemas.schemas_behind([template, "t_late"]) == []
    assert schemas.schema_create("t_after") is True  # copied from the new template


def test_a_run_with_a_target_goes_through_every_schema(migrated):
    _tenant("alpha")
    _tenant("beta")
    _migrate_all("releases", verbosity=0)
    assert migrated == [schemas.template_schema(), "t_alpha", "t_beta"]
    migrated.clear()
    _migrate_all(verbosity=0, fake=True)
    assert migrated == [schemas.template_schema(), "t_alpha", "t_beta"]


def test_one_schema_by_name_is_skipped_when_current(migrated):
    tenant = _tenant("solo")
    schemas.migrate_schema(tenant.schema_name)
    assert migrated == []
    call_command("migrate_schemas", "releases", "zero", schema_name=tenant.schema_name, verbosity=0)
    migrated.clear()
    schemas.migrate_schema(tenant.schema_name)
    assert migrated == [tenant.schema_name]
    assert schemas.schemas_behind([tenant.schema_name]) == []
