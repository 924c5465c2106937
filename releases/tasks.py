"""Celery tasks that drive rollouts: thin, the tenant passed explicitly as the schema name."""

from __future__ import annotations

import logging

from celery import shared_task
from django_tenants.utils import schema_context

from dataplane.retry import retrying
from releases.services import replays
from releases.services import rollouts as services
from tenants.selectors import tenant_queryset

log = logging.getLogger(__name__)


@shared_task(name=services.TICK_TASK, **retrying(retries=5, backoff_max_s=30))
def rollout_tick_task(schema: str, rollout_id: int, token: str) -> None:
    """One tick of a rollout (services.rollout_tick), then the next is queued by the service.

    ``acks_late`` is safe: a tick carries the token it was scheduled with and acts only while the
    rollout still holds it, in one transaction (a revision guard), so a redelivered tick is a
    no-op. A lost tick is queued again by ``rollouts_drive``."""
    with schema_context(schema):
        services.rollout_tick(rollout_id=rollout_id, token=token)


@shared_task(name=replays.REPLAY_TASK, **retrying(retries=5, backoff_max_s=30))
def replay_task(schema: str, replay_id: int) -> None:
    """Run (or resume) a replay. ``acks_late`` is safe: replay_run sends no captured request
    twice (a result is saved as ``sending`` before its request goes, and a resumed run marks such
    a result lost rather than sending it again)."""
    with schema_context(schema):
        replays.replay_run(replay_id=replay_id)


@shared_task(name="releases.drive")
def rollouts_drive() -> int:
    """Beat, every few seconds: tick again every running rollout whose tick is overdue (a killed
    worker's, or one lost before it was queued), and resume replays that stopped moving. Returns
    how many were sent."""
    count = 0
    for schema in tenant_queryset().filter(state="ready").values_list("schema_name", flat=True):
        with schema_context(schema):
            for rollout_id, token in services.rollouts_sweep():
                rollout_tick_task.delay(schema, rollout_id, token)
                count += 1
            for replay_id in replays.replays_stuck():
                replay_task.delay(schema, replay_id)
                count += 1
    return count
