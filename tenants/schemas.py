"""Tenant schemas at scale: a new tenant's schema is a copy of a template schema, and
``migrate_schemas`` leaves alone the tenants that have every migration already.

**The template.** ``settings.TENANT_BASE_SCHEMA`` (``tenant_template``; never a tenant's name:
theirs start with ``t_``) is a schema migrated like a tenant's and never written to otherwise.
``migrate_schemas`` over all tenants creates it when missing and migrates it first, so it is as
current as the code (``SkipCurrentSchemas`` below). ``schema_create`` copies it into a new
schema, in one transaction and three round trips: each table made ``LIKE`` the template's
(PostgreSQL copies columns, defaults, identity columns with fresh sequences of their own, NOT
NULL and CHECK constraints, indexes and the keys they back from their stored definitions, so
nothing is printed and parsed again), then its indexes, keys and sequences renamed to the
template's names, the template's rows copied (``django_migrations``, the content types: what
migrating writes) with each sequence set where the template's is, and the foreign keys added.
The result is what migrating the new schema makes (tenants/tests/test_template_schema.py
compares the catalogs), in about 70 ms where migrating takes about 0.6 s. The template's catalog
is read once per process and change of the template (``_fingerprint``). The copy then checks
the new schema's recorded migrations and migrates it when the template was behind the code (say,
a migration deployed without ``migrate_schemas``). A template holding anything the copy does not
reproduce (a view, a function, a trigger, a table comment, a sequence no column owns, ...) is
not copied: the schema is migrated instead, with a warning. django-tenants' own ``clone_schema``
(pg-clone-schema, a plpgsql function) was measured first: 0.2 to 1 s a schema here, against
0.6 s for migrating.

**The no-op migrate.** ``migrate_schemas`` runs the whole migrate command in every tenant's
schema, about 45 ms each when there is nothing to do (django-tenants users report 12 minutes for
900 tenants). ``SkipCurrentSchemas`` (``settings.GET_EXECUTOR_FUNCTION``) first reads, in one
query across all the schemas, which migrations each has recorded, and hands only the schemas
that lack one to django-tenants' executor (standard, or the one ``--executor`` names), whose
behaviour and output for them are unchanged. A schema with every migration recorded is skipped:
migrate would apply nothing there, and its ``post_migrate`` handlers (content types) would find
everything in place, since a new model comes with a migration. Runs that do something other
than "apply what is missing" (an app label or target migration, ``--fake``, ``--fake-initial``,
``--plan``, ``--check``, ``--prune``, ``--run-syncdb``) take the full path for every schema.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.migration import Migration
from django_tenants.migration_executors import get_executor as tenants_get_executor
from django_tenants.migration_executors.base import MigrationExecutor as TenantsExecutor
from django_tenants.migration_executors.base import run_migrations

log = logging.getLogger(__name__)

# Held (shared) while a schema is copied from the template, and (exclusive) while the template is
# migrated, so a copy never reads a template half way through a migrate_schemas.
TEMPLATE_LOCK = 0x7E4A_17E5
# The options with which migrate_schemas does something else than apply what is missing.
FULL_PATH_OPTIONS = ("app_label", "migration_name", "fake", "fake_initial", "plan", "prune",
                     "run_syncdb", "check_unapplied")  # fmt: skip
# How many schemas one query reads the recorded migrations of.
SCHEMAS_PER_QUERY = 500


class TemplateUnsupported(Exception):
    """The template holds something the copy does not reproduce."""


def template_schema() -> str:
    return str(settings.TENANT_BASE_SCHEMA)


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


# -- which schemas lack a migration -----------------------------------------------------------


@functools.cache
def expected_migrations() -> tuple[frozenset[tuple[str, str]], tuple[tuple[tuple[str, str], ...], ...]]:
    """The migrations a current schema has recorded: every one on disk, as the migrate command
    sees them (a squashed migration counts as recorded when all that it replaces are). Returns
    the plain ones and, for each squashed one, the alternatives (itself; what it replaces).
    Read once per process: the migrations on disk change only with the code."""
    graph = MigrationLoader(None, ignore_no_migrations=True).graph
    plain: set[tuple[str, str]] = set()
    squashed: list[tuple[tuple[str, str], ...]] = []
    for key, migration in graph.nodes.items():
        if isinstance(migration, Migration) and migration.replaces:
            squashed.append((key, *((app, name) for app, name in migration.replaces)))
        else:
            plain.add(key)
    return frozenset(plain), tuple(squashed)


def is_current(applied: set[tuple[str, str]]) -> bool:
    """Whether a schema that recorded ``applied`` has every migration on disk."""
    plain, squashed = expected_migrations()
    if not plain <= applied:
        return False
    return all(alt[0] in applied or all(r in applied for r in alt[1:]) for alt in squashed)


def recorded_migrations(schemas: Sequence[str]) -> dict[str, set[tuple[str, str]]]:
    """The migrations each of ``schemas`` has recorded, read in one query per
    ``SCHEMAS_PER_QUERY`` schemas; a schema without a ``django_migrations`` table (or none at
    all) is left out."""
    with connection.cursor() as cursor:
        # A lookup by name each (pg_class has no index to find them by schema).
        cursor.execute(
            "SELECT s FROM unnest(%s::text[]) s WHERE to_regclass(quote_ident(s) || '.django_migrations') "
            "IS NOT NULL",
            [list(schemas)],
        )
        present = [row[0] for row in cursor.fetchall()]
        recorded: dict[str, set[tuple[str, str]]] = {schema: set() for schema in present}
        for start in range(0, len(present), SCHEMAS_PER_QUERY):
            chunk = present[start : start + SCHEMAS_PER_QUERY]
            selects = [f"SELECT %s, app, name FROM {_quote(s)}.django_migrations" for s in chunk]
            cursor.execute(" UNION ALL ".join(selects), chunk)
            for schema, app, name in cursor.fetchall():
                recorded[schema].add((app, name))
    return recorded


def schemas_behind(schemas: Sequence[str]) -> list[str]:
    """Those of ``schemas`` (in their order) that lack a migration, or have no
    ``django_migrations`` table, or do not exist."""
    recorded = recorded_migrations(schemas)
    return [s for s in schemas if s not in recorded or not is_current(recorded[s])]


# -- the executor of migrate_schemas ----------------------------------------------------------


class SkipCurrentSchemas(TenantsExecutor):
    """Mixed in front of a django-tenants executor: over all tenants, migrates the template
    first, then hands on only the schemas that lack a migration (see the module docstring)."""

    def run_migrations(self, tenants: Iterable[str] | None = None) -> None:
        schemas = list(tenants or [])
        if self.PUBLIC_SCHEMA_NAME in schemas:  # the shared schema: always the full path
            super().run_migrations(tenants=schemas)
            return
        if not self.options.get("schema_name"):  # every tenant: the template first
            self._migrate_template()
        if self._full_path():
            super().run_migrations(tenants=schemas)
            return
        behind = schemas_behind(schemas)
        if int(self.options.get("verbosity", 1)) >= 1 and len(behind) < len(schemas):
            sys.stdout.write(
                f"{len(schemas) - len(behind)} of {len(schemas)} tenant schema(s) have every "
                "migration recorded: skipped.\n"
            )
        if behind:
            super().run_migrations(tenants=behind)

    def _full_path(self) -> bool:
        return any(self.options.get(option) for option in FULL_PATH_OPTIONS)

    def _migrate_template(self) -> None:
        template = template_schema()
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(template)}")
            cursor.execute("SELECT pg_advisory_lock(%s)", [TEMPLATE_LOCK])
        try:
            if self._full_path() or schemas_behind([template]):
                # Always in this process, whatever the executor: the lock is this connection's.
                run_migrations(self.args, self.options, "template", template)
        finally:
            with connection.cursor() as cursor:  # a new connection when migrating closed it: a no-op
                cursor.execute("SELECT pg_advisory_unlock_all()")


@functools.cache
def _executor_class(codename: str | None) -> type[TenantsExecutor]:
    base = tenants_get_executor(codename=codename)
    return type(f"SkipCurrent{base.__name__}", (SkipCurrentSchemas, base), {"codename": base.codename})


def get_executor(codename: str | None = None) -> type[TenantsExecutor]:
    """``settings.GET_EXECUTOR_FUNCTION``: django-tenants' executor named ``codename`` (or
    ``EXECUTOR``, or the standard one), with the schemas that are current left out."""
    return _executor_class(codename)


# -- copying the template -----------------------------------------------------------------------

# What the copy does not reproduce: a template holding one is not copied (the schema is migrated).
_UNSUPPORTED = {
    "a relation other than a table, index or identity sequence": """
        SELECT c.relname FROM pg_class c WHERE c.relnamespace = %(ns)s AND (
          c.relkind NOT IN ('r', 'i', 'S') OR c.relpersistence <> 'p' OR c.reloptions IS NOT NULL
          OR c.relrowsecurity OR (c.relkind = 'S' AND NOT EXISTS (
            SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
            AND d.deptype = 'i' AND d.refclassid = 'pg_class'::regclass)))""",
    "a trigger": """SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        WHERE c.relnamespace = %(ns)s AND NOT t.tgisinternal""",
    "a function": "SELECT proname FROM pg_proc WHERE pronamespace = %(ns)s",
    "a type": """SELECT t.typname FROM pg_type t WHERE t.typnamespace = %(ns)s AND t.typrelid = 0
        AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.oid = t.typelem AND e.typrelid <> 0)""",
    "a table comment": """SELECT c.relname FROM pg_description d JOIN pg_class c ON c.oid = d.objoid
        AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0 WHERE c.relnamespace = %(ns)s
        AND c.relkind = 'r'""",
    "an inherited or partitioned table": """SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relnamespace = %(ns)s""",
    "extended statistics": "SELECT stxname FROM pg_statistic_ext WHERE stxnamespace = %(ns)s",
    "a column with options or a statistics target of its own": """SELECT a.attname FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid WHERE c.relnamespace = %(ns)s AND c.relkind = 'r'
        AND a.attnum > 0 AND NOT a.attisdropped AND (a.attoptions IS NOT NULL OR a.attstattarget > 0)""",
}

_COLUMNS = """
SELECT c.relname, a.attname, a.attgenerated FROM pg_class c
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relnamespace = %(ns)s AND c.relkind = 'r' ORDER BY c.relname, a.attnum
"""

_FOREIGN_KEYS = """
SELECT c.relname, k.conname, pg_get_constraintdef(k.oid) FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid WHERE c.relnamespace = %(ns)s AND k.contype = 'f'
ORDER BY c.relname, k.conname
"""

# An index by what it is (its table, the constraint it backs, and its definition after "USING":
# method, columns, operator classes, INCLUDE, WHERE), and its name. Read with search_path set to
# its own schema, so the definitions of the template's and of a copy's compare.
_INDEXES = """
SELECT t.relname, coalesce(k.contype, '-'), substring(pg_get_indexdef(i.indexrelid) FROM ' USING .*$'),
       c.relname
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid
     AND k.contype IN ('p', 'u', 'x')
WHERE i.indrelid = ANY(%(tables)s::regclass[]) ORDER BY 1, 2, 3, 4
"""

# Each identity sequence by the column it belongs to, and its state.
_SEQUENCES = """
SELECT t.relname, a.attname, s.relname FROM pg_depend d
JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_class t ON t.oid = d.refobjid JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = ANY(%(tables)s::regclass[])
  AND d.classid = 'pg_class'::regclass AND d.deptype = 'i'
"""

IndexKey = tuple[str, str, str]  # table, constraint kind ("-": none), definition after USING


@dataclass(frozen=True)
class Template:
    """What copying the template needs, read from its catalog (``template_read``)."""

    name: str
    columns: dict[str, list[str]]  # table: its columns but the generated ones, in order
    foreign_keys: list[tuple[str, str, str]]  # table, name, definition (no schema but others')
    indexes: dict[IndexKey, list[str]]  # what the index is: its names (more when identical)
    # table, column: the name of its sequence, its value, whether called, its type
    sequences: dict[tuple[str, str], tuple[str, int, bool, str]]


def _check_supported(cursor: Any, ns: int) -> None:
    for what, query in _UNSUPPORTED.items():
        cursor.execute(query, {"ns": ns})
        found = [row[0] for row in cursor.fetchall()]
        if found:
            raise TemplateUnsupported(f"the template holds {what}: {', '.join(found[:5])}")


def _namespace(cursor: Any, schema: str) -> int:
    cursor.execute("SELECT oid FROM pg_namespace WHERE nspname = %s", [schema])
    row = cursor.fetchone()
    if row is None:
        raise TemplateUnsupported(f"there is no schema {schema}")
    return int(row[0])


# The catalog is read by the tables' oids, not by schema: pg_class has no index on the schema
# alone, and with 1,000 tenants it holds over 100,000 relations.


def _qualified(schema: str, tables: Iterable[str]) -> list[str]:
    return [f"{_quote(schema)}.{_quote(table)}" for table in tables]


def _indexes(cursor: Any, tables: list[str]) -> dict[IndexKey, list[str]]:
    cursor.execute(_INDEXES, {"tables": tables})
    found: dict[IndexKey, list[str]] = {}
    for table, kind, definition, name in cursor.fetchall():
        found.setdefault((table, kind, definition), []).append(name)
    return found


def _sequences(cursor: Any, tables: list[str]) -> dict[tuple[str, str], str]:
    cursor.execute(_SEQUENCES, {"tables": tables})
    return {(table, column): name for table, column, name in cursor.fetchall()}


# The last template read, by its fingerprint (``_fingerprint``): one process copies it many times.
_read: dict[tuple[int, int, int], Template] = {}


def _fingerprint(cursor: Any, template: str) -> tuple[int, int, int]:
    """What changes whenever the template does: the schema itself (dropped and made again, it is
    another), and its recorded migrations (every change to it is a migration, recorded in the
    same transaction, and an unapplied one is a deleted row)."""
    ns = _namespace(cursor, template)
    cursor.execute("SELECT to_regclass(%s)", [f"{_quote(template)}.django_migrations"])
    if cursor.fetchone()[0] is None:
        raise TemplateUnsupported("the template has no migrations: run migrate_schemas")
    cursor.execute(f"SELECT count(*), coalesce(max(id), 0) FROM {_quote(template)}.django_migrations")
    count, last = cursor.fetchone()
    return ns, int(count), int(last)


def template_read(template: str) -> Template:
    """Read the template's catalog, or take the last read when the template has not changed
    since (``_fingerprint``). Raises TemplateUnsupported when it holds something that copying
    would not reproduce. Called with the template locked against migrate_schemas (shared)."""
    with connection.cursor() as cursor:
        key = _fingerprint(cursor, template)
        if key not in _read:
            _read.clear()
            _read[key] = _template_read(cursor, template, key[0])
    return _read[key]


def _template_read(cursor: Any, template: str, ns: int) -> Template:
    # In the caller's transaction, with search_path set to the template alone: what the catalog
    # prints names the template's objects without their schema, and every other's (public) with it.
    _check_supported(cursor, ns)
    cursor.execute(f"SET LOCAL search_path TO {_quote(template)}")
    cursor.execute(_COLUMNS, {"ns": ns})
    columns: dict[str, list[str]] = {}
    for table, column, generated in cursor.fetchall():
        names = columns.setdefault(table, [])
        if generated != "s":
            names.append(column)
    cursor.execute(_FOREIGN_KEYS, {"ns": ns})
    foreign_keys = [(table, name, definition) for table, name, definition in cursor.fetchall()]
    tables = _qualified(template, columns)
    indexes = _indexes(cursor, tables)
    sequences: dict[tuple[str, str], tuple[str, int, bool, str]] = {}
    for owner, name in _sequences(cursor, tables).items():
        cursor.execute(
            f"SELECT last_value, is_called, format_type(seqtypid, NULL) FROM {_quote(name)}, pg_sequence"
            " WHERE seqrelid = %s::regclass",
            [_quote(name)],
        )
        value, called, type_ = cursor.fetchone()
        sequences[owner] = (name, value, called, type_)
    return Template(template, columns, foreign_keys, indexes, sequences)


def _tables_and_rows(template: Template) -> list[str]:
    """The tables, made ``LIKE`` the template's (columns, defaults, identity, generated columns,
    NOT NULL and CHECK constraints with their names, indexes and the keys they back, storage,
    comments: PostgreSQL copies each from the template's own definition, nothing printed and
    parsed again), and the template's rows."""
    statements = []
    for table in template.columns:
        source = f"{_quote(template.name)}.{_quote(table)}"
        statements.append(f"CREATE TABLE {_quote(table)} (LIKE {source} INCLUDING ALL)")
    for table, columns in template.columns.items():
        source = f"{_quote(template.name)}.{_quote(table)}"
        names = ", ".join(_quote(c) for c in columns)
        statements.append(
            f"INSERT INTO {_quote(table)} ({names}) OVERRIDING SYSTEM VALUE SELECT {names} FROM {source}"
        )
    return statements


def _names_and_keys(template: Template, cursor: Any, schema: str) -> list[str]:
    """Give the copy's indexes, the keys they back and its sequences the template's names
    (``LIKE`` chose its own), set each sequence where the template's is, then add the foreign
    keys. Renames go through temporary names, so that no name is taken while they move."""
    tables = _qualified(schema, template.columns)
    indexes = _indexes(cursor, tables)
    if {k: len(v) for k, v in indexes.items()} != {k: len(v) for k, v in template.indexes.items()}:
        raise TemplateUnsupported("the copy's indexes do not match the template's")
    renames: list[tuple[str, str, str, str]] = []  # kind, table, the copy's name, the template's
    for key, names in template.indexes.items():
        pairs = zip(indexes[key], names, strict=True)
        renames += [(key[1], key[0], ours, theirs) for ours, theirs in pairs if ours != theirs]
    statements = [
        _rename(kind, table, ours, f"copy_rename_{n}") for n, (kind, table, ours, _) in enumerate(renames)
    ]
    statements += [
        _rename(kind, table, f"copy_rename_{n}", theirs) for n, (kind, table, _, theirs) in enumerate(renames)
    ]
    for owner, ours in _sequences(cursor, tables).items():
        theirs, value, called, type_ = template.sequences[owner]
        # LIKE makes every identity sequence a bigint one (with the template's bounds).
        statements.append(f"ALTER SEQUENCE {_quote(ours)} AS {type_}")
        if ours != theirs:
            statements.append(f"ALTER SEQUENCE {_quote(ours)} RENAME TO {_quote(theirs)}")
        sequence = _literal(_quote(theirs))
        statements.append(
            f"SELECT setval({sequence}::regclass, {int(value)}, {'true' if called else 'false'})"
        )
    for table, name, definition in template.foreign_keys:
        statements.append(f"ALTER TABLE {_quote(table)} ADD CONSTRAINT {_quote(name)} {definition}")
    return statements


def _rename(kind: str, table: str, old: str, new: str) -> str:
    if kind == "-":
        return f"ALTER INDEX {_quote(old)} RENAME TO {_quote(new)}"
    return f"ALTER TABLE {_quote(table)} RENAME CONSTRAINT {_quote(old)} TO {_quote(new)}"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def schema_copy(template: Template, schema_name: str) -> None:
    """Fill the empty schema ``schema_name`` with a copy of ``template``, in the caller's
    transaction (three round trips to the database)."""
    schema = _quote(schema_name)
    with connection.cursor() as cursor:
        tables = _tables_and_rows(template)
        # The copy's catalog is then read as the template's was: search_path set to it alone.
        cursor.execute(";\n".join([f"SET LOCAL search_path TO {schema}, public", *tables,
                                    f"SET LOCAL search_path TO {schema}"]))  # fmt: skip
        statements = _names_and_keys(template, cursor, schema_name)
        cursor.execute(";\n".join([f"SET LOCAL search_path TO {schema}, public", *statements]))


def schema_create(schema_name: str, *, verbosity: int = 0) -> bool:
    """Create ``schema_name`` with every migration applied: a copy of the template when it can
    (see the module docstring), else by migrating. Either way, a schema still lacking a
    migration afterwards is migrated. Runs in one transaction (all or nothing); the caller's,
    when it has one. Raises when the schema exists. Returns whether it was copied."""
    copied = False
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE SCHEMA {_quote(schema_name)}")
            cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [TEMPLATE_LOCK])
        try:
            with transaction.atomic():  # a savepoint: a failed copy leaves the empty schema
                schema_copy(template_read(template_schema()), schema_name)
            copied = True
        except TemplateUnsupported as exc:
            log.warning("tenant schema %s is migrated, not copied: %s", schema_name, exc)
        connection.set_schema_to_public()  # type: ignore[attr-defined]  # search_path as django-tenants knows it
        if not copied or schemas_behind([schema_name]):
            migrate_schema(schema_name, verbosity=verbosity)
    return copied


def migrate_schema(schema_name: str, *, verbosity: int = 0) -> None:
    """``migrate_schemas`` for one existing schema (a no-op when it is current)."""
    call_command(
        "migrate_schemas", tenant=True, schema_name=schema_name, interactive=False, verbosity=verbosity
    )
    connection.set_schema_to_public()  # type: ignore[attr-defined]
