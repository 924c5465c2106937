from __future__ import annotations

import pytest
from django.core.cache import cache
from django.db import connection
from django_tenants.utils import schema_context

pytestmark = pytest.mark.django_db


def test_cache_keys_are_per_tenant(world):
    with schema_context(world.acme.schema_name):
        cache.set("settings", "acme's")
    with schema_context(world.globex.schema_name):
        assert cache.get("settings") is None
        cache.set("settings", "globex's")
    with schema_context(world.acme.schema_name):
        assert cache.get("settings") == "acme's"
    assert connection.schema_name == "public"  # type: ignore[attr-defined]
    assert cache.get("settings") is None
