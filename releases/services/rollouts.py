"""Rollouts: the request side (start, pause, resume, promote, abort) and the engine's tick.

Every change of a rollout happens under its row lock (``select_for_update``), in one transaction
with the alias weights it sets, the deployment that applies them and its audit record: a worker
killed half-way leaves either all of a step or none of it.

The engine is driven by ``rollout_tick``, which a Celery task calls (releases/tasks.py). Ticks are
deduplicated by a token: each scheduled tick carries the ``next_check_at`` it was scheduled for,
and acts only while the row still holds that value (a revision guard). A tick that arrives twice
(a redelivery, the sweep rescuing a tick a killed worker held) therefore acts once, and a step is
neither skipped nor repeated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from celery import current_app
from django.db import connection, transaction
from django.utils import timezone

from audit import services as audit
from core import notifier
from core.errors import Conflict, DomainError, NotFound, ValidationFailed
from dataplane.backends.base import PermanentError
from functions.models import Alias, DeploymentState, Function, Version
from functions.services import deployments, versions
from functions.services.common import full_clean
from metrics.prometheus import MetricsUnavailable
from releases import selectors
from releases.judge import Figures, Judgement, Rules, Verdict, judge
from releases.models import ReplayState, Rollout, RolloutState
from releases.services import replays

DEFAULT_WEIGHTS = (5, 25, 50, 100)
MAX_STEPS = 20
DEPLOY_POLL_S = 2.0  # how often a step whose weights are being applied is looked at
MAX_WAIT_POLL_S = 10.0
TICK_TASK = "releases.tick"  # how often a step waiting for traffic is judged again, at most
Reader = Callable[..., Figures]


def _name(rollout: Rollout) -> str:
    return f"{rollout.function.name}/{rollout.alias.name}#{rollout.pk}"


def weights_from(*, weights: list[int] | None, increment: int | None) -> list[int]:
    """The steps: ``weights`` as given, or Fission's ``increment`` every interval (10 -> 10, 20,
    ..., 100). ValidationFailed unless they rise, from 1 to 100, and end at 100."""
    if weights is not None and increment is not None:
        raise ValidationFailed(
            "Give weights or increment, not both.", detail={"increment": ["Not with weights."]}
        )
    if increment is not None:
        if not 1 <= increment <= 100:
            raise ValidationFailed("increment is 1 to 100.", detail={"increment": ["1 to 100."]})
        weights = [*range(increment, 100, increment), 100]
    steps = list(weights) if weights is not None else list(DEFAULT_WEIGHTS)
    problem = _weights_problem(steps)
    if problem:
        raise ValidationFailed(f"Bad weights: {problem}.", detail={"weights": [problem]})
    return steps


def _weights_problem(steps: list[int]) -> str:
    if not steps or len(steps) > MAX_STEPS:
        return f"1 to {MAX_STEPS} steps"
    if any(not isinstance(w, int) or isinstance(w, bool) or not 1 <= w <= 100 for w in steps):
        return "each weight is a whole number from 1 to 100"
    if any(b <= a for a, b in pairwise(steps)):
        return "each weight is higher than the one before"
    if steps[-1] != 100:
        return "the last weight is 100"
    return ""


@transaction.atomic
def rollout_start(
    *, function: Function, alias: str, to_version: int, weights: list[int] | None = None,
    increment: int | None = None, user: str = "", **rules: Any,
) -> Rollout:  # fmt: skip
    """Start moving ``alias`` from the version it points at (A) to ``to_version`` (B): B gets
    the first weight now. Conflict when a rollout already moves the alias."""
    found = Alias.objects.select_for_update().filter(function=function, name=alias).first()
    if found is None:
        raise NotFound(f"Function {function.name} has no alias {alias!r}.", detail={"alias": [alias]})
    versions.refuse_if_held(found)
    target = versions.version_get(function=function, number=to_version)
    if target.pk == found.version_id:
        raise ValidationFailed(
            f"Alias {alias} already points at v{to_version}.", detail={"to_version": ["Same as the alias's."]}
        )
    steps = weights_from(weights=weights, increment=increment)
    if rules.get("replay_first"):
        _refuse_gate_without_captures(function)
    rollout = Rollout(function=function, alias=found, from_version=found.version, to_version=target,
                      weights=steps, created_by=user, **rules)  # fmt: skip
    full_clean(rollout, exclude=["function", "alias", "from_version", "to_version", "step_deployment"])
    with audit.change("rollout.start", object_type="rollout", object_name=function.name) as change:
        rollout.save()
        change.object_name = _name(rollout)
        change.after = rollout_settings(rollout)
        _log(
            rollout,
            timezone.now(),
            "started",
            f"moving {alias} from v{found.version.number} to v{to_version}",
        )
        (_apply_gate if rollout.replay_first else _apply_step)(rollout, timezone.now())
    _schedule(rollout, timezone.now() + timedelta(seconds=DEPLOY_POLL_S))
    rollout.save()
    return rollout


def _refuse_gate_without_captures(function: Function) -> None:
    """A replay gate needs the function to capture failed requests, on a data plane that keeps
    them (Conflict, or 503, from replays.captures otherwise)."""
    if not function.capture_codes:
        raise ValidationFailed(
            "A replay gate replays captured failed requests: turn capture on for this function first.",
            detail={"replay_first": ["Capture is off."]},
        )
    replays.captures(function)


def rollout_settings(rollout: Rollout) -> dict[str, Any]:
    """What the audit trail records of a rollout: its versions, steps and rules."""
    return {
        "alias": rollout.alias.name, "from_version": rollout.from_version.number,
        "to_version": rollout.to_version.number, "weights": rollout.weights, "interval_s": rollout.interval_s,
        **{name: getattr(rollout, name) for name in _SETTINGS},
    }  # fmt: skip


_RULES = ("min_calls", "traffic_wait_s", "max_error_rate", "max_error_rate_increase", "max_latency_ratio")
_SETTINGS = (*_RULES, "replay_first")


def rules_of(rollout: Rollout) -> Rules:
    return Rules(**{name: getattr(rollout, name) for name in _RULES})


def _locked(rollout_id: int) -> Rollout | None:
    related = ("function", "alias", "from_version", "to_version", "step_deployment", "replay")
    return (
        Rollout.objects.select_for_update(of=("self",)).select_related(*related).filter(pk=rollout_id).first()
    )


def _held(rollout: Rollout) -> Rollout:
    """``rollout`` locked again, as stored now (another request may have changed it)."""
    locked = _locked(rollout.pk)
    if locked is None:
        raise NotFound("The rollout is gone.")
    return locked


def _refuse_unless(rollout: Rollout, *states: RolloutState, doing: str) -> None:
    if rollout.state not in states:
        message = f"Rollout {rollout.pk} is {rollout.state}: it cannot be {doing}."
        raise Conflict(message, code="rollout_state", detail={"state": rollout.state})


@transaction.atomic
def rollout_pause(*, rollout: Rollout, user: str = "") -> Rollout:
    """Hold the weights where they are; nothing is judged until resumed."""
    rollout = _held(rollout)
    _refuse_unless(rollout, RolloutState.RUNNING, doing="paused")
    with _recorded("rollout.pause", rollout):
        rollout.state, rollout.next_check_at = RolloutState.PAUSED, None
        _log(rollout, timezone.now(), "paused", f"paused by {user or 'the system'}")
        rollout.save()
    return rollout


@transaction.atomic
def rollout_resume(*, rollout: Rollout, user: str = "") -> Rollout:
    """Go on from the step in progress. Its window starts again now: what came before the pause
    is not judged."""
    rollout = _held(rollout)
    _refuse_unless(rollout, RolloutState.PAUSED, doing="resumed")
    now = timezone.now()
    with _recorded("rollout.resume", rollout):
        rollout.state = RolloutState.RUNNING
        if rollout.step_started_at is not None:
            rollout.step_started_at = now
        _log(rollout, now, "resumed", f"resumed by {user or 'the system'}")
        _schedule(rollout, now + timedelta(seconds=1))
        rollout.save()
    return rollout


@transaction.atomic
def rollout_promote(*, rollout: Rollout, user: str = "") -> Rollout:
    """Give B all the traffic now, skipping the steps left."""
    rollout = _held(rollout)
    _refuse_unless(rollout, RolloutState.RUNNING, RolloutState.PAUSED, doing="promoted")
    with _recorded("rollout.promote", rollout):
        _finish(rollout, timezone.now(), RolloutState.SUCCEEDED, f"promoted by {user or 'the system'}")
    return rollout


@transaction.atomic
def rollout_abort(*, rollout: Rollout, user: str = "") -> Rollout:
    """Stop, and give A all the traffic again."""
    rollout = _held(rollout)
    _refuse_unless(rollout, RolloutState.RUNNING, RolloutState.PAUSED, doing="aborted")
    with _recorded("rollout.abort", rollout):
        _finish(rollout, timezone.now(), RolloutState.ABORTED, f"aborted by {user or 'the system'}")
    return rollout


@contextmanager
def _recorded(action: str, rollout: Rollout) -> Iterator[None]:
    """The audit record of a change of ``rollout``: its state, step and weight before and after."""

    def state() -> dict[str, Any]:
        return {"state": rollout.state, "step": rollout.step + 1, "weight": rollout.weight}

    with audit.change(action, object_type="rollout", object_name=_name(rollout), before=state()) as change:
        yield
        change.after = state()


# -- the engine ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Next:
    """When to tick again (``at``, the token the tick carries); None when the rollout is over."""

    at: datetime | None


def rollout_tick(*, rollout_id: int, token: str, read: Reader = selectors.version_figures) -> Next:
    """Move the rollout on if its step is due: start the step's clock once its weights serve,
    judge B when the interval has passed, then step up, promote or roll back.

    Idempotent by ``token`` (see the module's docstring): a tick whose token is not the row's
    ``next_check_at`` does nothing and returns ``Next(None)``, so duplicates die out."""
    with transaction.atomic():
        rollout = _locked(rollout_id)
        if rollout is None or rollout.state != RolloutState.RUNNING or token_of(rollout) != token:
            return Next(None)
        now = timezone.now()
        try:
            with transaction.atomic():  # a savepoint: what a refused step wrote is undone
                delay = _advance(rollout, now, read)
        except (DomainError, PermanentError) as exc:  # e.g. a quota refusing a step's deployment
            rollout = _held(rollout)  # as stored, without the refused step's changes
            message = exc.message if isinstance(exc, DomainError) else str(exc)
            delay = _roll_back(rollout, now, "error", f"stopped: {message}")
        if rollout.state == RolloutState.RUNNING:
            _schedule(rollout, now + timedelta(seconds=delay))
        rollout.save()
        return Next(rollout.next_check_at)


def token_of(rollout: Rollout) -> str:
    return rollout.next_check_at.isoformat() if rollout.next_check_at is not None else ""


def _advance(rollout: Rollout, now: datetime, read: Reader) -> float:
    """One tick's work; returns the seconds until the next."""
    if rollout.gating:
        return _gate(rollout, now)
    if rollout.step_started_at is None:
        return _await_weights(rollout, now)
    elapsed = (now - rollout.step_started_at).total_seconds()
    if elapsed < rollout.interval_s:
        return rollout.interval_s - elapsed
    judgement, a, b = _judge(rollout, now, read, waited_s=elapsed - rollout.interval_s)
    window = [rollout.step_started_at.isoformat(), now.isoformat()]
    shown = {"a": a.as_dict() if a else None, "b": b.as_dict() if b else None}
    figures: dict[str, Any] = {**shown, "window": window, "notes": judgement.notes}
    if judgement.verdict is Verdict.WAIT:
        _log(rollout, now, "wait", judgement.reason, replace_wait=True, **figures)
        return min(float(rollout.interval_s), MAX_WAIT_POLL_S)
    if judgement.verdict is not Verdict.PASS:
        return _roll_back(rollout, now, judgement.verdict.value, judgement.reason, **figures)
    _log(rollout, now, "pass", f"step {rollout.step + 1} ({rollout.weight}%): {judgement.reason}", **figures)
    return _step_up(rollout, now)


def _judge(
    rollout: Rollout, now: datetime, read: Reader, *, waited_s: float
) -> tuple[Judgement, Figures | None, Figures | None]:
    assert rollout.step_started_at is not None
    window = {"start": rollout.step_started_at, "end": now}
    try:
        a = read(rollout.function, rollout.from_version, **window)
        b = read(rollout.function, rollout.to_version, **window)
    except MetricsUnavailable as exc:
        rules = rules_of(rollout)
        if waited_s >= rules.traffic_wait_s:
            reason = f"metrics unavailable for {rules.traffic_wait_s} s: {exc.message}"
            return Judgement(Verdict.NO_TRAFFIC, reason), None, None
        return Judgement(Verdict.WAIT, f"metrics unavailable: {exc.message}"), None, None
    return judge(a, b, rules_of(rollout), waited_s=waited_s), a, b


def _await_weights(rollout: Rollout, now: datetime) -> float:
    deployment = rollout.step_deployment
    if deployment is not None and deployment.state == DeploymentState.FAILED:
        reason = f"the deployment of step {rollout.step + 1} failed: {deployment.reason}"
        return _roll_back(rollout, now, "deployment_failed", reason)
    if deployment is not None and deployment.state != DeploymentState.LIVE:
        return DEPLOY_POLL_S
    rollout.step_started_at = now
    _log(rollout, now, "serving", f"{_split(rollout)} serving; judged in {rollout.interval_s} s")
    return float(rollout.interval_s)


def _apply_gate(rollout: Rollout, now: datetime) -> None:
    """Deploy B beside A at 0 % (the alias's canary, no traffic yet), for the replay gate."""
    alias = rollout.alias
    alias.held_by_rollout = rollout.pk
    versions.alias_point(alias, version=rollout.from_version.number,
                         canary_version=rollout.to_version.number, canary_weight=0)  # fmt: skip
    to = rollout.to_version.number
    cause = f"rollout {rollout.pk}: v{to} deployed at 0% for its replay gate"
    rollout.step_deployment = deployments.deployment_create(function=rollout.function, cause=cause)
    _log(
        rollout, now, "gate", f"replaying the captured failed requests against v{to} before any traffic moves"
    )


def _gate(rollout: Rollout, now: datetime) -> float:
    """The replay gate: once B is deployed, replay the captured requests against it; a pass
    moves on to the first step, a failure rolls back."""
    deployment = rollout.step_deployment
    if deployment is not None and deployment.state == DeploymentState.FAILED:
        reason = f"the deployment for the replay gate failed: {deployment.reason}"
        return _roll_back(rollout, now, "deployment_failed", reason)
    if deployment is not None and deployment.state != DeploymentState.LIVE:
        return DEPLOY_POLL_S
    replay = rollout.replay
    if replay is None:
        rollout.replay = replays.replay_create(function=rollout.function, version=rollout.to_version.number)
        count = len(rollout.replay.captures)
        _log(rollout, now, "gate", f"replay {rollout.replay.pk} of {count} captured requests queued")
        return DEPLOY_POLL_S
    if replay.state != ReplayState.FINISHED:
        return DEPLOY_POLL_S
    if not replay.passed:
        return _roll_back(rollout, now, "gate_failed", f"the replay gate failed: {replay.summary}")
    rollout.gate_passed_at = now
    _log(rollout, now, "gate_passed", f"replay {replay.pk}: {replay.summary}")
    with _recorded("rollout.step", rollout):
        _apply_step(rollout, now)
    return DEPLOY_POLL_S


def _roll_back(rollout: Rollout, now: datetime, action: str, reason: str, **figures: Any) -> float:
    with _recorded("rollout.roll_back", rollout):
        _log(rollout, now, action, reason, **figures)
        _finish(rollout, now, RolloutState.ROLLED_BACK, reason)
    return 0.0


def _step_up(rollout: Rollout, now: datetime) -> float:
    if rollout.step + 1 >= len(rollout.weights):
        with _recorded("rollout.promote", rollout):
            _finish(rollout, now, RolloutState.SUCCEEDED, "every step passed")
        return 0.0
    with _recorded("rollout.step", rollout):
        rollout.step += 1
        _apply_step(rollout, now)
    return DEPLOY_POLL_S


def _split(rollout: Rollout) -> str:
    a, b = rollout.from_version.number, rollout.to_version.number
    return f"{rollout.weight}% to v{b}, {100 - rollout.weight}% to v{a}"


def _apply_step(rollout: Rollout, now: datetime) -> None:
    """Set the step's weights on the alias and queue the deployment that applies them."""
    alias = rollout.alias
    alias.held_by_rollout = rollout.pk
    versions.alias_point(alias, version=rollout.from_version.number,
                         canary_version=rollout.to_version.number, canary_weight=rollout.weight)  # fmt: skip
    cause = f"rollout {rollout.pk}: step {rollout.step + 1} of {len(rollout.weights)}, {_split(rollout)}"
    rollout.step_deployment = deployments.deployment_create(function=rollout.function, cause=cause)
    rollout.step_started_at = None
    _log(rollout, now, "step", f"step {rollout.step + 1} of {len(rollout.weights)}: {_split(rollout)}")


def _finish(rollout: Rollout, now: datetime, state: RolloutState, reason: str) -> None:
    """End the rollout: the alias points at B alone (succeeded) or A alone, and is let go."""
    winner: Version = rollout.to_version if state == RolloutState.SUCCEEDED else rollout.from_version
    alias = rollout.alias
    alias.held_by_rollout = None
    versions.alias_point(alias, version=winner.number, canary_version=None, canary_weight=0)
    cause = f"rollout {rollout.pk} {state.label.lower()}: all calls to v{winner.number}"
    try:
        with transaction.atomic():  # a savepoint: a refused deployment leaves the rest standing
            rollout.step_deployment = deployments.deployment_create(function=rollout.function, cause=cause)
    except DomainError as exc:  # the quota: the alias is A's (or B's) all the same; said so
        rollout.step_deployment = None
        reason = f"{reason}; its deployment was refused ({exc.message}): deploy the function again"
    rollout.state, rollout.reason, rollout.finished_at, rollout.next_check_at = state, reason, now, None
    _log(rollout, now, state.value, f"{reason}; all calls to v{winner.number}")
    rollout.save()


def _schedule(rollout: Rollout, at: datetime) -> None:
    """Set the next check and queue the tick for it after commit (its token: ``at``)."""
    rollout.next_check_at = at
    schema, pk, token = connection.schema_name, rollout.pk, token_of(rollout)  # type: ignore[attr-defined]
    delay = max(0.0, (at - timezone.now()).total_seconds())
    # By name: the task module imports this one.
    transaction.on_commit(lambda: current_app.send_task(TICK_TASK, (schema, pk, token), countdown=delay))


MAX_DECISIONS = 200


def _log(
    rollout: Rollout, now: datetime, action: str, message: str, *, replace_wait: bool = False, **figures: Any
) -> None:
    """Append to the decision log (a wait replaces the step's previous wait: the log says how
    long it has waited, not every look), and push the change to the function's page."""
    entry = {"at": now.isoformat(), "step": rollout.step + 1, "weight": rollout.weight, "action": action,
             "message": message, **figures}  # fmt: skip
    decisions: list[dict[str, Any]] = list(rollout.decisions)
    last = decisions[-1] if decisions else None
    if replace_wait and last is not None and last["action"] == "wait" and last["step"] == entry["step"]:
        decisions[-1] = {**entry, "since": last.get("since", last["at"])}
    else:
        decisions.append(entry)
    rollout.decisions = decisions[-MAX_DECISIONS:]
    schema, function_id = connection.schema_name, rollout.function_id  # type: ignore[attr-defined]
    payload = {"rollout": rollout.pk, "alias": rollout.alias.name, "state": rollout.state,
               "step": rollout.step + 1, "weight": rollout.weight, "decision": entry}  # fmt: skip
    transaction.on_commit(lambda: notifier.function_event(schema, function_id, "rollout.changed", **payload))


def rollouts_sweep() -> list[tuple[int, str]]:
    """The running rollouts of the current schema whose tick is overdue by more than a few
    seconds (a tick lost with a killed worker): (id, token) to tick again. A tick that was only
    late carries the same token, so only one of the two acts."""
    overdue = timezone.now() - timedelta(seconds=5)
    return [(r.pk, token_of(r)) for r in Rollout.objects.filter(pk__in=selectors.rollouts_due(now=overdue))]
