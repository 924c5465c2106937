"""Saved test events: a function's named test calls, shared by the tenant's members, saved and
deleted from the test panel (htmx), loaded into its form in the browser; never another
tenant's; recorded in the audit trail without body or headers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django_tenants.utils import schema_context

from audit.models import AuditRecord
from core.errors import Conflict, ValidationFailed
from functions.models import SavedEvent
from functions.services import invocations

pytestmark = pytest.mark.django_db
URL = "/t/acme/functions/hello/events/"


def _save(client: Any, name: str = "order-created", **fields: Any) -> Any:
    headers = '{"Content-Type": "application/json", "Authorization": "Bearer s3cret"}'
    data = {"event_name": name, "method": "POST", "path": "/hello?src=test", "body": '{"id": 7}',
            "headers": headers, **fields}  # fmt: skip
    return client.post(URL, data)


def test_a_developer_saves_an_event_everyone_in_the_tenant_sees(world, client, hello):
    client.force_login(world.bob)
    response = _save(client)
    assert response.status_code == 200
    assert response["X-Partial-Answer"] == "1"
    assert "Saved as order-created" in response.content.decode()
    with schema_context(world.acme.schema_name):
        event = SavedEvent.objects.get(function=hello)
    assert (event.method, event.path, event.body, event.saved_by) == (
        "POST",
        "/hello?src=test",
        '{"id": 7}',
        "bob",
    )
    assert event.headers == {"Content-Type": "application/json"}  # Authorization is never sent, nor kept
    client.force_login(world.vera)  # a viewer of acme sees it and can load it, not change it
    page = client.get("/t/acme/functions/hello/test/").content.decode()
    assert 'data-method="POST" data-path="/hello?src=test"' in page
    assert 'data-headers="{&quot;Content-Type&quot;: &quot;application/json&quot;}"' in page
    assert _save(client, "mine").status_code == 403


def test_saving_the_same_name_replaces_it_and_delete_removes_it(world, client, hello):
    client.force_login(world.bob)
    _save(client)
    _save(client, method="GET", path="/hello", body="")
    with schema_context(world.acme.schema_name):
        assert list(SavedEvent.objects.values_list("method", "path")) == [("GET", "/hello")]
        actions = list(AuditRecord.objects.filter(object_type="saved-event").values_list("action", flat=True))
    assert actions == ["saved-event.create", "saved-event.update"]
    response = client.post(URL, {"event_action": "delete", "event_name": "order-created"})
    assert "Event order-created deleted." in response.content.decode()
    with schema_context(world.acme.schema_name):
        assert not SavedEvent.objects.exists()
        record = AuditRecord.objects.filter(object_type="saved-event").order_by("-id").first()
        assert record is not None
        assert record.action == "saved-event.delete"
        assert "s3cret" not in json.dumps(list(AuditRecord.objects.values("changes")))


def test_bad_input_is_said_in_words_and_changes_nothing(world, client, hello):
    client.force_login(world.bob)
    for name, fields in (("Bad Name!", {}), ("ok", {"path": "no-slash"}), ("ok", {"headers": "[1]"})):
        response = _save(client, name, **fields)
        assert response.status_code == 400, fields
        page = response.content.decode()
        assert 'role="alert"' in page
        assert "{'" not in page
    with schema_context(world.acme.schema_name):
        assert not SavedEvent.objects.exists()


def test_another_tenant_can_neither_see_nor_change_them(world, client, hello):
    client.force_login(world.bob)
    _save(client)
    client.force_login(world.oscar)  # globex's admin
    assert client.get(URL).status_code == 404
    assert _save(client, "theirs").status_code == 404
    assert client.post(URL, {"event_action": "delete", "event_name": "order-created"}).status_code == 404
    with schema_context(world.acme.schema_name):
        assert SavedEvent.objects.count() == 1


def test_the_service_bounds_and_checks(world, hello):
    with schema_context(world.acme.schema_name):
        for n in range(invocations.MAX_SAVED_EVENTS):
            invocations.saved_event_save(
                function=hello, name=f"e{n}", method="GET", path="/", headers={}, body=""
            )
        with pytest.raises(Conflict):
            invocations.saved_event_save(
                function=hello, name="one-more", method="GET", path="/", headers={}, body=""
            )
        invocations.saved_event_save(function=hello, name="e0", method="POST", path="/", headers={}, body="x")
        with pytest.raises(ValidationFailed):
            invocations.saved_event_save(
                function=hello, name="e1", method="GET", path="/../x", headers={}, body=""
            )


def test_deleting_an_event_that_is_gone_says_so_in_place(world, client, hello):
    client.force_login(world.bob)
    response = client.post(URL, {"event_action": "delete", "event_name": "gone"})
    assert response.status_code == 404
    assert response["X-Partial-Answer"] == "1"
    assert "No saved event &#x27;gone&#x27;: pick one of the list." in response.content.decode()


def test_signed_out_visitors_are_sent_to_sign_in(world, client, hello):
    response = _save(client)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")
    with schema_context(world.acme.schema_name):
        assert not SavedEvent.objects.exists()
