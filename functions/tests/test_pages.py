"""Function pages: access by role, other tenants invisible, the forms drive the services."""

from __future__ import annotations

import re

import pytest
from django_tenants.utils import schema_context

from functions.models import Deployment, Function, Trigger

pytestmark = pytest.mark.django_db


def test_members_see_the_pages(world, client, hello):
    for user in (world.alice, world.bob, world.vera):
        client.force_login(user)
        listing = client.get("/t/acme/functions/")
        assert listing.status_code == 200
        assert b"hello" in listing.content
        detail = client.get("/t/acme/functions/hello/")
        assert detail.status_code == 200
        assert b"data-events-url" in detail.content


def test_editor_is_only_for_developers(world, client, hello):
    client.force_login(world.vera)  # a viewer reads the code, read only, without a form to save it
    viewer = client.get("/t/acme/functions/hello/").content.decode()
    assert re.search(r"<textarea [^>]*readonly[^>]*data-code-editor", viewer)
    assert 'value="file_save"' not in viewer
    client.force_login(world.bob)
    developer = client.get("/t/acme/functions/hello/").content.decode()
    assert 'value="file_save"' in developer
    assert not re.search(r"<textarea [^>]*readonly", developer)


def test_outsider_gets_404(world, client, hello):
    client.force_login(world.oscar)
    assert client.get("/t/acme/functions/hello/").status_code == 404
    assert client.get("/t/globex/functions/hello/").status_code == 404


def test_viewer_cannot_post(world, client, hello):
    client.force_login(world.vera)
    response = client.post("/t/acme/functions/", {"name": "nope"})
    assert response.status_code == 403
    with schema_context(world.acme.schema_name):
        assert not Function.objects.filter(name="nope").exists()


def test_create_edit_and_add_trigger_through_the_pages(world, client, django_capture_on_commit_callbacks):
    client.force_login(world.bob)
    response = client.post("/t/acme/functions/", {"name": "greet"})
    assert response.status_code == 302
    assert response["Location"] == "/t/acme/functions/greet/"
    code = "def main():\n    return 'hi'\n"
    with schema_context(world.acme.schema_name):
        revision = Function.objects.get(name="greet").draft.revision
    saved = {"action": "file_save", "path": "main.py", "content": code, "revision": revision}
    assert client.post("/t/acme/functions/greet/", saved).status_code == 302
    with django_capture_on_commit_callbacks(execute=False):
        client.post(
            "/t/acme/functions/greet/",
            {
                "action": "trigger",
                "name": "greet",
                "path": "/greet",
                "methods": ["GET"],
                "target_kind": "draft",
            },
        )
    with schema_context(world.acme.schema_name):
        function = Function.objects.get(name="greet")
        assert function.draft.files == {"main.py": code}
        assert Trigger.objects.get(name="greet").path == "/greet"
        assert Deployment.objects.filter(function=function).count() == 1


def test_bad_trigger_in_the_page_is_a_message_not_an_error(world, client, hello):
    client.force_login(world.bob)
    response = client.post(
        "/t/acme/functions/hello/triggers/",
        {"action": "trigger", "name": "x", "path": "../etc", "methods": ["GET"], "target_kind": "draft"},
    )
    assert response.status_code == 400  # the form again, the problem under the path
    assert b"The path must start with" in response.content
    assert b'data-field-error="path"' in response.content
    with schema_context(world.acme.schema_name):
        assert not Trigger.objects.exists()


def test_invoke_panel_shows_errors_of_the_form(world, client, hello):
    client.force_login(world.bob)
    response = client.post(
        "/t/acme/functions/hello/invoke/", {"method": "GET", "path": "/", "headers": "[1]"}
    )
    assert response.status_code == 400
    assert b"Headers must be a JSON object" in response.content


def test_invoke_panel_shows_what_the_service_refuses(world, client, hello):
    client.force_login(world.bob)
    response = client.post(
        "/t/acme/functions/hello/invoke/", {"method": "GET", "path": "/", "headers": '{"b\u00e4d": "x"}'}
    )
    assert response.status_code == 400
    assert b"headers" in response.content


def test_the_editor_shows_a_syntax_error_on_save(world, client, hello):
    client.force_login(world.bob)
    broken = "def main():\n    return {'a': 1\n"
    revision = hello.draft.revision
    saved = client.post(
        "/t/acme/functions/hello/",
        {"action": "file_save", "path": "main.py", "content": broken, "revision": revision},
        follow=True,
    )
    page = saved.content.decode()
    said = f"Saved main.py (draft revision {revision + 1}). It does not compile: main.py, line 2: "
    said += "&#x27;{&#x27; was never closed"
    assert said in page
    assert "data-problems" in page
    assert "File &quot;main.py&quot;, line 2\n    return {&#x27;a&#x27;: 1\n           ^" in page
    # Fixed, the panel is gone.
    fixed = client.post(
        "/t/acme/functions/hello/",
        {"action": "file_save", "path": "main.py", "content": "def main():\n    return 1\n",
         "revision": revision + 1},
        follow=True,
    )  # fmt: skip
    assert "data-problems" not in fixed.content.decode()


def test_an_uploaded_file_is_edited_under_its_own_name(world, client, hello):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(world.bob)
    upload = SimpleUploadedFile("greet.py", b"def hello():\n    return 'hi'\n")
    client.post("/t/acme/functions/hello/", {"action": "upload", "file": upload})
    page = client.get("/t/acme/functions/hello/").content.decode()
    assert "<code data-code-file>greet.py</code>" in page
    with schema_context(world.acme.schema_name):
        revision = Function.objects.get(name="hello").draft.revision
    client.post(
        "/t/acme/functions/hello/",
        {"action": "file_save", "path": "greet.py", "content": "def hello():\n    return 'hey'\n",
         "revision": revision},
    )  # fmt: skip
    with schema_context(world.acme.schema_name):
        assert Function.objects.get(name="hello").draft.files == {
            "greet.py": "def hello():\n    return 'hey'\n"
        }


def test_time_and_queue_triggers_through_the_page(world, client, hello, django_capture_on_commit_callbacks):
    client.force_login(world.bob)
    page = "/t/acme/functions/hello/triggers/"
    with django_capture_on_commit_callbacks(execute=False):
        saved = client.post(
            page,
            {"action": "time_trigger", "name": "nightly", "cron": "30 2 * * *", "method": "POST",
             "subpath": "/", "target_kind": "draft"},
            follow=True,
        )  # fmt: skip
        assert b"Next fires (UTC):" in saved.content
        assert b"02:30:00" in saved.content
        client.post(
            page,
            {"action": "queue_trigger", "name": "orders", "mq_type": "redis", "topic": "orders",
             "max_retries": 2, "content_type": "application/json", "target_kind": "draft",
             "connection": '{"address": "127.0.0.1:6379", "password": "hunter2-secret"}', "metadata": "{}"},
        )  # fmt: skip
        changed = client.post(
            page,
            {"action": "time_trigger", "name": "nightly", "cron": "@hourly", "method": "GET",
             "subpath": "/", "target_kind": "draft"},
            follow=True,
        )  # fmt: skip
        assert b"Time trigger nightly saved" in changed.content
    with schema_context(world.acme.schema_name):
        assert list(hello.time_triggers.values_list("cron", "method")) == [("@hourly", "GET")]
    shown = client.get(page).content
    assert all(text in shown for text in (b"nightly", b"@hourly", b"orders"))
    assert b"hunter2-secret" not in shown
    with schema_context(world.acme.schema_name):
        assert hello.queue_triggers.get().connection["password"] == "hunter2-secret"
    bad = client.post(page, {"action": "time_trigger", "name": "bad", "cron": "99 * * * *", "method": "POST",
                             "subpath": "/", "target_kind": "draft"}, follow=True)  # fmt: skip
    assert bad.status_code == 400
    assert b"The schedule is not valid" in bad.content
    with django_capture_on_commit_callbacks(execute=False):
        client.post(page, {"action": "delete_event_trigger", "name": "orders", "kind": "time"})  # no such
        client.post(page, {"action": "delete_event_trigger", "name": "nightly", "kind": "time"})
    with schema_context(world.acme.schema_name):
        assert list(hello.time_triggers.values_list("name", flat=True)) == []
        assert list(hello.queue_triggers.values_list("name", flat=True)) == ["orders"]
    client.force_login(world.vera)
    viewer = client.get(page).content
    assert b'value="queue_trigger"' not in viewer
    assert b"orders" in viewer


def test_a_nul_in_a_queue_triggers_json_is_a_message_not_an_error(world, client, hello):
    client.force_login(world.bob)
    response = client.post(
        "/t/acme/functions/hello/triggers/",
        {"action": "queue_trigger", "name": "q", "mq_type": "redis", "topic": "t", "max_retries": 1,
         "content_type": "text/plain", "target_kind": "draft", "connection": "{}",
         "metadata": '{"stream": "a\\u0000b"}'},
        follow=True,
    )  # fmt: skip
    assert response.status_code == 400  # the form again, said in words: never a 500
    assert b"without NUL" in response.content
    with schema_context(world.acme.schema_name):
        assert not hello.queue_triggers.exists()


def test_environment_variables_through_the_settings_form(
    world, client, hello, django_capture_on_commit_callbacks
):
    from functions import config

    client.force_login(world.bob)
    form = {
        s.name: s.default for s in config.SETTINGS if s.default is not None and not (s.mapping or s.names)
    }
    with django_capture_on_commit_callbacks(execute=False):
        saved = client.post(
            "/t/acme/functions/hello/configuration/",
            {"action": "settings", **form, "environment_variables": "GREETING=hi there\r\nLEVEL=3"},
            follow=True,
        )
        refused = client.post(
            "/t/acme/functions/hello/configuration/",
            {"action": "settings", **form, "environment_variables": "PATH=/tmp"},
            follow=True,
        )
    assert (saved.status_code, refused.status_code) == (200, 400)
    assert b"PATH is reserved for the platform" in refused.content
    with schema_context(world.acme.schema_name):
        assert Function.objects.get(name="hello").environment_variables == {
            "GREETING": "hi there",
            "LEVEL": "3",
        }
    shown = client.get("/t/acme/functions/hello/configuration/")
    assert b"GREETING=hi there\nLEVEL=3</textarea>" in shown.content  # NAME=value lines, by name


def test_secrets_and_config_maps_through_their_page(world, client, django_capture_on_commit_callbacks):
    from functions.models import ConfigMap, Secret
    from functions.services.functions import function_create

    marker = "page-s3cr3t-MARKER"
    client.force_login(world.bob)
    page = "/t/acme/configuration/"
    with django_capture_on_commit_callbacks(execute=False):
        secret = {"kind": "secret", "action": "save", "secret-name": "db"}
        saved = client.post(page, {**secret, "secret-values": f"password={marker}\r\nuser=app"}, follow=True)
        configmap = {"kind": "configmap", "action": "save", "configmap-name": "app"}
        client.post(page, {**configmap, "configmap-values": "mode=fast"}, follow=True)
        bad = client.post(page, {**secret, "secret-name": "x", "secret-values": "../key=v"}, follow=True)
    assert b"Secret db saved" in saved.content
    assert b"a key is letters" in bad.content
    shown = client.get(page)
    assert b"password" in shown.content  # its keys are shown
    assert marker.encode() not in saved.content + shown.content  # its values never are
    assert b"mode=fast" in shown.content
    with schema_context(world.acme.schema_name):
        assert Secret.objects.get(name="db").values() == {"password": marker, "user": "app"}
        assert ConfigMap.objects.get(name="app").data == {"mode": "fast"}
        function_create(name="user", secrets=["db"])
    in_use = client.post(page, {"kind": "secret", "action": "delete", "name": "db"}, follow=True)
    assert b"Secret db is used by user" in in_use.content
    client.force_login(world.vera)
    assert client.post(page, {"kind": "configmap", "action": "delete", "name": "app"}).status_code == 403
    client.force_login(world.oscar)
    assert client.get(page).status_code == 404


def test_a_refused_test_call_replaces_the_last_result_and_says_why_in_words(world, client, hello):
    client.force_login(world.bob)
    response = client.post(
        "/t/acme/functions/hello/invoke/", {"method": "GET", "path": "/", "headers": "[1]"}
    )
    assert response.status_code == 400
    assert response["X-Partial-Answer"] == "1"  # htmx swaps it in, over the previous result
    page = response.content.decode()
    assert 'role="alert"' in page
    assert "Headers: Headers must be a JSON object of strings." in page
    assert "{'" not in page
    assert "[&#x27;" not in page


def test_the_page_shows_each_url_with_a_copy_button_and_says_when_there_is_none(
    world, client, hello, settings
):
    settings.PUBLIC_ROUTER_URL = "https://fn.example.com/"
    client.force_login(world.bob)
    page = client.get("/t/acme/functions/hello/test/").content.decode()
    assert "data-no-url" in page
    assert "data-needs-trigger" in page
    with schema_context(world.acme.schema_name):
        Trigger.objects.create(function=hello, name="hello", path="/hello", methods=["GET", "POST"])
        Trigger.objects.create(function=hello, name="all", path="/api", methods=["GET"], is_prefix=True)
    page = client.get("/t/acme/functions/hello/test/").content.decode()
    assert (
        '<code id="function-url-1">https://fn.example.com/acme/api</code> <small>and every path below it'
        in page
    )
    assert '<code id="function-url-2">https://fn.example.com/acme/hello</code>' in page
    assert 'data-copy="function-url-2"' in page
    assert "GET, POST" in page
    assert "data-no-url" not in page
    assert "data-needs-trigger" not in page
    assert 'name="path" value="/hello"' in page  # the test panel starts from a path it can call


def test_the_router_url_defaults_to_the_data_planes(settings):
    from functions.selectors import router_base_url

    settings.PUBLIC_ROUTER_URL, settings.RUNTIME_ROUTER_URL = "", "http://127.0.0.1:8888/"
    assert router_base_url() == "http://127.0.0.1:8888"
    settings.PORTAL_BACKEND, settings.KUBERNETES_ROUTER_URL = "kubernetes", "http://router.fission"
    assert router_base_url() == "http://router.fission"


@pytest.mark.parametrize(
    ("headers", "body", "shown"),
    [
        (
            {"Content-Type": "application/json"},
            '{"a":1,"b":[1,2]}',
            '{\n  "a": 1,\n  "b": [\n    1,\n    2\n  ]\n}',
        ),
        ({}, '{"ok": true}', '{\n  "ok": true\n}'),
        ({"content-type": "text/plain"}, "plain {text", "plain {text"),
        ({"Content-Type": "application/json"}, "{not json", "{not json"),
        ({}, '"é"', '"é"'),
    ],
)
def test_a_json_answer_is_shown_indented(headers, body, shown):
    from functions.models import Invocation
    from functions.views import _readable_body

    assert _readable_body(Invocation(response_headers=headers, response_body=body)) == shown


def test_a_test_call_joins_the_history_which_can_send_it_again(world, client, hello):
    client.force_login(world.bob)
    data = {"method": "POST", "path": "/hello?x=1", "headers": '{"X-Test": "1"}', "body": "hi"}
    response = client.post("/t/acme/functions/hello/invoke/", data)
    assert response.status_code == 200
    page = response.content.decode()
    assert 'hx-swap-oob="afterbegin:#invocation-history"' in page  # the new row, without a reload
    assert 'name="headers" value="{&quot;X-Test&quot;: &quot;1&quot;}"' in page
    assert 'name="path" value="/hello?x=1"' in page
    assert 'name="body" value="hi"' in page
    again = client.get("/t/acme/functions/hello/test/").content.decode()
    assert 'aria-label="Send POST /hello?x=1 again"' in again


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_triggers_aliases_and_the_function_are_deleted_from_the_page(
    world, client, hello, django_capture_on_commit_callbacks
):
    from functions.models import Alias, Build, BuildState, Version
    from functions.services import versions

    with schema_context(world.acme.schema_name):
        Build.objects.create(function=hello, draft_revision=hello.draft.revision, state=BuildState.SUCCEEDED,
                             sha256="a" * 64, python_version=hello.environment.runtime_version)  # fmt: skip
        versions.version_publish(function=hello)
        versions.alias_set(function=hello, name="live", version=1)
        Trigger.objects.create(function=hello, name="web", path="/web", methods=["GET"], target_kind="alias",
                               alias=Alias.objects.get(name="live"))  # fmt: skip
    client.force_login(world.bob)
    url = "/t/acme/functions/hello/"
    assert "Yes, delete trigger web" in client.get(f"{url}triggers/").content.decode()
    assert "Yes, delete alias live" in client.get(f"{url}versions/").content.decode()
    assert "Yes, delete hello for good" in client.get(f"{url}configuration/").content.decode()
    with django_capture_on_commit_callbacks(execute=False):
        refused = client.post(f"{url}versions/", {"action": "delete_alias", "name": "live"}, follow=True)
        assert _messages(refused) == ["Triggers use this alias: point them elsewhere first."]
        deleted = client.post(f"{url}triggers/", {"action": "delete_trigger", "name": "web"}, follow=True)
        assert _messages(deleted) == ["Trigger web deleted; redeploying."]
        deleted = client.post(f"{url}versions/", {"action": "delete_alias", "name": "live"}, follow=True)
        assert _messages(deleted) == ["Alias live deleted; redeploying."]
        assert client.post(f"{url}triggers/", {"action": "delete_trigger", "name": "web"}).status_code == 404
        gone = client.post(f"{url}configuration/", {"action": "delete_function"})
    assert gone.status_code == 302
    assert gone["Location"] == "/t/acme/functions/"
    with schema_context(world.acme.schema_name):
        assert not Function.objects.filter(name="hello").exists()
        assert not Version.objects.exists()


def test_a_viewer_or_another_tenant_cannot_delete(world, client, hello, django_capture_on_commit_callbacks):
    client.force_login(world.vera)  # viewer of acme
    assert "Yes, delete hello" not in client.get("/t/acme/functions/hello/configuration/").content.decode()
    assert client.post("/t/acme/functions/hello/", {"action": "delete_function"}).status_code == 403
    client.force_login(world.oscar)  # globex's admin
    assert client.post("/t/acme/functions/hello/", {"action": "delete_function"}).status_code == 404
    with schema_context(world.acme.schema_name):
        assert Function.objects.filter(name="hello").exists()


def test_version_and_alias_fields_are_pickers_of_the_functions_own(world, client, hello):
    from functions.models import Build, BuildState
    from functions.services import functions as function_services
    from functions.services import versions

    with schema_context(world.acme.schema_name):
        Build.objects.create(function=hello, draft_revision=hello.draft.revision, state=BuildState.SUCCEEDED,
                             sha256="a" * 64, python_version=hello.environment.runtime_version)  # fmt: skip
        versions.version_publish(function=hello)
        function_services.function_update(function=hello, timeout_s=59)
        versions.version_publish(function=hello)
        versions.alias_set(function=hello, name="live", version=1)
    client.force_login(world.bob)
    versions_tab = client.get("/t/acme/functions/hello/versions/").content.decode()
    triggers_tab = client.get("/t/acme/functions/hello/triggers/").content.decode()
    flat = re.sub(r">\s+<", "><", versions_tab + triggers_tab)
    alias_version = (
        '<select name="version" id="alias-version"><option value="2">v2</option><option value="1">v1</option>'
    )
    assert alias_version in flat  # newest first; no "none": an alias needs a version
    assert (
        '<select name="canary_version" id="alias-canary_version"><option value="" selected>none</option>'
        in flat
    )
    trigger_alias = '<select name="alias" id="trigger-alias"><option value="" selected>none</option>'
    assert f'{trigger_alias}<option value="live">live</option>' in flat
    assert '<datalist id="alias-names"><option value="live"></option></datalist>' in flat
    for page in (versions_tab, triggers_tab):
        ids = re.findall(r' id="([^"]+)"', page)
        assert len(ids) == len(set(ids))  # no id twice on a tab
    response = client.post(
        "/t/acme/functions/hello/", {"action": "alias", "name": "live", "version": "2"}, follow=True
    )
    assert [str(m) for m in response.context["messages"]] == ["Alias live saved; redeploying."]
