"""The rules that judge a step, by hand-computed figures."""

from __future__ import annotations

import pytest

from releases.judge import Figures, Rules, Verdict, judge

RULES = Rules(min_calls=20, traffic_wait_s=60, max_error_rate=0.05, max_error_rate_increase=0.02,
              max_latency_ratio=2.0)  # fmt: skip
A = Figures(calls=400, errors=4, p95_ms=10.0)  # 1 % errors


def test_a_healthy_b_passes() -> None:
    verdict = judge(A, Figures(calls=40, errors=0, p95_ms=12.0), RULES, waited_s=0)
    assert verdict.verdict is Verdict.PASS
    assert verdict.notes == []


def test_too_few_calls_wait_then_fail_rather_than_pass() -> None:
    b = Figures(calls=19, errors=0, p95_ms=5.0)
    waiting = judge(A, b, RULES, waited_s=59.9)
    assert waiting.verdict is Verdict.WAIT
    assert "19 of the 20 calls" in waiting.reason
    failed = judge(A, b, RULES, waited_s=60)
    assert failed.verdict is Verdict.NO_TRAFFIC
    assert failed.reason.startswith("not enough traffic")


def test_no_call_at_all_is_never_enough_even_with_min_calls_zero() -> None:
    rules = Rules(min_calls=0, traffic_wait_s=0)
    assert judge(A, Figures(), rules, waited_s=0).verdict is Verdict.NO_TRAFFIC


def test_an_error_rate_above_the_absolute_limit_is_a_breach() -> None:
    verdict = judge(A, Figures(calls=100, errors=30, p95_ms=10.0), RULES, waited_s=0)
    assert verdict.verdict is Verdict.BREACH
    assert verdict.reason.startswith("error rate: B answered 30 of 100 calls with an error (30.0%)")


def test_an_error_rate_above_a_by_more_than_the_margin_is_a_breach() -> None:
    # 4 % is under the 5 % absolute limit, but 3 points above A's 1 %.
    verdict = judge(A, Figures(calls=100, errors=4, p95_ms=10.0), RULES, waited_s=0)
    assert verdict.verdict is Verdict.BREACH
    assert verdict.reason.startswith("error rate against A: B 4.0% (4 of 100) against A 1.0% (4 of 400)")
    assert judge(A, Figures(calls=100, errors=3, p95_ms=10.0), RULES, waited_s=0).verdict is Verdict.PASS


def test_a_p95_more_than_the_ratio_times_a_is_a_breach() -> None:
    verdict = judge(A, Figures(calls=100, errors=0, p95_ms=50.0), RULES, waited_s=0)
    assert verdict.verdict is Verdict.BREACH
    assert verdict.reason == "latency: B's p95 50.0 ms is 5.0x A's 10.0 ms, above the 2x allowed"
    assert judge(A, Figures(calls=100, errors=0, p95_ms=20.0), RULES, waited_s=0).verdict is Verdict.PASS


def test_rules_against_a_are_skipped_and_said_so_when_a_had_too_few_calls() -> None:
    quiet_a = Figures(calls=3, errors=0, p95_ms=1.0)
    verdict = judge(quiet_a, Figures(calls=100, errors=4, p95_ms=50.0), RULES, waited_s=0)
    assert verdict.verdict is Verdict.PASS
    assert verdict.notes == [
        "error rate against A not judged: A had 3 calls in the window",
        "latency not judged: A had 3 calls in the window",
    ]


@pytest.mark.parametrize("rule", ["max_error_rate", "max_error_rate_increase", "max_latency_ratio"])
def test_a_rule_set_to_none_is_off(rule: str) -> None:
    rules = Rules(**{**RULES.__dict__, "max_error_rate": None, "max_error_rate_increase": None,
                     "max_latency_ratio": None, rule: getattr(RULES, rule)})  # fmt: skip
    bad = Figures(calls=100, errors=30, p95_ms=500.0)
    assert judge(A, bad, rules, waited_s=0).verdict is Verdict.BREACH
    off = Rules(**{**RULES.__dict__, rule: None, "max_error_rate": None, "max_error_rate_increase": None,
                   "max_latency_ratio": None})  # fmt: skip
    assert judge(A, bad, off, waited_s=0).verdict is Verdict.PASS
