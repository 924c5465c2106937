"""The audit pages: a tenant's trail for its admins (/t/<tenant>/audit/), the platform's for
platform admins (/platform/audit/); filters, "Older", the export link, the live socket's URL."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone

from tenants.models import ApiToken
from tenants.tests.test_audit_api import record

pytestmark = pytest.mark.django_db

PAGE = "/t/acme/audit/"
PLATFORM_PAGE = "/platform/audit/"


def rows(response: Any) -> list[str]:
    """The object names of the page's rows, top to bottom."""
    assert response.status_code == 200, response.content
    return [row["object_name"] for row in response.context["rows"]]


def test_the_tenant_admin_sees_filters_and_rows(world, client):
    agent = "Mozilla/5.0 (X11; Linux x86_64) Chrome/140"
    before, after = {"memory_mb": 128, "timeout_s": 60}, {"memory_mb": 256, "timeout_s": 60}
    made = record(world.acme, "hello", by=world.alice, before=before, after=after, agent=agent)
    client.force_login(world.alice)
    response = client.get(PAGE)
    html = response.content.decode()
    assert rows(response)[0] == "hello"
    for field in ('name="actor"', 'name="object"', 'name="action"', '<select name="object_type"'):
        assert field in html
    assert re.search(r'<input type="datetime-local" name="since"', html)
    assert re.search(r'<input type="datetime-local" name="until"', html)
    assert 'name="before"' not in html  # the cursor is the "Older" link's, not the form's
    row = re.search(rf'<tr data-record="{made.pk}">(.*?)</tr>', html, re.S)
    assert row is not None
    cells = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row.group(1)))
    assert "alice" in cells
    assert "203.0.113.7" in cells
    assert "Mozilla/5.0 (X11; Linux x86_64)…" in cells  # the user agent, short (in full as its title)
    assert "function.update" in cells
    assert "memory_mb : 128 → 256" in cells
    assert "timeout_s" not in cells  # only what changed
    assert 'data-audit-url="/t/acme/ws/audit/"' in html
    assert 'href="/t/acme/api/v1/audit/export/"' in html


def test_a_token_and_a_platform_change_are_shown_as_such(world, client, token_for):
    token_for(world.alice, world.acme, "admin")
    token = ApiToken.objects.get(user=world.alice)
    record(world.acme, "hello", by=world.alice, token=token)
    record(world.acme, "acme", object_type="tenant", action="tenant.update", platform=True, by=world.admin,
           ip="198.51.100.9")  # fmt: skip
    client.force_login(world.alice)
    html = client.get(PAGE).content.decode()
    assert f"token {token.key_id}" in html
    assert "198.51.100.9" not in html  # the platform admin's address is not the tenant's business
    assert '<span class="badge">platform</span>' in html
    client.force_login(world.admin)
    assert "198.51.100.9" in client.get(PLATFORM_PAGE).content.decode()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"actor": "bob"}, ["hello/prod"]),
        ({"object_type": "alias"}, ["hello/prod"]),
        ({"object": "hello"}, ["helloworld", "hello/prod", "hello"]),
        ({"object": "hello/"}, ["hello/prod"]),
        ({"action": "function.update"}, ["hello"]),
        ({"action": "function.", "actor": "alice"}, ["helloworld", "hello"]),
    ],
)
def test_each_filter_narrows_the_rows(world, client, query, expected):
    record(world.acme, "hello", by=world.alice)
    record(world.acme, "hello/prod", action="alias.set", object_type="alias", by=world.bob)
    record(world.acme, "helloworld", action="function.create", by=world.alice)
    client.force_login(world.alice)
    response = client.get(PAGE, query)
    assert rows(response) == expected
    html = response.content.decode()
    export = re.search(r'href="(/t/acme/api/v1/audit/export/[^"]*)"', html)
    assert export is not None
    assert {
        k: v[0] for k, v in parse_qs(urlsplit(export.group(1).replace("&amp;", "&")).query).items()
    } == query


def test_since_and_until_take_the_browsers_datetime_local(world, client):
    record(world.acme, "early")
    later = timezone.now() + timedelta(minutes=2)
    client.force_login(world.alice)
    minute = later.strftime("%Y-%m-%dT%H:%M")  # what <input type="datetime-local"> sends
    assert rows(client.get(PAGE, {"since": minute})) == []
    assert "early" in rows(client.get(PAGE, {"until": minute}))
    assert f'value="{minute}"' in client.get(PAGE, {"until": minute}).content.decode()


@pytest.mark.parametrize("query", [{"since": "not a time"}, {"object_type": "nosuch"}, {"before": "x"},
                                   {"since": "2026-01-02T00:00", "until": "2026-01-01T00:00"}])  # fmt: skip
def test_bad_filters_are_shown_not_a_500(world, client, query):
    client.force_login(world.alice)
    response = client.get(PAGE, query)
    assert response.status_code == 400
    assert b"data-form-errors" in response.content


def test_older_pages_follow_without_overlap_and_keep_the_filters(world, client):
    for n in range(60):
        record(world.acme, f"fn-{n}")
    client.force_login(world.alice)
    first = client.get(PAGE, {"object": "fn-"})
    assert rows(first) == [f"fn-{n}" for n in range(59, 9, -1)]
    assert "data-audit-url" in first.content.decode()  # live rows on the first page
    older = re.search(r'href="\?([^"]+)"[^>]*data-older', first.content.decode())
    assert older is not None
    query = older.group(1).replace("&amp;", "&")
    assert "object=fn-" in query
    second = client.get(f"{PAGE}?{query}")
    assert rows(second) == [f"fn-{n}" for n in range(9, -1, -1)]
    assert "data-older" not in second.content.decode()
    assert "data-audit-url" not in second.content.decode()  # an older page stays as it is


def test_the_page_is_for_tenant_admins_only(world, client):
    record(world.acme, "hello")
    for persona in (world.bob, world.vera):
        client.force_login(persona)
        response = client.get(PAGE)
        assert response.status_code == 403
        assert b"hello" not in response.content
    client.force_login(world.oscar)
    response = client.get(PAGE)
    assert response.status_code == client.get("/t/nosuch/audit/").status_code == 404
    client.logout()
    assert client.get(PAGE)["Location"] == f"/login/?next={PAGE}"


def test_the_page_changes_nothing(world, client):
    client.force_login(world.alice)
    assert client.post(PAGE, {"action": "x"}).status_code == 405
    client.force_login(world.admin)
    assert client.post(PLATFORM_PAGE, {"action": "x"}).status_code == 405


def test_a_globex_record_is_never_on_acmes_page(world, client):
    record(world.globex, "globex-only")
    client.force_login(world.alice)
    assert "globex-only" not in rows(client.get(PAGE))
    assert rows(client.get(PAGE, {"object": "globex-only"})) == []


def test_the_platform_page_is_for_platform_admins_only(world, client):
    platform = record(None, "ops-token", object_type="token", action="token.create", platform=True)
    record(world.acme, "hello")
    for persona in (world.alice, world.oscar):
        client.force_login(persona)
        assert client.get(PLATFORM_PAGE).status_code == 403
    client.force_login(world.admin)
    response = client.get(PLATFORM_PAGE)
    assert "ops-token" in rows(response)
    assert "hello" not in rows(response)  # a tenant's own change is in its own trail only
    html = response.content.decode()
    assert f'data-record="{platform.pk}"' in html
    assert 'data-audit-url="/ws/platform/audit/"' in html
    assert 'href="/api/v1/audit/export/"' in html
    assert rows(client.get(PLATFORM_PAGE, {"object_type": "token"})) == ["ops-token"]


def test_navigation_links_to_the_trails_by_role(world, client):
    client.force_login(world.alice)
    html = client.get("/t/acme/").content.decode()
    assert 'href="/t/acme/audit/">Audit<' in html
    assert "Platform audit" not in html
    client.force_login(world.bob)
    assert 'href="/t/acme/audit/"' not in client.get("/t/acme/").content.decode()
    client.force_login(world.admin)
    html = client.get("/t/acme/").content.decode()
    assert 'href="/platform/audit/">Platform audit<' in html
    assert 'href="/t/acme/audit/">Audit<' in html  # a platform admin acts as tenant admin
