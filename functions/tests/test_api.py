"""The functions API: every endpoint against auth, roles and other tenants; bad input."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django_tenants.utils import schema_context

from functions.models import (
    Build,
    BuildState,
    Deployment,
    Draft,
    Function,
    Invocation,
    QueueTrigger,
    TimeTrigger,
    Trigger,
)  # fmt: skip
from functions.services import configuration, versions
from functions.services import functions as function_services
from testsupport.fixtures import error_of
from testsupport.matrix import assert_access, call

pytestmark = pytest.mark.django_db
API = "/t/{t}/api/v1/functions"


@pytest.fixture
def fn(world: Any) -> Function:
    """Function ``hello`` in acme with a succeeded build, version 1, alias ``live`` and a draft
    whose settings differ from version 1's (timeout 59 s)."""
    with schema_context(world.acme.schema_name):
        function = function_services.function_create(name="hello")
        revision = Draft.objects.get(function=function).revision
        Build.objects.create(
            function=function,
            draft_revision=revision,
            state=BuildState.SUCCEEDED,
            sha256="a" * 64,
            python_version=function.environment.runtime_version,
        )
        versions.version_publish(function=function)
        versions.alias_set(function=function, name="live", version=1)
        # The draft differs from version 1 (an identical one is not published again).
        function_services.function_update(function=function, timeout_s=59)
        Trigger.objects.create(function=function, name="hello", methods=["GET"], path="/hello")
        TimeTrigger.objects.create(function=function, name="tick", cron="@every 1m")
        QueueTrigger.objects.create(function=function, name="orders", mq_type="redis", topic="orders",
                                    connection={"address": "127.0.0.1:6379"})  # fmt: skip
        Deployment.objects.create(function=function, state="live", cause="fixture")
        Invocation.objects.create(function=function, method="GET", path="/hello", request_id="r1", status=200)
        configuration.secret_save(name="db", data={"password": "pw"})
        configuration.configmap_save(name="app", data={"mode": "fast"})
    return function


def _ids(world: Any) -> dict[str, int]:
    with schema_context(world.acme.schema_name):
        return {
            "build": Build.objects.values_list("pk", flat=True).first() or 0,
            "deployment": Deployment.objects.values_list("pk", flat=True).first() or 0,
            "invocation": Invocation.objects.values_list("pk", flat=True).first() or 0,
        }


def _upload() -> dict[str, Any]:
    return {"file": SimpleUploadedFile("main.py", b"def main():\n    return 'up'\n")}


# (method, path under /functions, body, format, a persona it works for, status, {persona: refusal})
ENDPOINTS = [
    ("get", "/../environments/", None, "json", "vera", 200, {}),
    ("get", "/../environments/python/", None, "json", "vera", 200, {}),
    ("patch", "/../environments/python/", {"poolsize": 2}, "json", "bob", 200, {"vera": 403}),
    ("get", "/../secrets/", None, "json", "vera", 200, {}),
    ("post", "/../secrets/", {"name": "new", "data": {"k": "v"}}, "json", "bob", 201, {"vera": 403}),
    ("get", "/../secrets/db/", None, "json", "vera", 200, {}),
    ("put", "/../secrets/db/", {"data": {"k": "v"}}, "json", "bob", 200, {"vera": 403}),
    ("delete", "/../secrets/db/", None, "json", "bob", 204, {"vera": 403}),
    ("get", "/../configmaps/", None, "json", "vera", 200, {}),
    ("post", "/../configmaps/", {"name": "new", "data": {"k": "v"}}, "json", "bob", 201, {"vera": 403}),
    ("get", "/../configmaps/app/", None, "json", "vera", 200, {}),
    ("put", "/../configmaps/app/", {"data": {"k": "v"}}, "json", "bob", 200, {"vera": 403}),
    ("delete", "/../configmaps/app/", None, "json", "bob", 204, {"vera": 403}),
    ("get", "/", None, "json", "vera", 200, {}),
    ("post", "/", {"name": "newfn"}, "json", "bob", 201, {"vera": 403}),
    ("get", "/hello/", None, "json", "vera", 200, {}),
    ("patch", "/hello/", {"timeout_s": 30}, "json", "bob", 200, {"vera": 403}),
    ("get", "/hello/code/", None, "json", "vera", 200, {}),
    (
        "put",
        "/hello/code/",
        {"files": {"main.py": "def main():\n    return 1\n"}},
        "json",
        "bob",
        200,
        {"vera": 403},
    ),
    ("get", "/hello/builds/", None, "json", "vera", 200, {}),
    ("post", "/hello/builds/", None, "json", "bob", 202, {"vera": 403}),
    ("get", "/hello/versions/", None, "json", "vera", 200, {}),
    ("get", "/hello/versions/1/", None, "json", "vera", 200, {}),
    ("post", "/hello/versions/", {"description": "x"}, "json", "bob", 201, {"vera": 403}),
    ("get", "/hello/aliases/", None, "json", "vera", 200, {}),
    ("get", "/hello/aliases/live/", None, "json", "vera", 200, {}),
    ("post", "/hello/aliases/", {"name": "beta", "version": 1}, "json", "bob", 200, {"vera": 403}),
    ("get", "/hello/triggers/", None, "json", "vera", 200, {}),
    ("get", "/hello/triggers/hello/", None, "json", "vera", 200, {}),
    (
        "post",
        "/hello/triggers/",
        {"name": "t2", "methods": ["GET"], "path": "/t2"},
        "json",
        "bob",
        201,
        {"vera": 403},
    ),
    ("delete", "/hello/triggers/hello/", None, "json", "bob", 204, {"vera": 403}),
    ("get", "/hello/time-triggers/", None, "json", "vera", 200, {}),
    ("get", "/hello/time-triggers/tick/", None, "json", "vera", 200, {}),
    (
        "post",
        "/hello/time-triggers/",
        {"name": "t2", "cron": "*/5 * * * *"},
        "json",
        "bob",
        201,
        {"vera": 403},
    ),
    (
        "put",
        "/hello/time-triggers/tick/",
        {"name": "tick", "cron": "@hourly"},
        "json",
        "bob",
        200,
        {"vera": 403},
    ),
    ("delete", "/hello/time-triggers/tick/", None, "json", "bob", 204, {"vera": 403}),
    ("get", "/hello/queue-triggers/", None, "json", "vera", 200, {}),
    ("get", "/hello/queue-triggers/orders/", None, "json", "vera", 200, {}),
    (
        "post",
        "/hello/queue-triggers/",
        {"name": "q2", "mq_type": "rabbitmq", "topic": "in", "connection": {"host": "amqp://h/"}},
        "json",
        "bob",
        201,
        {"vera": 403},
    ),
    (
        "put",
        "/hello/queue-triggers/orders/",
        {"name": "orders", "mq_type": "redis", "topic": "orders2"},
        "json",
        "bob",
        200,
        {"vera": 403},
    ),
    ("delete", "/hello/queue-triggers/orders/", None, "json", "bob", 204, {"vera": 403}),
    ("get", "/hello/dead-letters/", None, "json", "vera", 200, {}),
    ("post", "/hello/dead-letters/redrive/", {}, "json", "bob", 200, {"vera": 403}),
    ("post", "/hello/dead-letters/purge/", {}, "json", "bob", 200, {"vera": 403}),
    ("get", "/hello/deployments/", None, "json", "vera", 200, {}),
    ("post", "/hello/deployments/", None, "json", "bob", 202, {"vera": 403}),
    ("get", "/hello/invocations/", None, "json", "vera", 200, {}),
    ("get", "/hello/invocations/{invocation}/", None, "json", "vera", 200, {}),
    ("get", "/hello/builds/{build}/", None, "json", "vera", 200, {}),
    ("get", "/hello/deployments/{deployment}/", None, "json", "vera", 200, {}),
    ("post", "/hello/upload/", _upload, "multipart", "bob", 200, {"vera": 403}),
    ("post", "/hello/invoke/", {"method": "GET", "path": "/hello"}, "json", "bob", 201, {"vera": 403}),
    # No Prometheus answers in this test: past the access checks, metrics are 503 (metrics/tests).
    ("get", "/hello/metrics/", None, "json", "vera", 503, {}),
    ("get", "/hello/metrics/series/", None, "json", "vera", 503, {}),
    ("delete", "/hello/", None, "json", "bob", 204, {"vera": 403}),
]


def _url(tenant: str, path: str) -> str:
    if path.startswith("/../"):  # environments, secrets and config maps sit beside functions
        return f"/t/{tenant}/api/v1/{path[4:]}"
    return API.format(t=tenant) + path


@pytest.mark.parametrize(("method", "path", "body", "fmt", "allowed", "ok", "refused"), ENDPOINTS)
def test_endpoint_matrix(
    world, api, fn, django_capture_on_commit_callbacks, no_prometheus, method, path, body, fmt, allowed, ok,
    refused,
):  # fmt: skip
    path = path.format(**_ids(world))
    assert_access(
        world, api, lambda tenant: _url(tenant, path), method, body, fmt=fmt, allowed=allowed, ok=ok,
        refused=refused, while_allowed=lambda: django_capture_on_commit_callbacks(execute=False),
    )  # fmt: skip


def test_other_tenants_functions_do_not_exist_here(world, api, fn):
    # globex's admin, in globex, cannot reach acme's function by name
    response = api(world.oscar).get(API.format(t="globex") + "/hello/")
    assert response.status_code == 404
    assert api(world.oscar).get(API.format(t="globex") + "/").json()["count"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Bad_Name"}, "name"),
        ({"name": "ok", "executor": "lambda"}, "executor"),
        ({"name": "ok", "min_scale": 3, "max_scale": 1}, "max_scale"),
        ({"name": "ok", "timeout_s": 0}, "timeout_s"),
        ({"name": 5}, "name"),
        ({"name": "ok", "entrypoint": "a..b"}, "entrypoint"),
        ({"name": "ok", "memory_mb": 1}, "memory_mb"),
    ],
)
def test_bad_function_input_is_400_naming_the_field(world, api, body, field):
    response = api(world.bob).post(API.format(t="acme") + "/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in error_of(response)["detail"]
    with schema_context(world.acme.schema_name):
        assert not Function.objects.exists()


def _zip(entries: dict[str, bytes], *, symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


MALICIOUS = {
    "absolute path": (_zip({"/etc/cron.d/evil": b"x"}), "archive_unsafe_path", 400),
    "parent directory": (_zip({"../evil.py": b"x"}), "archive_unsafe_path", 400),
    "symlink": (_zip({"main.py": b"x"}, symlink="link"), "archive_link", 400),
    "zip bomb": (_zip({"bomb.txt": b"\0" * (200 * 1024 * 1024)}), "archive_bomb", 400),
    "oversized upload": (b"PK" + b"\0" * (21 * 1024 * 1024), "too_large", 413),  # the request limit
    "too many files": (_zip({f"f{i}.py": b"" for i in range(2100)}), "archive_too_many_files", 400),
    "not a zip": (b"PK\x03\x04 definitely not a zip", "archive_invalid", 400),
    "requirements with sdists allowed": (
        _zip({"main.py": b"x", "requirements.txt": b"six\n--no-binary :all:\n"}),
        "requirements_refused",
        400,
    ),
    "requirements with an index": (
        _zip({"main.py": b"x", "requirements.txt": b"-i https://evil.example/simple\nsix\n"}),
        "requirements_refused",
        400,
    ),
    "requirements that are not text": (
        _zip({"main.py": b"x", "requirements.txt": b"\xff\xfe"}),
        "requirements_refused",
        400,
    ),
}


@pytest.mark.parametrize("kind", MALICIOUS)
def test_malicious_archives_are_refused_and_nothing_is_stored(world, api, fn, kind):
    data, code, status = MALICIOUS[kind]
    with schema_context(world.acme.schema_name):
        before = Draft.objects.get(function__name="hello")
    upload = SimpleUploadedFile("evil.zip", data, content_type="application/zip")
    response = api(world.bob).post(
        API.format(t="acme") + "/hello/upload/", {"file": upload}, format="multipart"
    )
    assert response.status_code == status, response.content
    assert error_of(response)["code"] == code
    assert error_of(response)["message"]
    with schema_context(world.acme.schema_name):
        after = Draft.objects.get(function__name="hello")
    assert (after.revision, after.files, after.archive) == (before.revision, before.files, before.archive)


@pytest.mark.parametrize(
    "requirements", ["six\n--no-binary :all:\n", "-e git+https://example.com/x\n", "./local\n", "--pre\n"]
)
def test_requirements_are_checked_when_the_draft_is_saved(world, api, fn, requirements):
    files = {"main.py": "def main():\n    return 1\n", "requirements.txt": requirements}
    response = api(world.bob).put(API.format(t="acme") + "/hello/code/", {"files": files}, format="json")

    assert response.status_code == 400, response.content
    assert error_of(response)["code"] == "requirements_refused"
    assert "requirements.txt line" in error_of(response)["message"]
    with schema_context(world.acme.schema_name):
        assert "requirements.txt" not in Draft.objects.get(function__name="hello").files


def test_index_requirements_are_accepted_on_save(world, api, fn):
    files = {"main.py": "import six\n", "requirements.txt": "six==1.16.0  # pinned\n"}
    response = api(world.bob).put(API.format(t="acme") + "/hello/code/", {"files": files}, format="json")
    assert response.status_code == 200, response.content


def test_single_py_upload_becomes_the_draft_under_its_own_name(world, api, fn):
    # As Fission keeps the file: the entrypoint then reads handler.main (or just main).
    upload = SimpleUploadedFile("handler.py", b"def main():\n    return 'up'\n")
    response = api(world.bob).post(
        API.format(t="acme") + "/hello/upload/", {"file": upload}, format="multipart"
    )
    assert response.status_code == 200
    assert response.json()["files"] == {"handler.py": "def main():\n    return 'up'\n"}
    assert response.json()["problems"] == []


def test_saving_code_that_does_not_compile_answers_its_problems(world, api, fn):
    files = {"main.py": "def main():\n    return 1\n", "lib/bad.py": "x = [\n"}
    response = api(world.bob).put(API.format(t="acme") + "/hello/code/", {"files": files}, format="json")
    assert response.status_code == 200
    assert response.json()["revision"] > 1  # saved all the same
    (problem,) = response.json()["problems"]
    assert (problem["file"], problem["line"], problem["message"]) == ("lib/bad.py", 1, "'[' was never closed")
    assert problem["text"].startswith('  File "lib/bad.py", line 1\n    x = [\n        ^\n')
    shown = api(world.bob).get(API.format(t="acme") + "/hello/code/").json()["problems"]
    assert shown == response.json()["problems"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "x", "methods": ["GET"], "path": "no-slash"}, 400),
        ({"name": "x", "methods": ["GET"], "path": "/a/../b"}, 400),
        # Each of these once passed the API and then made every deployment of the function fail.
        ({"name": "x", "methods": ["GET"], "path": "/..%2fx/y"}, 400),
        ({"name": "x", "methods": ["GET"], "path": "/..;/x"}, 400),
        ({"name": "x", "methods": ["GET"], "path": "/a//b"}, 400),
        ({"name": "x", "methods": ["GET"], "path": "/a b"}, 400),
        ({"name": "x", "methods": [], "path": "/a"}, 400),
        ({"name": "x", "methods": ["FETCH"], "path": "/a"}, 400),
        ({"name": "x", "methods": ["GET"], "path": "/a", "target_kind": "alias", "alias": "nope"}, 400),
        ({"name": "x", "methods": ["GET"], "path": "/a", "target_kind": "version", "version": 9}, 404),
    ],
)
def test_bad_triggers(world, api, fn, body, code):
    response = api(world.bob).post(API.format(t="acme") + "/hello/triggers/", body, format="json")
    assert response.status_code == code, response.content
    error_of(response)


def test_alias_weights_are_checked(world, api, fn):
    url = API.format(t="acme") + "/hello/aliases/"
    assert (
        api(world.bob).post(url, {"name": "x", "version": 1, "canary_weight": 10}, format="json").status_code
        == 400
    )
    assert api(world.bob).post(url, {"name": "x", "version": 1, "canary_version": 1, "canary_weight": 10},
                               format="json").status_code == 400  # fmt: skip
    assert api(world.bob).post(url, {"name": "x", "version": 7}, format="json").status_code == 404


def test_publish_needs_a_build_of_the_current_draft(world, api, fn):
    api(world.bob).put(
        API.format(t="acme") + "/hello/code/", {"files": {"main.py": "x = 1\n"}}, format="json"
    )
    response = api(world.bob).post(API.format(t="acme") + "/hello/versions/", {}, format="json")
    assert response.status_code == 409
    assert error_of(response)["code"] == "not_built"


def test_versions_are_immutable(world, api, fn):
    url = API.format(t="acme") + "/hello/versions/1/"
    assert api(world.alice).patch(url, {"description": "changed"}, format="json").status_code == 405
    assert api(world.alice).delete(url).status_code == 405


def test_suspended_tenant_cannot_change_functions(world, api, fn):
    from tenants.models import Tenant

    Tenant.objects.filter(pk=world.acme.pk).update(suspended=True)
    response = api(world.bob).post(API.format(t="acme") + "/hello/deployments/")
    assert response.status_code == 403
    assert error_of(response)["code"] == "tenant_suspended"


@pytest.mark.parametrize("path", ["2/other-tenant", "hello", "/../acme2/x"])
def test_test_calls_cannot_leave_the_tenant(world, api, fn, path):
    response = api(world.bob).post(API.format(t="acme") + "/hello/invoke/", {"path": path}, format="json")
    assert response.status_code == 400
    assert error_of(response)["detail"] == {"path": [path]}
    with schema_context(world.acme.schema_name):
        assert Invocation.objects.count() == 1  # only the fixture's


# What the test call's HTTP client cannot send was a 500 (UnicodeEncodeError, InvalidURL), or a
# recorded "router unreachable": it is the caller's mistake, a 400 naming the field.
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"headers": {"X-Café": "1"}}, "headers"),  # a name must be an HTTP token (ASCII)
        ({"headers": {"X Y": "1"}}, "headers"),
        ({"headers": {"": "1"}}, "headers"),
        ({"headers": {"X-A": "café"}}, "headers"),  # a value: printable ASCII, space and tab
        ({"headers": {"X-A": "a\r\nX-B: b"}}, "headers"),
        ({"path": "/hel\nlo"}, "path"),
        ({"path": "/hello\x7f"}, "path"),
    ],
)
def test_a_test_call_the_router_cannot_be_sent_is_400(world, api, hello, body, field):
    response = api(world.bob).post(API.format(t="acme") + "/hello/invoke/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in error_of(response)["detail"]
    with schema_context(world.acme.schema_name):
        assert not Invocation.objects.exists()


def test_a_test_call_stores_what_the_function_answers_even_with_nul_bytes(world, api, hello, monkeypatch):
    from dataplane.backends import local
    from dataplane.backends.base import InvokeResult, LogRecord

    answer = InvokeResult(status=200, headers={"x-a": "1"}, body=b"a\x00b", duration_ms=1.0, request_id="r")
    line = LogRecord(time=1.0, namespace="faas-acme", function="hello-draft", request_id="r", stream="stdout",
                     message="printed \x00", id="1-0")  # fmt: skip
    monkeypatch.setattr(local.LocalBackend, "invoke", lambda self, *args, **kwargs: answer)
    monkeypatch.setattr(local.LocalBackend, "logs", lambda self, *args, **kwargs: [line])
    response = api(world.bob).post(API.format(t="acme") + "/hello/invoke/", {"path": "/hello"}, format="json")
    assert response.status_code == 201, response.content
    # PostgreSQL stores no NUL in text: what the function sent is kept, with U+FFFD in its place.
    assert response.json()["response_body"] == "a\ufffdb"
    assert [record["message"] for record in response.json()["logs"]] == ["printed \ufffd"]


def _nul_upload(name: str, data: bytes) -> dict[str, Any]:
    return {"file": SimpleUploadedFile(name, data)}


@pytest.mark.parametrize(
    ("method", "path", "body", "fmt"),
    [
        ("put", "/hello/code/", {"files": {"main\x00.py": "x = 1\n"}}, "json"),  # a file's name
        ("put", "/hello/code/", {"files": {"main.py": "x = 1\x00\n"}}, "json"),
        # (Django's multipart parser drops a NUL from an upload's name.)
        ("post", "/hello/upload/", lambda: _nul_upload("main.py", b"x = 1\x00\n"), "multipart"),
    ],
)
def test_a_nul_in_a_file_or_its_name_is_400(world, api, hello, method, path, body, fmt):
    with schema_context(world.acme.schema_name):
        before = Draft.objects.get(function__name="hello").revision
    response = call(api(world.bob), method, API.format(t="acme") + path, body, fmt)
    assert response.status_code == 400, response.content
    assert set(error_of(response)["detail"]) in ({"files"}, {"file"})
    with schema_context(world.acme.schema_name):
        assert Draft.objects.get(function__name="hello").revision == before
