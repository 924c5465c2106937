"""What a rollout is judged on, read from Prometheus, and the rollouts a page or API lists."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet

from dataplane.backends.base import CapturedRequest
from functions.models import Alias, Function, Version
from metrics import selectors as metric_selectors
from releases.judge import Figures
from releases.models import Replay, Rollout


def version_figures(function: Function, version: Version, *, start: datetime, end: datetime) -> Figures:
    """The calls, errors and p95 latency of ``version`` of ``function`` between ``start`` and
    ``end``, whichever path or alias called it (a version's series are its own: ``f-vN``).
    Raises MetricsUnavailable when Prometheus cannot answer."""
    scope = metric_selectors.function_scope(function, version=f"v{version.number}")
    window_s = max(1, round((end - start).total_seconds()))
    totals = metric_selectors.totals(scope, window_s, end.timestamp())
    return Figures(calls=totals.calls, errors=totals.errors, p95_ms=totals.latency_ms.get("p95"))


def rollout_list(*, function: Function, alias: Alias | None = None) -> QuerySet[Rollout]:
    rollouts = Rollout.objects.filter(function=function)
    if alias is not None:
        rollouts = rollouts.filter(alias=alias)
    return rollouts.select_related("alias", "from_version", "to_version", "step_deployment")


def rollout_active(*, alias: Alias) -> Rollout | None:
    return rollout_list(function=alias.function, alias=alias).filter(state__in=["running", "paused"]).first()


def rollouts_due(*, now: datetime) -> list[int]:
    """Running rollouts whose next check is due (or was never scheduled): the sweep ticks them."""
    due = Rollout.objects.filter(state="running").filter(
        Q(next_check_at__isnull=True) | Q(next_check_at__lte=now)
    )
    return list(due.values_list("pk", flat=True))


def capture_shown(capture: CapturedRequest) -> dict[str, Any]:
    """A captured request as the API and pages show it: bodies as text, the version's short name."""
    return {
        "id": capture.id, "time": capture.time, "version": capture.fission_function.rsplit("-", 1)[-1],
        "trigger_path": capture.trigger_path, "method": capture.method, "path": capture.path,
        "headers": [list(pair) for pair in capture.headers], "body": capture.body.decode("utf-8", "replace"),
        "body_truncated": capture.body_truncated, "status": capture.status,
        "response_body": capture.response_body.decode("utf-8", "replace"),
        "response_truncated": capture.response_truncated, "duration_ms": capture.duration_ms,
        "request_id": capture.request_id,
    }  # fmt: skip


def replay_list(*, function: Function) -> QuerySet[Replay]:
    return Replay.objects.filter(function=function).select_related("version")
