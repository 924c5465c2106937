"""Fission's cron syntax, checked as strictly as its timer parses it, and the times it fires at.

Fission's timer (``pkg/timer/timer.go``, v1.27) parses ``spec.cron`` with robfig/cron v3.0.1 and
``NewParser(SecondOptional | Minute | Hour | Dom | Month | Dow | Descriptor)``, with no location
(``time.Local``: UTC in Fission's images). So a schedule is one of:

- five fields ``minute hour day-of-month month day-of-week``, or six with a leading ``second``.
  A field is a comma list of items; an item is ``*`` or ``?`` (any value), ``n`` or ``a-b``, each
  with an optional ``/step`` (``n/step`` means ``n-max/step``). Bounds: second and minute 0-59,
  hour 0-23, day-of-month 1-31, month 1-12 or ``jan``-``dec``, day-of-week 0-6 or ``sun``-``sat``
  (0 is Sunday; names in any case). As in robfig (and Vixie cron), a day must match both
  day-of-month and day-of-week when either is a bare ``*``/``?`` (no step above 1), and either
  one otherwise: ``0 0 13 * 5`` runs on the 13th and on Fridays.
- a descriptor, exactly: ``@yearly`` ``@annually`` ``@monthly`` ``@weekly`` ``@daily``
  ``@midnight`` ``@hourly`` (midnight, or the full hour, of the schedule's zone).
- ``@every <Go duration>``: ``@every 90s``, ``@every 1m30s``, ``@every 1.5h`` (units h m s ms us ns).
- any of these after ``CRON_TZ=<IANA zone> `` or ``TZ=<IANA zone> ``; without it, UTC.

Refused here although robfig accepts it (each is surely a mistake, or runs other than it reads):

- ``@every`` below 1 s or with a fraction of a second: robfig runs below 1 s every second and
  truncates the rest (``@every 1500ms`` runs every 1 s; ``@every 0s`` and negative ones, every 1 s);
- an empty list item (``1,,2``; a lone ``,`` matches nothing, and the schedule never runs);
- ``*-5``: robfig ignores what follows ``*-``; a signed number (``+5``: Go's Atoi reads it);
- a schedule that never fires (``0 0 30 2 *``): robfig accepts it and never runs it;
- ``TZ=`` with nothing after the zone (robfig v3.0.1 panics), with no zone (robfig: UTC), or
  ``Local`` (the zone of whatever machine runs the timer).

Refused although croniter (which computes the fire times here) accepts it, since robfig does
not: ``L``, ``W``, ``#`` and ``H`` (hashed) items, 7 for Sunday, a seventh (year) field, ranges
that wrap (``22-2``), descriptors in other cases (``@Daily``). A valid schedule is handed to
croniter as six plain fields (lists of numbers), built so that its day rule gives robfig's.

Daylight saving time (with a ``CRON_TZ``) is as robfig's: a wall time skipped by the spring
change does not fire that day, one repeated by the autumn change fires at both instants.

Where the two differ, on purpose: ``@every d`` ticks at the multiples of ``d`` since the Unix
epoch (``@every 1h`` on the hour UTC, ``@every 90s`` at 00:00:00, 00:01:30, ...), whereas robfig
counts from when the timer added the entry (so restarting Fission's timer shifts them). Fixed
ticks let a restarted runtime tell which tick it already fired (``runtime.events.timers``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from fractions import Fraction
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = timedelta(microseconds=1)
MONTHS = dict(zip(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
                  range(1, 13), strict=True))  # fmt: skip
DAYS = dict(zip(("sun", "mon", "tue", "wed", "thu", "fri", "sat"), range(7), strict=True))
# robfig's descriptors as the six fields they stand for (the day rule included: ``@weekly`` has a
# bare ``*`` day-of-month, so it runs on Sundays only).
DESCRIPTORS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
_EVERY = "@every "
_GO_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
             "h": 3600 * 10**9}  # fmt: skip
_GO_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?(ns|us|µs|μs|ms|s|m|h)")
_GO_MAX_NS = 2**63 - 1
_NUMBER = re.compile(r"[0-9]+")
_QUARTZ = re.compile(r"[0-9]*[LW][0-9]*|[0-9]+#[0-9]+|H(\(.*\))?(/.*)?", re.IGNORECASE)
# Days in each month at most (February: 29, it comes every four years).
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class InvalidSchedule(ValueError):
    """A schedule Fission's timer would refuse, or that would not run as written. The message
    names what is wrong, for the person who wrote it."""


@dataclass(frozen=True)
class _Field:
    label: str
    low: int
    high: int
    names: dict[str, int] | None = None


FIELDS = (
    _Field("second", 0, 59),
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, MONTHS),
    _Field("day-of-week", 0, 6, DAYS),
)
_DOM, _MONTH, _DOW = 3, 4, 5


@dataclass(frozen=True)
class _Values:
    """One parsed field: the values it allows, and whether it was a bare ``*``/``?`` (robfig's
    star bit, which decides how day-of-month and day-of-week combine)."""

    values: frozenset[int]
    star: bool


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule. ``every`` (seconds) for ``@every``, else ``cron``: six croniter fields,
    seconds first, in ``zone``, and ``clock``: the seconds, minutes and hours it allows."""

    expr: str
    zone: tzinfo = UTC
    every: int | None = None
    cron: str = ""
    clock: tuple[frozenset[int], ...] = field(default=(), repr=False)

    @classmethod
    def parse(cls, expr: str) -> Schedule:
        """The schedule ``expr`` stands for; InvalidSchedule naming what is wrong otherwise."""
        zone, rest = _zone(expr)
        if rest.strip().startswith("@"):
            return cls._descriptor(expr, zone, rest)
        fields = rest.split()
        if len(fields) not in (5, 6):
            raise InvalidSchedule(
                "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with leading seconds,"
                f" found {len(fields)} in '{expr}'"
            )
        offset = 6 - len(fields)  # the five-field form starts at the minute
        return cls(expr, zone, None, *_cron_fields(["0"] * offset + fields, offset))

    @classmethod
    def _descriptor(cls, expr: str, zone: tzinfo, text: str) -> Schedule:
        if text != text.strip():  # robfig matches descriptors exactly
            raise InvalidSchedule(f"'{text}' has spaces around it: write '{text.strip()}'")
        if text.startswith(_EVERY) or text == "@every":
            return cls(expr=expr, zone=zone, every=_every_seconds(text))
        if text not in DESCRIPTORS:
            known = ", ".join(DESCRIPTORS)
            raise InvalidSchedule(
                f"unknown descriptor '{text}': use one of {known}, or '@every <duration>' as '@every 90s'"
            )
        return cls(expr, zone, None, *_cron_fields(DESCRIPTORS[text].split(), 0))

    def next_after(self, t: datetime) -> datetime:
        """The first fire time strictly after ``t`` (timezone-aware), in UTC."""
        if t.tzinfo is None:
            raise ValueError("next_after needs a timezone-aware datetime")
        if self.every is not None:
            period = self.every * 1_000_000
            return EPOCH + _ONE_MICROSECOND * ((_micros(t) // period + 1) * period)
        return next(self._cron_ticks(t))

    def upcoming(self, n: int, after: datetime) -> list[datetime]:
        """The next ``n`` fire times after ``after``, in UTC."""
        if self.every is not None:
            times, t = [], after
            for _ in range(n):
                t = self.next_after(t)
                times.append(t)
            return times
        ticks = self._cron_ticks(after)
        return [next(ticks) for _ in range(n)]

    def count_between(self, start: datetime, end: datetime, limit: int) -> int:
        """How many fire times fall in (``start``, ``end``], at most ``limit``."""
        if end <= start:
            return 0
        if self.every is not None:
            period = self.every * 1_000_000
            return min(limit, _micros(end) // period - _micros(start) // period)
        count = 0
        for tick in self._cron_ticks(start):
            if tick > end or count >= limit:
                break
            count += 1
        return count

    def _cron_ticks(self, after: datetime) -> Iterator[datetime]:
        """croniter's fire times after ``after``, in UTC, strictly increasing, without the ones at a
        wall time the schedule does not name: croniter moves a time skipped by the change to
        daylight saving time to the end of the gap, robfig does not run it."""
        times = croniter(self.cron, after.astimezone(self.zone), second_at_beginning=True)
        seconds, minutes, hours = self.clock
        last = after
        while True:
            tick = times.get_next(datetime).astimezone(UTC)
            wall = tick.astimezone(self.zone)
            if tick > last and wall.second in seconds and wall.minute in minutes and wall.hour in hours:
                last = tick
                yield tick


def _micros(t: datetime) -> int:
    return (t - EPOCH) // _ONE_MICROSECOND


def _zone(expr: str) -> tuple[tzinfo, str]:
    """The ``CRON_TZ=``/``TZ=`` zone of ``expr`` (UTC without one) and the schedule after it."""
    if not expr.strip():
        raise InvalidSchedule("the schedule is empty")
    if not expr.startswith(("TZ=", "CRON_TZ=")):
        return UTC, expr
    prefix, _, name = expr.partition(" ")[0].partition("=")
    if " " not in expr or not expr.partition(" ")[2].strip():
        raise InvalidSchedule(f"{prefix}=<zone> must be followed by a space and the schedule, e.g. "
                              f"'{prefix}=Europe/Berlin 0 9 * * *'")  # fmt: skip
    if not name:
        raise InvalidSchedule(f"'{prefix}=' names no time zone, e.g. '{prefix}=Europe/Berlin'")
    if name == "Local":
        raise InvalidSchedule(f"'{prefix}=Local' means the zone of whichever machine runs the timer: "
                              "name a zone, e.g. 'CRON_TZ=Europe/Berlin'")  # fmt: skip
    try:
        zone: tzinfo = UTC if name == "UTC" else ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(f"unknown time zone '{name}' in '{prefix}={name}': use an IANA name, "
                              "e.g. Europe/Berlin or America/New_York") from None  # fmt: skip
    return zone, expr.partition(" ")[2].strip()


def _every_seconds(text: str) -> int:
    """The whole seconds of ``@every <duration>``."""
    duration = text[len(_EVERY) :] if text.startswith(_EVERY) else ""
    if not duration:
        raise InvalidSchedule("@every needs a duration, e.g. '@every 90s' or '@every 1h30m'")
    nanoseconds = parse_go_duration(duration)
    if nanoseconds <= 0:
        raise InvalidSchedule(f"'@every {duration}' must be positive (Fission's timer would run it every 1s)")
    if nanoseconds % 10**9:
        ran = max(1, nanoseconds // 10**9)
        raise InvalidSchedule(
            f"'@every {duration}': Fission's timer runs @every schedules in whole seconds only (it would run "
            f"this every {ran}s): write a whole number of seconds, at least 1s"
        )
    return nanoseconds // 10**9


def parse_go_duration(text: str) -> int:
    """Nanoseconds of a Go ``time.ParseDuration`` string (``1h30m``, ``1.5s``, ``-2m``, ``0``);
    InvalidSchedule when Go would refuse it."""
    problem = InvalidSchedule(
        f"'{text}' is not a duration: write a number and a unit, e.g. 90s, 1m30s, 1.5h"
        " (units h, m, s, ms, us, ns)"
    )
    sign, body = (-1, text[1:]) if text.startswith("-") else (1, text.removeprefix("+"))
    if body == "0":
        return 0
    if not body:
        raise problem
    total, position = Fraction(0), 0
    while position < len(body):
        part = _GO_PART.match(body, position)
        if part is None or not (part.group(1) or part.group(2)):
            raise problem
        whole, fraction, unit = part.group(1) or "0", part.group(2) or "", part.group(3)
        total += (int(whole) + Fraction(int(fraction or "0"), 10 ** len(fraction))) * _GO_UNITS[unit]
        position = part.end()
    if total > _GO_MAX_NS:
        raise InvalidSchedule(f"'{text}' is too long a duration (Go's durations end at about 292 years)")
    return sign * int(total)


def _cron_fields(fields: list[str], offset: int) -> tuple[str, tuple[frozenset[int], ...]]:
    """Six croniter fields for robfig's six ``fields``, and the seconds, minutes and hours they
    allow. The first ``offset`` fields were not written by the user (messages number the others)."""
    parsed = [_parse_field(text, FIELDS[index], index + 1 - offset) for index, text in enumerate(fields)]
    _check_fires(parsed)
    out = [_render(values, FIELDS[index]) for index, values in enumerate(parsed)]
    dom, dow = parsed[_DOM], parsed[_DOW]
    if not (dom.star or dow.star) and (_full(dom, FIELDS[_DOM]) or _full(dow, FIELDS[_DOW])):
        # robfig: either day field may match, and one allowing every day lets every day match;
        # croniter requires both as soon as one is '*' (how a full field is written here).
        out[_DOM] = out[_DOW] = "*"
    return " ".join(out), tuple(values.values for values in parsed[:3])


def _full(values: _Values, spec: _Field) -> bool:
    return len(values.values) == spec.high - spec.low + 1


def _render(values: _Values, spec: _Field) -> str:
    if _full(values, spec):
        return "*"
    return ",".join(str(value) for value in sorted(values.values))


def _check_fires(parsed: list[_Values]) -> None:
    """Refuse a schedule whose days never come: only possible when a day must match both day
    fields and day-of-week allows every day, so that some month given must have a day given."""
    dom, month, dow = parsed[_DOM], parsed[_MONTH], parsed[_DOW]
    if dom.star or not dow.star:
        return
    if any(day <= _MONTH_DAYS[m - 1] for m in month.values for day in dom.values):
        return
    days = " or ".join(str(day) for day in sorted(dom.values))
    months = " or ".join(name for name, number in MONTHS.items() if number in month.values)
    raise InvalidSchedule(f"the schedule never fires: there is no day {days} in {months}")


def _parse_field(text: str, spec: _Field, number: int) -> _Values:
    where = f"field {number} ({spec.label})"
    items = text.split(",")
    if any(not item for item in items):
        raise InvalidSchedule(f"{where} '{text}' has an empty list item")
    values: set[int] = set()
    star = False
    for item in items:
        item_values, item_star = _parse_item(item, spec, where)
        values |= item_values
        star = star or item_star
    return _Values(frozenset(values), star)


def _parse_item(item: str, spec: _Field, where: str) -> tuple[set[int], bool]:
    """robfig's ``getRange``: ``*``/``?``, ``n`` or ``a-b``, optionally ``/step``."""
    range_part, slash, step_part = item.partition("/")
    if "/" in step_part:
        raise InvalidSchedule(f"{where} '{item}' has more than one '/'")
    bounds = range_part.split("-")
    star = range_part in ("*", "?")
    if star:
        low, high = spec.low, spec.high
    elif bounds[0] in ("*", "?"):
        raise InvalidSchedule(f"{where} '{item}': '{bounds[0]}' cannot start a range (write '*' or a-b)")
    elif len(bounds) > 2:
        raise InvalidSchedule(f"{where} '{item}' has more than one '-'")
    else:
        low = _value(bounds[0], spec, where)
        high = _value(bounds[1], spec, where) if len(bounds) == 2 else low
    step = 1
    if slash:
        if not _NUMBER.fullmatch(step_part):
            raise InvalidSchedule(f"{where} '{item}': the step '{step_part}' is not a number")
        step = int(step_part)
        if step == 0:
            raise InvalidSchedule(f"{where} '{item}': the step must be at least 1")
        if len(bounds) == 1:
            high = spec.high  # robfig: "n/step" is "n-max/step"
        star = star and step == 1
    if low > high:
        raise InvalidSchedule(
            f"{where} '{item}': the range starts after it ends (ranges do not wrap around; write two)"
        )
    return set(range(low, high + 1, step)), star


def _value(token: str, spec: _Field, where: str) -> int:
    if spec.names and token.lower() in spec.names:
        return spec.names[token.lower()]
    if not _NUMBER.fullmatch(token):
        names = {"month": " or a month name (jan-dec)", "day-of-week": " or a day name (sun-sat)"}
        hint = names.get(spec.label, "")
        if _QUARTZ.fullmatch(token):
            hint += "; L, W, # and H are not part of Fission's cron syntax"
        raise InvalidSchedule(f"{where} '{token}' is not a number{hint}")
    value = int(token)
    if not spec.low <= value <= spec.high:
        sunday = " (0 is Sunday)" if spec.label == "day-of-week" and value == 7 else ""
        raise InvalidSchedule(f"{where} '{token}' is out of range {spec.low}-{spec.high}{sunday}")
    return value
