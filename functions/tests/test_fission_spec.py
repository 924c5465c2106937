"""Fission spec folders: apply (declarative, idempotent, all or nothing), dry run, delete, errors
naming file and field, export (CRD-valid, no secret values) and its round trip, API access."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from django_tenants.utils import schema_context

from audit.models import AuditRecord
from functions.models import Deployment, Draft, Function, SpecObject, TimeTrigger, Trigger
from functions.services import configuration
from testsupport.processes import wait_until
from testsupport.schemas import schema_errors

FIXTURE = Path(__file__).parent / "fixtures" / "fission-spec"
APPLY = "/t/{t}/api/v1/spec/apply/"
EXPORT = "/t/{t}/api/v1/spec/export/"


def folder_files(root: Path = FIXTURE) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return buffer.getvalue()


def unzipped(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {m.filename: archive.read(m) for m in archive.infolist() if not m.is_dir()}


def apply(client: Any, data: bytes, tenant: str = "acme", query: str = "") -> Any:
    return client.post(APPLY.format(t=tenant) + query, data=data, content_type="application/zip")


def state(schema: str) -> dict[str, Any]:
    """Everything an apply may change, to compare before and after."""
    with schema_context(schema):
        return {
            "functions": sorted(Function.objects.values_list("name", "updated_at")),
            "drafts": sorted(Draft.objects.values_list("function__name", "revision")),
            "triggers": sorted(Trigger.objects.values_list("name", "path")),
            "timers": sorted(TimeTrigger.objects.values_list("name", "updated_at")),
            "deployments": Deployment.objects.count(),
            "owned": sorted(SpecObject.objects.values_list("kind", "name", "spec_uid")),
            "audit": AuditRecord.objects.count(),
        }


pytestmark = pytest.mark.django_db


def test_the_fixture_applies_and_a_second_apply_changes_nothing(world, api):
    bob = api(world.bob)
    first = apply(bob, zipped(folder_files()))
    assert first.status_code == 200, first.content
    body = first.json()
    assert (body["changed"], body["dry_run"]) == (True, False)
    # Every tenant starts with a "python" environment: the folder's changes its images.
    assert {(s["action"], s["kind"], s["name"]) for s in body["plan"]} == {
        ("update", "Environment", "python"),
        ("create", "Function", "hello"),
        ("create", "HTTPTrigger", "hello-route"),
        ("create", "TimeTrigger", "hello-every-hour"),
        ("create", "MessageQueueTrigger", "hello-orders"),
    }
    assert len(body["deployments"]) == 1
    with schema_context(world.acme.schema_name):
        hello = Function.objects.get(name="hello")
        assert (hello.entrypoint, hello.concurrency, hello.target_cpu) == ("hello.main", 5, 80)
        assert set(hello.draft.files) == {"hello.py"}
        route = Trigger.objects.get(name="hello-route")
        assert (route.path, route.methods, route.function.name) == ("/hello", ["GET", "POST"], "hello")
    before = state(world.acme.schema_name)
    second = apply(bob, zipped(folder_files()))
    assert second.status_code == 200
    assert second.json()["changed"] is False
    assert {s["action"] for s in second.json()["plan"]} == {"unchanged"}
    assert second.json()["deployments"] == []
    assert state(world.acme.schema_name) == before  # no revision, no deployment, no audit record


def test_a_dry_run_plans_and_changes_nothing(world, api):
    bob = api(world.bob)
    before = state(world.acme.schema_name)
    response = apply(bob, zipped(folder_files()), query="?dry_run=1")
    assert response.status_code == 200
    assert (response.json()["dry_run"], response.json()["changed"]) == (True, True)
    assert {s["action"] for s in response.json()["plan"]} == {"create", "update"}
    assert response.json()["deployments"] == []
    assert state(world.acme.schema_name) == before


def test_delete_removes_only_what_this_folder_created(world, api):
    bob = api(world.bob)
    assert apply(bob, zipped(folder_files())).status_code == 200
    assert bob.post("/t/acme/api/v1/functions/", {"name": "by-hand"}, format="json").status_code == 201
    smaller = {k: v for k, v in folder_files().items() if "timetrigger" not in k and "route-" not in k}
    kept = apply(bob, zipped(smaller))  # without delete=1 nothing goes
    assert {s["action"] for s in kept.json()["plan"]} == {"unchanged"}
    response = apply(bob, zipped(smaller), query="?delete=1")
    assert response.status_code == 200, response.content
    deleted = {(s["kind"], s["name"]) for s in response.json()["plan"] if s["action"] == "delete"}
    assert deleted == {("HTTPTrigger", "hello-route"), ("TimeTrigger", "hello-every-hour")}
    with schema_context(world.acme.schema_name):
        assert set(Function.objects.values_list("name", flat=True)) == {"hello", "by-hand"}
        assert (Trigger.objects.count(), TimeTrigger.objects.count()) == (0, 0)


def test_errors_name_the_file_and_the_field_and_change_nothing(world, api):
    bob = api(world.bob)
    files = folder_files()
    files["specs/route-hello.yaml"] = files["specs/route-hello.yaml"].replace(
        b'host: ""', b"host: example.org"
    )
    files["specs/function-hello.yaml"] = files["specs/function-hello.yaml"].replace(
        b'name: python\n    namespace: ""\n  functionTimeout',
        b'name: nosuch\n    namespace: ""\n  functionTimeout',
    )
    before = state(world.acme.schema_name)
    response = apply(bob, zipped(files))
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["detail"]["specs/route-hello.yaml"] == {
        "spec.host": [error["detail"]["specs/route-hello.yaml"]["spec.host"][0]]
    }
    assert state(world.acme.schema_name) == before
    # With the unknown field gone, the bad reference is named, and still nothing changes.
    files["specs/route-hello.yaml"] = folder_files()["specs/route-hello.yaml"]
    response = apply(bob, zipped(files))
    assert response.status_code == 400, response.content
    assert list(response.json()["error"]["detail"]["specs/function-hello.yaml"]) == ["spec.environment.name"]
    assert state(world.acme.schema_name) == before


def test_an_archive_rootdir_is_refused_not_ignored(world, api):
    files = folder_files()
    files["specs/function-hello.yaml"] = files["specs/function-hello.yaml"].replace(
        b"kind: ArchiveUploadSpec\n", b"kind: ArchiveUploadSpec\nrootdir: /src\n", 1
    )
    before = state(world.acme.schema_name)
    response = apply(api(world.bob), zipped(files))
    assert response.status_code == 400, response.content
    assert list(response.json()["error"]["detail"]["specs/function-hello.yaml"]) == ["rootdir"]
    assert state(world.acme.schema_name) == before


def test_a_bad_cron_in_one_object_rolls_back_the_others(world, api):
    bob = api(world.bob)
    files = folder_files()
    files["specs/timetrigger-hello-every-hour.yaml"] = files[
        "specs/timetrigger-hello-every-hour.yaml"
    ].replace(b"'@every 1h'", b"'not a cron'")
    before = state(world.acme.schema_name)
    response = apply(bob, zipped(files))
    assert response.status_code == 400, response.content
    assert list(response.json()["error"]["detail"]) == ["specs/timetrigger-hello-every-hour.yaml"]
    assert state(world.acme.schema_name) == before  # the environment and function made first are gone too


def test_export_round_trips_validates_against_the_crds_and_holds_no_secret(world, api):
    alice, oscar = api(world.alice), api(world.oscar)
    with schema_context(world.acme.schema_name):
        configuration.secret_save(name="db", data={"password": "hunter2-very-secret"})
    files = folder_files()
    files["specs/function-hello.yaml"] = files["specs/function-hello.yaml"].replace(
        b"  resources: {}\n", b'  resources: {}\n  secrets:\n  - name: db\n    namespace: ""\n'
    )
    assert apply(alice, zipped(files)).status_code == 200
    exported = alice.get(EXPORT.format(t="acme"))
    assert exported.status_code == 200
    assert exported["Content-Type"] == "application/zip"
    assert exported["Content-Disposition"] == 'attachment; filename="specs.zip"'
    first = unzipped(exported.content)
    assert not any(b"hunter2" in v for v in first.values())
    objects = [d for p, v in first.items() if p.startswith("specs/") for d in yaml.safe_load_all(v) if d]
    fission = [o for o in objects if o["kind"] not in ("DeploymentConfig", "ArchiveUploadSpec")]
    assert {o["kind"] for o in fission} == {
        "Environment",
        "Package",
        "Function",
        "HTTPTrigger",
        "TimeTrigger",
        "MessageQueueTrigger",
    }
    assert {o["metadata"]["name"]: schema_errors(o) for o in fission} == {
        o["metadata"]["name"]: [] for o in fission
    }
    # Into an empty tenant, then out again: the very same folder.
    with schema_context(world.globex.schema_name):
        configuration.secret_save(name="db", data={"password": "other"})
    assert apply(oscar, exported.content, tenant="globex").status_code == 200
    again = unzipped(oscar.get(EXPORT.format(t="globex")).content)
    assert again == first
    assert apply(oscar, exported.content, tenant="globex").json()["changed"] is False


def test_export_of_one_function(world, api):
    bob = api(world.bob)
    assert apply(bob, zipped(folder_files())).status_code == 200
    assert bob.post("/t/acme/api/v1/functions/", {"name": "other"}, format="json").status_code == 201
    response = bob.get(EXPORT.format(t="acme") + "?function=hello")
    assert response.status_code == 200
    names = set(unzipped(response.content))
    assert "specs/function-hello.yaml" in names
    assert "specs/function-other.yaml" not in names
    assert bob.get(EXPORT.format(t="acme") + "?function=nosuch").status_code == 404


@pytest.mark.parametrize(
    ("members", "code"),
    [
        ({"../specs/fission-deployment-config.yaml": b"x"}, "archive_unsafe_path"),
        ({"/etc/passwd": b"x"}, "archive_unsafe_path"),
        ({"specs/big.yaml": b"0" * (200 * 1024 * 1024 // 100)}, None),
    ],
)
def test_unsafe_zips_are_refused(world, api, members, code):
    bob = api(world.bob)
    before = state(world.acme.schema_name)
    response = apply(bob, zipped(members))
    assert response.status_code == 400, response.content
    assert set(response.json()["error"]) == {"code", "message", "detail"}
    if code is not None:
        assert response.json()["error"]["code"] == code
    assert state(world.acme.schema_name) == before


def test_a_zip_bomb_and_not_a_zip_are_refused(world, api):
    bob = api(world.bob)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("specs/bomb.yaml", b"\0" * (50 * 1024 * 1024))
    bomb = apply(bob, buffer.getvalue())
    assert (bomb.status_code, bomb.json()["error"]["code"]) == (400, "archive_bomb")
    assert apply(bob, b"not a zip").status_code == 400
    no_config = apply(bob, zipped({"specs/env.yaml": b"kind: Environment\n"}))
    assert no_config.status_code == 400
    assert "specs/fission-deployment-config.yaml" in no_config.json()["error"]["detail"]


def test_access_viewer_exports_but_does_not_apply_and_outsiders_get_404(world, api):
    data = zipped(folder_files())
    assert apply(api(), data).status_code == 401
    assert api().get(EXPORT.format(t="acme")).status_code == 401
    outsider = apply(api(world.oscar), data)
    assert outsider.status_code == 404
    assert outsider.json() == apply(api(world.oscar), data, tenant="nosuch").json()
    assert api(world.oscar).get(EXPORT.format(t="acme")).status_code == 404
    vera = api(world.vera)
    assert apply(vera, data).status_code == 403
    assert vera.get(EXPORT.format(t="acme")).status_code == 200
    assert apply(api(world.bob), data).status_code == 200


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
def test_the_fixture_answers_through_the_router(world, api, stack):
    bob = api(world.bob)
    files = {k: v for k, v in folder_files().items() if "mqtrigger" not in k}  # no broker in this test
    response = apply(bob, zipped(files))
    assert response.status_code == 200, response.content
    (deployment,) = response.json()["deployments"]

    def finished() -> dict[str, Any] | None:
        body = bob.get(f"/t/acme/api/v1/functions/hello/deployments/{deployment}/").json()
        return body if body["state"] in ("live", "failed") else None

    assert wait_until(finished, timeout=120, interval=0.2)["state"] == "live"
    answer = httpx.get(f"{stack.router}/acme/hello?who=spec", timeout=30)
    assert (answer.status_code, answer.text) == (200, "hello spec")
