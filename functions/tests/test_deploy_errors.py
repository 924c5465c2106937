"""Every error a backend can raise ends a deployment live or failed, never stuck (issue 11).

Each error type goes through ``deploy_task`` as the worker runs it (``apply``: retries included).
On the local backend, applying is skipped (it would need a portal server for the runtime to
fetch packages from: the end-to-end tests cover it) and each error type is raised where a
deployment waits; the runtime's own 404 is real. On the kubernetes backend every error comes from
the fake API server answering with the status that produces it, through the official client.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from dataplane.backends import base, local
from functions import tasks
from functions.models import Deployment, DeploymentState, Trigger
from functions.runs import deployments as deployment_runs
from functions.services import deployments, triggers
from functions.services import functions as function_services
from testsupport.fake_kubernetes import FakeKubernetes

pytestmark = pytest.mark.django_db


def _all_subclasses(cls: type) -> list[type]:
    found: list[type] = []
    direct: type
    for direct in cls.__subclasses__():
        found += [direct, *_all_subclasses(direct)]
    return found


BACKEND_ERRORS = _all_subclasses(base.BackendError)
TRANSIENT = [e for e in BACKEND_ERRORS if issubclass(e, base.TransientError)]


def test_every_backend_error_is_either_transient_or_permanent() -> None:
    assert {base.NotFound, base.Conflict, base.Forbidden, base.InvalidCursor} <= set(BACKEND_ERRORS)
    for error in BACKEND_ERRORS:
        assert issubclass(error, base.TransientError) != issubclass(error, base.PermanentError), error


def _run(schema: str, deployment: Deployment) -> Deployment:
    tasks.deploy_task.apply(args=(schema, deployment.pk))
    with schema_context(schema):
        deployment.refresh_from_db()
    return deployment


@pytest.fixture
def queued(world: Any, django_capture_on_commit_callbacks: Any, monkeypatch: Any) -> Deployment:
    monkeypatch.setattr(local.LocalBackend, "apply", lambda self, objects: None)
    # Nothing was applied, so nothing can load: the errors under test are raised before this step.
    monkeypatch.setattr(local.LocalBackend, "specialize", lambda self, *args, **kwargs: "not tried (test)")
    with schema_context(world.acme.schema_name), django_capture_on_commit_callbacks(execute=False):
        hello = function_services.function_create(name="hello")
        deployment: Deployment = deployments.deployment_create(function=hello, cause="test")
    return deployment


def _failing(error: type[base.BackendError], times: int) -> Any:
    """A wait_ready that raises ``error`` the first ``times`` calls, then finds all ready."""
    calls = list[int]()

    def wait_ready(self: local.LocalBackend, *args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) <= times:
            raise error(f"injected {error.__name__}")

    return wait_ready


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: e.__name__)
def test_local_a_transient_error_is_retried_and_the_deployment_goes_live(
    world: Any, queued: Deployment, monkeypatch: Any, error: type[base.BackendError]
) -> None:
    monkeypatch.setattr(local.LocalBackend, "wait_ready", _failing(error, times=2))
    result = _run(world.acme.schema_name, queued)
    assert result.state == DeploymentState.LIVE, result.reason
    assert result.attempts == 3


@pytest.mark.parametrize("error", BACKEND_ERRORS, ids=lambda e: e.__name__)
def test_local_a_lasting_error_ends_the_deployment(
    world: Any, queued: Deployment, monkeypatch: Any, error: type[base.BackendError]
) -> None:
    """Transient: retried, then failed after MAX_ATTEMPTS runs with the last error. Permanent:
    failed at once with the error's own message."""
    monkeypatch.setattr(local.LocalBackend, "wait_ready", _failing(error, times=10**6))
    result = _run(world.acme.schema_name, queued)
    assert result.state == DeploymentState.FAILED
    if issubclass(error, base.TransientError):
        assert result.reason == f"the data plane kept failing: injected {error.__name__}"
        assert result.attempts == deployment_runs.MAX_ATTEMPTS
    else:
        assert result.reason == f"injected {error.__name__}"
        assert result.attempts == 1


def test_local_a_function_missing_after_the_apply_is_transient(world: Any, queued: Deployment) -> None:
    """The runtime answers 404 for a Function that should be there (here: never applied; in life,
    deleted by a concurrent change): each run tries again, then the deployment fails saying so."""
    result = _run(world.acme.schema_name, queued)
    assert result.state == DeploymentState.FAILED
    assert result.reason == (
        "the data plane kept failing: function hello-draft is not on the runtime after the apply"
    )
    assert result.attempts == deployment_runs.MAX_ATTEMPTS


def test_a_trigger_stored_before_the_path_rule_fails_the_deployment_with_the_reason(
    world: Any, queued: Deployment
) -> None:
    with schema_context(world.acme.schema_name):
        Trigger.objects.create(function=queued.function, name="old", methods=["GET"], path="/..;/x")
    result = _run(world.acme.schema_name, queued)
    assert result.state == DeploymentState.FAILED
    assert "trigger path '/..;/x' must start with '/'" in result.reason
    assert result.attempts == 1


def test_an_unexpected_error_fails_the_deployment_and_says_so(
    world: Any, queued: Deployment, monkeypatch: Any
) -> None:
    def broken(self: local.LocalBackend, *args: Any, **kwargs: Any) -> None:
        raise KeyError("items")

    monkeypatch.setattr(local.LocalBackend, "wait_ready", broken)
    result = _run(world.acme.schema_name, queued)
    assert result.state == DeploymentState.FAILED
    assert result.reason == "an internal error stopped the deployment (KeyError); it was logged"


def test_a_deployment_resumed_too_often_fails(world: Any, queued: Deployment) -> None:
    """A deployment whose worker keeps dying is re-queued by the beat task; the attempts bound it."""
    with schema_context(world.acme.schema_name):
        Deployment.objects.filter(pk=queued.pk).update(
            state=DeploymentState.APPLYING, attempts=deployment_runs.MAX_ATTEMPTS
        )
    result = _run(world.acme.schema_name, queued)
    assert result.state == DeploymentState.FAILED
    assert result.reason == f"gave up after {deployment_runs.MAX_ATTEMPTS} attempts"


def test_a_deployment_older_than_its_deadline_fails(world: Any, queued: Deployment) -> None:
    with schema_context(world.acme.schema_name):
        old = timezone.now() - deployment_runs.DEADLINE - timedelta(seconds=1)
        Deployment.objects.filter(pk=queued.pk).update(state=DeploymentState.WAITING, created_at=old)
    result = _run(world.acme.schema_name, queued)
    assert result.state == DeploymentState.FAILED
    assert result.reason.startswith("gave up: not live after")


# --- the kubernetes backend, errors produced by the API server ----------------------------------


@pytest.fixture
def hello_on_kubernetes(
    kubernetes_portal: FakeKubernetes, make_tenant: Any, django_capture_on_commit_callbacks: Any
) -> Any:
    tenant = make_tenant("acme")
    with schema_context(tenant.schema_name), django_capture_on_commit_callbacks(execute=False):
        hello = function_services.function_create(name="hello")
        triggers.trigger_save(function=hello, name="hello", methods=["GET"], path="/hello")
        deployment = deployments.deployment_create(function=hello, cause="test")
    return tenant, deployment


@pytest.mark.parametrize("status", [409, 429, 500, 503, "timeout"])
def test_kubernetes_transient_answers_are_absorbed(
    kubernetes_portal: FakeKubernetes, hello_on_kubernetes: Any, status: Any
) -> None:
    tenant, deployment = hello_on_kubernetes
    kubernetes_portal.inject(status, times=2, path_contains="/functions/", verb="PATCH")
    result = _run(tenant.schema_name, deployment)
    assert result.state == DeploymentState.LIVE, result.reason
    assert [r.status for r in kubernetes_portal.requests].count(0 if status == "timeout" else status) >= 1


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (403, "the portal's service account may not apply Function faas-acme/hello-draft"),
        (404, "Function faas-acme/hello-draft"),
        (422, "Function faas-acme/hello-draft"),
        (400, "Function faas-acme/hello-draft"),
    ],
)
def test_kubernetes_permanent_answers_fail_at_once(
    kubernetes_portal: FakeKubernetes, hello_on_kubernetes: Any, status: int, reason: str
) -> None:
    tenant, deployment = hello_on_kubernetes
    kubernetes_portal.inject(status, times=50, path_contains="/functions/")
    result = _run(tenant.schema_name, deployment)
    assert result.state == DeploymentState.FAILED
    assert reason in result.reason
    assert result.attempts == 1
