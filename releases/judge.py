"""Judging a rollout step: B's calls in the step's window against A's in the same window.

Pure functions over figures already read (releases/selectors.py reads them from Prometheus), so
each rule can be checked by hand. The rules, in the order they are applied:

1. too little traffic: B had fewer than ``min_calls`` calls. The step waits (``Verdict.WAIT``)
   until ``traffic_wait_s`` past its interval, then fails (``Verdict.NO_TRAFFIC``): a step no one
   called says nothing about B, so it is never promoted on silence;
2. error rate: B's above ``max_error_rate`` (absolute);
3. error rate against A: B's above A's by more than ``max_error_rate_increase`` (A judged only
   with at least ``min_calls`` calls of its own in the window, else the rule says it was skipped);
4. latency: B's p95 above ``max_latency_ratio`` times A's p95 (the same condition on A).

A rule set to None is off. Any breach is ``Verdict.BREACH``, with the rule's reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Verdict(StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    WAIT = "wait"
    NO_TRAFFIC = "no_traffic"
    BREACH = "breach"


@dataclass(frozen=True)
class Figures:
    """One version's calls in a window: errors are answers with a status >= 400 (Fission's)."""

    calls: int = 0
    errors: int = 0
    p95_ms: float | None = None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.calls if self.calls else None

    def as_dict(self) -> dict[str, Any]:
        rate = self.error_rate
        return {**asdict(self), "error_rate": None if rate is None else round(rate, 4)}


@dataclass(frozen=True)
class Rules:
    min_calls: int = 20
    traffic_wait_s: int = 600
    max_error_rate: float | None = 0.05
    max_error_rate_increase: float | None = 0.02
    max_latency_ratio: float | None = 2.0


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str
    notes: list[str] = field(default_factory=list)  # rules skipped, and why


def judge(a: Figures, b: Figures, rules: Rules, *, waited_s: float) -> Judgement:
    """The verdict on B (against A) for a window; ``waited_s``: how long the step has run past
    its interval (0 at the first judgement)."""
    if b.calls < rules.min_calls or b.calls == 0:
        needed = max(rules.min_calls, 1)
        reason = f"not enough traffic: B had {b.calls} of the {needed} calls needed"
        if waited_s >= rules.traffic_wait_s:
            return Judgement(Verdict.NO_TRAFFIC, f"{reason} after waiting {rules.traffic_wait_s} s")
        return Judgement(Verdict.WAIT, f"{reason}; waiting up to {rules.traffic_wait_s} s")
    notes: list[str] = []
    for rule in (_absolute_errors, _relative_errors, _latency):
        breach = rule(a, b, rules, notes)
        if breach:
            return Judgement(Verdict.BREACH, breach, notes)
    return Judgement(Verdict.PASS, "B is within every rule", notes)


def _percent(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def _absolute_errors(a: Figures, b: Figures, rules: Rules, notes: list[str]) -> str:
    rate = b.error_rate or 0.0
    if rules.max_error_rate is not None and rate > rules.max_error_rate:
        return (
            f"error rate: B answered {b.errors} of {b.calls} calls with an error ({_percent(rate)}), "
            f"above the {_percent(rules.max_error_rate)} allowed"
        )
    return ""


def _comparable(a: Figures, rules: Rules, rule: str, notes: list[str]) -> bool:
    if a.calls < max(rules.min_calls, 1):
        notes.append(f"{rule} not judged: A had {a.calls} calls in the window")
        return False
    return True


def _relative_errors(a: Figures, b: Figures, rules: Rules, notes: list[str]) -> str:
    limit = rules.max_error_rate_increase
    if limit is None or not _comparable(a, rules, "error rate against A", notes):
        return ""
    a_rate, b_rate = a.error_rate or 0.0, b.error_rate or 0.0
    if b_rate - a_rate > limit:
        return (
            f"error rate against A: B {_percent(b_rate)} ({b.errors} of {b.calls}) against A "
            f"{_percent(a_rate)} ({a.errors} of {a.calls}), more than {_percent(limit)} higher"
        )
    return ""


def _latency(a: Figures, b: Figures, rules: Rules, notes: list[str]) -> str:
    ratio = rules.max_latency_ratio
    if ratio is None or not _comparable(a, rules, "latency", notes):
        return ""
    if a.p95_ms is None or b.p95_ms is None or a.p95_ms <= 0:
        notes.append("latency not judged: no p95 for A or B")
        return ""
    if b.p95_ms > ratio * a.p95_ms:
        return (
            f"latency: B's p95 {b.p95_ms:.1f} ms is {b.p95_ms / a.p95_ms:.1f}x A's {a.p95_ms:.1f} ms, "
            f"above the {ratio:g}x allowed"
        )
    return ""
