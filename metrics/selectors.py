"""Function and tenant statistics from Prometheus, in the current tenant's namespace.

Every query is scoped to the namespace of the tenant whose schema the connection is in, and to
functions, versions, aliases and paths read from that schema: nothing a user typed reaches
PromQL unchecked, and no other tenant's series can be selected.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from django.conf import settings

from core.errors import NotFound, ValidationFailed
from dataplane import manifests
from functions.models import Alias, Function, TargetKind, Trigger, Version
from metrics import queries
from metrics.logs import DRAFT, fission_name
from metrics.prometheus import Sample, prometheus
from metrics.queries import GroupBy, PromQL, Scope
from tenants.selectors import current_tenant

TOP_FUNCTIONS = 10
NO_ROUTE = "/-/no-route"


class TimeRange(StrEnum):
    M5 = "5m"
    M15 = "15m"
    H1 = "1h"
    H6 = "6h"
    H24 = "24h"
    D7 = "7d"

    @property
    def seconds(self) -> int:
        return _RANGES[self][0]

    @property
    def min_live_interval_s(self) -> int:
        """How often a live stream of this range may poll at most: a long range's totals barely
        move between scrapes, and polling them often only loads Prometheus."""
        return {"5m": 1, "15m": 1, "1h": 5, "6h": 30, "24h": 60, "7d": 60}[self.value]

    @property
    def step_s(self) -> int:
        """About 60-170 points per chart, never finer than Prometheus scrapes."""
        return max(_RANGES[self][1], settings.METRICS_SCRAPE_INTERVAL_S)


_RANGES = {
    TimeRange.M5: (300, 5),
    TimeRange.M15: (900, 15),
    TimeRange.H1: (3600, 30),
    TimeRange.H6: (21600, 180),
    TimeRange.H24: (86400, 600),
    TimeRange.D7: (604800, 3600),
}


class Breakdown(StrEnum):
    VERSION = "version"
    ALIAS = "alias"
    PATH = "path"


@dataclass(frozen=True)
class Totals:
    calls: int = 0
    errors: int = 0
    cold_starts: int = 0
    latency_ms: dict[str, float | None] = field(default_factory=dict)

    @property
    def error_rate(self) -> float | None:
        return round(self.errors / self.calls, 4) if self.calls else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "cold_starts": self.cold_starts,
            "latency_ms": self.latency_ms,
        }


@dataclass(frozen=True)
class Row:
    key: str
    calls: int
    errors: int

    @property
    def error_rate(self) -> float | None:
        return round(self.errors / self.calls, 4) if self.calls else None


@dataclass(frozen=True)
class FunctionStats:
    function: str
    range: TimeRange
    at: float
    totals: Totals
    by: Breakdown | None = None
    breakdown: list[Row] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)


@dataclass(frozen=True)
class EventRow:
    """What one event source did in the window: ``kind`` timer, mq or async; ``trigger`` its name
    ("" for asynchronous invocations); ``outcome`` as runtime/metrics.py names them."""

    kind: str
    trigger: str
    outcome: str
    count: int


@dataclass(frozen=True)
class FunctionSeries:
    function: str
    range: TimeRange
    start: float
    end: float
    step_s: int
    # name -> [(epoch seconds, value or None)]: calls, errors, cold_starts per step; p50/p95/p99 in ms
    series: dict[str, list[tuple[float, float | None]]]


@dataclass(frozen=True)
class TenantOverview:
    range: TimeRange
    at: float
    totals: Totals
    top_by_calls: list[Row]
    top_by_errors: list[Row]


def _namespace() -> str:
    return current_tenant().namespace


def tenant_scope(**narrowing: Any) -> Scope:
    """The current tenant's namespace, read only from the router's scrape job if configured."""
    return Scope(_namespace(), job=settings.METRICS_JOB, **narrowing)


def lifetime_window(seconds: int, at: float, born: float) -> int:
    """``seconds``, or less for a tenant younger than that: a namespace (or slug) used before
    this tenant existed left series behind, and none of them may count as this tenant's."""
    return max(1, min(seconds, int(at - born)))


def _born() -> float:
    return current_tenant().created_at.timestamp()


def _route(path: str) -> str:
    return manifests.tenant_route(current_tenant().slug, path)


def _strip_route(route: str) -> str:
    prefix = f"/{current_tenant().slug}"
    return (route[len(prefix) :] or "/") if route.startswith(prefix) else route


def function_scope(
    function: Function, *, version: str | None = None, alias: str | None = None, path: str | None = None
) -> Scope:
    """The series of ``function``, or of one of its versions (``"v3"``, or ``"draft"``), aliases
    or trigger paths. NotFound for a version, alias or path the function does not have.

    An alias or a path selects the calls of its routes; its cold starts are those of the versions
    it sends traffic to (cold starts carry no path)."""
    if sum(x is not None for x in (version, alias, path)) > 1:
        raise ValidationFailed("Give at most one of version, alias and path.")
    if version is not None:
        if (
            version != DRAFT
            and not Version.objects.filter(function=function, number=int(version[1:])).exists()
        ):
            raise NotFound(f"Function {function.name} has no version {version}.")
        return tenant_scope(function=function.name, fission_names=(fission_name(function.name, version),))
    if alias is not None:
        found = (
            Alias.objects.filter(function=function, name=alias)
            .select_related("version", "canary_version")
            .first()
        )
        if found is None:
            raise NotFound(f"Function {function.name} has no alias {alias!r}.")
        routes = tuple(_route(t.path) for t in Trigger.objects.filter(function=function, alias=found))
        # An alias no trigger serves gets no traffic: a path no route can have selects nothing.
        return tenant_scope(function=function.name, fission_names=_alias_names(function, found),
                            paths=routes or (NO_ROUTE,))  # fmt: skip
    if path is not None:
        trigger = (
            Trigger.objects.filter(function=function, path=path).select_related("alias", "version").first()
        )
        if trigger is None:
            raise NotFound(f"Function {function.name} has no trigger on {path!r}.")
        return tenant_scope(function=function.name, fission_names=_trigger_names(function, trigger),
                            paths=(_route(path),))  # fmt: skip
    return tenant_scope(function=function.name)


def _alias_names(function: Function, alias: Alias) -> tuple[str, ...]:
    return tuple(manifests.fission_name(function.name, number) for number in alias.weights())


def _trigger_names(function: Function, trigger: Trigger) -> tuple[str, ...]:
    if trigger.target_kind == TargetKind.ALIAS and trigger.alias is not None:
        return _alias_names(function, trigger.alias)
    if trigger.target_kind == TargetKind.VERSION and trigger.version is not None:
        return (manifests.fission_name(function.name, trigger.version.number),)
    return (manifests.fission_name(function.name, None),)


def _value(samples: list[Sample]) -> float | None:
    return samples[0].value if samples else None


def _count(samples: list[Sample]) -> int:
    return round(sum(s.value or 0 for s in samples))


Answers = dict[str, list[Sample]]  # a merged query's answer (prometheus.instant_many): part -> samples
_COUNTED = (("calls", queries.calls), ("errors", queries.errors))  # what a breakdown counts


def totals(scope: Scope, window_s: int, at: float) -> Totals:
    """Calls, errors, cold starts and latency percentiles of ``scope`` in the ``window_s``
    seconds before ``at``, in one request. MetricsUnavailable when Prometheus cannot answer."""
    return _totals_of(prometheus().instant_many(_totals_parts(scope, window_s), at=at))


def _totals_parts(scope: Scope, window_s: int) -> dict[str, PromQL]:
    return {
        "calls": queries.calls(scope, window_s),
        "errors": queries.errors(scope, window_s),
        "cold_starts": queries.cold_starts(scope, window_s),
        **{_quantile_key(q): queries.quantile(q, scope, window_s) for q in queries.QUANTILES},
    }


def _quantile_key(q: float) -> str:
    return f"p{round(q * 100)}"


def _totals_of(found: Answers) -> Totals:
    return Totals(
        calls=_count(found["calls"]),
        errors=_count(found["errors"]),
        cold_starts=_count(found["cold_starts"]),
        latency_ms={key: _ms(_value(found[key])) for key in map(_quantile_key, queries.QUANTILES)},
    )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _grouped_parts(scope: Scope, window_s: int, group: GroupBy) -> dict[str, PromQL]:
    return {f"by_{part}": query(scope, window_s, group) for part, query in _COUNTED}


def _grouped_of(found: Answers, group: GroupBy) -> dict[str, tuple[int, int]]:
    """Calls and errors per value of ``group``'s label (``_grouped_parts``' answers)."""
    rows: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for index, (part, _) in enumerate(_COUNTED):
        for sample in found[f"by_{part}"]:
            rows[sample.labels.get(group.value, "")][index] += round(sample.value or 0)
    return {key: (calls, errs) for key, (calls, errs) in rows.items()}


def _grouped(scope: Scope, window_s: int, at: float, group: GroupBy) -> dict[str, tuple[int, int]]:
    found = prometheus().instant_many(_grouped_parts(scope, window_s, group), at=at)
    return _grouped_of(found, group)


def function_stats(
    function: Function,
    *,
    time_range: TimeRange,
    by: Breakdown | None = None,
    version: str | None = None,
    alias: str | None = None,
    path: str | None = None,
) -> FunctionStats:
    """Calls, errors, error rate, latency percentiles and cold starts of ``function`` (or one
    version, alias or trigger path) during ``time_range``, optionally broken down; one request
    to Prometheus.

    Raises MetricsUnavailable (503) when Prometheus cannot answer."""
    scope = function_scope(function, version=version, alias=alias, path=path)
    at = time.time()
    window = lifetime_window(time_range.seconds, at, _born())
    group = _BREAKDOWN_GROUPS[by] if by else None
    parts = {**_totals_parts(scope, window), "events": queries.events(scope, window)}
    if group is not None:
        parts |= _grouped_parts(scope, window, group)
    found = prometheus().instant_many(parts, at=at)
    rows = _breakdown(function, by, _grouped_of(found, group)) if by and group else []
    return FunctionStats(
        function.name, time_range, at, _totals_of(found), by, rows, _events_of(found["events"])
    )


# Which label a breakdown counts by: an alias is served by its triggers' paths.
_BREAKDOWN_GROUPS = {
    Breakdown.VERSION: GroupBy.FUNCTION,
    Breakdown.PATH: GroupBy.PATH,
    Breakdown.ALIAS: GroupBy.PATH,
}


def _events_of(samples: list[Sample]) -> list[EventRow]:
    rows = [
        EventRow(
            s.labels.get("kind", ""),
            s.labels.get("trigger", ""),
            s.labels.get("outcome", ""),
            round(s.value or 0),
        )
        for s in samples
    ]
    return sorted((row for row in rows if row.count), key=lambda r: (r.kind, r.trigger, r.outcome))


def version_rows(scope: Scope, window_s: int, at: float) -> list[Row]:
    """Calls and errors per version (and the draft) over the window, most called first: the
    metrics page's "By version" table, and its live updates (metrics/live.py). No database."""
    return _version_rows(_grouped(scope, window_s, at, GroupBy.FUNCTION))


def _version_rows(grouped: dict[str, tuple[int, int]]) -> list[Row]:
    rows = [Row(_version_key(name), *counts) for name, counts in grouped.items()]
    return sorted(rows, key=lambda r: (-r.calls, r.key))


def _breakdown(function: Function, by: Breakdown, grouped: dict[str, tuple[int, int]]) -> list[Row]:
    """The rows of a breakdown, most called first, from the calls and errors grouped by its
    label (``_BREAKDOWN_GROUPS``)."""
    if by is Breakdown.VERSION:
        return _version_rows(grouped)
    by_path = {_strip_route(k): v for k, v in grouped.items()}
    if by is Breakdown.PATH:
        rows = [Row(path, *counts) for path, counts in by_path.items()]
    else:
        rows = _alias_rows(function, by_path)
    return sorted(rows, key=lambda r: (-r.calls, r.key))


def _version_key(fission_name: str) -> str:
    return fission_name.rsplit("-", 1)[-1]  # "v2" or "draft"


def _alias_rows(function: Function, by_path: dict[str, tuple[int, int]]) -> list[Row]:
    totals: dict[str, list[int]] = {a.name: [0, 0] for a in Alias.objects.filter(function=function)}
    for trigger in Trigger.objects.filter(function=function, alias__isnull=False).select_related("alias"):
        calls, errs = by_path.get(trigger.path, (0, 0))
        assert trigger.alias is not None
        totals[trigger.alias.name][0] += calls
        totals[trigger.alias.name][1] += errs
    return [Row(name, calls, errs) for name, (calls, errs) in totals.items()]


def _chart_window(time_range: TimeRange) -> tuple[float, float, float, int]:
    """``(start, end, first, step)`` of a chart of ``time_range`` ending now: steps before
    ``first`` are before the tenant existed, so empty whatever the namespace held then."""
    step = time_range.step_s
    end = float(int(time.time() // step * step))
    start = end - time_range.seconds
    first = max(start, float(int(_born() // step * step + step)))
    return start, end, first, step


def function_series(
    function: Function, *, time_range: TimeRange, version: str | None = None, alias: str | None = None,
    path: str | None = None,
) -> FunctionSeries:  # fmt: skip
    """Per-step counts (calls, errors, cold starts) and latency percentiles (ms) for charts."""
    scope = function_scope(function, version=version, alias=alias, path=path)
    start, end, first, step = _chart_window(time_range)
    wanted = {
        "calls": queries.calls(scope, step),
        "errors": queries.errors(scope, step),
        "cold_starts": queries.cold_starts(scope, step),
        **{_quantile_key(q): queries.quantile(q, scope, step) for q in queries.QUANTILES},
    }
    # Always asked, even for a tenant younger than a step: an unavailable Prometheus says so.
    answers = prometheus().range_many(wanted, start=min(first, end), end=end, step_s=step)
    series: dict[str, list[tuple[float, float | None]]] = {}
    for name in wanted:
        found = answers[name]
        points = {t: v for t, v in found[0].points if t >= first} if found else {}
        if name.startswith("p"):  # no calls in a step: no latency, not zero latency
            series[name] = [(t, _ms(points.get(t))) for t in _steps(start, end, step)]
        else:  # no series yet: nothing was counted
            series[name] = [(t, round(points.get(t) or 0)) for t in _steps(start, end, step)]
    return FunctionSeries(function.name, time_range, start, end, step, series)


def _steps(start: float, end: float, step: int) -> list[float]:
    return [start + i * step for i in range(int((end - start) // step) + 1)]


# --- series per version or per alias ------------------------------------------------------------

SERIES_BREAKDOWNS = (Breakdown.VERSION, Breakdown.ALIAS)
# (alias, the routes of its HTTP triggers), for each alias some trigger serves: the ``path``
# labels its calls carry. Read from the tenant's schema once, so a live poll needs no database.
AliasRoutes = tuple[tuple[str, tuple[str, ...]], ...]
_Points = dict[float, float | None]
# Asks every part of a dict of queries at once (one request): part -> [(labels, points)].
_Fetch = Callable[[dict[str, PromQL]], dict[str, list[tuple[dict[str, str], _Points]]]]


@dataclass(frozen=True)
class Line:
    """One version's (``v2``, ``draft``) or alias' chart line. ``points``: ``calls`` and
    ``errors`` per step, ``error_rate`` (errors / calls) and ``p95`` (ms), both None in a step
    without calls: no calls is no latency, never zero latency."""

    key: str
    points: dict[str, list[tuple[float, float | None]]]

    def as_dict(self) -> dict[str, Any]:
        """As the API (LineSerializer) and the metrics page send it."""
        return {"key": self.key, "series": self.points}


@dataclass(frozen=True)
class SeriesBreakdown:
    function: str
    range: TimeRange
    start: float
    end: float
    step_s: int
    by: Breakdown
    lines: list[Line]


def alias_routes(function: Function) -> AliasRoutes:
    """Each alias of ``function`` that an HTTP trigger serves, with the routes serving it; an
    alias no trigger serves gets no calls, so it has no line."""
    routes: dict[str, list[str]] = defaultdict(list)
    for trigger in Trigger.objects.filter(function=function, alias__isnull=False).select_related("alias"):
        assert trigger.alias is not None
        routes[trigger.alias.name].append(_route(trigger.path))
    return tuple(sorted((name, tuple(sorted(paths))) for name, paths in routes.items()))


def function_series_breakdown(
    function: Function, *, time_range: TimeRange, by: Breakdown, version: str | None = None,
    alias: str | None = None, path: str | None = None,
) -> SeriesBreakdown:  # fmt: skip
    """Per-step calls, errors, error rate and p95 latency of ``function`` (or of one version,
    alias or path, like ``function_series``), one line per version or per alias.

    An alias' line counts the calls on its triggers' paths whichever version served them, so a
    rollout's history stays on it. ValidationFailed for a breakdown other than version or alias,
    or ``by=alias`` narrowed to an alias or a path; NotFound as ``function_scope``;
    MetricsUnavailable when Prometheus cannot answer."""
    if by not in SERIES_BREAKDOWNS:
        raise ValidationFailed("Series break down by version or by alias.", detail={"by": [by.value]})
    if by is Breakdown.ALIAS and (alias is not None or path is not None):
        message = "A breakdown by alias covers the whole function: give no alias or path with it."
        raise ValidationFailed(message, detail={"by": [message]})
    scope = function_scope(function, version=version, alias=alias, path=path)
    routes = alias_routes(function) if by is Breakdown.ALIAS else ()
    start, end, first, step = _chart_window(time_range)
    client = prometheus()

    def fetch(parts: dict[str, PromQL]) -> dict[str, list[tuple[dict[str, str], _Points]]]:
        found = client.range_many(parts, start=min(first, end), end=end, step_s=step)
        return {
            part: [(s.labels, {t: v for t, v in s.points if t >= first}) for s in series]
            for part, series in found.items()
        }

    raw = _line_points(scope, by, routes, step, fetch)
    times = _steps(start, end, step)
    lines = [_line(key, raw[key], times) for key in sorted(raw, key=_line_order)]
    return SeriesBreakdown(function.name, time_range, start, end, step, by, lines)


def breakdown_point(
    scope: Scope, by: Breakdown, routes: AliasRoutes, window_s: int, at: float
) -> dict[str, dict[str, float | None]]:
    """The last ``window_s`` seconds before ``at`` of each line, as one chart point: key ->
    calls, errors, error_rate, p95 (see ``Line``). For the live stream; needs no database."""
    client = prometheus()

    def fetch(parts: dict[str, PromQL]) -> dict[str, list[tuple[dict[str, str], _Points]]]:
        found = client.instant_many(parts, at=at)
        return {part: [(s.labels, {at: s.value}) for s in samples] for part, samples in found.items()}

    raw = _line_points(scope, by, routes, window_s, fetch)
    lines = (_line(key, raw[key], [at]) for key in sorted(raw, key=_line_order))
    return {line.key: {name: points[0][1] for name, points in line.points.items()} for line in lines}


def _line_points(
    scope: Scope, by: Breakdown, routes: AliasRoutes, window_s: int, fetch: _Fetch
) -> dict[str, dict[str, _Points]]:
    """key -> calls, errors, p95 (seconds) -> {time: value}, as Prometheus answered (one
    request: ``fetch`` asks every query at once)."""
    raw: dict[str, dict[str, _Points]] = defaultdict(lambda: {"calls": {}, "errors": {}, "p95": {}})
    group = GroupBy.FUNCTION if by is Breakdown.VERSION else GroupBy.PATH
    alias_of = {route: name for name, paths in routes for route in paths}
    parts = {metric: query(scope, window_s, group) for metric, query in _COUNTED}
    if by is Breakdown.VERSION:
        parts["p95"] = queries.quantile(0.95, scope, window_s, GroupBy.FUNCTION)
    for index, (_, paths) in enumerate(routes):
        # Quantiles do not add up across paths: one query over all of the alias' paths.
        parts[f"alias_{index}"] = queries.quantile(0.95, replace(scope, paths=paths), window_s)
    found = fetch(parts)
    for metric, _ in _COUNTED:
        for labels, points in found[metric]:
            label = labels.get(group.value, "")
            key = _version_key(label) if by is Breakdown.VERSION else alias_of.get(label)
            if key is not None:  # a path no alias serves (the draft's, a version's) is no line
                counted = raw[key][metric]
                for t, value in points.items():
                    counted[t] = (counted.get(t) or 0) + (value or 0)
    for labels, points in found.get("p95", []):
        raw[_version_key(labels.get(GroupBy.FUNCTION.value, ""))]["p95"] = points
    for index, (name, _) in enumerate(routes):
        alias_p95 = found[f"alias_{index}"]
        raw[name]["p95"] = alias_p95[0][1] if alias_p95 else {}
    return raw


def _line(key: str, raw: dict[str, _Points], times: list[float]) -> Line:
    calls = {t: round(raw["calls"].get(t) or 0) for t in times}
    # Never more errors than calls: a scrape can land between the two queries.
    errors = {t: min(calls[t], round(raw["errors"].get(t) or 0)) for t in times}
    return Line(key, {
        "calls": [(t, calls[t]) for t in times],
        "errors": [(t, errors[t]) for t in times],
        "error_rate": [(t, round(errors[t] / calls[t], 4) if calls[t] else None) for t in times],
        "p95": [(t, _ms(raw["p95"].get(t)) if calls[t] else None) for t in times],
    })  # fmt: skip


def _line_order(key: str) -> tuple[int, int, str]:
    """Versions by number, then the draft; aliases by name."""
    if key.startswith("v") and key[1:].isdigit():
        return (0, int(key[1:]), "")
    return (1, 0, key)


def tenant_overview(*, time_range: TimeRange) -> TenantOverview:
    """The tenant's totals and its top functions by calls and by errors (one request)."""
    scope = tenant_scope()
    at = time.time()
    window = lifetime_window(time_range.seconds, at, _born())
    parts = {**_totals_parts(scope, window), **_grouped_parts(scope, window, GroupBy.FUNCTION)}
    found = prometheus().instant_many(parts, at=at)
    known = set(Function.objects.values_list("name", flat=True))
    per_function: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for name, (calls, errs) in _grouped_of(found, GroupBy.FUNCTION).items():
        owner = _owner(name)
        if owner in known:  # a deleted function's old series are not shown
            per_function[owner][0] += calls
            per_function[owner][1] += errs
    rows = [Row(name, calls, errs) for name, (calls, errs) in per_function.items()]
    by_calls = sorted((r for r in rows if r.calls), key=lambda r: (-r.calls, r.key))[:TOP_FUNCTIONS]
    by_errors = sorted((r for r in rows if r.errors), key=lambda r: (-r.errors, r.key))[:TOP_FUNCTIONS]
    return TenantOverview(time_range, at, _totals_of(found), by_calls, by_errors)


def _owner(fission_name: str) -> str:
    try:
        return manifests.portal_function(fission_name)
    except ValueError:
        return ""
