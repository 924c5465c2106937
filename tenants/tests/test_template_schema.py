"""A tenant's schema copied from the template (tenants/schemas.py) is the schema migrating makes:
the same tables, columns, constraints, indexes and sequences (compared in information_schema
and pg_catalog), the same recorded migrations and rows, and sequences of its own that start fresh.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django_tenants.utils import schema_context

from tenants import schemas

pytestmark = pytest.mark.django_db


def _rows(query: str, schema: str) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(query, {"s": schema})
        return sorted(cursor.fetchall(), key=repr)


def catalog(schema: str) -> dict[str, Any]:
    """What makes a schema: everything but its name (replaced by ``<s>`` where the catalog
    prints it) and column positions (a column a migration dropped leaves a hole there)."""
    facts = {
        "columns": _rows(
            """SELECT table_name, column_name, data_type, character_maximum_length, numeric_precision,
                      is_nullable, column_default, is_identity, identity_generation, identity_start,
                      identity_increment, identity_minimum, identity_maximum, identity_cycle,
                      is_generated, generation_expression, collation_name
               FROM information_schema.columns WHERE table_schema = %(s)s""",
            schema,
        ),
        "column_order": _rows(
            """SELECT c.relname, array_agg(a.attname ORDER BY a.attnum) FROM pg_attribute a
               JOIN pg_class c ON c.oid = a.attrelid
               WHERE c.relnamespace = %(s)s::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
               GROUP BY c.relname""",
            schema,
        ),
        "relations": _rows(
            "SELECT relname, relkind, relpersistence FROM pg_class WHERE relnamespace = %(s)s::regnamespace",
            schema,
        ),
        "constraints": _rows(
            """SELECT c.relname, k.conname, k.contype, k.condeferrable, k.condeferred, k.convalidated,
                      replace(pg_get_constraintdef(k.oid), %(s)s || '.', '<s>.')
               FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
               WHERE k.connamespace = %(s)s::regnamespace""",
            schema,
        ),
        "table_constraints": _rows(
            """SELECT table_name, constraint_name, constraint_type, is_deferrable, initially_deferred
               FROM information_schema.table_constraints WHERE table_schema = %(s)s""",
            schema,
        ),
        "indexes": _rows(
            "SELECT tablename, indexname, replace(indexdef, %(s)s || '.', '<s>.') FROM pg_indexes "
            "WHERE schemaname = %(s)s",
            schema,
        ),
        "sequences": _rows(
            """SELECT sequencename, data_type, start_value, min_value, max_value, increment_by, cycle,
                      cache_size, last_value FROM pg_sequences WHERE schemaname = %(s)s""",
            schema,
        ),
        "sequence_owners": _rows(
            """SELECT s.relname, t.relname, a.attname, d.deptype, t.relnamespace = s.relnamespace
               FROM pg_class s JOIN pg_depend d ON d.objid = s.oid AND d.classid = 'pg_class'::regclass
               JOIN pg_class t ON t.oid = d.refobjid JOIN pg_attribute a ON a.attrelid = t.oid
               AND a.attnum = d.refobjsubid
               WHERE s.relnamespace = %(s)s::regnamespace AND s.relkind = 'S'""",
            schema,
        ),
        "foreign_keys_to": _rows(
            """SELECT k.conname, n.nspname = %(s)s, r.relname FROM pg_constraint k
               JOIN pg_class r ON r.oid = k.confrelid JOIN pg_namespace n ON n.oid = r.relnamespace
               WHERE k.connamespace = %(s)s::regnamespace AND k.contype = 'f'""",
            schema,
        ),
    }
    with schema_context(schema), connection.cursor() as cursor:
        cursor.execute("SELECT app, name FROM django_migrations")
        facts["migrations"] = sorted(cursor.fetchall())
        cursor.execute("SELECT id, app_label, model FROM django_content_type")
        facts["content_types"] = sorted(cursor.fetchall())
    return facts


def _migrated(schema: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE SCHEMA "{schema}"')
    schemas.migrate_schema(schema)


def test_the_test_database_has_a_current_template():
    """migrate_schemas (run to make the test database) created and migrated the template."""
    assert schemas.schemas_behind([schemas.template_schema()]) == []


def test_a_copy_is_what_migrating_makes():
    _migrated("t_migrated")
    assert schemas.schema_create("t_copied") is True
    migrated, copied = catalog("t_migrated"), catalog("t_copied")
    assert migrated["columns"]
    assert migrated["constraints"]
    assert migrated["indexes"]
    assert migrated["sequences"]
    assert any(kind == "f" for _, _, kind, *_ in migrated["constraints"])
    assert len(migrated["migrations"]) > 10
    assert migrated["content_types"]
    for key in migrated:
        assert copied[key] == migrated[key], key


def test_a_copys_sequences_are_its_own_and_start_fresh():
    schemas.schema_create("t_first")
    schemas.schema_create("t_second")
    owners = catalog("t_second")["sequence_owners"]
    assert owners
    assert all(own_schema for *_, own_schema in owners)
    from functions.models import Environment

    for schema in ("t_first", "t_second"):
        with schema_context(schema):
            environment = Environment.objects.create(name="python")
            assert environment.pk == 1, schema
    with schema_context(schemas.template_schema()):
        assert not Environment.objects.exists()  # the template was not written to
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_sequences WHERE schemaname = %s AND last_value IS NOT NULL "
            "AND sequencename NOT IN ('django_migrations_id_seq', 'django_content_type_id_seq')",
            [schemas.template_schema()],
        )
        assert cursor.fetchone()[0] == 0  # no sequence of the template has been used


def test_a_template_the_copy_cannot_reproduce_is_not_copied_but_the_schema_is_migrated():
    template = schemas.template_schema()
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE VIEW "{template}".extra AS SELECT 1 AS one')
    # Not through a migration, so the template's last read still stands: forget it.
    schemas._read.clear()
    with pytest.raises(schemas.TemplateUnsupported, match="a relation other than"):
        schemas.template_read(template)
    assert schemas.schema_create("t_fallback") is False
    _migrated("t_reference")
    fallback, reference = catalog("t_fallback"), catalog("t_reference")
    for key in reference:
        assert fallback[key] == reference[key], key


def test_a_copy_of_a_template_behind_the_code_is_migrated_to_the_end():
    """The template is migrated back one migration (as if deployed code had one more than the
    template): the copy has it all the same."""
    template = schemas.template_schema()
    call_command("migrate_schemas", "releases", "zero", schema_name=template, interactive=False, verbosity=0)
    assert schemas.schemas_behind([template]) == [template]
    assert schemas.schema_create("t_late") is True
    assert schemas.schemas_behind(["t_late"]) == []
    _migrated("t_reference")
    late, reference = catalog("t_late"), catalog("t_reference")
    for key in ("columns", "column_order", "constraints", "indexes", "sequence_owners", "migrations"):
        assert late[key] == reference[key], key
    # Their values aside: the template recorded releases' migrations twice (unapplied in between).
    assert [row[:-1] for row in late["sequences"]] == [row[:-1] for row in reference["sequences"]]


def test_a_schema_that_exists_is_refused():
    schemas.schema_create("t_once")
    from django.db.utils import ProgrammingError

    with pytest.raises(ProgrammingError):
        schemas.schema_create("t_once")
