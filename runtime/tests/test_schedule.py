"""Fission's cron syntax (robfig/cron v3 as Fission's timer configures it) and its fire times.

Several expected times are robfig's own (its ``spec_test.go``), so that these tests pin the
behaviour of Fission's timer rather than of croniter."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from runtime.schedule import InvalidSchedule, Schedule, parse_go_duration


def at(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def nexts(expr: str, after: str, n: int = 3) -> list[str]:
    return [t.isoformat().replace("+00:00", "Z") for t in Schedule.parse(expr).upcoming(n, at(after))]


def test_five_fields_start_at_the_minute_and_six_at_the_second():
    assert nexts("*/15 * * * *", "2026-01-01T00:07:30") == [
        "2026-01-01T00:15:00Z", "2026-01-01T00:30:00Z", "2026-01-01T00:45:00Z",
    ]  # fmt: skip
    assert nexts("*/20 * * * * *", "2026-01-01T00:00:00") == [
        "2026-01-01T00:00:20Z", "2026-01-01T00:00:40Z", "2026-01-01T00:01:00Z",
    ]  # fmt: skip


def test_next_is_strictly_after_and_in_utc():
    schedule = Schedule.parse("0 * * * * *")
    assert schedule.next_after(at("2026-01-01T00:01:00")) == at("2026-01-01T00:02:00")
    assert schedule.next_after(at("2026-01-01T00:00:59.999999")) == at("2026-01-01T00:01:00")
    assert schedule.next_after(at("2026-01-01T01:01:00+01:00")).tzinfo == UTC
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.next_after(datetime(2026, 1, 1))  # naive: the point of the test


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        # robfig's TestNext: wrapping fields, steps from a start, names, leap years.
        ("0 20-35/15 * * * *", "2012-07-09T15:45:00", "2012-07-09T16:20:00"),
        ("15/35 20-35/15 1/2 * * *", "2012-07-09T23:35:51", "2012-07-10T01:20:15"),
        ("15/35 20-35/15 1/2 */2 * *", "2012-07-09T23:35:51", "2012-07-11T01:20:15"),
        ("15/35 20-35/15 * 9-20 Jul *", "2012-07-09T23:35:51", "2012-07-10T00:20:15"),
        ("0 0 0 9 Apr-Oct ?", "2012-07-09T23:35:00", "2012-08-09T00:00:00"),
        ("0 0 0 */5 Apr,Aug,Oct Mon", "2012-07-09T23:35:00", "2012-08-01T00:00:00"),
        ("0 0 0 * Feb Mon/2", "2012-07-09T23:35:00", "2013-02-01T00:00:00"),
        ("0 0 0 29 Feb ?", "2012-07-09T23:35:00", "2016-02-29T00:00:00"),
        ("0 * * * * *", "2012-12-31T23:59:45", "2013-01-01T00:00:00"),
        # Day-of-month and day-of-week: either when both are restricted, both when one is '*'.
        ("* * 1,15 * Sun", "2012-06-14T23:59:59", "2012-06-15T00:00:00"),  # a Friday the 15th
        ("* * */10 * Sun", "2012-07-14T23:59:59", "2012-07-15T00:00:00"),
        ("0 0 * * Mon", "2012-07-14T23:59:59", "2012-07-16T00:00:00"),
        ("0 0 1,15 * *", "2012-07-09T00:00:00", "2012-07-15T00:00:00"),
        ("0 0 1-31 * Mon", "2012-07-09T12:00:00", "2012-07-10T00:00:00"),  # 1-31 is not '*': every day
        ("0 0 */1 * Mon", "2012-07-09T12:00:00", "2012-07-16T00:00:00"),  # '*/1' is '*'
        ("0 0 13 * 5", "2026-01-01T00:00:00", "2026-01-02T00:00:00"),
        ("0 9 * * mon-FRI", "2026-01-03T00:00:00", "2026-01-05T09:00:00"),  # Saturday to Monday
    ],
)
def test_fire_times_are_robfigs(expr, after, expected):
    assert Schedule.parse(expr).next_after(at(after)) == at(expected)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("@hourly", ["2012-07-09T16:00:00Z", "2012-07-09T17:00:00Z"]),
        ("@daily", ["2012-07-10T00:00:00Z", "2012-07-11T00:00:00Z"]),
        ("@midnight", ["2012-07-10T00:00:00Z", "2012-07-11T00:00:00Z"]),
        ("@weekly", ["2012-07-15T00:00:00Z", "2012-07-22T00:00:00Z"]),  # Sundays
        ("@monthly", ["2012-08-01T00:00:00Z", "2012-09-01T00:00:00Z"]),
        ("@yearly", ["2013-01-01T00:00:00Z", "2014-01-01T00:00:00Z"]),
        ("@annually", ["2013-01-01T00:00:00Z", "2014-01-01T00:00:00Z"]),
    ],
)
def test_descriptors(expr, expected):
    assert nexts(expr, "2012-07-09T15:04:00", 2) == expected


@pytest.mark.parametrize(
    ("expr", "seconds"), [("@every 1s", 1), ("@every 90s", 90), ("@every 1m30s", 90), ("@every 1.5h", 5400),
                          ("@every 2h45m", 9900), ("@every 1000ms", 1), ("@every 0.5m", 30)],
)  # fmt: skip
def test_every_takes_go_durations(expr, seconds):
    assert Schedule.parse(expr).every == seconds


def test_every_ticks_on_multiples_of_its_period_since_the_epoch():
    assert nexts("@every 90s", "2026-01-01T00:00:00") == [
        "2026-01-01T00:01:30Z", "2026-01-01T00:03:00Z", "2026-01-01T00:04:30Z",
    ]  # fmt: skip
    assert nexts("@every 1h", "2026-01-01T10:59:59.999") == [
        "2026-01-01T11:00:00Z", "2026-01-01T12:00:00Z", "2026-01-01T13:00:00Z",
    ]  # fmt: skip
    every_7s = Schedule.parse("@every 7s")
    tick = every_7s.next_after(at("2026-05-05T05:05:05.5"))
    assert (tick - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() % 7 == 0
    assert every_7s.next_after(tick) == tick + timedelta(seconds=7)  # strictly after a tick


def test_time_zone_prefixes_and_daylight_saving_as_robfig():
    berlin = Schedule.parse("CRON_TZ=Europe/Berlin 0 9 * * *")
    assert berlin.next_after(at("2026-07-01T00:00:00")) == at("2026-07-01T07:00:00")  # CEST
    assert berlin.next_after(at("2026-12-01T00:00:00")) == at("2026-12-01T08:00:00")  # CET
    new_york = "TZ=America/New_York "
    # robfig's TestNext: 2:00 does not exist on the spring change and does not fire that day...
    assert Schedule.parse(new_york + "0 0 2 * * ?").next_after(at("2012-03-11T00:00:00-05:00")) == at(
        "2012-03-12T02:00:00-04:00"
    )
    assert Schedule.parse(new_york + "0 0 * * * ?").next_after(at("2012-03-11T01:00:00-05:00")) == at(
        "2012-03-11T03:00:00-04:00"
    )
    # ...and 1:30 happens twice on the autumn change, and fires twice.
    assert Schedule.parse(new_york + "0 30 1 04 Nov ?").next_after(at("2012-11-04T01:45:00-04:00")) == at(
        "2012-11-04T01:30:00-05:00"
    )


def test_upcoming_is_strictly_increasing_across_daylight_saving_changes():
    for expr in ("CRON_TZ=Europe/Berlin 0 */20 * * * *", "CRON_TZ=Europe/Berlin 30 2 * * *"):
        ticks = Schedule.parse(expr).upcoming(200, at("2026-10-24T00:00:00"))
        assert all(a < b for a, b in itertools.pairwise(ticks))
        ticks = Schedule.parse(expr).upcoming(200, at("2026-03-28T00:00:00"))
        assert all(a < b for a, b in itertools.pairwise(ticks))


def test_count_between_counts_ticks_in_the_half_open_interval():
    every = Schedule.parse("@every 1s")
    assert every.count_between(at("2026-01-01T00:00:00"), at("2026-01-01T00:00:10"), 1000) == 10
    assert every.count_between(at("2026-01-01T00:00:00.5"), at("2026-01-01T00:00:01.5"), 1000) == 1
    assert every.count_between(at("2026-01-01T00:00:00"), at("2026-01-02T00:00:00"), 1000) == 1000
    assert every.count_between(at("2026-01-01T00:00:05"), at("2026-01-01T00:00:00"), 1000) == 0
    cron = Schedule.parse("*/15 * * * * *")
    assert cron.count_between(at("2026-01-01T00:00:00"), at("2026-01-01T00:01:00"), 1000) == 4
    assert cron.count_between(at("2026-01-01T00:00:00"), at("2026-01-01T01:00:00"), 10) == 10


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 25 * * *", "field 2 (hour) '25' is out of range 0-23"),
        ("60 * * * * *", "field 1 (second) '60' is out of range 0-59"),
        ("* * 0 * *", "field 3 (day-of-month) '0' is out of range 1-31"),
        ("* * * 13 *", "field 4 (month) '13' is out of range 1-12"),
        ("* * * * 7", "field 5 (day-of-week) '7' is out of range 0-6 (0 is Sunday)"),
        ("* * * *", "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with leading"),
        ("* * *", "seconds, found 3"),
        ("0 0 0 * * * 2026", "found 7"),
        ("", "the schedule is empty"),
        ("* * * jun-jan *", "field 4 (month) 'jun-jan': the range starts after it ends"),
        ("22-2 * * * *", "the range starts after it ends"),
        ("*/0 * * * *", "field 1 (minute) '*/0': the step must be at least 1"),
        ("*/x * * * *", "the step 'x' is not a number"),
        ("1,,2 * * * *", "field 1 (minute) '1,,2' has an empty list item"),
        (", * * * *", "has an empty list item"),
        ("*-5 * * * *", "'*' cannot start a range"),
        ("+5 * * * *", "field 1 (minute) '+5' is not a number"),
        ("1-2-3 * * * *", "more than one '-'"),
        ("1/2/3 * * * *", "more than one '/'"),
        ("* * * foo *", "field 4 (month) 'foo' is not a number or a month name (jan-dec)"),
        ("* * * * funday", "is not a number or a day name (sun-sat)"),
        ("* * mon * *", "field 3 (day-of-month) 'mon' is not a number"),
        ("0 0 L * *", "L, W, # and H are not part of Fission's cron syntax"),
        ("0 0 15W * *", "L, W, # and H"),
        ("0 0 * * 5#2", "L, W, # and H"),
        ("H * * * *", "L, W, # and H"),
        ("0 0 30 2 *", "the schedule never fires: there is no day 30 in feb"),
        ("0 0 31 apr,jun *", "there is no day 31 in apr or jun"),
        ("@Daily", "unknown descriptor '@Daily'"),
        ("@reboot", "unknown descriptor '@reboot'"),
        ("@daily ", "'@daily ' has spaces around it: write '@daily'"),
        ("@every", "@every needs a duration"),
        ("@every 5", "'5' is not a duration"),
        ("@every 1d", "'1d' is not a duration"),
        ("@every  5s", "is not a duration"),
        ("@every 500ms", "whole seconds only (it would run this every 1s)"),
        ("@every 1500ms", "whole seconds only (it would run this every 1s)"),
        ("@every 0s", "must be positive"),
        ("@every -1m", "must be positive"),
        ("@every 3000000h", "too long"),
        ("TZ=UTC", "TZ=<zone> must be followed by a space and the schedule"),
        ("CRON_TZ=Europe/Berlin ", "must be followed by a space and the schedule"),
        ("CRON_TZ= 0 * * * *", "'CRON_TZ=' names no time zone"),
        ("TZ=Local 0 * * * *", "'TZ=Local' means the zone of whichever machine runs the timer"),
        ("TZ=Mars/Olympus 0 * * * *", "unknown time zone 'Mars/Olympus'"),
        ("TZ=../etc/passwd 0 * * * *", "unknown time zone"),
        ("TZ=UTC 0 25 * * *", "field 2 (hour) '25' is out of range 0-23"),
    ],
)
def test_invalid_schedules_say_what_is_wrong(expr, message):
    with pytest.raises(InvalidSchedule) as caught:
        Schedule.parse(expr)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "expr",
    ["@every 1s", "@every 1h30m", "TZ=UTC @hourly", "CRON_TZ=Asia/Tokyo @daily", "  0 * * * *  ",
     "0  0\t* * *", "? ? ? ? ?", "0/1 0-23 */1 * *", "5 4 * * sun", "0 0 0 29 2 *", "00 07 * * *",
     "59 59 23 31 12 6"],
)  # fmt: skip
def test_valid_schedules(expr):
    assert Schedule.parse(expr).upcoming(5, at("2026-01-01T00:00:00"))


@pytest.mark.parametrize(
    ("text", "nanoseconds"),
    [("0", 0), ("1s", 10**9), ("1.5s", 1_500_000_000), ("1h2m3s", 3723 * 10**9), ("-2m", -120 * 10**9),
     ("+1ms", 10**6), ("1µs", 1000), ("1us", 1000), ("3ns", 3), (".5s", 500_000_000), ("1.s", 10**9)],
)  # fmt: skip
def test_go_durations(text, nanoseconds):
    assert parse_go_duration(text) == nanoseconds


@pytest.mark.parametrize("text", ["", "1", ".s", "s", "1 s", "1S", "-", "1h-2m", "1e3s"])
def test_go_refuses_these_durations(text):
    with pytest.raises(InvalidSchedule, match="is not a duration"):
        parse_go_duration(text)
