"""Deployment state machine: idempotent, failures recorded, stuck ones resumed by the beat task."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

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
