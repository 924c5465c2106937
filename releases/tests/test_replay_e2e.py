"""Replay end to end: failed calls through the real router are captured (redacted before they are
stored), replayed straight to a chosen version by a real Celery worker, once each, with their
results; and a rollout's replay gate, passed and failed."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from django.test import Client

from testsupport.e2e import create_function, deploy_and_wait, functions_api, latest_deployment
from testsupport.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]
SECRETS = ("Bearer SECRET-TOKEN-123", "session=SECRET-COOKIE-456", "SECRET-PASSWORD-789")
FAILING = """from flask import request


def main():
    n = request.args.get("n", "")
    print("v1 got", n)
    if request.args.get("fail"):
        return "boom " + n, 500
    return "ok " + n
"""
FIXED = """from flask import request


def main():
    n = request.args.get("n", "")
    print("v2 replayed", n, "auth=" + request.headers.get("Authorization", "none"))
    return "fixed " + n
"""


@dataclass
class Scene:
    name: str
    api: str
    url: str  # alias live's route


def _publish(client: Any, name: str, code: str) -> None:
    api = f"{functions_api()}/{name}"
    assert client.put(f"{api}/code/", {"files": {"main.py": code}}, format="json").status_code == 200
    deploy_and_wait(client, name)
    assert client.post(f"{api}/versions/", {}, format="json").status_code == 201


def _settle(client: Any, name: str) -> None:
    """Until the function's latest deployment is live (a change queued it)."""
    wait_until(lambda: latest_deployment(client, name)["state"] == "live", timeout=120, interval=0.3,
               message="the deployment did not finish")  # fmt: skip


@pytest.fixture
def scene(stack: Any, api: Any, world: Any) -> Scene:
    """v1 fails on ?fail=1, v2 does not; alias live on v1 at /<name>-live, capturing 5xx."""
    alice = api(world.alice)
    name = f"replay-{uuid.uuid4().hex[:6]}"
    create_function(alice, name, {"main.py": FAILING}, f"/{name}")
    deploy_and_wait(alice, name)
    api_ = f"{functions_api()}/{name}"
    assert alice.post(f"{api_}/versions/", {}, format="json").status_code == 201
    _publish(alice, name, FIXED)
    assert alice.post(f"{api_}/aliases/", {"name": "live", "version": 1}, format="json").status_code == 200
    trigger = {"name": f"{name}-live", "methods": ["GET", "POST"], "path": f"/{name}-live",
               "target_kind": "alias", "alias": "live"}  # fmt: skip
    assert alice.post(f"{api_}/triggers/", trigger, format="json").status_code == 201
    policy = {"codes": ["5xx"], "max_requests": 10, "max_body_bytes": 4096}
    assert alice.put(f"{api_}/capture/", policy, format="json").json() == policy
    _settle(alice, name)
    return Scene(name, api_, f"{stack.router}/acme/{name}-live")


def _fail_three_times(scene: Scene) -> None:
    for n in range(3):
        response = httpx.post(
            f"{scene.url}?fail=1&n={n}", timeout=30,
            headers={"Authorization": SECRETS[0], "Cookie": SECRETS[1], "X-Request-Tag": f"t{n}"},
            json={"n": n, "password": SECRETS[2]},
        )  # fmt: skip
        assert response.status_code == 500, response.text
    assert httpx.get(f"{scene.url}?n=ok", timeout=30).text == "ok ok"  # a 200: not captured


def _captured(client: Any, scene: Scene, count: int) -> list[dict[str, Any]]:
    def enough() -> list[dict[str, Any]] | None:
        found = client.get(f"{scene.api}/captures/").json()
        return found if len(found) >= count else None

    return list(wait_until(enough, timeout=30, interval=0.3, message="the failed calls were not captured"))


def _panel(user: Any, scene: Scene) -> str:
    """The function page's captured-requests panel, as that user's browser loads it."""
    client = Client()
    client.force_login(user)
    response = client.get(f"/t/acme/functions/{scene.name}/captures/")
    assert response.status_code == 200
    return str(response.content.decode())


def _finished(client: Any, scene: Scene, replay: dict[str, Any]) -> dict[str, Any]:
    def over() -> dict[str, Any] | None:
        body = client.get(f"{scene.api}/replays/{replay['id']}/").json()
        return body if body["state"] == "finished" else None

    return dict(wait_until(over, timeout=90, interval=0.3, message="the replay did not finish"))


def test_failed_calls_are_captured_redacted_and_replayed_once_to_the_chosen_version(
    scene: Scene, api: Any, world: Any
) -> None:
    alice = api(world.alice)
    _fail_three_times(scene)
    captured = _captured(alice, scene, 3)
    assert [(c["method"], c["status"], c["version"]) for c in captured] == [("POST", 500, "v1")] * 3
    headers = {name.lower(): value for name, value in captured[0]["headers"]}
    assert (headers["authorization"], headers["cookie"], headers["x-request-tag"]) == (
        "[redacted]",
        "[redacted]",
        "t0",
    )
    assert json.loads(captured[0]["body"]) == {"n": 0, "password": "[redacted]"}
    assert captured[0]["response_body"] == "boom 0"
    listing = alice.get(f"{scene.api}/captures/").content.decode()
    assert not any(secret in listing for secret in SECRETS)
    page = _panel(world.alice, scene)
    assert page.count('data-capture="') == 3
    assert "authorization: [redacted]" in page.lower()
    assert not any(secret in page for secret in SECRETS)

    # v2 is not on the data plane yet: replaying against it is refused, changing nothing.
    refused = alice.post(f"{scene.api}/replays/", {"version": 2}, format="json")
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "not_deployed")
    assert (
        alice.post(f"{scene.api}/aliases/", {"name": "next", "version": 2}, format="json").status_code == 200
    )
    _settle(alice, scene.name)

    replay = alice.post(f"{scene.api}/replays/", {"version": 2}, format="json")
    assert replay.status_code == 202, replay.content
    done = _finished(alice, scene, replay.json())
    assert (done["passed"], done["summary"]) == (True, "3 of 3 replayed requests pass")
    results = done["results"]
    assert [r["capture"] for r in results] == [c["id"] for c in captured]
    assert [(r["state"], r["original_status"], r["status"], r["passed"]) for r in results] == [
        ("done", 500, 200, True)
    ] * 3
    assert all(r["dropped_headers"] == ["Authorization", "Cookie"] for r in results), results
    assert results[0]["body_diff"].splitlines()[-2:] == ["-boom 0", "+fixed 0"]
    assert not any(secret in json.dumps(done) for secret in SECRETS)

    # Each captured request reached v2 once, without the redacted headers.
    def v2_lines() -> list[str] | None:
        records = alice.get(f"/t/acme/api/v1/logs/?function={scene.name}&version=v2&q=replayed").json()[
            "results"
        ]
        lines = sorted(r["message"] for r in records)
        return lines if len(lines) >= 3 else None

    lines = wait_until(v2_lines, timeout=30, interval=0.3, message="v2 logged no replayed call")
    assert lines == [f"v2 replayed {n} auth=none" for n in range(3)]

    page = _panel(world.alice, scene)
    assert f'data-replay="{done["id"]}" data-replay-state="finished"' in page
    assert "3 of 3 replayed requests pass" in page
    assert not any(secret in page for secret in SECRETS)

    # Against v1 the failure is still there: the replay fails, saying which request.
    again = _finished(alice, scene, alice.post(f"{scene.api}/replays/", {"version": 1}, format="json").json())
    assert again["passed"] is False
    assert again["summary"].startswith(
        "0 of 3 replayed requests pass; 3 still fail (first: POST /?fail=1&n=0 -> 500)"
    )


def test_a_rollout_gated_by_replay_moves_only_when_the_new_version_passes(
    scene: Scene, api: Any, world: Any
) -> None:
    alice = api(world.alice)
    _fail_three_times(scene)
    _captured(alice, scene, 3)
    start = {"alias": "live", "to_version": 2, "weights": [10, 100], "interval_s": 600, "replay_first": True}
    rollout = alice.post(f"{scene.api}/rollouts/", start, format="json").json()
    url = f"{scene.api}/rollouts/{rollout['id']}/"

    def stepped() -> dict[str, Any] | None:
        body = alice.get(url).json()
        return (
            body
            if "step" in [d["action"] for d in body["decisions"][2:]] or body["state"] != "running"
            else None
        )

    body = wait_until(stepped, timeout=150, interval=0.5, message="the gate never let the rollout move")
    assert [d["action"] for d in body["decisions"]] == ["started", "gate", "gate", "gate_passed", "step"], (
        body
    )
    assert body["decisions"][3]["message"].endswith("3 of 3 replayed requests pass")
    assert (body["state"], body["weight"], body["replay"] is not None) == ("running", 10, True)
    assert alice.post(f"{url}abort/").json()["state"] == "aborted"

    # From v2 back to v1, which still fails them: the gate rolls back before any call moves.
    _settle(alice, scene.name)
    assert (
        alice.post(f"{scene.api}/aliases/", {"name": "back", "version": 2}, format="json").status_code == 200
    )
    _settle(alice, scene.name)
    back = {**start, "alias": "back", "to_version": 1}
    rollout = alice.post(f"{scene.api}/rollouts/", back, format="json").json()
    url = f"{scene.api}/rollouts/{rollout['id']}/"
    body = wait_until(lambda: (b := alice.get(url).json())["state"] != "running" and b, timeout=150,
                      interval=0.5, message="the failing gate never ended the rollout")  # fmt: skip
    assert body["state"] == "rolled_back"
    assert body["reason"].startswith("the replay gate failed: 0 of 3 replayed requests pass")
    assert "step" not in [d["action"] for d in body["decisions"]]
    assert alice.get(f"{scene.api}/aliases/back/").json()["version"] == 2
