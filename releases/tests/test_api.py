"""The rollouts API: who may do what, another tenant's rollouts are invisible, bad input is a clear
4xx that changes nothing, and a rollout holds its alias."""

from __future__ import annotations

from typing import Any

import pytest
from django_tenants.utils import schema_context

from functions.models import Alias, Build, BuildState, Deployment, Draft, Function
from functions.services import functions as function_services
from functions.services import versions
from releases.models import Rollout
from releases.services import rollouts as services
from testsupport.fixtures import error_of
from testsupport.matrix import assert_access, call

pytestmark = pytest.mark.django_db
START = {"alias": "live", "to_version": 2, "interval_s": 30}


def _two_versions(tenant: Any, name: str = "hello") -> None:
    with schema_context(tenant.schema_name):
        function = function_services.function_create(name=name)
        revision = Draft.objects.get(function=function).revision
        runtime = function.environment.runtime_version
        Build.objects.create(function=function, draft_revision=revision, state=BuildState.SUCCEEDED,
                             sha256="c" * 64, python_version=runtime)  # fmt: skip
        versions.version_publish(function=function)
        function_services.function_update(function=function, timeout_s=30)
        versions.version_publish(function=function)
        versions.alias_set(function=function, name="live", version=1)


def _rollout(tenant: Any, name: str = "hello") -> int:
    with schema_context(tenant.schema_name):
        function = Function.objects.get(name=name)
        return services.rollout_start(function=function, alias="live", to_version=2, interval_s=30).pk


@pytest.fixture
def acme_rollout(world: Any) -> int:
    _two_versions(world.acme)
    return _rollout(world.acme)


ENDPOINTS = [
    ("get", "/t/{t}/api/v1/functions/hello/rollouts/", None, "vera", 200, {}),
    ("get", "/t/{t}/api/v1/functions/hello/rollouts/{id}/", None, "vera", 200, {}),
    ("post", "/t/{t}/api/v1/functions/hello/rollouts/{id}/pause/", None, "bob", 200, {"vera": 403}),
    ("post", "/t/{t}/api/v1/functions/hello/rollouts/{id}/promote/", None, "bob", 200, {"vera": 403}),
    ("post", "/t/{t}/api/v1/functions/hello/rollouts/{id}/abort/", None, "bob", 200, {"vera": 403}),
]


@pytest.mark.parametrize(("method", "path", "body", "allowed", "ok", "refused"), ENDPOINTS)
def test_endpoint_matrix(world, api, acme_rollout, method, path, body, allowed, ok, refused):
    url_in = lambda tenant: path.format(t=tenant, id=acme_rollout)  # noqa: E731
    assert_access(world, api, url_in, method, body, allowed=allowed, ok=ok, refused=refused)


def test_start_and_resume_need_a_developer(world, api, acme_rollout):
    url_in = lambda tenant: f"/t/{tenant}/api/v1/functions/hello/rollouts/{acme_rollout}/resume/"  # noqa: E731
    with schema_context(world.acme.schema_name):
        Rollout.objects.filter(pk=acme_rollout).update(state="paused")
    assert_access(world, api, url_in, "post", None, allowed="bob", ok=200, refused={"vera": 403})
    with schema_context(world.acme.schema_name):
        Rollout.objects.filter(pk=acme_rollout).update(state="aborted")
        Alias.objects.update(held_by_rollout=None)
    url_in = lambda tenant: f"/t/{tenant}/api/v1/functions/hello/rollouts/"  # noqa: E731
    assert_access(world, api, url_in, "post", START, allowed="bob", ok=201, refused={"vera": 403})


def test_another_tenants_rollouts_are_invisible(world, api):
    _two_versions(world.globex, "theirs")
    theirs = _rollout(world.globex, "theirs")
    _two_versions(world.acme)
    alice = api(world.alice)
    base = "/t/acme/api/v1/functions"
    for method, path, body in [
        ("get", f"{base}/theirs/rollouts/", None),
        ("post", f"{base}/theirs/rollouts/", {**START}),
        ("get", f"{base}/hello/rollouts/{theirs}/", None),
        ("post", f"{base}/hello/rollouts/{theirs}/abort/", None),
    ]:
        assert call(alice, method, path, body).status_code == 404, (method, path)
    with schema_context(world.globex.schema_name):
        assert Rollout.objects.get(pk=theirs).state == "running"


def test_a_rollout_answers_its_steps_and_decisions(world, api, acme_rollout):
    body = api(world.vera).get(f"/t/acme/api/v1/functions/hello/rollouts/{acme_rollout}/").json()
    assert body["alias"] == "live"
    assert (body["from_version"], body["to_version"], body["state"]) == (1, 2, "running")
    assert (body["weights"], body["step"], body["weight"]) == ([5, 25, 50, 100], 1, 5)
    assert (body["min_calls"], body["max_error_rate"], body["max_latency_ratio"]) == (20, 0.05, 2.0)
    assert [d["action"] for d in body["decisions"]] == ["started", "step"]
    assert body["decisions"][1]["message"] == "step 1 of 4: 5% to v2, 95% to v1"
    assert body["step_deployment"] is not None


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"weights": [50, 20, 100]}, 400, "weights"),
        ({"weights": [10, 50]}, 400, "weights"),
        ({"weights": [0, 100]}, 400, "weights"),
        ({"weights": [10, 100], "increment": 10}, 400, "increment"),
        ({"increment": 0}, 400, "increment"),
        ({"to_version": 1}, 400, "to_version"),
        ({"to_version": 9}, 404, "version"),
        ({"alias": "nope"}, 404, "alias"),
        ({"alias": "Bad Name"}, 400, "alias"),
        ({"interval_s": 0}, 400, "interval_s"),
        ({"interval_s": None}, 400, "interval_s"),
        ({"max_error_rate": 2}, 400, "max_error_rate"),
        ({"max_latency_ratio": 0.5}, 400, "max_latency_ratio"),
    ],
)
def test_bad_input_is_a_clear_4xx_that_changes_nothing(world, api, change, status, field):
    _two_versions(world.acme)
    response = api(world.bob).post(
        "/t/acme/api/v1/functions/hello/rollouts/", {**START, **change}, format="json"
    )
    assert response.status_code == status, response.content
    assert field in (error_of(response)["detail"] or {}), error_of(response)
    with schema_context(world.acme.schema_name):
        assert not Rollout.objects.exists()
        assert not Deployment.objects.exists()
        assert Alias.objects.get(name="live").weights() == {1: 100}


def test_fission_style_increment_makes_even_steps(world, api):
    _two_versions(world.acme)
    response = api(world.bob).post("/t/acme/api/v1/functions/hello/rollouts/", {**START, "increment": 30},
                                   format="json")  # fmt: skip
    assert response.status_code == 201, response.content
    assert response.json()["weights"] == [30, 60, 90, 100]


def test_a_rollout_holds_its_alias_until_it_ends(world, api, acme_rollout):
    bob = api(world.bob)
    second = bob.post("/t/acme/api/v1/functions/hello/rollouts/", START, format="json")
    assert second.status_code == 409
    assert error_of(second)["code"] == "rollout_running"
    moved = bob.post("/t/acme/api/v1/functions/hello/aliases/", {"name": "live", "version": 2}, format="json")
    assert moved.status_code == 409
    assert f"Rollout {acme_rollout} is moving alias live" in error_of(moved)["message"]
    assert bob.delete("/t/acme/api/v1/functions/hello/aliases/live/").status_code == 409
    assert (
        bob.post(f"/t/acme/api/v1/functions/hello/rollouts/{acme_rollout}/abort/").json()["state"]
        == "aborted"
    )
    again = bob.post(f"/t/acme/api/v1/functions/hello/rollouts/{acme_rollout}/abort/")
    assert (again.status_code, error_of(again)["code"]) == (409, "rollout_state")
    assert bob.post("/t/acme/api/v1/functions/hello/aliases/", {"name": "live", "version": 2},
                    format="json").status_code == 200  # fmt: skip
