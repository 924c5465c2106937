"""A function's cold-start insight over the last 24 hours: per version, the measured cold-start
rate and latency, and the what-if of another min scale (newdeploy) or pool size (poolmgr) replayed
on the recorded calls (metrics/coldstarts.py says the model).

The calls come from the data plane's record of calls of the current tenant's namespace (the
tenant whose schema the connection is in, never the request), of the function's versions and its
draft, from the function's creation on at most: a function created again under a deleted one's
name does not inherit its calls. The cold-start rate here is cold calls / calls of the record,
not Prometheus' counters: those also count the workers started without a call (the deployment's
specialize probe, MinScale), which are no call's wait.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from core.errors import DomainError, ValidationFailed
from dataplane.backends import get_backend
from dataplane.backends.base import BackendError, CallRecord, CallsNotRecorded
from functions.models import Function, Version
from metrics import coldstarts
from metrics.logs import DRAFT, fission_name
from tenants.selectors import current_tenant

WINDOW_S = 24 * 3600
MAX_VALUE = 100  # the largest min scale or pool size a what-if may ask (MinScale's own bound)
MAX_IDLE_TIMEOUT_S = 86400


class ColdStartsUnavailable(DomainError):
    status = 503
    code = "cold_starts_unavailable"


@dataclass(frozen=True)
class VersionInsight:
    version: str  # "v3" or "draft"
    fission_name: str
    measured: coldstarts.Measured
    whatif: coldstarts.Outcome


@dataclass(frozen=True)
class WhatIfRow:
    value: int
    outcome: coldstarts.Outcome
    current: bool


@dataclass(frozen=True)
class Insight:
    function: str
    since: float
    at: float
    recorded: bool  # False: the data plane keeps no call record (``note`` says so)
    note: str
    executor: str
    knob: str  # "min_scale" or "pool_size"
    current: dict[str, int]  # the function's settings the what-if starts from
    value: int  # the min scale or pool size asked
    idle_timeout_s: int
    pool_refill_s: float
    versions: list[VersionInsight] = field(default_factory=list)
    total: coldstarts.Outcome | None = None
    table: list[WhatIfRow] = field(default_factory=list)
    measured_calls: int = 0
    measured_cold_starts: int = 0

    @property
    def knob_label(self) -> str:
        return "min scale" if self.knob == "min_scale" else "pool size"

    def as_dict(self) -> dict[str, Any]:
        def outcome(o: coldstarts.Outcome) -> dict[str, Any]:
            return {
                "calls": o.calls, "cold_starts": o.cold_starts, "cold_start_rate": o.cold_start_rate,
                "from_empty_pool": o.from_empty_pool, "queued": o.queued, "refused": o.refused,
            }  # fmt: skip

        return {
            "function": self.function, "since": self.since, "at": self.at, "recorded": self.recorded,
            "note": self.note, "executor": self.executor, "knob": self.knob, "current": self.current,
            "whatif": {"value": self.value, "idle_timeout_s": self.idle_timeout_s,
                       "pool_refill_s": self.pool_refill_s,
                       "total": outcome(self.total) if self.total else None,
                       "table": [{"value": r.value, "current": r.current, **outcome(r.outcome)}
                                 for r in self.table]},
            "versions": [
                {"version": v.version, "calls": v.measured.calls, "cold_starts": v.measured.cold_starts,
                 "cold_start_rate": v.measured.cold_start_rate, "from_pool": v.measured.from_pool,
                 "new_workers": v.measured.new_workers, "cold_start_ms": v.measured.latency_ms,
                 "warm_ms": v.measured.warm_ms, "whatif": outcome(v.whatif)}
                for v in self.versions
            ],
        }  # fmt: skip


def _int_param(params: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = int(str(raw))
    except ValueError:
        raise ValidationFailed(
            f"{name} must be a whole number.", detail={name: ["A whole number."]}
        ) from None
    if not low <= value <= high:
        message = f"{name} must be between {low} and {high}."
        raise ValidationFailed(message, detail={name: [message]})
    return value


def whatif_params(params: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """(value, idle_timeout_s) of a what-if query (``value``: the min scale or pool size);
    None for what is not given. ValidationFailed for anything else."""
    return (
        _int_param(params, "value", 0, MAX_VALUE),
        _int_param(params, "idle_timeout_s", 1, MAX_IDLE_TIMEOUT_S),
    )


def _scaling(function: Function, *, value: int, idle_timeout_s: int) -> coldstarts.Scaling:
    newdeploy = function.executor == coldstarts.NEWDEPLOY
    return coldstarts.Scaling(
        executor=function.executor,
        idle_timeout=idle_timeout_s,
        requests_per_pod=function.requests_per_pod,
        max_workers=function.max_scale if newdeploy else function.concurrency,
        min_scale=value if newdeploy else 0,
        pool_size=0 if newdeploy else value,
    )


def _versions(function: Function) -> list[tuple[str, str]]:
    """(version, Fission name) of each version, newest first, then the draft."""
    numbers = Version.objects.filter(function=function).values_list("number", flat=True).order_by("-number")
    versions = [f"v{n}" for n in numbers] + [DRAFT]
    return [(v, fission_name(function.name, v)) for v in versions]


def cold_start_insight(function: Function, *, value: int | None = None,
                       idle_timeout_s: int | None = None) -> Insight:  # fmt: skip
    """The insight of ``function`` over the last 24 hours. ``value`` (min scale or pool size)
    and ``idle_timeout_s`` default to the function's current settings. ColdStartsUnavailable
    (503) when the record cannot be read now; a data plane without one gives ``recorded`` False."""
    tenant = current_tenant()
    now = time.time()
    since = max(now - WINDOW_S, tenant.created_at.timestamp(), function.created_at.timestamp())
    newdeploy = function.executor == coldstarts.NEWDEPLOY
    current = {
        "min_scale": function.min_scale, "max_scale": function.max_scale,
        "pool_size": function.environment.poolsize, "concurrency": function.concurrency,
        "requests_per_pod": function.requests_per_pod, "idle_timeout_s": function.idle_timeout_s,
    }  # fmt: skip
    knob = "min_scale" if newdeploy else "pool_size"
    value = current[knob] if value is None else value
    idle = function.idle_timeout_s if idle_timeout_s is None else idle_timeout_s
    insight = Insight(
        function=function.name, since=since, at=now, recorded=True, note="", executor=function.executor,
        knob=knob, current=current, value=value, idle_timeout_s=idle, pool_refill_s=coldstarts.POOL_REFILL_S,
    )  # fmt: skip
    versions = _versions(function)
    try:
        records = get_backend().calls(tenant.namespace, [name for _, name in versions], since)
    except CallsNotRecorded as exc:
        return replace(insight, recorded=False, note=exc.message)
    except BackendError as exc:
        raise ColdStartsUnavailable(f"Cold-start figures are unavailable right now: {exc.message}") from None
    by_name: dict[str, list[CallRecord]] = {}
    for record in records:
        by_name.setdefault(record.function, []).append(record)
    rows = []
    for version, name in versions:
        recorded = [coldstarts.Recorded(r.time, r.duration, r.startup, r.cold, r.status)
                    for r in by_name.get(name, [])]  # fmt: skip
        if not recorded:
            continue
        scaling = _scaling(function, value=value, idle_timeout_s=idle)
        outcome = coldstarts.simulate([r.service for r in recorded], scaling)
        rows.append(VersionInsight(version, name, coldstarts.measure(recorded), outcome))
    totals = {value: _total([row.whatif for row in rows])}  # the asked value's, replayed above
    table = []
    for suggested in coldstarts.suggestions(function.executor, current[knob]):
        if suggested not in totals:
            totals[suggested] = _total(
                [_replay(by_name, name, function, suggested, idle) for _, name in versions]
            )
        table.append(WhatIfRow(suggested, totals[suggested], suggested == current[knob]))
    return replace(
        insight,
        versions=rows,
        total=totals[value],
        table=table,
        measured_calls=sum(r.measured.calls for r in rows),
        measured_cold_starts=sum(r.measured.cold_starts for r in rows),
    )


def _replay(by_name: dict[str, list[CallRecord]], name: str, function: Function, value: int,
            idle: int) -> coldstarts.Outcome:  # fmt: skip
    calls = [coldstarts.Call(r.time, max(0.0, r.duration - r.startup)) for r in by_name.get(name, [])]
    return coldstarts.simulate(calls, _scaling(function, value=value, idle_timeout_s=idle))


def _total(outcomes: list[coldstarts.Outcome]) -> coldstarts.Outcome:
    """Versions have workers of their own: their what-ifs add up."""
    return coldstarts.Outcome(
        calls=sum(o.calls for o in outcomes),
        cold_starts=sum(o.cold_starts for o in outcomes),
        from_empty_pool=sum(o.from_empty_pool for o in outcomes),
        queued=sum(o.queued for o in outcomes),
        refused=sum(o.refused for o in outcomes),
    )
