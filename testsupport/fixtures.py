"""Shared fixtures (loaded with ``-p``): personas, tenants, API clients, real processes.

Personas follow Healthchecks: in tenant ``acme`` Alice is the tenant admin, Bob a
developer and Vera a viewer; Oscar is the admin of ``globex``, an outsider to ``acme``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.cache import cache
from django.db.backends.signals import connection_created
from django_tenants.utils import get_public_schema_name
from rest_framework.test import APIClient

from testsupport.services import require

pytest_plugins = [
    "testsupport.processes", "testsupport.runtime", "testsupport.fake_kubernetes", "testsupport.prometheus",
    "testsupport.e2e", "testsupport.hostile",
]  # fmt: skip


def _test_session_settings(sender: Any, connection: Any, **kwargs: Any) -> None:
    """Tests that commit are followed by Django's flush, which empties every table with TRUNCATE;
    the audit table refuses TRUNCATE unless the session allows it (audit/migrations/0002).

    The session-scoped Celery worker may still be writing a record (the audit table, after
    reading the tenants table) when a test's flush truncates both: of the two, the worker is the
    one to give way, so this session waits longer (10 s) than the worker (1 s) before it looks
    for a deadlock. Setting it needs a superuser, which the embedded PostgreSQL's user is."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('faas_portal.audit_truncate', 'on', false)")
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if cursor.fetchone()[0]:
            cursor.execute("SET deadlock_timeout = '10s'")


connection_created.connect(_test_session_settings)


@pytest.fixture(autouse=True)
def _services_and_public_tenant(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test that touches the database gets django-tenants' public tenant row.

    A transactional test commits, so afterwards its tenant schemas are dropped (its
    flush only empties the public tables) and the next test starts clean.
    """
    names = set(request.fixturenames)
    marker = request.node.get_closest_marker("django_db")
    if not names & {"db", "transactional_db"} and marker is None:
        yield
        return
    require("postgresql")
    require("redis")
    request.getfixturevalue("_close_stray_connections")
    if "allow_async_orm" in names:
        request.getfixturevalue("allow_async_orm")  # first, so it outlasts the flush
    transactional = "transactional_db" in names or bool(marker and marker.kwargs.get("transaction"))
    request.getfixturevalue("transactional_db" if transactional else "db")
    from django.db import connection

    connection.set_schema_to_public()  # type: ignore[attr-defined]  # a request may have left another
    ensure_public_tenant()
    cache.clear()
    yield
    if transactional:
        connection.set_schema_to_public()  # type: ignore[attr-defined]
        with connection.cursor() as cursor:
            cursor.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 't\\_%%'")
            for (schema,) in cursor.fetchall():
                # IF EXISTS: a worker deleting a tenant the test deleted may drop it meanwhile.
                cursor.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(autouse=True)
def _fresh_channel_layer() -> Iterator[None]:
    """Each test gets channel layers of its own. channels_redis binds its receive lock to the
    event loop that received first, and pytest-asyncio runs a loop per test: a receive left
    pending when one test's loop closed would otherwise break every later test that receives."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def ensure_public_tenant() -> None:
    """django-tenants' row for the public schema (a transactional test's flush deletes it)."""
    from tenants.models import Tenant, TenantState

    Tenant.objects.get_or_create(
        schema_name=get_public_schema_name(),
        defaults={"slug": "_public", "name": "public", "state": TenantState.READY},
    )


@pytest.fixture(scope="session")
def _close_stray_connections(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Before the test database is dropped, end connections that threads left open
    (channels' database_sync_to_async runs queries on pool threads)."""
    yield
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@dataclass
class World:
    acme: Any
    globex: Any
    alice: Any
    bob: Any
    vera: Any
    oscar: Any
    admin: Any


@pytest.fixture
def make_user(db: None) -> Callable[..., Any]:
    from portal.models import User

    def make(username: str, *, platform_admin: bool = False) -> User:
        if platform_admin:
            return User.objects.create_superuser(username=username, password="pw-" + username)
        return User.objects.create_user(username=username, password="pw-" + username)

    return make


@pytest.fixture
def make_tenant(db: None, request: pytest.FixtureRequest) -> Callable[..., Any]:
    """A provisioned (ready) tenant, its schema and data plane created synchronously: on the
    session's runtime, or on the fake API server when a test selects the kubernetes backend."""
    from django.conf import settings

    from tenants import provisioning, services

    def make(slug: str, *, admin: Any = None) -> Any:
        if settings.PORTAL_BACKEND == "local":
            request.getfixturevalue("runtime_session")
        tenant = services.tenant_create(slug=slug, name=slug.title(), admin=admin)
        provisioning.tenant_provision(tenant_id=tenant.pk)
        tenant.refresh_from_db()
        return tenant

    return make


@pytest.fixture
def world(make_user: Callable[..., Any], make_tenant: Callable[..., Any]) -> World:
    from tenants.models import Membership
    from tenants.roles import Role

    alice, bob, vera, oscar = (make_user(n) for n in ("alice", "bob", "vera", "oscar"))
    admin = make_user("root", platform_admin=True)
    acme = make_tenant("acme", admin=alice)
    globex = make_tenant("globex", admin=oscar)
    Membership.objects.create(user=bob, tenant=acme, role=Role.DEVELOPER)
    Membership.objects.create(user=vera, tenant=acme, role=Role.VIEWER)
    return World(acme=acme, globex=globex, alice=alice, bob=bob, vera=vera, oscar=oscar, admin=admin)


@pytest.fixture
def hello(world: World) -> Any:
    """Function ``hello`` in acme: a hello-world draft, neither built nor deployed."""
    from django_tenants.utils import schema_context

    from functions.services.functions import function_create

    with schema_context(world.acme.schema_name):
        return function_create(name="hello")


@pytest.fixture
def api() -> Callable[..., APIClient]:
    """``api(user)`` signs in by session; ``api(token="fpt_...")`` sends a bearer token."""

    def make(user: Any = None, *, token: str | None = None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.force_login(user)
        if token is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return client

    return make


@pytest.fixture
def token_for() -> Callable[..., str]:
    """A fresh API token secret for ``user`` in ``tenant`` with ``role``."""
    from tenants import services

    def make(user: Any, tenant: Any, role: str, **kwargs: Any) -> str:
        return services.token_create(tenant=tenant, user=user, name="t", role=role, **kwargs).secret

    return make


def error_of(response: Any) -> dict[str, Any]:
    """The error object of a response, asserting the one error shape."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "detail"}, body
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    return body["error"]


@pytest.fixture
def allow_async_orm() -> Iterator[None]:
    """Playwright's sync API runs an event loop in the test thread; Django would refuse ORM calls."""
    old = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if old is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = old


def pytest_configure(config: pytest.Config) -> None:
    from django.conf import settings

    # PBKDF2 costs ~0.3 s a password; tests create many users. Servers started by the
    # tests keep the real hashers, so browser tests set real hashes (see slow_password).
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]


def slow_password(user: Any, password: str) -> None:
    """Give ``user`` a password that a separately started server can verify."""
    from django.contrib.auth.hashers import make_password

    user.password = make_password(password, hasher="pbkdf2_sha256")
    user.save(update_fields=["password"])
