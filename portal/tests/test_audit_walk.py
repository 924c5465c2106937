"""Issue 14's acceptance walk: every write endpoint of the OpenAPI document, called once, leaves
exactly one audit record with the right actor and diff.

The walk is read from the document itself, so an endpoint added without an entry in WRITES fails
``test_the_walk_covers_every_write_endpoint``. Each call acts with an API token (tenant admin
Alice in acme; the platform admin for the platform API), so the actor checked is the token's.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django_tenants.utils import schema_context

from audit.models import PLATFORM_CHAIN, AuditRecord
from functions.models import (
    Build,
    BuildState,
    Deployment,
    Draft,
    Environment,
    Invocation,
    QueueTrigger,
    TimeTrigger,
    Trigger,
)
from functions.services import configuration, versions
from functions.services import functions as function_services
from releases.services import rollouts as rollout_services
from tenants import invitations
from tenants import services as tenant_services
from tenants.models import Membership, Tenant, TenantState
from testsupport.captures import captured_request

pytestmark = pytest.mark.django_db
MARKER = "s3cr3t-marker-4711"
USER_AGENT = "audit-walk/1.0"
T = "/t/acme/api/v1"
F = f"{T}/functions/hello"


@dataclass(frozen=True)
class Write:
    url: str  # {member}, {token} ... come from the scene
    body: Any = None
    status: int = 200
    action: str = ""
    object_name: str = ""  # may use the answer's fields: "hello#{id}"
    before: dict[str, Any] = field(default_factory=dict)  # expected changes[k][0]
    after: dict[str, Any] = field(default_factory=dict)  # expected changes[k][1]
    fmt: str = "json"
    platform: bool = False


def _spec_folder() -> bytes:
    """A Fission spec folder (zipped) that creates one object: environment ``walk``."""
    documents = {
        "specs/fission-deployment-config.yaml": (
            "apiVersion: fission.io/v1\nkind: DeploymentConfig\nname: walk\n"
            "uid: 0b0e8f9e-3c5d-4f6a-9b1c-2d3e4f5a6b7c\n"
        ),
        "specs/env-walk.yaml": (
            "apiVersion: fission.io/v1\nkind: Environment\nmetadata:\n  name: walk\n"
            "spec:\n  runtime:\n    image: ghcr.io/fission/python-env\n  version: 3\n  poolsize: 1\n"
        ),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in documents.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def _upload() -> dict[str, Any]:
    return {"file": SimpleUploadedFile("main.py", b"def main():\n    return 'up'\n")}


WRITES: dict[tuple[str, str], Write] = {
    ("post", "/api/v1/tenants/"): Write(
        "/api/v1/tenants/", {"slug": "initech", "name": "Initech"}, 202, "tenant.create", "initech",
        after={"name": "Initech"}, platform=True,
    ),
    ("patch", "/api/v1/tenants/{slug}/"): Write(
        "/api/v1/tenants/acme/", {"name": "Acme Two"}, 200, "tenant.update", "acme",
        before={"name": "Acme"}, after={"name": "Acme Two"}, platform=True,
    ),
    ("delete", "/api/v1/tenants/{slug}/"): Write(
        "/api/v1/tenants/globex/?confirm=globex", None, 202, "tenant.delete", "globex", platform=True,
    ),
    ("post", "/api/v1/tenants/{slug}/retry/"): Write(
        "/api/v1/tenants/failing/retry/", None, 202, "tenant.retry", "failing", platform=True,
    ),
    ("post", "/t/{tenant}/api/v1/configmaps/"): Write(
        f"{T}/configmaps/", {"name": "new", "data": {"k": "v"}}, 201, "configmap.create", "new",
        after={"keys": ["k"]},
    ),
    ("put", "/t/{tenant}/api/v1/configmaps/{name}/"): Write(
        f"{T}/configmaps/app/", {"data": {"mode": "slow", "extra": "1"}}, 200, "configmap.update", "app",
        before={"keys": ["mode"]}, after={"keys": ["extra", "mode"]},
    ),
    ("delete", "/t/{tenant}/api/v1/configmaps/{name}/"): Write(
        f"{T}/configmaps/spare/", None, 204, "configmap.delete", "spare", before={"keys": ["k"]},
        after={"keys": None},
    ),
    ("post", "/t/{tenant}/api/v1/secrets/"): Write(
        f"{T}/secrets/", {"name": "new", "data": {"password": MARKER}}, 201, "secret.create", "new",
        after={"keys": ["password"]},
    ),
    ("put", "/t/{tenant}/api/v1/secrets/{name}/"): Write(
        f"{T}/secrets/db/", {"data": {"password": MARKER, "user": MARKER}}, 200, "secret.update", "db",
        before={"keys": ["password"]}, after={"keys": ["password", "user"]},
    ),
    ("delete", "/t/{tenant}/api/v1/secrets/{name}/"): Write(
        f"{T}/secrets/spare/", None, 204, "secret.delete", "spare", before={"keys": ["k"]},
        after={"keys": None},
    ),
    ("post", "/t/{tenant}/api/v1/environments/"): Write(
        f"{T}/environments/", {"name": "py312", "runtime_version": "3.12"}, 201, "environment.create",
        "py312",
        after={"runtime_version": "3.12"},
    ),
    ("put", "/t/{tenant}/api/v1/environments/{name}/"): Write(
        f"{T}/environments/python/", {"poolsize": 1}, 200, "environment.update", "python",
        before={"poolsize": 3}, after={"poolsize": 1},
    ),
    ("patch", "/t/{tenant}/api/v1/environments/{name}/"): Write(
        f"{T}/environments/python/", {"poolsize": 2}, 200, "environment.update", "python",
        before={"poolsize": 3}, after={"poolsize": 2},
    ),
    ("delete", "/t/{tenant}/api/v1/environments/{name}/"): Write(
        f"{T}/environments/spare/", None, 204, "environment.delete", "spare", before={"poolsize": 3},
        after={"poolsize": None},
    ),
    ("post", "/t/{tenant}/api/v1/functions/"): Write(
        f"{T}/functions/", {"name": "newfn", "timeout_s": 30}, 201, "function.create", "newfn",
        after={"timeout_s": 30},
    ),
    ("patch", "/t/{tenant}/api/v1/functions/{name}/"): Write(
        f"{F}/", {"timeout_s": 30}, 200, "function.update", "hello", before={"timeout_s": 60},
        after={"timeout_s": 30},
    ),
    ("delete", "/t/{tenant}/api/v1/functions/{name}/"): Write(
        f"{F}/", None, 204, "function.delete", "hello", before={"timeout_s": 60}, after={"timeout_s": None},
    ),
    ("put", "/t/{tenant}/api/v1/functions/{name}/code/"): Write(
        f"{F}/code/", {"files": {"main.py": "def main():\n    return 1\n", "util.py": ""}}, 200,
        "function.code", "hello", before={"files": ["main.py"]}, after={"files": ["main.py", "util.py"]},
    ),
    ("post", "/t/{tenant}/api/v1/functions/{name}/upload/"): Write(
        f"{F}/upload/", _upload, 200, "function.code", "hello", fmt="multipart",
    ),
    ("post", "/t/{tenant}/api/v1/functions/{function_name}/builds/"): Write(
        f"{F}/builds/", None, 202, "build.create", "hello#{id}",
    ),
    ("post", "/t/{tenant}/api/v1/functions/{function_name}/versions/"): Write(
        f"{F}/versions/", {"description": "third"}, 201, "version.publish", "hello/v3",
    ),
    ("post", "/t/{tenant}/api/v1/functions/{function_name}/versions/{number}/restore/"): Write(
        f"{F}/versions/1/restore/", None, 200, "version.restore", "hello/v1",
        before={"revision": 1, "secrets": ["db"]}, after={"revision": 2, "secrets": []},
    ),
    ("post", "/t/{tenant}/api/v1/functions/{function_name}/aliases/"): Write(
        f"{F}/aliases/", {"name": "beta", "version": 1}, 200, "alias.set", "hello/beta",
    ),
    ("delete", "/t/{tenant}/api/v1/functions/{function_name}/aliases/{name}/"): Write(
        f"{F}/aliases/live/", None, 204, "alias.delete", "hello/live",
    ),
    ("post", "/t/{tenant}/api/v1/functions/{function_name}/rollouts/"): Write(
        f"{F}/rollouts/", {"alias": "live", "to_version": 2, "weights": [10, 100], "interval_s": 60}, 201,
        "rollout.start", "hello/live#{id}", after={"weights": [10, 100], "to_version": 2, "interval_s": 60},
    ),
    ("post", "/t/{tenant}/api/v1/functions/{function_name}/rollouts/{id}/pause/"): Write(
        f"{F}/rollouts/{{running}}/pause/", None, 200, "rollout.pause", "hello/canary#{running}",
        before={"state": "running"}, after={"state": "paused"},
    ),
    ("post", "/t/{tenant}/api/v1/functions/{function_name}/rollouts/{id}/resume/"): Write(
        f"{F}/rollouts/{{paused}}/resume/", None, 200, "rollout.resume", "hello/held#{paused}",
        before={"state": "paused"}, after={"state": "running"},
    ),
    ("post", "/t/{tenant}/api/v1/functions/{function_name}/rollouts/{id}/promote/"): Write(
        f"{F}/rollouts/{{running}}/promote/", None, 200, "rollout.promote", "hello/canary#{running}",
        before={"state": "running"}, after={"state": "succeeded"},
    ),
    ("post", "/t/{tenant}/api/v1/functions/{function_name}/rollouts/{id}/abort/"): Write(
        f"{F}/rollouts/{{running}}/abort/", None, 200, "rollout.abort", "hello/canary#{running}",
        before={"state": "running"}, after={"state": "aborted"},
    ),
    ("put", "/t/{tenant}/api/v1/functions/{function_name}/capture/"): Write(
        f"{F}/capture/", {"codes": ["5xx"], "max_requests": 10, "max_body_bytes": 1024}, 200,
        "function.capture", "hello", before={"codes": []}, after={"codes": ["5xx"], "max_requests": 10},
    ),
    ("delete", "/t/{tenant}/api/v1/functions/{function_name}/captures/"): Write(
        f"{F}/captures/", None, 200, "capture.delete", "hello", after={"deleted": 1, "which": "all"},
    ),
    ("delete", "/t/{tenant}/api/v1/functions/{function_name}/captures/{capture_id}/"): Write(
        f"{F}/captures/{{capture}}/", None, 204, "capture.delete", "hello", after={"deleted": 1},
    ),
    ("post", "/t/{tenant}/api/v1/functions/{function_name}/replays/"): Write(
        f"{F}/replays/", {"version": 1}, 202, "replay.create", "hello#{id}",
        after={"version": 1, "captures": 1},
    ),
    ("post", "/t/{tenant}/api/v1/functions/{function_name}/triggers/"): Write(
        f"{F}/triggers/", {"name": "t2", "methods": ["GET"], "path": "/t2"}, 201, "trigger.create",
        "hello/t2",
        after={"path": "/t2"},
    ),
    ("delete", "/t/{tenant}/api/v1/functions/{function_name}/triggers/{name}/"): Write(
        f"{F}/triggers/hello/", None, 204, "trigger.delete", "hello/hello", before={"path": "/hello"},
        after={"path": None},
    ),
    ("post", "/t/{tenant}/api/v1/functions/{function_name}/time-triggers/"): Write(
        f"{F}/time-triggers/", {"name": "t2", "cron": "*/5 * * * *"}, 201, "time-trigger.create", "hello/t2",
        after={"cron": "*/5 * * * *"},
    ),
    ("put", "/t/{tenant}/api/v1/functions/{function_name}/time-triggers/{name}/"): Write(
        f"{F}/time-triggers/tick/", {"name": "tick", "cron": "@hourly"}, 200, "time-trigger.update",
        "hello/tick", before={"cron": "@every 1m"}, after={"cron": "@hourly"},
    ),
    ("delete", "/t/{tenant}/api/v1/functions/{function_name}/time-triggers/{name}/"): Write(
        f"{F}/time-triggers/tick/", None, 204, "time-trigger.delete", "hello/tick",
        before={"cron": "@every 1m"}, after={"cron": None},
    ),
    ("post", "/t/{tenant}/api/v1/functions/{function_name}/queue-triggers/"): Write(
        f"{F}/queue-triggers/",
        {"name": "q2", "mq_type": "rabbitmq", "topic": "in", "connection": {"host": f"amqp://u:{MARKER}@h/"}},
        201, "queue-trigger.create", "hello/q2", after={"topic": "in"},
    ),
    ("put", "/t/{tenant}/api/v1/functions/{function_name}/queue-triggers/{name}/"): Write(
        f"{F}/queue-triggers/orders/", {"name": "orders", "mq_type": "redis", "topic": "orders2"}, 200,
        "queue-trigger.update", "hello/orders", before={"topic": "orders"}, after={"topic": "orders2"},
    ),
    ("delete", "/t/{tenant}/api/v1/functions/{function_name}/queue-triggers/{name}/"): Write(
        f"{F}/queue-triggers/orders/", None, 204, "queue-trigger.delete", "hello/orders",
        before={"topic": "orders"}, after={"topic": None},
    ),
    ("post", "/t/{tenant}/api/v1/functions/{function_name}/deployments/"): Write(
        f"{F}/deployments/", None, 202, "deployment.create", "hello#{id}",
    ),
    ("post", "/t/{tenant}/api/v1/functions/{name}/dead-letters/purge/"): Write(
        f"{F}/dead-letters/purge/", {}, 200, "dead-letter.purge", "hello",
    ),
    ("post", "/t/{tenant}/api/v1/functions/{name}/dead-letters/redrive/"): Write(
        f"{F}/dead-letters/redrive/", {}, 200, "dead-letter.redrive", "hello",
    ),
    ("post", "/t/{tenant}/api/v1/functions/{name}/invoke/"): Write(
        f"{F}/invoke/", {"method": "POST", "path": "/hello", "body": MARKER}, 201, "invocation.create",
        "hello",
        after={"method": "POST", "path": "/hello"},
    ),
    ("post", "/t/{tenant}/api/v1/spec/apply/"): Write(
        f"{T}/spec/apply/", _spec_folder, 200, "environment.create", "walk", after={"poolsize": 1},
        fmt="zip",
    ),
    ("post", "/t/{tenant}/api/v1/invitations/"): Write(
        f"{T}/invitations/", {"email": "carol@example.org", "role": "viewer"}, 201, "invitation.create",
        "carol@example.org", after={"email": "carol@example.org", "role": "viewer"},
    ),
    ("delete", "/t/{tenant}/api/v1/invitations/{id}/"): Write(
        f"{T}/invitations/{{invitation}}/", None, 204, "invitation.revoke", "dave@example.org",
        before={"state": "pending"}, after={"state": "withdrawn"},
    ),
    ("patch", "/t/{tenant}/api/v1/members/{id}/"): Write(
        f"{T}/members/{{member}}/", {"role": "developer"}, 200, "member.update", "vera",
        before={"role": "viewer"}, after={"role": "developer"},
    ),
    ("delete", "/t/{tenant}/api/v1/members/{id}/"): Write(
        f"{T}/members/{{member}}/", None, 204, "member.remove", "vera", before={"role": "viewer"},
        after={"role": None},
    ),
    ("post", "/t/{tenant}/api/v1/tokens/"): Write(
        f"{T}/tokens/", {"name": "ci", "role": "viewer"}, 201, "token.create", "{key_id}",
        after={"name": "ci", "role": "viewer"},
    ),
    ("delete", "/t/{tenant}/api/v1/tokens/{id}/"): Write(
        f"{T}/tokens/{{spare_token}}/", None, 204, "token.revoke", "{spare_key_id}",
    ),
}  # fmt: skip


def _write_operations(client: Any) -> set[tuple[str, str]]:
    document = client.get("/api/schema/?format=json").json()
    return {
        (method, path)
        for path, operations in document["paths"].items()
        for method in operations
        if method in ("post", "put", "patch", "delete")
    }


def test_the_walk_covers_every_write_endpoint(client) -> None:
    assert _write_operations(client) == set(WRITES)


@pytest.fixture
def scene(world: Any) -> Iterator[dict[str, Any]]:
    """acme with ``hello`` built, published (v1, alias live), its triggers, a Secret ``db`` and a
    ConfigMap ``app`` in use, unused ``spare`` ones and environment ``spare``; a failed tenant;
    rollouts to steer; one captured request of ``hello``."""
    with schema_context(world.acme.schema_name):
        function = function_services.function_create(name="hello")
        draft = Draft.objects.get(function=function)
        Build.objects.create(
            function=function, draft_revision=draft.revision, state=BuildState.SUCCEEDED, sha256="a" * 64,
            python_version=function.environment.runtime_version, source_files=draft.files,
        )  # fmt: skip
        versions.version_publish(function=function)
        versions.alias_set(function=function, name="live", version=1)
        Trigger.objects.create(function=function, name="hello", methods=["GET"], path="/hello")
        TimeTrigger.objects.create(function=function, name="tick", cron="@every 1m")
        QueueTrigger.objects.create(function=function, name="orders", mq_type="redis", topic="orders",
                                    connection={"address": "127.0.0.1:6379"})  # fmt: skip
        Deployment.objects.create(function=function, state="live", cause="fixture")
        Invocation.objects.create(function=function, method="GET", path="/hello", request_id="r1", status=200)
        configuration.secret_save(name="db", data={"password": "pw"})
        configuration.secret_save(name="spare", data={"k": "v"})
        configuration.configmap_save(name="app", data={"mode": "fast"})
        configuration.configmap_save(name="spare", data={"k": "v"})
        Environment.objects.create(name="spare")
        function_services.function_update(function=function, secrets=["db"], configmaps=["app"])
        versions.version_publish(function=function)  # v2, for the rollouts
        function_services.function_update(function=function, idle_timeout_s=90)  # the draft is neither
        rollouts = _rollouts(function)
    Tenant.objects.create(slug="failing", name="Failing", schema_name="t_failing", state=TenantState.FAILED)
    alice = tenant_services.token_create(tenant=world.acme, user=world.alice, name="walk", role="admin")
    spare = tenant_services.token_create(tenant=world.acme, user=world.alice, name="spare", role="viewer")
    invitation = invitations.invitation_create(
        tenant=world.acme, email="dave@example.org", role="viewer", invited_by=world.alice
    ).invitation
    root = tenant_services.token_create(tenant=None, user=world.admin, name="walk", role="platform_admin")
    with captured_request(world.acme.namespace, "hello") as capture:
        yield {
            "alice": alice, "root": root, "spare_key_id": spare.token.key_id, "spare_token": spare.token.pk,
            "member": Membership.objects.get(tenant=world.acme, user=world.vera).pk, "capture": capture,
            "invitation": invitation.pk,
            **rollouts,
        }  # fmt: skip


def _rollouts(function: Any) -> dict[str, int]:
    """A running rollout of alias ``canary`` and a paused one of ``held``, both v1 to v2."""
    found = {}
    for alias, key in (("canary", "running"), ("held", "paused")):
        versions.alias_set(function=function, name=alias, version=1)
        found[key] = rollout_services.rollout_start(
            function=function, alias=alias, to_version=2, interval_s=60
        )
    rollout_services.rollout_pause(rollout=found["paused"])
    return {key: rollout.pk for key, rollout in found.items()}


def _call(api: Any, secret: str, verb: str, write: Write, scene: dict[str, Any]) -> Any:
    client = api(token=secret)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}", HTTP_USER_AGENT=USER_AGENT)
    body = write.body() if callable(write.body) else write.body
    method, url = getattr(client, verb), write.url.format(**scene)
    if body is None:
        return method(url)
    if write.fmt == "zip":  # a raw body, as the CLI sends a spec folder
        return method(url, body, content_type="application/zip")
    return method(url, body, format=write.fmt)


@pytest.mark.parametrize("operation", sorted(WRITES), ids=lambda op: f"{op[0]} {op[1]}")
def test_each_write_endpoint_leaves_exactly_one_record(
    world, api, scene, django_capture_on_commit_callbacks, operation
) -> None:
    write = WRITES[operation]
    issued = scene["root" if write.platform else "alice"]
    before = set(AuditRecord.objects.values_list("pk", flat=True))
    with django_capture_on_commit_callbacks(execute=False):  # no task runs: only the request's record
        response = _call(api, issued.secret, operation[0], write, scene)
    assert response.status_code == write.status, response.content
    new = list(AuditRecord.objects.exclude(pk__in=before))
    assert len(new) == 1, [(r.action, r.object_name) for r in new]
    record = new[0]
    answer = response.json() if response.content and isinstance(response.json(), dict) else {}
    assert (record.action, record.object_name) == (
        write.action, write.object_name.format(**scene, **answer)
    )  # fmt: skip
    assert (record.actor_type, record.actor_name, record.token_id) == ("token", issued.token.user.username,
                                                                       issued.token.key_id)  # fmt: skip
    assert (record.ip, record.user_agent) == ("127.0.0.1", USER_AGENT)
    assert (record.chain == PLATFORM_CHAIN) == write.platform
    assert record.changes, "a change without a diff"
    for name, value in write.before.items():
        assert record.changes[name][0] == value, (name, record.changes)
    for name, value in write.after.items():
        assert record.changes[name][1] == value, (name, record.changes)
    assert MARKER not in json.dumps([record.changes, record.effects])
