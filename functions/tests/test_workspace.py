"""The function workspace (functions/workspace.py): one URL per tab, the header's state and URLs
on every tab, the panel alone for htmx, a refused form shown again with its problems under its
fields, and every trigger edited in place."""

from __future__ import annotations

import re

import pytest
from django_tenants.utils import schema_context

from functions.models import Deployment, DeploymentState, QueueTrigger, TimeTrigger, Trigger

pytestmark = pytest.mark.django_db

TABS = {
    "": "Code",
    "test/": "Test",
    "metrics/": "Monitor",
    "logs/": "Logs",
    "versions/": "Versions and aliases",
    "triggers/": "Triggers",
    "configuration/": "Configuration",
}
PANEL = {"HX-Request": "true", "HX-Target": "tab-panel"}


def _current_tab(html: str) -> list[str]:
    return re.findall(r'data-tab-link="\w+" aria-current="page">([^<]+)</a>', html)


def test_every_tab_has_its_url_and_the_shared_header(world, client, hello):
    with schema_context(world.acme.schema_name):
        Trigger.objects.create(function=hello, name="web", path="/web", methods=["GET"])
    for user in (world.bob, world.vera):  # a developer and a viewer read every tab
        client.force_login(user)
        for path, label in TABS.items():
            response = client.get(f"/t/acme/functions/hello/{path}")
            html = response.content.decode()
            assert response.status_code == 200, (path, html[:400])
            assert _current_tab(html) == [label], path
            assert f"<title>hello · {label}</title>" in html
            assert 'data-function-state="not-deployed"' in html
            assert "/acme/web</code>" in html  # the function's URL, with its copy button
            assert 'data-copy="function-url-1"' in html
            assert html.count('id="tab-panel"') == 1


def test_htmx_gets_the_panel_alone_with_the_header_out_of_band(world, client, hello):
    client.force_login(world.bob)
    for path, label in TABS.items():
        response = client.get(f"/t/acme/functions/hello/{path}", headers=PANEL)
        html = response.content.decode()
        assert response.status_code == 200, path
        assert response["X-Workspace-Panel"] == "1"
        assert "<html" not in html
        assert "topbar" not in html
        assert html.count('id="tab-panel"') == 1
        for part in ("workspace-state", "workspace-urls", "workspace-nav"):
            assert re.search(rf'id="{part}"[^>]*hx-swap-oob="true"', html), (path, part)
        assert _current_tab(html) == [label]
        assert "HX-Target" in response["Vary"]
    # A history restore needs the whole page.
    whole = client.get(
        "/t/acme/functions/hello/test/", headers={**PANEL, "HX-History-Restore-Request": "true"}
    )
    assert "<html" in whole.content.decode()
    assert "X-Workspace-Panel" not in whole


def test_the_header_says_the_newest_deployments_state(world, client, hello):
    client.force_login(world.bob)

    def state() -> tuple[str, str]:
        html = client.get("/t/acme/functions/hello/").content.decode()
        badge = re.search(r'data-function-state="([\w-]+)"[^>]*>([^<]+)<', html)
        reason = re.search(r"data-function-state-reason[^>]*>([^<]*)<", html)
        assert badge
        assert reason
        return f"{badge.group(1)}: {badge.group(2)}", reason.group(1).strip()

    assert state() == ("not-deployed: not deployed yet", "")
    with schema_context(world.acme.schema_name):
        first = Deployment.objects.create(function=hello, state=DeploymentState.BUILDING)
    assert state() == ("deploying: deploying (building)", "")
    with schema_context(world.acme.schema_name):
        first.state = DeploymentState.LIVE
        first.save()
    assert state() == ("live: live", "")
    with schema_context(world.acme.schema_name):
        Deployment.objects.create(
            function=hello, state=DeploymentState.FAILED, reason="the build failed: bad wheel"
        )
    assert state() == ("failed: failed", "the build failed: bad wheel The previous deployment still answers.")


def test_a_refused_form_is_shown_again_with_its_problem_under_its_field(world, client, hello):
    client.force_login(world.bob)
    response = client.post(
        "/t/acme/functions/hello/triggers/",
        {"action": "trigger", "name": "web", "path": "../etc", "methods": ["GET"], "target_kind": "draft"},
        headers=PANEL,
    )
    html = response.content.decode()
    assert response.status_code == 200  # to htmx a panel like any other, with the refusal said:
    assert response["X-Refused-Status"] == "400"
    assert response["X-Workspace-Panel"] == "1"
    field = re.search(r'id="trigger-path_error" role="alert" data-field-error="path">(.*?)</div>', html, re.S)
    assert field
    assert "must start with &#x27;/&#x27;" in field.group(1)
    assert 'value="../etc"' in html  # what was typed stays, to be corrected
    assert re.search(r'role="alert">[^<]*The path must start with', html)  # and said at the top
    with schema_context(world.acme.schema_name):
        assert not Trigger.objects.exists()


def test_an_invalid_form_names_each_field_in_words_under_it(world, client, hello):
    client.force_login(world.bob)
    response = client.post(
        "/t/acme/functions/hello/versions/", {"action": "alias", "name": "", "version": "x"}
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert re.search(r'data-field-error="name"><small class="field-error">This field is required', html)
    assert re.search(r'data-field-error="version"><small class="field-error">Enter a whole number', html)
    assert "{'" not in html  # never a dict


def test_an_unknown_action_is_refused_in_words(world, client, hello):
    client.force_login(world.bob)
    response = client.post("/t/acme/functions/hello/", {"action": "launch_rockets"})
    assert response.status_code == 400
    assert "launch_rockets is not something this page does" in response.content.decode()


def test_a_done_form_leads_back_to_its_tab(world, client, hello):
    client.force_login(world.bob)
    response = client.post(
        "/t/acme/functions/hello/triggers/",
        {"action": "trigger", "name": "web", "path": "/web", "methods": ["GET"], "target_kind": "draft"},
    )
    assert response.status_code == 302
    assert response["Location"] == "/t/acme/functions/hello/triggers/"
    page = client.get(response["Location"]).content.decode()
    assert "Trigger web added; redeploying." in page


def test_an_http_trigger_is_changed_in_place_and_may_be_renamed(world, client, hello):
    with schema_context(world.acme.schema_name):
        Trigger.objects.create(function=hello, name="web", path="/web", methods=["GET"])
    client.force_login(world.bob)
    page = client.get("/t/acme/functions/hello/triggers/").content.decode()
    assert 'data-edit-trigger="web"' in page
    assert 'id="edit_http_web-path"' in page
    assert 'value="/web"' in page
    response = client.post(
        "/t/acme/functions/hello/triggers/",
        {"action": "trigger", "original": "web", "name": "site", "path": "/site", "methods": ["GET", "POST"],
         "target_kind": "draft"},
    )  # fmt: skip
    assert response.status_code == 302
    with schema_context(world.acme.schema_name):
        trigger = Trigger.objects.get()
        assert (trigger.name, trigger.path, sorted(trigger.methods)) == ("site", "/site", ["GET", "POST"])
        assert Deployment.objects.filter(function=hello, cause="trigger site changed").exists()


def test_a_refused_edit_reopens_that_rows_form(world, client, hello):
    with schema_context(world.acme.schema_name):
        Trigger.objects.create(function=hello, name="web", path="/web", methods=["GET"])
    client.force_login(world.bob)
    response = client.post(
        "/t/acme/functions/hello/triggers/",
        {"action": "trigger", "original": "web", "name": "web", "path": "nope", "methods": ["GET"],
         "target_kind": "draft"},
    )  # fmt: skip
    html = response.content.decode()
    assert response.status_code == 400
    assert re.search(
        r'<details class="edit" open>\s*<summary[^>]*>Edit</summary>\s*'
        r'<form method="post" data-edit-trigger="web"',
        html,
    )
    assert 'id="edit_http_web-path_error"' in html
    with schema_context(world.acme.schema_name):
        assert Trigger.objects.get().path == "/web"


def test_time_and_queue_triggers_are_changed_from_their_rows(world, client, hello):
    with schema_context(world.acme.schema_name):
        TimeTrigger.objects.create(function=hello, name="tick", cron="@every 1m", method="POST", subpath="/")
        QueueTrigger.objects.create(
            function=hello,
            name="orders",
            mq_type="nats-jetstream",
            topic="orders",
            connection={"host": "nats://secret@x"},
        )
    client.force_login(world.bob)
    page = client.get("/t/acme/functions/hello/triggers/").content.decode()
    assert 'data-edit-time-trigger="tick"' in page
    assert 'data-edit-queue-trigger="orders"' in page
    assert "nats://secret@x" not in page  # the connection is write-only
    done = client.post(
        "/t/acme/functions/hello/triggers/",
        {"action": "time_trigger", "original": "tick", "name": "tock", "cron": "@hourly", "method": "GET",
         "subpath": "/t", "target_kind": "draft"},
    )  # fmt: skip
    assert done.status_code == 302
    done = client.post(
        "/t/acme/functions/hello/triggers/",
        {"action": "queue_trigger", "original": "orders", "name": "orders", "mq_type": "nats-jetstream",
         "topic": "orders.v2", "max_retries": 2, "content_type": "application/json", "metadata": "{}",
         "connection": "", "target_kind": "draft"},
    )  # fmt: skip
    assert done.status_code == 302, re.findall(r'role="alert">(.*?)<', done.content.decode())
    with schema_context(world.acme.schema_name):
        tick = TimeTrigger.objects.get()
        assert (tick.name, tick.cron, tick.method, tick.subpath) == ("tock", "@hourly", "GET", "/t")
        queue = QueueTrigger.objects.get()
        assert (queue.topic, queue.max_retries) == ("orders.v2", 2)
        assert queue.connection == {"host": "nats://secret@x"}  # an empty connection keeps its own


def test_viewers_read_the_tabs_but_change_nothing(world, client, hello):
    client.force_login(world.vera)
    page = client.get("/t/acme/functions/hello/configuration/").content.decode()
    assert "data-settings-read-only" in page
    assert 'name="action" value="settings"' not in page
    response = client.post(
        "/t/acme/functions/hello/triggers/",
        {"action": "trigger", "name": "web", "path": "/web", "methods": ["GET"], "target_kind": "draft"},
    )
    assert response.status_code == 403
    with schema_context(world.acme.schema_name):
        assert not Trigger.objects.exists()


def test_other_tenants_find_no_tab(world, client, hello):
    client.force_login(world.oscar)  # a member of globex only
    for path in TABS:
        assert client.get(f"/t/acme/functions/hello/{path}").status_code == 404
        assert client.get(f"/t/globex/functions/hello/{path}").status_code == 404


def test_the_environment_is_picked_on_create_and_changed_in_the_settings(
    world, client, django_capture_on_commit_callbacks
):
    from functions import config
    from functions.models import Environment, Function
    from functions.services import functions as function_services

    with schema_context(world.acme.schema_name):
        function_services.environment_ensure_default()
        function_services.environment_create(name="spare", runtime_version="3.12")
    client.force_login(world.bob)
    listing = client.get("/t/acme/functions/").content.decode()
    assert re.search(r'<select name="environment"[^>]*>.*<option value="spare">spare</option>', listing, re.S)
    assert client.post("/t/acme/functions/", {"name": "picky", "environment": "spare"}).status_code == 302
    refused = client.post("/t/acme/functions/", {"name": "lost", "environment": "nowhere"})
    assert refused.status_code == 200
    assert "Select a valid choice" in refused.content.decode()
    with schema_context(world.acme.schema_name):
        assert Function.objects.get(name="picky").environment.name == "spare"
        assert not Function.objects.filter(name="lost").exists()
        default = Environment.objects.exclude(name="spare").get().name

    page = client.get("/t/acme/functions/picky/configuration/").content.decode()
    assert re.search(r'<option value="spare" selected>spare</option>', page)
    settings = {
        s.name: s.default for s in config.SETTINGS if s.default is not None and not (s.mapping or s.names)
    }
    with django_capture_on_commit_callbacks(execute=False):
        moved = client.post(
            "/t/acme/functions/picky/configuration/",
            {"action": "settings", **settings, "environment": default},
        )
    assert moved.status_code == 302
    with schema_context(world.acme.schema_name):
        picky = Function.objects.get(name="picky")
        assert picky.environment.name == default
        assert picky.deployments.filter(cause="settings changed").exists()


def test_a_path_another_trigger_answers_is_refused_under_the_path(world, client, hello):
    with schema_context(world.acme.schema_name):
        Trigger.objects.create(function=hello, name="one", path="/one", methods=["GET"])
        Trigger.objects.create(function=hello, name="two", path="/two", methods=["GET"])
    client.force_login(world.bob)
    for sent in (
        {"action": "trigger", "name": "three", "path": "/one", "methods": ["GET"], "target_kind": "draft"},
        {"action": "trigger", "original": "two", "name": "two", "path": "/one", "methods": ["GET"],
         "target_kind": "draft"},
    ):  # fmt: skip
        response = client.post("/t/acme/functions/hello/triggers/", sent)
        html = response.content.decode()
        assert response.status_code == 409, html[:300]
        said = r'data-field-error="path"><small class="field-error">Trigger one of hello answers /one already'
        assert re.search(said, html)
    with schema_context(world.acme.schema_name):
        assert sorted(Trigger.objects.values_list("name", "path")) == [("one", "/one"), ("two", "/two")]


def test_each_problem_is_said_once_under_its_field(world, client, hello):
    client.force_login(world.bob)
    response = client.post(
        "/t/acme/functions/hello/triggers/",
        {"action": "trigger", "name": "", "path": "/x", "methods": ["GET"], "target_kind": "draft"},
    )
    field = re.search(r'id="trigger-name_error"[^>]*>(.*?)</div>', response.content.decode(), re.S)
    assert field
    assert field.group(1).count("This field is required.") == 1


def test_odd_fields_are_refused_in_words_never_a_500(world, client, hello):
    client.force_login(world.bob)
    huge = client.post(
        "/t/acme/functions/hello/?file=main.py",
        {"action": "file_save", "path": "main.py", "revision": "9" * 5000, "content": "x = 1\n"},
    )
    assert huge.status_code == 400
    ghost = client.post(
        "/t/acme/functions/hello/triggers/",
        {"action": "trigger", "original": "ghost", "name": "ghost", "path": "/g", "methods": ["GET"],
         "target_kind": "draft"},
        headers=PANEL,
    )  # fmt: skip
    assert ghost.status_code == 200
    assert ghost["X-Refused-Status"] == "404"
    assert "No HTTP trigger &#x27;ghost&#x27;: it was deleted meanwhile." in ghost.content.decode()


def test_row_ids_stay_unique_whatever_the_names(world, client, hello):
    with schema_context(world.acme.schema_name):
        Trigger.objects.create(function=hello, name="time-a", path="/a", methods=["GET"])
        TimeTrigger.objects.create(function=hello, name="a", cron="@hourly", method="POST", subpath="/")
    client.force_login(world.bob)
    page = client.get("/t/acme/functions/hello/triggers/").content.decode()
    ids = re.findall(r' id="([^"]+)"', page)
    assert len(ids) == len(set(ids))


def test_a_refused_publish_keeps_what_changed(world, client, hello):
    """No build yet: refused (409) with the description kept to send again; one over 200
    characters is refused under its field, never cut."""
    client.force_login(world.bob)
    url = "/t/acme/functions/hello/versions/"
    unbuilt = client.post(url, {"action": "publish", "description": "Fixed the greeting"})
    html = unbuilt.content.decode()
    assert unbuilt.status_code == 409
    assert "Build or deploy the current draft first" in html
    assert re.search(r'<input[^>]*name="description"[^>]*value="Fixed the greeting"', html)
    too_long = client.post(url, {"action": "publish", "description": "x" * 201})
    html = too_long.content.decode()
    assert too_long.status_code == 400
    under = r'data-field-error="description"><small class="field-error">Ensure this value has at most 200'
    assert re.search(under, html)
    with schema_context(world.acme.schema_name):
        assert not hello.versions.exists()
