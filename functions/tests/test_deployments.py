"""Deployment state machine: idempotent, failures recorded, stuck ones resumed by the beat task."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from dataplane.backends.base import PermanentError
from functions.models import Deployment, DeploymentState, Draft
from functions.runs import deployments as deployment_runs
from functions.services import deployments
from functions.services import functions as function_services

pytestmark = pytest.mark.django_db


def test_a_finished_deployment_is_not_run_again(world, hello, django_capture_on_commit_callbacks):
    with schema_context(world.acme.schema_name), django_capture_on_commit_callbacks(execute=False):
        deployment = deployments.deployment_create(function=hello, cause="test")
        Deployment.objects.filter(pk=deployment.pk).update(state=DeploymentState.LIVE)
        again = deployment_runs.deployment_run(deployment_id=deployment.pk)
        assert again is not None
        assert again.state == DeploymentState.LIVE
        assert again.attempts == 0  # nothing was attempted


def test_a_failing_build_fails_the_deployment_with_its_reason(
    world, hello, django_capture_on_commit_callbacks
):
    with schema_context(world.acme.schema_name), django_capture_on_commit_callbacks(execute=False):
        # Saving refuses such a requirements.txt now; a draft stored before that check existed
        # still has one, and the build refuses it again.
        function_services.draft_update_files(function=hello, files={"main.py": "x = 1\n"})
        files = {"main.py": "x = 1\n", "requirements.txt": "-e git+https://example.invalid/x\n"}
        Draft.objects.filter(function=hello).update(files=files)
        deployment = deployments.deployment_create(function=hello, cause="test")
        result = deployment_runs.deployment_run(deployment_id=deployment.pk)
    assert result is not None
    assert result.state == DeploymentState.FAILED
    assert "build failed" in result.reason
    assert [s["state"] for s in result.steps] == ["queued", "building", "failed"]


def test_a_permanent_backend_error_fails_with_a_clear_message(
    world, hello, monkeypatch, django_capture_on_commit_callbacks
):
    from dataplane.backends import local

    def refuse(self: Any, objects: Any) -> None:
        raise PermanentError("Function hello-draft: spec.InvokeStrategy is required")

    monkeypatch.setattr(local.LocalBackend, "apply", refuse)
    with schema_context(world.acme.schema_name), django_capture_on_commit_callbacks(execute=False):
        deployment = deployments.deployment_create(function=hello, cause="test")
        result = deployment_runs.deployment_run(deployment_id=deployment.pk)
    assert result is not None
    assert result.state == DeploymentState.FAILED
    assert result.reason == "Function hello-draft: spec.InvokeStrategy is required"


def test_stuck_deployments_are_requeued(world, hello, monkeypatch, django_capture_on_commit_callbacks):
    from functions import tasks

    queued: list[tuple[str, int]] = []
    monkeypatch.setattr(tasks.deploy_task, "delay", lambda schema, pk: queued.append((schema, pk)))
    with schema_context(world.acme.schema_name), django_capture_on_commit_callbacks(execute=False):
        deployment = deployments.deployment_create(function=hello, cause="test")
        Deployment.objects.filter(pk=deployment.pk).update(
            state=DeploymentState.APPLYING, updated_at=timezone.now() - timedelta(minutes=5)
        )
    assert tasks.resume_stuck_deployments() == 1
    assert queued == [(world.acme.schema_name, deployment.pk)]


def _deployment_started_and_quiet(function: Any, *, quiet_s: int, **step: Any) -> Deployment:
    """A deployment a worker started (attempts 1, applying) that has not moved for ``quiet_s``."""
    deployment = deployments.deployment_create(function=function, cause="test")
    last = {"state": "applying", "at": timezone.now().isoformat(), "message": "applying", **step}
    Deployment.objects.filter(pk=deployment.pk).update(
        state=DeploymentState.APPLYING, attempts=1, steps=[last],
        updated_at=timezone.now() - timedelta(seconds=quiet_s),
    )  # fmt: skip
    return Deployment.objects.get(pk=deployment.pk)


@contextmanager
def _another_session_holds_the_lock(function_id: int) -> Iterator[None]:
    """A second database session (a worker) holding the function's deployment lock."""
    from django.db import connection

    key = f"{connection.schema_name}.deploy.{function_id}"  # type: ignore[attr-defined]
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(hashtext(%s))", [key])
        yield


def test_a_started_deployment_nobody_runs_is_resumed_within_seconds(
    world, hello, django_capture_on_commit_callbacks
):
    with schema_context(world.acme.schema_name), django_capture_on_commit_callbacks(execute=False):
        fresh = _deployment_started_and_quiet(hello, quiet_s=5)
        assert deployment_runs.deployments_to_resume() == []  # it moved 5 s ago: let it run
        Deployment.objects.filter(pk=fresh.pk).update(updated_at=timezone.now() - timedelta(seconds=30))
        with _another_session_holds_the_lock(hello.pk):
            assert deployment_runs.deployments_to_resume() == []  # a worker is on it (a long build)
        assert deployment_runs.deployments_to_resume() == [fresh.pk]  # its worker is gone
        resumed = Deployment.objects.get(pk=fresh.pk)
        assert resumed.steps[-1]["message"] == "resumed: no worker was running it"
        assert resumed.state == DeploymentState.APPLYING
        assert deployment_runs.deployments_to_resume() == []  # the resume is a move: not twice at once


def test_a_long_build_holding_the_lock_is_never_resumed_however_quiet(
    world, hello, django_capture_on_commit_callbacks
):
    with schema_context(world.acme.schema_name), django_capture_on_commit_callbacks(execute=False):
        building = _deployment_started_and_quiet(hello, quiet_s=600)  # quiet 10 minutes: a long build
        with _another_session_holds_the_lock(hello.pk):
            assert deployment_runs.deployments_to_resume() == []
        assert Deployment.objects.get(pk=building.pk).steps[-1]["message"] == "applying"


def test_a_note_keeps_the_state_the_row_is_at_now(world, hello, django_capture_on_commit_callbacks):
    """A note written from a stale read (the sweep's, a retry's) never moves the state back."""
    with schema_context(world.acme.schema_name), django_capture_on_commit_callbacks(execute=False):
        deployment = deployments.deployment_create(function=hello, cause="test")
        stale = Deployment.objects.get(pk=deployment.pk)  # read while queued
        Deployment.objects.filter(pk=deployment.pk).update(state=DeploymentState.WAITING)
        assert deployment_runs.record_step(stale, None, "a note")
        row = Deployment.objects.get(pk=deployment.pk)
        assert row.state == DeploymentState.WAITING
        assert row.steps[-1]["state"] == "waiting"


def test_a_deployment_waiting_for_its_retry_is_left_alone_until_the_retry_is_late(
    world, hello, django_capture_on_commit_callbacks
):
    with schema_context(world.acme.schema_name), django_capture_on_commit_callbacks(execute=False):
        soon = (timezone.now() + timedelta(seconds=40)).isoformat()
        waiting = _deployment_started_and_quiet(hello, quiet_s=30, retry_at=soon)
        assert deployment_runs.deployments_to_resume() == []
        late = (timezone.now() - timedelta(seconds=25)).isoformat()
        step = {**waiting.steps[-1], "retry_at": late}
        Deployment.objects.filter(pk=waiting.pk).update(steps=[step])
        assert deployment_runs.deployments_to_resume() == [waiting.pk]


def test_a_queued_deployment_is_resumed_only_after_two_minutes(
    world, hello, django_capture_on_commit_callbacks
):
    """Never started: its task may sit behind others in a busy queue, so only a long silence counts."""
    with schema_context(world.acme.schema_name), django_capture_on_commit_callbacks(execute=False):
        queued = deployments.deployment_create(function=hello, cause="test")
        Deployment.objects.filter(pk=queued.pk).update(updated_at=timezone.now() - timedelta(seconds=60))
        assert deployment_runs.deployments_to_resume() == []
        Deployment.objects.filter(pk=queued.pk).update(updated_at=timezone.now() - timedelta(minutes=3))
        assert deployment_runs.deployments_to_resume() == [queued.pk]


def test_a_transient_error_is_retried_with_growing_delays_each_noted_on_the_deployment(
    world, hello, monkeypatch, django_capture_on_commit_callbacks
):
    from dataplane.backends.base import TransientError
    from functions import tasks

    def unreachable(*, deployment_id: int) -> None:
        raise TransientError("the data plane is unreachable")

    countdowns: list[float] = []
    retry = tasks.deploy_task.retry

    def noted_retry(**options: Any) -> Any:
        countdowns.append(options["countdown"])
        return retry(**options)

    monkeypatch.setattr(deployment_runs, "deployment_run", unreachable)
    monkeypatch.setattr(tasks.deploy_task, "retry", noted_retry)
    with schema_context(world.acme.schema_name), django_capture_on_commit_callbacks(execute=False):
        deployment = deployments.deployment_create(function=hello, cause="test")
    tasks.deploy_task.apply(args=(world.acme.schema_name, deployment.pk))
    with schema_context(world.acme.schema_name):
        ended = Deployment.objects.get(pk=deployment.pk)
    assert ended.state == DeploymentState.FAILED
    assert ended.reason == "the data plane kept failing: the data plane is unreachable"
    noted = [step for step in ended.steps if step["message"].startswith("retrying in ")]
    assert len(noted) == len(countdowns) == deployment_runs.MAX_ATTEMPTS - 1
    assert all("retry_at" in step for step in noted)
    assert all(0 <= c <= min(60, 2 ** (n + 1)) for n, c in enumerate(countdowns)), countdowns
