"""The code a new function can start from: every starter compiles with the environment's Python
and answers as it says, run as Fission's Python environment runs it (``main()`` in a Flask
request); the create form and the service take the choice."""

from __future__ import annotations

import hashlib
import hmac
import types
from typing import Any

import pytest
from django_tenants.utils import schema_context
from flask import Flask

from core.errors import ValidationFailed
from functions import compilecheck, runtimes, starters
from functions.models import Function
from functions.services.functions import function_create


def _module(key: str) -> types.ModuleType:
    module = types.ModuleType(f"starter_{key}")
    exec(compile(starters.STARTERS[key].files["main.py"], "main.py", "exec"), module.__dict__)  # noqa: S102
    return module


def _call(key: str, method: str = "GET", **request: Any) -> tuple[Any, int]:
    """``main()`` of a starter inside a Flask request, as the environment calls it."""
    app = Flask(__name__)
    with app.test_request_context("/", method=method, **request):
        answer = app.make_response(_module(key).main())
        return answer.get_json(silent=True) or answer.get_data(as_text=True), answer.status_code


@pytest.mark.parametrize("key", list(starters.STARTERS))
def test_every_starter_compiles_with_the_environments_python(key: str) -> None:
    report = compilecheck.check(starters.STARTERS[key].files, runtimes.interpreter(runtimes.DEFAULT_VERSION))
    assert report.problems == []


def test_hello_and_json_api_answer() -> None:
    assert _call("hello", query_string={"name": "ada"}) == ({"hello": "ada"}, 200)
    assert _call("json-api")[0]["items"][0]["name"] == "first"
    assert _call("json-api", "POST", json={"name": "second"}) == ({"id": "2", "name": "second"}, 201)
    assert _call("json-api", "POST", data="not json")[1] == 400


def test_the_webhook_checks_its_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _call("webhook", "POST", data=b"{}")[1] == 500  # no secret set: says so
    monkeypatch.setenv("WEBHOOK_SECRET", "s3cret")
    body = b'{"type": "push"}'
    good = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert _call("webhook", "POST", data=body, headers={"X-Signature-256": f"sha256={good}"}) == (
        {"received": True}, 200)  # fmt: skip
    assert _call("webhook", "POST", data=body, headers={"X-Signature-256": "sha256=00"})[1] == 401
    assert _call("webhook", "POST", data=body, headers={"X-Signature-256": "sha256=\u00e9"})[1] == 401


def test_the_scheduled_job_and_the_queue_consumer_answer() -> None:
    assert "ran_at" in _call("scheduled", "POST")[0]
    assert _call("queue-consumer", "POST", data='{"n": 1}') == ({"processed": {"n": 1}}, 200)
    assert _call("queue-consumer", "POST", data="{bad")[1] == 400


@pytest.mark.django_db
def test_the_create_form_takes_a_starter_and_refuses_an_unknown_one(world: Any, client: Any) -> None:
    client.force_login(world.bob)
    assert 'value="webhook"' in client.get("/t/acme/functions/").content.decode()
    response = client.post("/t/acme/functions/", {"name": "hook", "starter": "webhook"}, follow=True)
    assert [str(m) for m in response.context["messages"]] == [
        "Function hook created with the Webhook receiver (HMAC-signed) starter."
    ]
    refused = client.post("/t/acme/functions/", {"name": "other", "starter": "nope"})
    assert refused.status_code == 200  # the form again, the problem under the field
    assert "Select a valid choice" in refused.content.decode()
    with schema_context(world.acme.schema_name):
        assert Function.objects.get(name="hook").draft.files == starters.STARTERS["webhook"].files
        assert not Function.objects.filter(name="other").exists()
        with pytest.raises(ValidationFailed):
            function_create(name="third", starter="nope")


@pytest.mark.django_db
def test_the_api_creates_from_a_starter(world: Any, api: Any) -> None:
    bob = api(world.bob)
    created = bob.post("/t/acme/api/v1/functions/", {"name": "cron", "starter": "scheduled"}, format="json")
    assert created.status_code == 201, created.content
    code = bob.get("/t/acme/api/v1/functions/cron/code/").json()
    assert code["files"] == starters.STARTERS["scheduled"].files
    refused = bob.post("/t/acme/api/v1/functions/", {"name": "x", "starter": "nope"}, format="json")
    assert refused.status_code == 400
    assert "starter" in refused.json()["error"]["detail"]
