"""Each tenant's URLconf is made once per process (portal.middleware.TenantUrlConfs) instead of
once per request: requests to two tenants in turn still get their own tenant's links, a
tenant's requests share one URLconf (so one resolver), and a dropped URLconf takes Django's
URL caches with it."""

from __future__ import annotations

import re
from types import ModuleType
from typing import Any

import pytest
from django.test import Client
from django.urls import Resolver404, URLResolver, get_resolver, resolvers
from django_tenants.utils import schema_context

from functions.services.functions import function_create
from portal.middleware import TENANT_URLCONFS, TenantUrlConfs

pytestmark = pytest.mark.django_db


def _tenant_links(html: str) -> set[str]:
    return set(re.findall(r'href="/t/([a-z0-9-]+)/', html))


def test_two_tenants_in_turn_each_get_their_own_links(world: Any) -> None:
    for tenant in (world.acme, world.globex):
        with schema_context(tenant.schema_name):
            function_create(name="hello")
    acme, globex = Client(), Client()
    acme.force_login(world.alice)
    globex.force_login(world.oscar)
    urlconfs: dict[str, set[int]] = {"acme": set(), "globex": set()}
    for _ in range(3):
        for slug, client in (("acme", acme), ("globex", globex)):
            response = client.get(f"/t/{slug}/functions/hello/")  # its tab links are reverse()d
            assert response.status_code == 200
            html = response.content.decode()
            assert _tenant_links(html) == {slug}
            assert f'href="/t/{slug}/functions/hello/test/"' in html
            urlconfs[slug].add(id(response.wsgi_request.urlconf))  # type: ignore[attr-defined]
    assert all(len(ids) == 1 for ids in urlconfs.values())  # one URLconf per tenant, kept
    assert urlconfs["acme"] != urlconfs["globex"]


def test_a_foreign_tenant_is_still_refused_with_the_kept_urlconfs(world: Any) -> None:
    client = Client()
    client.force_login(world.alice)
    assert client.get("/t/acme/functions/").status_code == 200
    foreign = client.get("/t/globex/functions/")
    unknown = client.get("/t/nope/functions/")
    assert foreign.status_code == unknown.status_code == 404
    assert client.get("/t/acme/functions/").status_code == 200


def _resolver(urlconf: ModuleType) -> URLResolver:
    return get_resolver(urlconf)  # type: ignore[arg-type]  # a module is a URLconf too


def _cached_resolvers() -> int:
    """How many resolvers Django's cache holds."""
    return int(resolvers._get_cached_resolver.cache_info().currsize)  # type: ignore[attr-defined]


def _reached(world: Any) -> None:
    """The tenants as the middleware has them: reached at /t/<slug>/."""
    for tenant in (world.acme, world.globex):
        tenant.domain_subfolder = tenant.slug


def test_a_tenant_keeps_one_resolver(world: Any) -> None:
    _reached(world)
    first = TENANT_URLCONFS.get(world.acme)
    assert TENANT_URLCONFS.get(world.acme) is first
    assert _resolver(first) is _resolver(first)
    assert _resolver(first).resolve("/t/acme/functions/").url_name == "function-list"
    with pytest.raises(Resolver404):
        _resolver(first).resolve("/t/globex/functions/")


def test_a_dropped_urlconf_clears_djangos_url_caches(world: Any) -> None:
    _reached(world)
    kept = TenantUrlConfs(size=1)
    acme = kept.get(world.acme)
    _resolver(acme)
    assert _cached_resolvers() > 0
    globex = kept.get(world.globex)  # acme's is dropped
    assert _cached_resolvers() == 0
    assert kept.get(world.globex) is globex
    assert kept.get(world.acme) is not acme  # made again
