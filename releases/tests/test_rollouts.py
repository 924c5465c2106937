"""The rollout engine against the real database, with the figures it judges given by hand (the
end-to-end tests in test_rollouts_e2e.py read them from a real Prometheus)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db.models import F
from django_tenants.utils import schema_context

from audit.models import AuditRecord
from core.errors import Conflict
from functions.models import Alias, Build, BuildState, Deployment, Draft, Function, Version
from functions.services import functions as function_services
from functions.services import versions
from metrics.prometheus import MetricsUnavailable
from releases.judge import Figures
from releases.models import Rollout, RolloutState
from releases.services import rollouts as services

pytestmark = pytest.mark.django_db
API = "/t/acme/api/v1/functions/hello/rollouts/"
HEALTHY = {1: Figures(calls=400, errors=2, p95_ms=10.0), 2: Figures(calls=100, errors=0, p95_ms=11.0)}


@pytest.fixture
def two_versions(world: Any, hello: Function) -> Function:
    """``hello`` with versions 1 and 2 (another timeout) and alias ``live`` on 1."""
    with schema_context(world.acme.schema_name):
        revision = Draft.objects.get(function=hello).revision
        Build.objects.create(function=hello, draft_revision=revision, state=BuildState.SUCCEEDED,
                             sha256="a" * 64, python_version=hello.environment.runtime_version)  # fmt: skip
        versions.version_publish(function=hello)
        function_services.function_update(function=hello, timeout_s=30)
        versions.version_publish(function=hello)
        versions.alias_set(function=hello, name="live", version=1)
        return hello


def reader(figures: dict[int, Figures]) -> Any:
    def read(function: Function, version: Version, *, start: Any, end: Any) -> Figures:
        return figures[version.number]

    return read


def start(function: Function, **options: Any) -> Rollout:
    defaults = {"alias": "live", "to_version": 2, "weights": [10, 50, 100], "interval_s": 60, "min_calls": 20,
                "traffic_wait_s": 120}  # fmt: skip
    return services.rollout_start(function=function, **{**defaults, **options})


def tick(rollout: Rollout, read: Any, *, live: bool = True, later_s: float = 0) -> Rollout:
    """One tick with the rollout's current token, its step deployment live (unless ``live`` is
    False) and its step's clock moved back ``later_s`` seconds first."""
    if live:
        Deployment.objects.update(state="live")
    if later_s:
        Rollout.objects.filter(pk=rollout.pk).update(
            step_started_at=F("step_started_at") - timedelta(seconds=later_s)
        )
    current = Rollout.objects.get(pk=rollout.pk)
    services.rollout_tick(rollout_id=rollout.pk, token=services.token_of(current), read=read)
    return Rollout.objects.select_related("alias").get(pk=rollout.pk)


def weights(function: Function) -> dict[int, int]:
    return (
        Alias.objects.select_related("version", "canary_version")
        .get(function=function, name="live")
        .weights()
    )


def actions(rollout: Rollout) -> list[str]:
    return [d["action"] for d in rollout.decisions]


def test_a_healthy_b_is_promoted_through_every_step(world: Any, two_versions: Function) -> None:
    with schema_context(world.acme.schema_name):
        rollout = start(two_versions)
        seen = [weights(two_versions)]
        for _ in range(3):
            rollout = tick(rollout, reader(HEALTHY))  # the step's weights serve: its clock starts
            assert rollout.step_started_at is not None
            rollout = tick(rollout, reader(HEALTHY), later_s=61)  # judged: pass
            seen.append(weights(two_versions))
        assert rollout.state == RolloutState.SUCCEEDED
        assert seen == [{1: 90, 2: 10}, {1: 50, 2: 50}, {1: 0, 2: 100}, {2: 100}]
        alias = Alias.objects.get(pk=rollout.alias_id)
        assert (alias.version.number, alias.canary_version, alias.held_by_rollout) == (2, None, None)
        assert actions(rollout) == ["started", "step", "serving", "pass", "step", "serving", "pass", "step",
                                    "serving", "pass", "succeeded"]  # fmt: skip
        passed = [d for d in rollout.decisions if d["action"] == "pass"]
        assert [d["weight"] for d in passed] == [10, 50, 100]
        assert passed[0]["b"] == {"calls": 100, "errors": 0, "p95_ms": 11.0, "error_rate": 0.0}
        assert rollout.step_deployment is not None
        assert "all calls to v2" in rollout.step_deployment.cause


def test_a_b_failing_30_percent_is_rolled_back_at_its_first_judgement(
    world: Any, two_versions: Function
) -> None:
    failing = {**HEALTHY, 2: Figures(calls=100, errors=30, p95_ms=11.0)}
    with schema_context(world.acme.schema_name):
        rollout = tick(tick(start(two_versions), reader(failing)), reader(failing), later_s=61)
        assert rollout.state == RolloutState.ROLLED_BACK
        assert rollout.reason.startswith("error rate: B answered 30 of 100 calls with an error (30.0%)")
        assert weights(two_versions) == {1: 100}
        assert actions(rollout) == ["started", "step", "serving", "breach", "rolled_back"]
        breach = rollout.decisions[3]
        assert (breach["step"], breach["weight"], breach["b"]["errors"], breach["a"]["calls"]) == (
            1,
            10,
            30,
            400,
        )
        # Nothing runs after: a later tick (even with a stale token) changes nothing.
        again = tick(rollout, reader(HEALTHY), later_s=600)
        assert actions(again) == actions(rollout)
        assert again.state == RolloutState.ROLLED_BACK


def test_a_b_five_times_slower_is_rolled_back_by_the_latency_rule(world: Any, two_versions: Function) -> None:
    slow = {**HEALTHY, 2: Figures(calls=100, errors=0, p95_ms=50.0)}
    with schema_context(world.acme.schema_name):
        rollout = tick(tick(start(two_versions), reader(slow)), reader(slow), later_s=61)
        assert rollout.state == RolloutState.ROLLED_BACK
        assert rollout.reason.startswith("latency: B's p95 50.0 ms is 5.0x A's 10.0 ms")


def test_a_step_without_traffic_waits_then_fails_rather_than_promoting(
    world: Any, two_versions: Function
) -> None:
    quiet = {1: Figures(calls=5), 2: Figures(calls=3)}
    with schema_context(world.acme.schema_name):
        rollout = tick(tick(start(two_versions), reader(quiet)), reader(quiet), later_s=61)
        assert rollout.state == RolloutState.RUNNING
        assert actions(rollout)[-1] == "wait"
        assert "3 of the 20 calls" in rollout.decisions[-1]["message"]
        rollout = tick(rollout, reader(quiet), later_s=60)  # still waiting: the wait is updated, not repeated
        assert actions(rollout) == ["started", "step", "serving", "wait"]
        rollout = tick(rollout, reader(quiet), later_s=60)  # 121 s past the interval: over the 120 s allowed
        assert rollout.state == RolloutState.ROLLED_BACK
        assert rollout.reason.startswith(
            "not enough traffic: B had 3 of the 20 calls needed after waiting 120 s"
        )
        assert weights(two_versions) == {1: 100}


def test_metrics_unavailable_wait_and_never_promote(world: Any, two_versions: Function) -> None:
    def away(*args: Any, **kwargs: Any) -> Figures:
        raise MetricsUnavailable("Prometheus is not reachable.")

    with schema_context(world.acme.schema_name):
        rollout = tick(tick(start(two_versions), away), away, later_s=61)
        assert (rollout.state, actions(rollout)[-1]) == (RolloutState.RUNNING, "wait")
        rollout = tick(rollout, away, later_s=200)
        assert rollout.state == RolloutState.ROLLED_BACK
        assert rollout.reason.startswith("metrics unavailable for 120 s")


def test_a_failed_step_deployment_rolls_back(world: Any, two_versions: Function) -> None:
    with schema_context(world.acme.schema_name):
        rollout = start(two_versions)
        assert rollout.step_deployment is not None
        Deployment.objects.filter(pk=rollout.step_deployment.pk).update(state="failed", reason="quota")
        rollout = tick(rollout, reader(HEALTHY), live=False)
        assert rollout.state == RolloutState.ROLLED_BACK
        assert rollout.reason == "the deployment of step 1 failed: quota"


def test_a_step_whose_weights_are_not_live_yet_is_not_judged(world: Any, two_versions: Function) -> None:
    with schema_context(world.acme.schema_name):
        rollout = tick(start(two_versions), reader(HEALTHY), live=False)
        assert rollout.step_started_at is None
        assert actions(rollout) == ["started", "step"]


def test_a_tick_acts_once_per_token(world: Any, two_versions: Function) -> None:
    """A redelivered tick (the same token), or one scheduled before the last act (an old token),
    does nothing: no step is repeated."""
    with schema_context(world.acme.schema_name):
        rollout = tick(start(two_versions), reader(HEALTHY))
        Rollout.objects.filter(pk=rollout.pk).update(
            step_started_at=F("step_started_at") - timedelta(seconds=61)
        )
        token = services.token_of(Rollout.objects.get(pk=rollout.pk))
        first = services.rollout_tick(rollout_id=rollout.pk, token=token, read=reader(HEALTHY))
        second = services.rollout_tick(rollout_id=rollout.pk, token=token, read=reader(HEALTHY))
        assert first.at is not None
        assert second.at is None
        rollout = Rollout.objects.get(pk=rollout.pk)
        assert actions(rollout) == ["started", "step", "serving", "pass", "step"]
        assert rollout.step == 1


def test_the_sweep_finds_an_overdue_tick_with_its_token(world: Any, two_versions: Function) -> None:
    with schema_context(world.acme.schema_name):
        rollout = start(two_versions)
        assert services.rollouts_sweep() == []
        Rollout.objects.filter(pk=rollout.pk).update(next_check_at=F("next_check_at") - timedelta(seconds=30))
        overdue = Rollout.objects.get(pk=rollout.pk)
        assert services.rollouts_sweep() == [(rollout.pk, services.token_of(overdue))]


def test_one_rollout_per_alias_and_no_one_else_moves_it(world: Any, two_versions: Function) -> None:
    with schema_context(world.acme.schema_name):
        rollout = start(two_versions)
        with pytest.raises(Conflict) as second:
            start(two_versions)
        assert second.value.code == "rollout_running"
        with pytest.raises(Conflict):
            versions.alias_set(function=two_versions, name="live", version=2)
        with pytest.raises(Conflict):
            versions.alias_delete(alias=Alias.objects.get(pk=rollout.alias_id))
        services.rollout_abort(rollout=rollout, user="bob")
        assert weights(two_versions) == {1: 100}
        versions.alias_set(function=two_versions, name="live", version=2)  # let go: anyone may again
        assert start(two_versions, to_version=1).state == RolloutState.RUNNING


def test_pause_holds_the_step_and_resume_judges_it_afresh(world: Any, two_versions: Function) -> None:
    with schema_context(world.acme.schema_name):
        rollout = tick(start(two_versions), reader(HEALTHY))
        rollout = services.rollout_pause(rollout=rollout, user="bob")
        assert (rollout.state, rollout.next_check_at) == (RolloutState.PAUSED, None)
        assert services.rollout_tick(rollout_id=rollout.pk, token="", read=reader(HEALTHY)).at is None
        rollout = services.rollout_resume(rollout=rollout, user="bob")
        assert rollout.state == RolloutState.RUNNING
        assert rollout.step_started_at is not None
        assert rollout.next_check_at is not None
        assert actions(rollout)[-2:] == ["paused", "resumed"]
        with pytest.raises(Conflict):
            services.rollout_resume(rollout=rollout, user="bob")


def test_promote_now_gives_b_everything(world: Any, two_versions: Function) -> None:
    with schema_context(world.acme.schema_name):
        rollout = services.rollout_promote(rollout=start(two_versions), user="bob")
        assert rollout.state == RolloutState.SUCCEEDED
        assert rollout.reason == "promoted by bob"
        assert weights(two_versions) == {2: 100}
        with pytest.raises(Conflict):
            services.rollout_abort(rollout=rollout, user="bob")


def test_each_change_is_one_audit_record_with_its_deployment(world: Any, two_versions: Function) -> None:
    with schema_context(world.acme.schema_name):
        before = AuditRecord.objects.count()
        rollout = start(two_versions)
        tick(tick(rollout, reader(HEALTHY)), reader(HEALTHY), later_s=61)
        services.rollout_abort(rollout=rollout, user="bob")
        records = list(AuditRecord.objects.order_by("pk")[before:])
        assert [r.action for r in records] == ["rollout.start", "rollout.step", "rollout.abort"]
        assert records[0].object_name == f"hello/live#{rollout.pk}"
        assert records[0].changes["weights"] == [None, [10, 50, 100]]
        assert all(
            len(r.effects) == 1 and r.effects[0].startswith("deployment.create hello#") for r in records
        )
        assert records[1].changes["step"] == [1, 2]
        assert records[1].actor_type == "system"


def test_a_step_the_quota_refuses_rolls_back_saying_so(world: Any, two_versions: Function) -> None:
    with schema_context(world.acme.schema_name):
        rollout = tick(start(two_versions), reader(HEALTHY))  # step 1: the draft, v1 and v2 deployed
        world.acme.quota = {"packages": 2}  # lowered meanwhile: step 2's deployment needs 3
        world.acme.save(update_fields=["quota"])
        rollout = tick(rollout, reader(HEALTHY), later_s=61)
        assert rollout.state == RolloutState.ROLLED_BACK
        assert rollout.reason.startswith("stopped: Quota packages exceeded")
        assert actions(rollout) == ["started", "step", "serving", "error", "rolled_back"]
        assert weights(two_versions) == {1: 100}
        assert rollout.step == 0  # what the refused step wrote was undone
