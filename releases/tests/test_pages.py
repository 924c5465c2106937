"""The rollouts panel of a function's page: what each role sees and may do, forms that answer with
the panel (errors in words, never a raw dict), and another tenant's function not found."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django_tenants.utils import schema_context

from releases.models import Rollout
from releases.services import rollouts as services
from releases.tests.test_api import _rollout, _two_versions

pytestmark = pytest.mark.django_db
PANEL = "/t/acme/functions/hello/rollouts/"
HTMX = {"HX-Request": "true"}
FORM = {"alias": "live", "to_version": "2", "weights": "10, 50, 100", "interval_s": "60", "min_calls": "20",
        "traffic_wait_s": "600", "max_error_rate": "5", "max_error_rate_increase": "2",
        "max_latency_ratio": "2"}  # fmt: skip


def client_of(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_viewer_sees_the_rollout_and_its_decisions_but_no_controls(world: Any) -> None:
    _two_versions(world.acme)
    pk = _rollout(world.acme)
    page = client_of(world.vera).get(PANEL).content.decode()
    assert f'data-rollout="{pk}" data-rollout-state="running"' in page
    assert "step 1 of 4: 5% to v2, 95% to v1" in page
    assert "Promote now" not in page
    assert "Start rollout" not in page


def test_a_developer_starts_a_rollout_from_the_form(world: Any) -> None:
    _two_versions(world.acme)
    bob = client_of(world.bob)
    assert "Start rollout" in bob.get(PANEL).content.decode()
    response = bob.post(PANEL, FORM, headers=HTMX)
    assert response.status_code == 200
    with schema_context(world.acme.schema_name):
        rollout = Rollout.objects.get()
    assert (rollout.weights, rollout.max_error_rate, rollout.max_error_rate_increase) == (
        [10, 50, 100],
        0.05,
        0.02,
    )
    assert f'data-rollout="{rollout.pk}" data-rollout-state="running"' in response.content.decode()
    # Without htmx (a plain form post), back to the function's page.
    plain = bob.post(f"{PANEL}{rollout.pk}/pause/")
    assert (plain.status_code, plain["Location"]) == (302, "/t/acme/functions/hello/versions/")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"weights": "50, 10, 100"}, "each weight is higher than the one before"),
        ({"weights": "ten"}, "Whole numbers separated by commas"),
        ({"to_version": "1"}, "Alias live already points at v1."),
        ({"max_error_rate": ""}, None),  # blank turns the rule off: accepted
    ],
)
def test_bad_input_answers_the_panel_with_words(
    world: Any, change: dict[str, str], words: str | None
) -> None:
    _two_versions(world.acme)
    response = client_of(world.bob).post(PANEL, {**FORM, **change}, headers=HTMX)
    with schema_context(world.acme.schema_name):
        started = Rollout.objects.exists()
    if words is None:
        assert response.status_code == 200
        assert started
        return
    assert response.status_code == 400
    page = response.content.decode()
    assert words in page
    assert "{'" not in page  # no raw dict
    assert not started


@pytest.mark.parametrize("codes", ["5²²", "600", "5x", "abc"])
def test_bad_capture_codes_answer_the_panel_with_words(world: Any, codes: str) -> None:
    _two_versions(world.acme)
    form = {"action": "settings", "codes": codes, "max_requests": "10", "max_body_bytes": "100"}
    response = client_of(world.bob).post("/t/acme/functions/hello/captures/", form, headers=HTMX)
    assert response.status_code == 400
    assert "Not a status or a class" in response.content.decode()


def test_steering_buttons_pause_resume_and_abort(world: Any) -> None:
    _two_versions(world.acme)
    pk = _rollout(world.acme)
    bob = client_of(world.bob)
    assert 'data-rollout-state="paused"' in bob.post(f"{PANEL}{pk}/pause/", headers=HTMX).content.decode()
    assert 'data-rollout-state="running"' in bob.post(f"{PANEL}{pk}/resume/", headers=HTMX).content.decode()
    aborted = bob.post(f"{PANEL}{pk}/abort/", headers=HTMX).content.decode()
    assert 'data-rollout-state="aborted"' in aborted
    assert "aborted by bob" in aborted
    twice = bob.post(f"{PANEL}{pk}/abort/", headers=HTMX)
    assert twice.status_code == 409
    assert "it cannot be aborted" in twice.content.decode()
    assert bob.post(f"{PANEL}{pk}/explode/", headers=HTMX).status_code == 404


def test_roles_and_tenants(world: Any) -> None:
    _two_versions(world.acme)
    pk = _rollout(world.acme)
    assert client_of(world.vera).post(f"{PANEL}{pk}/abort/", headers=HTMX).status_code == 403
    assert client_of(world.vera).post(PANEL, FORM, headers=HTMX).status_code == 403
    assert client_of(world.oscar).get(PANEL).status_code == 404
    _two_versions(world.globex, "theirs")
    with schema_context(world.globex.schema_name):
        services.rollout_abort(rollout=Rollout.objects.get(pk=_rollout(world.globex, "theirs")))
    theirs = _rollout(world.globex, "theirs")  # an id acme has no rollout with
    assert theirs != pk
    alice = client_of(world.alice)
    assert alice.get("/t/acme/functions/theirs/rollouts/").status_code == 404
    assert alice.post(f"{PANEL}{theirs}/abort/", headers=HTMX).status_code == 404
    with schema_context(world.globex.schema_name):
        assert Rollout.objects.get(pk=theirs).state == "running"


def test_the_captures_panel_by_role_and_tenant(world: Any) -> None:
    _two_versions(world.acme)
    url = "/t/acme/functions/hello/captures/"
    viewer = client_of(world.vera).get(url).content.decode()
    assert "shown to developers and admins" in viewer
    assert "data-captures" not in viewer
    assert "data-captures" in client_of(world.bob).get(url).content.decode()
    assert client_of(world.vera).post(url, {"action": "purge"}, headers=HTMX).status_code == 403
    assert client_of(world.oscar).get(url).status_code == 404
    _two_versions(world.globex, "theirs")
    assert client_of(world.alice).get("/t/acme/functions/theirs/captures/").status_code == 404
    assert client_of(world.bob).post(url, {"action": "explode"}, headers=HTMX).status_code == 404
