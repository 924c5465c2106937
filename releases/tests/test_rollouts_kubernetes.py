"""A rollout on the kubernetes backend: each step's weights reach the alias's HTTPTrigger as
Fission's ``function-weights`` on the (fake) API server, through the official client.

On a cluster the figures come from Fission's router metrics through the same Prometheus queries
as locally (metrics/queries.py); here they are given, as in test_rollouts.py, since no Fission
router runs in the suite."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db.models import F
from django_tenants.utils import schema_context

from dataplane.tests.test_kubernetes_backend import NS, deploy
from functions.models import Deployment, DeploymentState
from functions.runs import deployments as deployment_runs
from functions.services import functions as function_services
from functions.services import triggers, versions
from releases.judge import Figures
from releases.models import Rollout, RolloutState
from releases.services import rollouts as services
from testsupport.fake_kubernetes import FakeKubernetes

pytestmark = pytest.mark.django_db


@pytest.fixture
def in_acme(
    kubernetes_portal: FakeKubernetes, make_tenant: Any, django_capture_on_commit_callbacks: Any
) -> Any:
    acme = make_tenant("acme")
    with schema_context(acme.schema_name), django_capture_on_commit_callbacks(execute=False):
        yield acme


def weights_held(fake: FakeKubernetes) -> dict[str, int]:
    """The HTTPTrigger's weights; a trigger on one function (``type: name``) as that one at 100."""
    (trigger,) = fake.objects("httptriggers", NS)
    ref = trigger["spec"]["functionref"]
    return {ref["name"]: 100} if ref["type"] == "name" else dict(ref["functionweights"])


def run_step_deployment(rollout: Rollout) -> None:
    rollout.refresh_from_db()
    assert rollout.step_deployment_id is not None
    ran = deployment_runs.deployment_run(deployment_id=rollout.step_deployment_id)
    assert ran is not None
    assert ran.state == DeploymentState.LIVE, ran.reason


def tick(rollout: Rollout, *, later_s: float = 0) -> Rollout:
    if later_s:
        Rollout.objects.filter(pk=rollout.pk).update(
            step_started_at=F("step_started_at") - timedelta(seconds=later_s)
        )
    current = Rollout.objects.get(pk=rollout.pk)
    healthy = {1: Figures(calls=100, errors=0, p95_ms=5.0), 2: Figures(calls=50, errors=0, p95_ms=5.0)}
    services.rollout_tick(rollout_id=rollout.pk, token=services.token_of(current),
                          read=lambda function, version, **_: healthy[version.number])  # fmt: skip
    return Rollout.objects.get(pk=rollout.pk)


def test_each_step_sets_the_httptrigger_function_weights(
    kubernetes_portal: FakeKubernetes, in_acme: Any
) -> None:
    hello = function_services.function_create(name="hello")
    assert deploy(hello).state == DeploymentState.LIVE
    versions.version_publish(function=hello)
    function_services.draft_update_files(function=hello, files={"main.py": "def main():\n    return 'v2'\n"})
    assert deploy(hello).state == DeploymentState.LIVE
    versions.version_publish(function=hello)
    versions.alias_set(function=hello, name="live", version=1)
    triggers.trigger_save(function=hello, name="hello", methods=["GET"], path="/hello", target_kind="alias",
                          alias="live")  # fmt: skip
    assert deploy(hello).state == DeploymentState.LIVE
    assert weights_held(kubernetes_portal) == {"hello-v1": 100}

    rollout = services.rollout_start(
        function=hello, alias="live", to_version=2, weights=[25, 100], interval_s=60
    )
    seen = []
    for _ in range(2):
        run_step_deployment(rollout)
        seen.append(weights_held(kubernetes_portal))
        rollout = tick(tick(rollout), later_s=61)
    assert rollout.state == RolloutState.SUCCEEDED
    run_step_deployment(rollout)
    seen.append(weights_held(kubernetes_portal))
    assert seen == [{"hello-v1": 75, "hello-v2": 25}, {"hello-v1": 0, "hello-v2": 100}, {"hello-v2": 100}]
    assert Deployment.objects.filter(cause__startswith=f"rollout {rollout.pk}").count() == 3
