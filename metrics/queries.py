"""PromQL built from typed parameters only, never from user text, always scoped to one namespace.

The metric names and labels are Fission's router metrics (FISSION.md section 3), which the local
runtime exports too, so the same queries serve both backends.

Counts are exact rather than extrapolated. Prometheus' ``increase()`` extrapolates to the
window's edges and misses what a series counted before its first scrape (a function's counter
is born on its first call), so for each series a window's count is, in this order:

- ``last - before``: its last value in the window minus its last value before the window (looked
  for a whole window back, so a scrape gap at the start does not count as a birth), when the
  series did not reset inside the window and the difference is not negative;
- ``increase()`` when it reset inside the window (a runtime restart): an estimate, but one that
  sees the reset;
- its last value, for a series born inside the window (or that reset right at its start).

Reference: https://prometheus.io/docs/prometheus/latest/querying/basics/ (selectors, offset,
set operators) and https://prometheus.io/docs/prometheus/latest/querying/functions/.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

CALLS = "fission_function_calls_total"
ERRORS = "fission_function_errors_total"
LATENCY = "fission_function_overhead_seconds_bucket"
COLD_STARTS = "fission_function_cold_starts_total"
# The local runtime's event sources (runtime/metrics.py): fires, messages, asynchronous invocations.
EVENTS = "faas_trigger_events_total"
QUANTILES = (0.5, 0.95, 0.99)

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%{}/-]*")
_JOB = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
# The runtime and Fission both name version N of f ``f-vN`` and the draft ``f-draft``.
_VERSIONS = "(draft|v[0-9]+)"


class GroupBy(StrEnum):
    NONE = ""
    FUNCTION = "function_name"  # Fission's function: a version (``f-v2``) or the draft
    PATH = "path"  # the trigger's path (an alias is served by its triggers' paths)
    CODE = "code"


@dataclass(frozen=True)
class PromQL:
    """A query built here; the adapter accepts nothing else."""

    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Scope:
    """Which series a query reads: always one namespace; optionally one portal function, some
    of its Fission names (versions, the draft) and some trigger paths.

    Raises ValueError for a value that is not a DNS label or a route path, so nothing a user
    typed reaches the query without having been checked.
    """

    namespace: str
    function: str | None = None
    fission_names: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    job: str = ""  # the scrape job of the router: then no other target's series can count

    def __post_init__(self) -> None:
        for value in (self.namespace, *filter(None, [self.function]), *self.fission_names):
            if not _DNS_LABEL.fullmatch(value):
                raise ValueError(f"{value!r} is not a DNS label")
        for path in self.paths:
            if not _PATH.fullmatch(path) or len(path) > 300:
                raise ValueError(f"{path!r} is not a route path")
        if self.job and not _JOB.fullmatch(self.job):
            raise ValueError(f"{self.job!r} is not a job name")

    def matchers(self, *, with_paths: bool = True) -> str:
        parts = [f"function_namespace={_string(self.namespace)}"]
        if self.job:
            parts.append(f"job={_string(self.job)}")
        if self.fission_names:
            parts.append(f"function_name=~{_string(_alternatives(self.fission_names))}")
        elif self.function:
            parts.append(f"function_name=~{_string(re.escape(self.function) + '-' + _VERSIONS)}")
        if with_paths and self.paths:
            parts.append(f"path=~{_string(_alternatives(self.paths))}")
        return "{" + ",".join(parts) + "}"


def _string(value: str) -> str:
    """A PromQL double-quoted string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _alternatives(values: tuple[str, ...]) -> str:
    """An RE2 alternation matching exactly these values (PromQL regexes are anchored)."""
    return "|".join(re.escape(value) for value in sorted(set(values)))


def duration(seconds: int) -> str:
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return f"{seconds}s"


def _by(group: GroupBy, extra: str = "") -> str:
    labels = [label for label in (group.value, extra) if label]
    return f" by ({', '.join(labels)})" if labels else ""


def _window_count(metric: str, scope: Scope, window_s: int, *, with_paths: bool = True) -> str:
    """Per series, what it counted in the window (see the module's docstring)."""
    selector = metric + scope.matchers(with_paths=with_paths)
    w = duration(window_s)
    last = f"last_over_time({selector}[{w}])"
    before = f"last_over_time({selector}[{w}] offset {w})"
    reset = f"(resets({selector}[{w}]) > 0)"
    exact = f"((({last} - {before}) >= 0) unless {reset})"
    return f"({exact} or (increase({selector}[{w}]) and {reset}) or {last})"


def count(metric: str, scope: Scope, window_s: int, group: GroupBy = GroupBy.NONE) -> PromQL:
    """How many times ``metric`` counted during the ``window_s`` seconds before the evaluation
    time, summed (optionally by ``group``). Cold starts have no ``path`` label: a scope's paths
    are ignored for them."""
    with_paths = metric != COLD_STARTS
    return PromQL(f"sum{_by(group)} {_window_count(metric, scope, window_s, with_paths=with_paths)}")


def events(scope: Scope, window_s: int) -> PromQL:
    """What the event sources did during the window, by kind, trigger and outcome (no paths: an
    event source is no route)."""
    return PromQL(
        f"sum by (kind, trigger, outcome) {_window_count(EVENTS, scope, window_s, with_paths=False)}"
    )


def quantile(q: float, scope: Scope, window_s: int, group: GroupBy = GroupBy.NONE) -> PromQL:
    """The ``q`` quantile (0 < q < 1) of the round-trip latency, in seconds, of the calls during
    the window; NaN (no value) where there were none."""
    if not 0 < q < 1:
        raise ValueError("a quantile is between 0 and 1")
    buckets = _window_count(LATENCY, scope, window_s)
    return PromQL(f"histogram_quantile({q:g}, sum{_by(group, 'le')} {buckets})")


def calls(scope: Scope, window_s: int, group: GroupBy = GroupBy.NONE) -> PromQL:
    return count(CALLS, scope, window_s, group)


def errors(scope: Scope, window_s: int, group: GroupBy = GroupBy.NONE) -> PromQL:
    """Calls answered with a status >= 400 (Fission counts them as errors)."""
    return count(ERRORS, scope, window_s, group)


def cold_starts(scope: Scope, window_s: int, group: GroupBy = GroupBy.NONE) -> PromQL:
    if group is GroupBy.PATH or group is GroupBy.CODE:
        raise ValueError("cold starts have no path or code label")
    return count(COLD_STARTS, scope, window_s, group)
