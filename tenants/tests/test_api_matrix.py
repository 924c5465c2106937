"""Every tenant API endpoint against every persona: works, needs auth, needs the role, hides
other tenants. New endpoints must be added to ENDPOINTS."""

from __future__ import annotations

from typing import Any

import pytest
from django_tenants.utils import schema_context

from functions.models import Build, BuildState, Draft
from functions.services import functions as function_services
from functions.services import versions
from tenants import invitations
from tenants.models import ApiToken, Membership
from testsupport.matrix import assert_access, call

pytestmark = pytest.mark.django_db


def _ids(world: Any) -> dict[str, int]:
    vera_token = ApiToken.objects.create(
        tenant=world.acme, user=world.vera, name="v", role="viewer", key_id="0" * 12, digest="x"
    )
    invitation = invitations.invitation_create(
        tenant=world.acme, email="i@example.org", role="viewer", invited_by=world.alice
    ).invitation
    return {
        "member": Membership.objects.get(user=world.vera).pk,
        "token": vera_token.pk,
        "invitation": invitation.pk,
    }


# (method, path template, body, a persona it works for, success status, {persona: refusal})
ENDPOINTS = [
    ("get", "/t/{t}/api/v1/me/", None, "vera", 200, {}),
    ("get", "/t/{t}/api/v1/members/", None, "vera", 200, {}),
    ("get", "/t/{t}/api/v1/members/{member}/", None, "vera", 200, {}),
    # Nobody is added directly: people join by accepting an invitation.
    ("get", "/t/{t}/api/v1/invitations/", None, "alice", 200, {"vera": 403, "bob": 403}),
    ("get", "/t/{t}/api/v1/invitations/{invitation}/", None, "alice", 200, {"vera": 403, "bob": 403}),
    (
        "post",
        "/t/{t}/api/v1/invitations/",
        {"email": "nina@example.org", "role": "viewer"},
        "alice",
        201,
        {"vera": 403, "bob": 403},
    ),
    ("delete", "/t/{t}/api/v1/invitations/{invitation}/", None, "alice", 204, {"vera": 403, "bob": 403}),
    (
        "patch",
        "/t/{t}/api/v1/members/{member}/",
        {"role": "developer"},
        "alice",
        200,
        {"vera": 403, "bob": 403},
    ),
    ("delete", "/t/{t}/api/v1/members/{member}/", None, "alice", 204, {"vera": 403, "bob": 403}),
    ("get", "/t/{t}/api/v1/tokens/", None, "vera", 200, {}),
    ("post", "/t/{t}/api/v1/tokens/", {"name": "n", "role": "viewer"}, "vera", 201, {}),
    # vera's token: its owner and admins may revoke it; other members do not even see it
    ("delete", "/t/{t}/api/v1/tokens/{token}/", None, "alice", 204, {"bob": 404}),
    ("get", "/t/{t}/api/v1/logs/", None, "vera", 200, {}),
    # The audit trail: tenant admins only.
    ("get", "/t/{t}/api/v1/audit/", None, "alice", 200, {"vera": 403, "bob": 403}),
    ("get", "/t/{t}/api/v1/audit/export/", None, "alice", 200, {"vera": 403, "bob": 403}),
    # No Prometheus answers in this test: past the access checks, metrics are 503 (metrics/tests).
    ("get", "/t/{t}/api/v1/metrics/", None, "vera", 503, {}),
    # Fission spec folders: any member exports; applying needs developer. A JSON body is not a zip:
    # past the access checks, 400 (functions/tests/test_fission_spec.py applies real folders).
    ("get", "/t/{t}/api/v1/spec/export/", None, "vera", 200, {}),
    ("post", "/t/{t}/api/v1/spec/apply/", {}, "bob", 400, {"vera": 403}),
]


@pytest.mark.parametrize(("method", "path", "body", "allowed", "ok", "refused"), ENDPOINTS)
def test_endpoint_matrix(world, api, method, path, body, allowed, ok, refused, no_prometheus):
    ids = _ids(world)
    url_in = lambda tenant: path.format(t=tenant, **ids)  # noqa: E731
    assert_access(world, api, url_in, method, body, allowed=allowed, ok=ok, refused=refused)


def test_objects_of_another_tenant_are_invisible_by_id(world, api):
    oscar_member = Membership.objects.get(user=world.oscar).pk
    oscar_token = ApiToken.objects.create(
        tenant=world.globex, user=world.oscar, name="o", role="admin", key_id="1" * 12, digest="x"
    ).pk
    alice = api(world.alice)
    for method, path, body in [
        ("get", f"/t/acme/api/v1/members/{oscar_member}/", None),
        ("patch", f"/t/acme/api/v1/members/{oscar_member}/", {"role": "viewer"}),
        ("delete", f"/t/acme/api/v1/members/{oscar_member}/", None),
        ("get", f"/t/acme/api/v1/tokens/{oscar_token}/", None),
        ("delete", f"/t/acme/api/v1/tokens/{oscar_token}/", None),
    ]:
        assert call(alice, method, path, body).status_code == 404, (method, path)
    assert Membership.objects.get(pk=oscar_member).role == "admin"
    assert ApiToken.objects.get(pk=oscar_token).revoked_at is None


# Endpoints of one function's versions (issue 15): ``hello`` in acme with version 1, whose build
# kept its code; the same (method, path, body, allowed, ok, refused) as ENDPOINTS.
VERSION_ENDPOINTS = [
    ("get", "/t/{t}/api/v1/functions/hello/versions/compare/?base=v1&head=draft", None, "vera", 200, {}),
    ("post", "/t/{t}/api/v1/functions/hello/versions/1/restore/", None, "bob", 200, {"vera": 403}),
]


def _published(tenant: Any, name: str = "hello") -> None:
    with schema_context(tenant.schema_name):
        function = function_services.function_create(name=name)
        draft = Draft.objects.get(function=function)
        Build.objects.create(
            function=function, draft_revision=draft.revision, state=BuildState.SUCCEEDED, sha256="b" * 64,
            python_version=function.environment.runtime_version, source_files=draft.files,
        )  # fmt: skip
        versions.version_publish(function=function)


@pytest.mark.parametrize(("method", "path", "body", "allowed", "ok", "refused"), VERSION_ENDPOINTS)
def test_version_endpoint_matrix(world, api, method, path, body, allowed, ok, refused):
    _published(world.acme)
    url_in = lambda tenant: path.format(t=tenant)  # noqa: E731
    assert_access(world, api, url_in, method, body, allowed=allowed, ok=ok, refused=refused)


def test_versions_of_another_tenants_function_are_invisible(world, api):
    _published(world.globex, "theirs")
    alice = api(world.alice)
    for method, path in [
        ("get", "/t/acme/api/v1/functions/theirs/versions/compare/?base=v1&head=draft"),
        ("post", "/t/acme/api/v1/functions/theirs/versions/1/restore/"),
    ]:
        assert call(alice, method, path).status_code == 404, (method, path)
    with schema_context(world.globex.schema_name):
        assert Draft.objects.get(function__name="theirs").revision == 1
