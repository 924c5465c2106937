"""The audit trail's API: a tenant's trail for its admins, the platform's for platform admins;
filters, cursor pages, the JSON lines export; nothing of another tenant; no way to write."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import transaction
from django.http import HttpResponse
from django.test import AsyncClient, RequestFactory
from django.utils import timezone
from django_tenants.utils import schema_context, tenant_context

from audit import services
from audit.context import AuditMiddleware
from audit.models import PLATFORM_CHAIN, AuditRecord
from audit.selectors import FIELDS
from tenants.api.serializers import AuditRecordSerializer
from tenants.models import ApiToken
from testsupport.fixtures import error_of
from testsupport.matrix import assert_access

pytestmark = pytest.mark.django_db

LIST = "/t/{t}/api/v1/audit/"
EXPORT = "/t/{t}/api/v1/audit/export/"
PLATFORM_LIST = "/api/v1/audit/"
PLATFORM_EXPORT = "/api/v1/audit/export/"


def record(
    tenant: Any,
    name: str = "hello",
    *,
    action: str = "function.update",
    object_type: str = "function",
    by: Any = None,
    token: ApiToken | None = None,
    ip: str = "203.0.113.7",
    agent: str = "curl/8.5.0",
    platform: bool = False,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditRecord:
    """One record, written as a service writes it: inside its transaction, in the tenant's schema
    (a platform record: in the public one), by the system, or by ``by`` (and ``token``) in a
    request served through AuditMiddleware from ``ip`` with ``agent``."""

    def change(request: Any = None) -> HttpResponse:
        where = schema_context("public") if platform else tenant_context(tenant)
        opened = services.change(
            action, object_type=object_type, object_name=name, before=before,
            tenant=tenant if platform else None, platform=platform,
        )  # fmt: skip
        with where, transaction.atomic(), opened as done:
            done.after = after if after is not None else {"memory_mb": 256}
        return HttpResponse()

    if by is None:
        change()
    else:
        request = RequestFactory().post("/", REMOTE_ADDR=ip, HTTP_USER_AGENT=agent)
        request.user, request.auth = by, token  # type: ignore[attr-defined]
        AuditMiddleware(change)(request)
    return AuditRecord.objects.latest("id")


def url(template: str, tenant: str = "acme") -> str:
    return template.format(t=tenant)


def names(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [r["object_name"] for r in response.json()["results"]]


def exported(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.content
    assert response.streaming
    return [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]


# ------------------------------------------------------------------ access


def test_tenant_admin_reads_the_trail_newest_first(world, api):
    first = record(world.acme, "hello", before={"memory_mb": 128}, after={"memory_mb": 256}, by=world.alice)
    second = record(world.acme, "hello/prod", action="alias.set", object_type="alias")
    response = api(world.alice).get(url(LIST))
    results = response.json()["results"]
    assert [r["id"] for r in results[:2]] == [second.pk, first.pk]
    shown = results[1]
    assert tuple(shown) == FIELDS == tuple(AuditRecordSerializer().fields)
    assert shown["changes"] == {"memory_mb": [128, 256]}
    assert (shown["actor_type"], shown["actor_name"], shown["ip"]) == ("user", "alice", "203.0.113.7")
    assert (shown["tenant_slug"], shown["chain"], shown["seq"], shown["hash"]) == (
        "acme", world.acme.pk, first.seq, first.hash,
    )  # fmt: skip
    assert set(response.json()) == {"next", "previous", "results"}


@pytest.mark.parametrize("template", [LIST, EXPORT])
def test_the_trail_needs_a_tenant_admin_and_hides_it_from_outsiders(world, api, template):
    # anonymous 401; oscar 404 exactly as for a tenant that does not exist; bob and vera 403
    refused = {"bob": 403, "vera": 403}
    assert_access(
        world, api, lambda t: url(template, t), "get", None, allowed="alice", ok=200, refused=refused
    )
    assert error_of(api(world.bob).get(url(template)))["code"] == "permission_denied"
    assert error_of(api().get(url(template)))["code"] == "not_authenticated"


def test_a_token_reads_with_its_own_role(world, api, token_for):
    assert api(token=token_for(world.alice, world.acme, "developer")).get(url(LIST)).status_code == 403
    assert api(token=token_for(world.alice, world.acme, "admin")).get(url(LIST)).status_code == 200
    assert api(token=token_for(world.oscar, world.globex, "admin")).get(url(LIST)).status_code == 404


def test_another_tenants_records_are_never_shown(world, api):
    mine = record(world.acme, "hello")
    theirs = record(world.globex, "globex-only")
    theirs_of_platform = record(world.globex, "globex-quota", object_type="tenant", platform=True)
    alice = api(world.alice)
    listed = {r["id"] for r in alice.get(url(LIST), {"limit": 500}).json()["results"]}
    every = {r["id"] for r in exported(alice.get(url(EXPORT)))}
    assert mine.pk in listed
    assert (
        listed
        == every
        == set(AuditRecord.objects.filter(tenant_id=world.acme.pk).values_list("id", flat=True))
    )
    assert not {theirs.pk, theirs_of_platform.pk} & (listed | every)
    for query in (
        {"object": "globex-only"},
        {"object": "globex"},
        {"object_type": "tenant", "object": "globex"},
    ):
        assert names(alice.get(url(LIST), query)) == []
        assert exported(alice.get(url(EXPORT), query)) == []
    assert names(api(world.oscar).get(url(LIST, "globex"), {"object": "globex-only"})) == ["globex-only"]


def test_a_platform_change_of_the_tenant_is_shown_without_the_platform_admins_address(world, api):
    change = record(world.acme, "acme", object_type="tenant", action="tenant.update", platform=True,
                    by=world.admin, ip="198.51.100.9", agent="Firefox/140")  # fmt: skip
    assert change.chain == PLATFORM_CHAIN
    [shown] = api(world.alice).get(url(LIST), {"action": "tenant.update"}).json()["results"]
    [line] = exported(api(world.alice).get(url(EXPORT), {"action": "tenant.update"}))
    for seen in (shown, line):
        assert (seen["id"], seen["actor_name"], seen["ip"], seen["user_agent"]) == (change.pk, "root", "", "")
    platform = api(world.admin).get(PLATFORM_LIST, {"action": "tenant.update"}).json()["results"]
    assert [(r["id"], r["ip"], r["user_agent"]) for r in platform] == [
        (change.pk, "198.51.100.9", "Firefox/140")
    ]


# ------------------------------------------------------------------ filters


def test_each_filter_narrows_the_trail(world, api, token_for):
    token_for(world.alice, world.acme, "admin")
    token = ApiToken.objects.get(user=world.alice, tenant=world.acme)
    record(world.acme, "hello", by=world.alice)
    record(world.acme, "hello/prod", action="alias.set", object_type="alias", by=world.bob)
    record(world.acme, "helloworld", action="function.create", by=world.alice, token=token)
    record(world.acme, "other", action="function.delete")
    alice = api(world.alice)

    def found(**query: str) -> set[str]:
        listed = set(names(alice.get(url(LIST), query)))
        assert {r["object_name"] for r in exported(alice.get(url(EXPORT), query))} == listed
        return listed

    mine = {"hello", "hello/prod", "helloworld", "other"}
    assert found(actor="alice") & mine == {"hello", "helloworld"}
    assert found(actor="bob") == {"hello/prod"}
    assert found(actor=token.key_id) == {"helloworld"}
    assert found(actor="system") & mine == {"other"}
    assert found(object_type="alias") == {"hello/prod"}
    assert found(object="hello") == {"hello", "hello/prod", "helloworld"}
    assert found(object="hello/") == {"hello/prod"}
    assert found(action="function.update") == {"hello"}
    assert found(action="function.") == {"hello", "helloworld", "other"}
    assert found(action="function") == set()  # exact unless it ends with "."
    assert found(action="function.", actor="alice", object="hello") == {"hello", "helloworld"}


def test_since_and_until_narrow_by_time(world, api):
    record(world.acme, "early")
    middle = timezone.now()
    record(world.acme, "late")
    alice = api(world.alice)
    assert "early" not in names(alice.get(url(LIST), {"since": middle.isoformat()}))
    assert names(alice.get(url(LIST), {"since": middle.isoformat()})) == ["late"]
    before = names(alice.get(url(LIST), {"until": middle.isoformat()}))
    assert "early" in before
    assert "late" not in before
    naive_utc = middle.astimezone(UTC).replace(tzinfo=None).isoformat()  # no offset: UTC
    assert names(alice.get(url(LIST), {"since": naive_utc})) == ["late"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01T00:00:00Z"}, "until"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
        ({"object_type": "x" * 33}, "object_type"),
        ({"actor": "a" * 151}, "actor"),
    ],
)
@pytest.mark.parametrize("template", [LIST, EXPORT])
def test_bad_filters_are_a_400_in_the_error_shape(world, api, query, field, template):
    response = api(world.alice).get(url(template), query)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid"
    assert set(error["detail"]) == {field}


def test_a_cursor_it_never_gave_is_a_400(world, api):
    response = api(world.alice).get(url(LIST), {"cursor": "not-a-cursor"})
    assert response.status_code == 400
    assert set(error_of(response)["detail"]) == {"cursor"}


# ------------------------------------------------------------------ pages and export


def test_cursor_pages_walk_the_whole_trail_without_duplicates_or_gaps(world, api):
    for n in range(120):
        record(world.acme, f"fn-{n}", after={"memory_mb": n})
    every = list(
        AuditRecord.objects.filter(tenant_id=world.acme.pk).order_by("-id").values_list("id", flat=True)
    )
    alice = api(world.alice)
    seen: list[int] = []
    pages: list[list[int]] = []
    following: str | None = url(LIST) + "?limit=50"
    while following:
        body = alice.get(following).json()
        pages.append([r["id"] for r in body["results"]])
        seen += pages[-1]
        following = body["next"]
    assert seen == every  # newest first, each once, none missing
    assert [len(page) for page in pages[:-1]] == [50] * (len(pages) - 1)
    assert 1 <= len(pages[-1]) <= 50
    second = alice.get(url(LIST) + "?limit=50").json()["next"]
    back = alice.get(alice.get(second).json()["previous"]).json()
    assert [r["id"] for r in back["results"]] == pages[0]
    assert len(alice.get(url(LIST)).json()["results"]) == 50  # the default page
    assert len(alice.get(url(LIST), {"limit": 7}).json()["results"]) == 7
    assert len(alice.get(url(LIST), {"limit": 100_000}).json()["results"]) == len(every)  # capped at 500


def test_export_is_json_lines_of_the_lists_records_oldest_first(world, api):
    for n in range(3):
        record(
            world.acme,
            f"fn-{n}",
            by=world.alice,
            before={"memory_mb": 128},
            after={"memory_mb": 256 * (n + 1)},
        )
    alice = api(world.alice)
    response = alice.get(url(EXPORT))
    assert response["Content-Type"] == "application/x-ndjson"
    day = datetime.now(UTC).date().isoformat()
    assert response["Content-Disposition"] == f'attachment; filename="audit-acme-{day}.jsonl"'
    lines = exported(response)
    listed = alice.get(url(LIST), {"limit": 500}).json()["results"]
    assert lines == list(reversed(listed))
    assert [line["id"] for line in lines] == sorted(line["id"] for line in lines)
    assert lines[-1]["changes"] == {"memory_mb": [128, 768]}
    filtered = exported(alice.get(url(EXPORT), {"object": "fn-1"}))
    assert [line["object_name"] for line in filtered] == ["fn-1"]


def test_export_refusals_are_json_whatever_was_asked_and_format_is_no_404(world, api):
    response = api(world.bob).get(url(EXPORT), HTTP_ACCEPT="application/x-ndjson")
    assert (response.status_code, response["Content-Type"]) == (403, "application/json")
    assert json.loads(response.content)["error"]["code"] == "permission_denied"
    assert api(world.alice).get(url(EXPORT), HTTP_ACCEPT="application/x-ndjson").status_code == 200
    odd = api(world.alice).get(url(EXPORT), {"format": "\x84"})
    assert (odd.status_code, odd["Content-Type"]) == (200, "application/x-ndjson")


@pytest.mark.django_db(transaction=True)
async def test_export_streams_over_asgi_as_it_reads(world):
    """Under the portal's ASGI server the lines come from an async iterator, batch by batch, and
    are the very lines of the synchronous path."""
    from asgiref.sync import sync_to_async

    for n in range(3):
        await sync_to_async(record)(world.acme, f"fn-{n}")
    client = AsyncClient()
    await client.aforce_login(world.alice)
    response: Any = await client.get(url(EXPORT), {"object": "fn-"})  # a StreamingHttpResponse
    assert response.status_code == 200
    assert response.is_async  # Django would otherwise read every line into one list first
    body = b"".join([chunk async for chunk in response.streaming_content])
    assert [json.loads(line)["object_name"] for line in body.decode().splitlines()] == [
        "fn-0",
        "fn-1",
        "fn-2",
    ]


# ------------------------------------------------------------------ the platform's trail


def test_the_platform_trail_holds_only_the_platform_chain(world, api):
    platform = record(world.acme, "acme", object_type="tenant", action="tenant.update", platform=True)
    own = record(None, "root-token", object_type="token", action="token.create", platform=True)
    tenants_own = record(world.acme, "hello")
    root = api(world.admin)
    listed = root.get(PLATFORM_LIST, {"limit": 500}).json()["results"]
    assert {r["chain"] for r in listed} == {PLATFORM_CHAIN}
    assert {platform.pk, own.pk} <= {r["id"] for r in listed}
    assert tenants_own.pk not in {r["id"] for r in listed}
    lines = exported(root.get(PLATFORM_EXPORT))
    assert lines == list(reversed(listed))
    day = datetime.now(UTC).date().isoformat()
    disposition = root.get(PLATFORM_EXPORT)["Content-Disposition"]
    assert disposition == f'attachment; filename="audit-platform-{day}.jsonl"'
    assert names(root.get(PLATFORM_LIST, {"object_type": "token"})) == ["root-token"]


@pytest.mark.parametrize("template", [PLATFORM_LIST, PLATFORM_EXPORT])
def test_the_platform_trail_is_for_platform_admins_only(world, api, token_for, template):
    from tenants.services import token_create

    assert error_of(api().get(template))["code"] == "not_authenticated"
    assert api().get(template).status_code == 401
    for persona in (world.alice, world.bob, world.oscar):
        assert api(persona).get(template).status_code == 403
    # a tenant token never reads the platform's trail, even a platform admin's
    assert api(token=token_for(world.admin, world.acme, "admin")).get(template).status_code == 403
    platform_token = token_create(tenant=None, user=world.admin, name="ops", role="platform_admin").secret
    assert api(token=platform_token).get(template).status_code == 200
    assert api(world.admin).get(template).status_code == 200


# ------------------------------------------------------------------ nothing writes


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
@pytest.mark.parametrize(
    ("who", "path"),
    [("alice", url(LIST)), ("alice", url(EXPORT)), ("admin", PLATFORM_LIST), ("admin", PLATFORM_EXPORT)],
)
def test_no_method_writes_to_the_trail(world, api, method, who, path):
    kept = record(world.acme, "hello")
    response = getattr(api(getattr(world, who)), method)(path, {"action": "x"}, format="json")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    for kind in ("", f"{kept.pk}/"):
        assert getattr(api(getattr(world, who)), method)(path + kind, format="json").status_code in (404, 405)
    assert AuditRecord.objects.get(pk=kept.pk).hash == kept.hash
