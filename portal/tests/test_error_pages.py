"""Errors where they happen: refusals in words (never a Python dict) under their field, one framed
error page per status (the API keeping its JSON shape), DEBUG off under ``make run``, a favicon."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from django.contrib.messages import get_messages
from django.core.exceptions import RequestDataTooBig
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import RequestFactory, override_settings
from django_tenants.utils import schema_context

from core.errors import Conflict, ValidationFailed
from core.feedback import error_text, in_words, size_in_words
from functions.models import Function
from functions.services.functions import EMPTY_MAIN_FILE
from portal import up, views
from tenants.models import Tenant
from testsupport.fixtures import error_of

EMPTY_CODE = EMPTY_MAIN_FILE.format(path="main.py")

pytestmark = pytest.mark.django_db

FRAME = 'class="topbar"'  # the portal's header: the page is inside its frame


def _messages(response) -> list[tuple[str, str]]:
    return [(message.level_tag, message.message) for message in get_messages(response.wsgi_request)]


# ------------------------------------------------------------------ refusals in words


def test_a_refusals_detail_is_said_in_words_by_field_label() -> None:
    detail = {"name": ["Function with this Name already exists."], "canary_weight": ["0 to 100"]}
    assert in_words(detail) == "Name: Function with this Name already exists. Canary weight: 0 to 100."
    assert in_words(detail, {"name": "Function name"}).startswith("Function name: ")
    assert in_words({"__all__": ["Pick one."], "quota.memory_limits": ["Too low."]}) == (
        "Pick one. Memory limits: Too low."
    )
    assert in_words(None) == ""


def test_error_text_never_shows_a_dict_nor_repeats_the_message() -> None:
    refused = ValidationFailed("The request has invalid fields.", detail={"name": ["Already taken."]})
    assert error_text(refused) == "The request has invalid fields. Name: Already taken."
    in_use = Conflict(
        "Environment python is used by hello: move them first.", detail={"functions": ["hello"]}
    )
    assert error_text(in_use) == "Environment python is used by hello: move them first."
    assert "{" not in error_text(ValidationFailed("Bad.", detail={"headers": {"X-A": ["not ASCII"]}}))


def test_sizes_in_words() -> None:
    assert size_in_words(10 * 1024 * 1024) == "10 MiB"
    assert size_in_words(1536) == "1.5 KiB"
    assert size_in_words(900) == "900 bytes"


def test_a_taken_name_is_said_under_the_name_field_in_words(world, client, hello) -> None:
    client.force_login(world.bob)
    response = client.post("/t/acme/functions/", {"name": "hello"})
    assert response.status_code == 200
    page = response.content.decode()
    under_name = '<div id="id_name_error" role="alert" data-field-error="name"><small class="field-error">'
    assert f"{under_name}Already taken.</small></div>" in page
    assert "{&#x27;" not in page
    assert "{'" not in page
    assert [level for level, _ in _messages(response)] == ["error"]


def test_a_name_past_40_characters_is_refused_in_words_not_cut(world, client) -> None:
    client.force_login(world.bob)
    form = client.get("/t/acme/functions/").content.decode()
    assert 'maxlength="40"' not in form  # the browser would cut the name silently
    response = client.post("/t/acme/functions/", {"name": "a" * 80})
    assert response.status_code == 200
    assert "a name has at most 40 characters (this one has 80)" in response.content.decode()
    with schema_context(world.acme.schema_name):
        assert not Function.objects.exists()


def test_an_empty_editor_is_refused_in_words_as_an_error(world, client, hello) -> None:
    client.force_login(world.bob)
    page = client.get("/t/acme/functions/hello/").content.decode()
    textarea = page[page.index('<textarea id="code-content" name="content"') :].split(">", 1)[0]
    assert " required" not in textarea  # hidden by the editor: "not focusable", and nothing said
    assert f'data-empty="{EMPTY_CODE}"' in textarea.replace("&#x27;", "'")
    response = client.post(
        "/t/acme/functions/hello/",
        {"action": "file_save", "path": "main.py", "content": "  \r\n", "revision": hello.draft.revision},
    )
    assert _messages(response) == [("error", EMPTY_CODE)]
    with schema_context(world.acme.schema_name):
        assert "def main" in Function.objects.get(name="hello").draft.files["main.py"]


def test_a_refused_action_form_is_an_error_not_a_success(world, client, hello) -> None:
    client.force_login(world.bob)
    response = client.post("/t/acme/functions/hello/", {"action": "alias", "name": "live"})
    [(level, text)] = _messages(response)
    assert level == "error"
    assert text == "Check the alias: name and version are required. Version: This field is required."


def test_a_refused_quota_is_shown_under_its_field(world, client) -> None:
    client.force_login(world.admin)
    form = client.get("/platform/tenants/acme/").context["quota_form"]
    data = {name: field.initial for name, field in form.fields.items()}
    data.update(action="quota", memory_limits="1Mi")  # below the requests

    response = client.post("/platform/tenants/acme/", data)

    assert response.status_code == 400
    assert response.context["quota_form"].errors["memory_requests"] == [
        "memory_requests: '8Gi' exceeds memory_limits ('1Mi')"
    ]
    shown = '<small class="error" role="alert">memory_requests: &#x27;8Gi&#x27; exceeds'
    assert shown in response.content.decode()
    assert [level for level, _ in _messages(response)] == ["error"]
    assert Tenant.objects.get(slug="acme").quota == {}


# ------------------------------------------------------------------ error pages


def test_an_unknown_function_is_the_framed_404(world, client) -> None:
    client.force_login(world.bob)
    response = client.get("/t/acme/functions/nope/")
    assert response.status_code == 404
    page = response.content.decode()
    assert FRAME in page
    assert "Page not found" in page
    assert "<code>/t/acme/functions/nope/</code>" in page


@override_settings(MAX_REQUEST_BYTES=2048)
def test_an_oversized_upload_is_the_framed_413_saying_the_limit(world, client, hello) -> None:
    client.force_login(world.bob)
    big = SimpleUploadedFile("big.zip", b"PK" + b"\0" * 5000)
    response = client.post("/t/acme/functions/hello/", {"action": "upload", "file": big})
    assert response.status_code == 413
    page = response.content.decode()
    assert FRAME in page
    assert "bob" in page
    assert "at most 2 KiB (2048 bytes)" in page
    with schema_context(world.acme.schema_name):
        assert Function.objects.get(name="hello").draft.archive_name == ""


@override_settings(MAX_REQUEST_BYTES=2048)
def test_an_oversized_post_does_not_tell_a_foreign_tenant_from_an_unknown_one(world, client, hello) -> None:
    client.force_login(world.oscar)  # a member of globex only
    pages = []
    for tenant in ("acme", "nosuch"):
        big = SimpleUploadedFile("big.zip", b"PK" + b"\0" * 5000)
        response = client.post(f"/t/{tenant}/functions/hello/", {"action": "upload", "file": big})
        assert response.status_code == 413
        page = re.sub(r"[A-Za-z0-9]{64}", "<csrf>", response.content.decode())  # masked anew each time
        pages.append(page.replace(f"/t/{tenant}/", "/t/<tenant>/"))
    assert FRAME in pages[0]
    assert pages[0] == pages[1]
    assert 'href="/t/acme/functions/"' not in pages[0]


@override_settings(MAX_REQUEST_BYTES=2048)
def test_the_api_keeps_its_json_413(world, api) -> None:
    response = api(world.alice).post("/t/acme/api/v1/members/", {"username": "x" * 5000}, format="json")
    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "too_large"
    assert "at most 2 KiB" in error["message"]


def test_djangos_own_body_limit_is_a_413_too() -> None:
    request = RequestFactory().post("/t/acme/functions/hello/")
    assert views.bad_request(request, RequestDataTooBig("too big")).status_code == 413
    api = RequestFactory().post("/api/v1/tenants/")
    response = views.bad_request(api, RequestDataTooBig("too big"))
    assert response.status_code == 413
    assert json.loads(response.content)["error"]["code"] == "too_large"


# ------------------------------------------------------------------ make run, favicon


def test_make_run_leaves_debug_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PORTAL_DEBUG", raising=False)
    for name in ("PORTAL_BEAT_SCHEDULE", "PORTAL_SECRET_KEY", "PORTAL_SECRETS_KEYS", "RUNTIME_STATE_DIR"):
        monkeypatch.setenv(name, os.environ.get(name, "x"))
    monkeypatch.setenv("RUNTIME_TOKEN", "x")
    up.prepare_environment(tmp_path)
    assert "PORTAL_DEBUG" not in os.environ


def test_favicon_is_served_and_linked(client) -> None:
    svg = client.get("/favicon.svg")
    assert svg.status_code == 200
    assert svg["Content-Type"].startswith("image/svg+xml")
    ico = client.get("/favicon.ico")
    assert ico.status_code == 200
    assert b"".join(ico.streaming_content)[:4] == b"\0\0\1\0"  # an icon resource
    assert '<link rel="icon" href="/favicon.svg"' in client.get("/login/").content.decode()


def test_a_foreign_tenants_404_shows_no_trace_of_it(world, client) -> None:
    """Its navigation (links into the tenant) is for its members: to anyone else a foreign
    tenant's 404 shows no more than an unknown tenant's."""
    client.force_login(world.oscar)  # globex's admin, no member of acme
    foreign = client.get("/t/acme/functions/")
    unknown = client.get("/t/no-such-tenant/functions/")
    assert foreign.status_code == unknown.status_code == 404
    assert 'href="/t/acme/' not in foreign.content.decode()  # (the page repeats the address asked)
    assert foreign.context["current_tenant"] is None
    client.force_login(world.alice)  # a member sees the frame of her tenant
    assert 'href="/t/acme/functions/"' in client.get("/t/acme/functions/nope/").content.decode()


@pytest.mark.parametrize(
    ("path", "link"),
    [("//evil.example/x", "/evil.example/x"), ("/\\evil.example", "/evil.example"), ("/t/a/", "/t/a/")],
)
def test_the_back_link_of_an_error_page_stays_on_this_site(rf, path, link) -> None:
    from core.feedback import same_site_path

    request = rf.get("/")
    request.path = path
    assert same_site_path(request) == link
