"""Event sources end to end (issue 13), through the portal's API, a real Celery worker, the local
runtime and sandboxed workers: asynchronous invocations with their dead letters, and a time
trigger that fires and reports what it did."""

from __future__ import annotations

from typing import Any

import pytest

from testsupport.e2e import create_function, deploy_and_wait, functions_api
from testsupport.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]
API = functions_api()
LOGS = "/t/acme/api/v1/logs/"

# Fails for a body that asks it to, and says what it ran.
FLAKY = """\
from flask import request


def main():
    body = request.get_data(as_text=True)
    if "fail" in body:
        raise RuntimeError("asked to fail: " + body)
    print("ran " + body)
    return "ok " + body
"""
FIXED = FLAKY.replace('    if "fail" in body:\n        raise RuntimeError("asked to fail: " + body)\n', "")


def _logs(client: Any, function: str, text: str) -> list[dict[str, Any]]:
    return list(client.get(LOGS, {"function": function, "q": text}).json()["results"])


def _dead_letters(client: Any, function: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"{API}/{function}/dead-letters/", params)
    assert response.status_code == 200, response.content
    return dict(response.json())


def test_async_calls_retry_dead_letter_and_redrive_after_the_fix(world: Any, api: Any, stack: Any) -> None:
    bob = api(world.bob)
    create_function(bob, "flaky", {"main.py": FLAKY}, "/flaky")
    assert bob.patch(f"{API}/flaky/", {"async_retries": 1}, format="json").status_code == 200
    deploy_and_wait(bob, "flaky")
    bodies = [f"job-{i}" for i in range(8)] + ["fail-a", "fail-b"]
    accepted = {}
    for body in bodies:
        call = {"method": "POST", "path": "/flaky", "body": body, "invocation_type": "Event"}
        response = bob.post(f"{API}/flaky/invoke/", call, format="json")
        assert response.status_code == 201, response.content
        assert response.json()["status"] == 202  # accepted, not run: the answer came at once
        accepted[body] = response.json()["request_id"]

    page = wait_until(
        lambda: (found := _dead_letters(bob, "flaky"))["total"] == 2 and found, timeout=60,
        message="the two failing calls did not become dead letters",
    )  # fmt: skip
    letters = {item["request"]["body"]: item for item in page["items"]}
    assert set(letters) == {"fail-a", "fail-b"}
    for body, letter in letters.items():
        assert letter["requestId"] == accepted[body]
        assert letter["target"] == "draft"
        assert (letter["attempts"], letter["condition"]) == (2, "RetriesExhausted")  # 1 + async_retries
        assert letter["error"]["status"] >= 500
    ran = wait_until(lambda: len(found := _logs(bob, "flaky", "ran job-")) >= 8 and found, timeout=30)
    assert {record["request_id"] for record in ran} == {accepted[b] for b in bodies[:8]}

    # Another tenant sees none of it.
    assert api(world.oscar).get(f"{API}/flaky/dead-letters/").status_code == 404
    assert _dead_letters(api(world.vera), "flaky")["total"] == 2  # a viewer may look
    refused = api(world.vera).post(f"{API}/flaky/dead-letters/redrive/", {}, format="json")
    assert refused.status_code == 403

    # Fix the code, deploy, redrive: each runs again under a new request id, and succeeds.
    assert bob.put(f"{API}/flaky/code/", {"files": {"main.py": FIXED}}, format="json").status_code == 200
    deploy_and_wait(bob, "flaky")
    redriven = bob.post(f"{API}/flaky/dead-letters/redrive/", {}, format="json")
    assert redriven.status_code == 200, redriven.content
    assert len(redriven.json()["request_ids"]) == 2
    assert _dead_letters(bob, "flaky")["total"] == 0
    wait_until(
        lambda: len(_logs(bob, "flaky", "ran fail-")) == 2, timeout=30, message="the redrive did not run"
    )


def test_dead_letters_are_purged_by_id_and_bad_input_is_400(world: Any, api: Any, stack: Any) -> None:
    bob = api(world.bob)
    create_function(bob, "failing", {"main.py": FLAKY}, "/failing")
    assert bob.patch(f"{API}/failing/", {"async_retries": 0}, format="json").status_code == 200
    deploy_and_wait(bob, "failing")
    for body in ("fail-1", "fail-2", "fail-3"):
        call = {"method": "POST", "path": "/failing", "body": body, "invocation_type": "Event"}
        assert bob.post(f"{API}/failing/invoke/", call, format="json").status_code == 201
    wait_until(lambda: _dead_letters(bob, "failing")["total"] == 3, timeout=60)
    first = _dead_letters(bob, "failing", limit=2)
    assert len(first["items"]) == 2
    assert first["items"][0]["attempts"] == 1  # async_retries 0: one attempt
    rest = _dead_letters(bob, "failing", limit=2, cursor=first["next"])
    assert len(rest["items"]) == 1
    assert rest["next"] is None
    one = first["items"][0]["id"]
    purged = bob.post(f"{API}/failing/dead-letters/purge/", {"ids": [one]}, format="json")
    assert purged.json() == {"purged": 1}
    assert _dead_letters(bob, "failing")["total"] == 2
    for bad in ({"ids": ["nope"]}, {"ids": ["7/1-0"]}, {"ids": "x"}):
        response = bob.post(f"{API}/failing/dead-letters/purge/", bad, format="json")
        assert response.status_code == 400, (bad, response.content)
    assert bob.get(f"{API}/failing/dead-letters/", {"cursor": "drop table"}).status_code == 400
    page = bob.get("/t/acme/functions/failing/triggers/").content.decode()
    assert page.count("RetriesExhausted") == 2
    kept = rest["items"][0]
    assert kept["request"]["body"] in page
    assert f"?request_id={kept['requestId']}" in page  # each links to its logs
    bob.post("/t/acme/functions/failing/triggers/", {"action": "purge", "id": kept["id"]})
    assert _dead_letters(bob, "failing")["total"] == 1
    assert bob.post(f"{API}/failing/dead-letters/purge/", {}, format="json").json() == {"purged": 1}


def test_a_time_trigger_fires_and_shows_what_it_did(world: Any, api: Any, stack: Any) -> None:
    bob = api(world.bob)
    create_function(bob, "ticker", {"main.py": FLAKY}, "/ticker")
    response = bob.post(
        f"{API}/ticker/time-triggers/", {"name": "every-second", "cron": "@every 1s"}, format="json"
    )
    assert response.status_code == 201, response.content
    deploy_and_wait(bob, "ticker")

    def fired() -> dict[str, Any] | None:
        status = bob.get(f"{API}/ticker/time-triggers/every-second/").json()["status"]
        return status if status and status.get("fires", 0) >= 2 else None

    status = wait_until(fired, timeout=30, message="the time trigger did not fire")
    assert status["lastFire"]["status"] == 200
    request_id = status["lastFire"]["requestId"]
    wait_until(lambda: any(r["request_id"] == request_id for r in _logs(bob, "ticker", "ran")), timeout=15)
    assert bob.delete(f"{API}/ticker/time-triggers/every-second/").status_code == 204
