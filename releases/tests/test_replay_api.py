"""Capture settings, captured requests and replays through the API: who may do what, another
tenant's are invisible, bad input is a clear 4xx that changes nothing, the quota, and what the
settings put on the function's routes. (Capture and replay against the real runtime:
test_replay_e2e.py.)"""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from dataplane import manifests
from dataplane.backends import redis_captures
from functions.models import Deployment, Function, Trigger
from functions.runs import deployments as deployment_runs
from functions.runs.deployments import desired_objects
from functions.selectors import build_current
from functions.services import deployments as deployment_services
from releases.models import Replay
from releases.services import replays
from releases.tests.test_api import _two_versions
from testsupport.captures import captured_request
from testsupport.fixtures import error_of
from testsupport.matrix import assert_access, call

pytestmark = pytest.mark.django_db
F = "/t/{t}/api/v1/functions/hello"
POLICY = {"codes": ["5xx", "429"], "max_requests": 20, "max_body_bytes": 2048}

ENDPOINTS = [
    ("get", f"{F}/capture/", None, "vera", 200, {}),
    ("put", f"{F}/capture/", POLICY, "bob", 200, {"vera": 403}),
    ("get", f"{F}/captures/", None, "bob", 200, {"vera": 403}),
    ("delete", f"{F}/captures/", None, "bob", 200, {"vera": 403}),
    ("delete", f"{F}/captures/1-0/", None, "bob", 404, {"vera": 403}),
    ("get", f"{F}/replays/", None, "bob", 200, {"vera": 403}),
    ("post", f"{F}/replays/", {"version": 1}, "bob", 202, {"vera": 403}),
]


@pytest.mark.parametrize(("method", "path", "body", "allowed", "ok", "refused"), ENDPOINTS)
def test_endpoint_matrix(
    world, api, django_capture_on_commit_callbacks, method, path, body, allowed, ok, refused
):
    _two_versions(world.acme)
    url_in = lambda tenant: path.format(t=tenant)  # noqa: E731
    assert_access(world, api, url_in, method, body, allowed=allowed, ok=ok, refused=refused,
                  while_allowed=lambda: django_capture_on_commit_callbacks(execute=False))  # fmt: skip


def test_another_tenants_captures_and_replays_are_invisible(world, api):
    _two_versions(world.globex, "theirs")
    with schema_context(world.globex.schema_name):
        theirs = replays.replay_create(function=Function.objects.get(name="theirs"), version=1).pk
    _two_versions(world.acme)
    bob = api(world.bob)
    base = "/t/acme/api/v1/functions"
    for method, path, body in [
        ("get", f"{base}/theirs/capture/", None),
        ("put", f"{base}/theirs/capture/", POLICY),
        ("get", f"{base}/theirs/captures/", None),
        ("delete", f"{base}/theirs/captures/", None),
        ("post", f"{base}/theirs/replays/", {"version": 1}),
        ("get", f"{base}/hello/replays/{theirs}/", None),
    ]:
        assert call(bob, method, path, body).status_code == 404, (method, path)
    with schema_context(world.globex.schema_name):
        assert Function.objects.get(name="theirs").capture_codes == []


def test_capture_settings_reach_every_route_of_the_function(world, api, django_capture_on_commit_callbacks):
    _two_versions(world.acme)
    with django_capture_on_commit_callbacks(execute=False):
        response = api(world.bob).put(F.format(t="acme") + "/capture/", POLICY, format="json")
    assert response.json() == {"codes": ["5xx", "429"], "max_requests": 20, "max_body_bytes": 2048}
    with schema_context(world.acme.schema_name):
        hello = Function.objects.get(name="hello")
        assert Deployment.objects.filter(function=hello, cause="capture settings changed").count() == 1
        Trigger.objects.create(function=hello, name="web", methods=["GET"], path="/web")
        (trigger,) = [
            o for o in desired_objects(hello, build_current(function=hello)) if o["kind"] == "HTTPTrigger"
        ]
    policy = manifests.CapturePolicy.from_annotation(
        trigger["metadata"]["annotations"][manifests.CAPTURE_ANNOTATION]
    )
    assert (policy.function, policy.codes, policy.max_requests, policy.max_body_bytes) == (
        "hello",
        ("5xx", 429),
        20,
        2048,
    )
    assert policy.retention_s == 72 * 3600


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({**POLICY, "codes": ["600"]}, 400, "codes"),
        ({**POLICY, "codes": ["5XX "]}, 400, "codes"),
        ({**POLICY, "max_requests": 0}, 400, "max_requests"),
        ({**POLICY, "max_body_bytes": 2 * 1024 * 1024}, 400, "max_body_bytes"),
        ({**POLICY, "max_requests": 600}, 403, "quota"),  # the quota: 500 across the tenant
    ],
)
def test_bad_capture_settings_change_nothing(world, api, body, status, field):
    _two_versions(world.acme)
    response = api(world.bob).put(F.format(t="acme") + "/capture/", body, format="json")
    assert response.status_code == status, response.content
    assert field in (error_of(response)["detail"] or {}), error_of(response)
    with schema_context(world.acme.schema_name):
        hello = Function.objects.get(name="hello")
        assert (hello.capture_codes, hello.capture_max_requests) == ([], 50)
        assert not Deployment.objects.exists()


def test_capture_off_puts_nothing_on_the_routes(world, api, django_capture_on_commit_callbacks):
    _two_versions(world.acme)
    bob, url = api(world.bob), F.format(t="acme") + "/capture/"
    with django_capture_on_commit_callbacks(execute=False):
        assert bob.put(url, POLICY, format="json").status_code == 200
        assert bob.put(url, {**POLICY, "codes": []}, format="json").json()["codes"] == []
    with schema_context(world.acme.schema_name):
        hello = Function.objects.get(name="hello")
        Trigger.objects.create(function=hello, name="web", methods=["GET"], path="/web")
        (trigger,) = [
            o for o in desired_objects(hello, build_current(function=hello)) if o["kind"] == "HTTPTrigger"
        ]
    assert manifests.CAPTURE_ANNOTATION not in trigger["metadata"].get("annotations", {})


def test_a_replay_needs_a_deployed_version_and_known_captures(world, api):
    _two_versions(world.acme)  # alias live on v1: v2 is on no route
    bob, url = api(world.bob), F.format(t="acme") + "/replays/"
    refused = bob.post(url, {"version": 2}, format="json")
    assert (refused.status_code, error_of(refused)["code"]) == (409, "not_deployed")
    unknown = bob.post(url, {"version": 1, "captures": ["1-0"]}, format="json")
    assert (unknown.status_code, error_of(unknown)["detail"]) == (404, {"captures": ["1-0"]})
    assert bob.post(url, {"version": 9}, format="json").status_code == 404
    assert bob.post(url, {"version": 1, "captures": ["../x"]}, format="json").status_code == 400
    with schema_context(world.acme.schema_name):
        assert not Replay.objects.exists()


@pytest.mark.parametrize(
    ("codes", "status", "passes"),
    [([], 200, True), ([], 500, False), ([], 404, True), (["4xx"], 404, False), ([429], 429, False),
     ([429], 503, False), ([429], 201, True)],
)  # fmt: skip
def test_a_replayed_request_passes_when_its_failure_did_not_happen_again(codes, status, passes):
    assert replays.passes(Function(name="hello", capture_codes=codes), status) is passes


def test_a_refusal_for_want_of_the_redacted_headers_is_inconclusive_and_fails():
    denied = {"state": "done", "status": 401, "passed": True}
    assert replays.unredacted(denied, ["Authorization"])["passed"] is False
    assert "without its redacted Authorization" in replays.unredacted(denied, ["Authorization"])["note"]
    assert replays.unredacted(denied, []) == denied  # nothing dropped: the 401 is the function's own
    assert replays.unredacted({**denied, "status": 200}, ["Cookie"])["passed"] is True


def test_the_verdict_sums_the_results():
    done = {"state": "done", "method": "GET", "path": "/x", "status": 200, "passed": True}
    failing = {**done, "path": "/y", "status": 500, "passed": False}
    assert replays._verdict([]) == (True, "no captured request to replay")
    assert replays._verdict([{"state": "skipped"}]) == (True, "no request could be sent as it came")
    assert replays._verdict([done, {"state": "gone"}]) == (True, "1 of 1 replayed requests pass")
    assert replays._verdict([done, failing]) == (
        False,
        "1 of 2 replayed requests pass; 1 still fail (first: GET /y -> 500)",
    )
    assert replays._verdict([{"state": "lost", "passed": False}])[0] is False


def test_a_function_does_not_inherit_the_captures_of_a_deleted_one_of_its_name(world, api):
    with schema_context(world.acme.schema_name), captured_request(world.acme.namespace, "hello") as old:
        _two_versions(world.acme)  # created after the capture: a new function of that name
        assert replays.captures(Function.objects.get(name="hello")) == []
        deployment_services.function_delete(function=Function.objects.get(name="hello"))
        deployment_runs.function_undeploy(function_name="hello")  # what the undeploy task runs
        assert redis_captures.read(world.acme.namespace, "hello") == []
    assert old


def test_a_function_with_rollouts_and_replays_can_be_deleted(world, api, django_capture_on_commit_callbacks):
    _two_versions(world.acme)
    bob = api(world.bob)
    with django_capture_on_commit_callbacks(execute=False):
        assert bob.post(F.format(t="acme") + "/replays/", {"version": 1}, format="json").status_code == 202
        start = {"alias": "live", "to_version": 2, "interval_s": 60}
        assert bob.post(F.format(t="acme") + "/rollouts/", start, format="json").status_code == 201
        assert bob.delete(F.format(t="acme") + "/").status_code == 204
    with schema_context(world.acme.schema_name):
        assert not Function.objects.exists()
        assert not Replay.objects.exists()


def test_a_replay_gate_needs_capture_on(world, api):
    _two_versions(world.acme)
    start = {"alias": "live", "to_version": 2, "interval_s": 60, "replay_first": True}
    response = api(world.bob).post(F.format(t="acme") + "/rollouts/", start, format="json")
    assert response.status_code == 400
    assert error_of(response)["detail"] == {"replay_first": ["Capture is off."]}
