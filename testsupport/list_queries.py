"""Fixing a list's query count: the same number of queries for a few rows and for many
(issue 19). Used by the ``test_list_queries*`` files of each app."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import transaction
from django_tenants.utils import schema_context

from audit import services as audit
from functions.models import Build, BuildState, Draft, Function, TargetKind, Version
from functions.services import versions
from portal.models import User
from tenants.models import Membership, Tenant, TenantState
from tenants.roles import Role

# Rows added before each counted request: a few, then enough more that a query per row (or
# per row's related object) would show.
FEW, MORE = 3, 27


def assert_same_queries(
    assert_num_queries: Callable[[int], Any],
    expected: int,
    *,
    get: Callable[[], Any],
    grow: Callable[[int], None],
    check: Callable[[Any, int], None],
) -> None:
    """``get()`` (one request) reads ``expected`` queries with FEW rows and with FEW + MORE.

    ``grow(n)`` adds n rows (and whatever each row shows of other objects); ``check(response,
    total)`` asserts the answer shows the ``total`` rows added so far, so a count cannot stay
    the same by showing nothing. ``get`` runs once first: a session's or token's first use may
    note things (last_used_at) that later requests do not.
    """
    get()
    total = 0
    for more in (FEW, MORE):
        grow(more)
        total += more
        with assert_num_queries(expected):
            response = get()
        check(response, total)


# ---------------------------------------------------------------- rows to list


def publish_v1(world: Any, function: Function) -> Version:
    """``function`` with a succeeded build of its draft and version 1 published from it."""
    with schema_context(world.acme.schema_name):
        Build.objects.create(
            function=function,
            draft_revision=Draft.objects.get(function=function).revision,
            state=BuildState.SUCCEEDED,
            sha256="a" * 64,
            python_version=function.environment.runtime_version,
        )
        return versions.version_publish(function=function)


def add_versions(function: Function, count: int) -> list[Version]:
    """``count`` more versions of ``function``, each with its own build (as v1's settings)."""
    first = Version.objects.get(function=function, number=1)
    start = Version.objects.filter(function=function).count() + 1
    made = []
    for number in range(start, start + count):
        build = Build.objects.create(
            function=function, draft_revision=number, state=BuildState.SUCCEEDED, sha256=f"{number:064x}"
        )
        made.append(
            Version.objects.create(function=function, number=number, build=build, config=first.config)
        )
    return made


def targets(function: Function, index: int) -> dict[str, Any]:
    """Every third trigger targets the alias, a version, or the draft."""
    kind = (TargetKind.ALIAS, TargetKind.VERSION, TargetKind.DRAFT)[index % 3]
    alias = function.aliases.get(name="live") if kind == TargetKind.ALIAS else None
    version = Version.objects.get(function=function, number=1) if kind == TargetKind.VERSION else None
    return {"target_kind": kind, "alias": alias, "version": version}


def add_members(world: Any, count: int) -> None:
    """``count`` more viewers of acme, each a new user."""
    start = Membership.objects.filter(tenant=world.acme).count()
    for index in range(start, start + count):
        user = User.objects.create_user(username=f"m{index:03d}", email=f"m{index}@example.com")
        Membership.objects.create(user=user, tenant=world.acme, role=Role.VIEWER)


def add_audit_records(count: int, *, tenant: Tenant | None) -> None:
    """``count`` more records in ``tenant``'s trail (None: the platform's)."""
    for index in range(count):
        with (
            transaction.atomic(),
            audit.change(
                "test.change",
                object_type="test",
                object_name=f"n{index}",
                tenant=tenant,
                platform=tenant is None,
            ),
        ):
            pass


def add_tenants(count: int) -> None:
    """``count`` more tenant rows (their schemas are not needed to list them)."""
    start = Tenant.objects.count()
    Tenant.objects.bulk_create(
        Tenant(
            slug=f"t{index:03d}",
            name=f"T{index}",
            schema_name=f"t_{index:03d}",
            state=TenantState.READY,
            quota={"functions": index},
        )
        for index in range(start, start + count)
    )
