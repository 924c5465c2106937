"""Time triggers: each TimeTrigger's schedule calls its function, as Fission's timer does.

A fire is what Fission's timer sends (``pkg/timer/timer.go`` and ``pkg/publisher/webhookPublisher.go``,
v1.27): a request with the trigger's ``method`` to the router's internal route of the function,
``/fission-function/<function>`` + ``subpath`` (the function sees ``subpath`` as its path), an
empty body and one header of its own, ``X-Fission-Timer-Name: <trigger>``. The router adds
``X-Fission-Request-ID`` (a new id per fire) and ``X-Fission-Function-*``: ``call_function`` does
both here. Not sent here: what Go's HTTP client adds (``User-Agent: Go-http-client/1.1``,
``Accept-Encoding: gzip``), and the ``traceparent`` and ``X-Fission-Auth-*`` headers a Fission
with tracing or internal authentication adds.

Guarantees (each has a test in runtime/tests/test_timers.py):

- **At most once per tick, also across restarts.** Before a tick is fired it is claimed: written,
  with the trigger's counters, to ``<state>/timers/<uid>.json`` (a new file renamed over the old,
  file and directory fsynced), keyed by the trigger's ``metadata.uid`` so that a trigger deleted
  and created again starts afresh. A tick is never fired unless its claim is on disk, and a
  runtime never fires a tick at or before the one claimed. The claim is written
  ``CLAIM_LEAD`` before the tick (100 triggers claiming at once take tens of milliseconds on this
  machine's disk, which would otherwise be jitter); a runtime stopped between claim and tick
  writes the claim back (the tick did not fire), and one killed there skips that tick.
- **Missed ticks are not run late** (as Fission's timer, which does not catch up either): ticks
  that fell while the runtime was down, or while this loop was held up past the next tick, are
  counted (``missed``, metric outcome ``missed``) and logged. A held-up loop still fires the
  tick it was waiting for, once, as robfig/cron does.
- **Overlap: skip.** A tick that comes while the trigger's previous fire is still running is
  skipped and counted (``skipped``, outcome ``skipped_overlap``), never queued. Fission's
  publisher sends one request at a time per trigger and queues the rest, so a function slower
  than its schedule builds a backlog there; here it does not.
- **On time.** Each tick is computed from the schedule (never by adding periods, so nothing
  drifts), the next one before the tick comes, and waited for on the wall clock by one
  ``TickClock`` for every trigger: it wakes within tens of microseconds of the tick (the event
  loop alone is a millisecond or two late) and starts the calls of every trigger due then before
  anything else runs. ``lastFire.lateMs`` says how late the call started.

Also different from Fission on purpose: Fission retries a fire that got 404 or no answer up to
10 times (a route can lag behind its trigger there); here a route never lags, and a refusal
(429, 502) is the answer: counted as a failure, not retried. ``@every`` ticks are fixed to the
epoch (``runtime.schedule``). Outcomes (``faas_trigger_events_total``, kind ``timer``):
``fired`` (answered 2xx/3xx), ``failed`` (>= 400, a refusal, or a tick that could not be
claimed), ``skipped_overlap``, ``missed``; every call is also counted as the router counts
Fission's timer calls, on path ``/fission-function/<function>``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import math
import os
import re
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from runtime import metrics
from runtime.http import request_id_or_new
from runtime.invoke import call_function
from runtime.schedule import EPOCH, InvalidSchedule, Schedule

if TYPE_CHECKING:
    from runtime.executor import Executor
    from runtime.objects import TimeTrigger

log = logging.getLogger(__name__)

TIMER_NAME = b"X-Fission-Timer-Name"
CLAIM_LEAD = 0.25  # seconds before its tick that a tick is claimed on disk
MAX_SLEEP = 30.0  # a long wait is cut up, so that a step of the wall clock is noticed
MISSED_LIMIT = 1000  # missed ticks counted per gap at most (a week down at @every 1s counts 1000)
ERROR_CHARS = 300
_SAFE_PATH = "/?&=%:@!$'()*+,;~"
_UID = re.compile(r"[A-Za-z0-9-]{1,64}")

Key = tuple[str, str]


@dataclass
class TimerState:
    """What is kept of one trigger between runs: its claim and what its fires did.

    ``claimed``: no tick at or before it fires again (epoch seconds). ``last_tick``: the last tick
    that came while a runtime ran, fired or skipped."""

    uid: str
    namespace: str
    name: str
    claimed: int | None = None
    last_tick: int | None = None
    fires: int = 0
    failures: int = 0
    skipped: int = 0
    missed: int = 0
    last_fire: dict[str, Any] | None = None
    last_error: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TimerState:
        names = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in data.items() if key in names})


class TickStore:
    """Timer states on disk, one small JSON file per trigger uid, each replaced atomically and
    fsynced (file, then directory) so that a claim survives a crash of the machine too."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory = directory

    def path(self, uid: str) -> Path:
        # The store makes uids (uuid4); anything else still names one file inside the directory.
        safe = uid if _UID.fullmatch(uid) else hashlib.sha256(uid.encode()).hexdigest()
        return self.directory / f"{safe}.json"

    def load(self, uid: str) -> TimerState | None:
        """The stored state, or None when there is none or it cannot be read (logged)."""
        path = self.path(uid)
        try:
            data = json.loads(path.read_bytes())
            state = TimerState.from_json(data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            log.error("timer state %s is unreadable (%s): the trigger starts afresh", path, exc)
            return None
        return state if state.uid == uid else None

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` (a ``TimerState`` as a dict) durably. Blocking: call it in a thread."""
        path = self.path(state["uid"])
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # writers never share one
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(state, sort_keys=True).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def remove(self, uid: str) -> None:
        self.path(uid).unlink(missing_ok=True)

    def sweep(self, keep: set[str]) -> None:
        """Remove the states of triggers that are gone (deleted while the runtime was down)."""
        wanted = {self.path(uid).name for uid in keep}
        for path in self.directory.iterdir():
            if path.name not in wanted and path.name.endswith((".json", ".tmp")):
                path.unlink(missing_ok=True)


@dataclass(eq=False)
class _Timer:
    """One trigger's schedule loop and the fire it has in flight.

    ``settled``: every tick at or before it has come (fired, skipped or missed); it is what a
    stopping runtime writes back as the claim."""

    trigger: TimeTrigger
    schedule: Schedule | None
    state: TimerState
    settled: int | None = None
    next_tick: int | None = None
    from_disk: bool = True
    task: asyncio.Task[None] | None = None
    fire: asyncio.Task[None] | None = None
    claiming: asyncio.Future[None] | None = field(default=None, repr=False)

    @property
    def key(self) -> Key:
        return (self.trigger.meta.namespace, self.trigger.meta.name)

    def label(self) -> str:
        return f"{self.trigger.meta.namespace}/{self.trigger.meta.name}"


def _spec(trigger: TimeTrigger) -> tuple[str, str, str, str]:
    """What a fire depends on: a change to any of it restarts the schedule."""
    return (trigger.cron, trigger.method, trigger.subpath, trigger.function)


def _iso(epoch: float) -> str:
    """RFC 3339 in UTC, with milliseconds when ``epoch`` has a fraction."""
    moment = datetime.fromtimestamp(epoch, UTC)
    text = moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def _target(subpath: str) -> bytes:
    return quote(subpath, safe=_SAFE_PATH).encode("ascii")


def _moment(epoch: float) -> datetime:
    """``epoch`` as a datetime, rounded down to the microsecond (``fromtimestamp`` rounds to the
    nearest, which could put a moment just before a tick on the tick)."""
    return EPOCH + timedelta(microseconds=math.floor(epoch * 1_000_000))


def _next_tick(schedule: Schedule, after: float) -> int:
    """The first tick strictly after ``after`` (epoch seconds); ticks are whole seconds."""
    return int(schedule.next_after(_moment(after)).timestamp())


async def _sleep_until(when: float) -> None:
    """Return at wall-clock time ``when`` or just after. The event loop sleeps on its monotonic
    clock, so the wall clock is read again after each wake-up."""
    while (delay := when - time.time()) > 0:
        await asyncio.sleep(min(delay, MAX_SLEEP))


def _block_until(when: float) -> None:
    while (delay := when - time.time()) > 0:
        time.sleep(delay)


class TickClock:
    """Wakes everything due on a tick together and on time: the event loop's timers have a
    millisecond's resolution (uvloop's woke 0-2.5 ms late here), so the loop sleeps until
    ``PRECISE`` before the tick and a thread of its own sleeps the rest (``time.sleep``: tens of
    microseconds late). At the tick, every waiter's ``on_tick`` runs first, in the order they
    came, then the waiters wake: the calls of a hundred triggers on one second are started before
    any schedule computes its next tick."""

    PRECISE = 0.005

    def __init__(self) -> None:
        self._due: dict[int, list[tuple[asyncio.Future[float], Callable[[float], None] | None]]] = {}
        self._wakers: set[asyncio.Task[None]] = set()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="tick-clock")

    async def at(self, tick: int, on_tick: Callable[[float], None] | None = None) -> float:
        """Wait until wall-clock second ``tick``; ``on_tick(now)`` runs at it unless this wait was
        cancelled first. Returns the moment (epoch seconds) it woke."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[float] = loop.create_future()
        if tick not in self._due:
            self._due[tick] = []
            waker = loop.create_task(self._wake(tick), name=f"tick {tick}")
            self._wakers.add(waker)
            waker.add_done_callback(self._wakers.discard)
        self._due[tick].append((future, on_tick))
        return await future

    async def _wake(self, tick: int) -> None:
        await _sleep_until(tick - self.PRECISE)
        try:
            await asyncio.get_running_loop().run_in_executor(self._thread, _block_until, tick)
        except RuntimeError:  # its thread is gone (the clock is closing): the loop's own wake-up
            await _sleep_until(tick)
        now = time.time()
        due = [(future, on_tick) for future, on_tick in self._due.pop(tick, []) if not future.done()]
        for _, on_tick in due:  # a done wait was cancelled: the trigger changed or went
            if on_tick is not None:
                try:
                    on_tick(now)
                except Exception:
                    log.exception("timer: a tick's action failed")
        # Only then the waiters: a wake-up is scheduled behind every call the actions started.
        for future, _ in due:
            if not future.done():
                future.set_result(now)

    async def close(self) -> None:
        """Stop: nothing still due runs, and whoever waits for it is cancelled."""
        for waker in list(self._wakers):
            waker.cancel()
        await asyncio.gather(*self._wakers, return_exceptions=True)
        for waiters in self._due.values():
            for future, _ in waiters:
                future.cancel()
        self._due.clear()
        self._thread.shutdown(wait=False, cancel_futures=True)


class Timers:
    """The runtime's time triggers: ``set_triggers`` from ``Runtime.apply``, ``stop`` at exit."""

    def __init__(self, executor: Executor, directory: Path) -> None:
        self.executor = executor
        self.store = TickStore(directory)
        self.clock = TickClock()
        self.timers: dict[Key, _Timer] = {}
        self._swept = False

    def set_triggers(self, triggers: list[TimeTrigger]) -> None:
        """Run a schedule per trigger: start new ones, stop removed ones (and forget their
        state), restart one whose cron, method, subpath or function changed. A trigger with a
        new uid (deleted and created again) starts afresh. Needs a running event loop."""
        wanted = {(t.meta.namespace, t.meta.name): t for t in triggers}
        for key, running in list(self.timers.items()):
            trigger = wanted.get(key)
            if trigger is None or trigger.meta.uid != running.trigger.meta.uid:
                self._remove(running)
        for key, trigger in wanted.items():
            timer = self.timers.get(key)
            if timer is None:
                self._add(trigger)
            elif _spec(timer.trigger) != _spec(trigger):
                log.info("timer %s changed: %s -> %s", timer.label(), _spec(timer.trigger), _spec(trigger))
                timer.trigger = trigger
                self._start(timer)
            else:
                timer.trigger = trigger
        if not self._swept:
            self._swept = True
            self.store.sweep({t.meta.uid for t in triggers})

    def status(self, namespace: str, name: str) -> dict[str, Any] | None:
        """What the trigger's schedule last did and does next; None for an unknown trigger."""
        timer = self.timers.get((namespace, name))
        if timer is None:
            return None
        state = timer.state
        scheduled = timer.task is not None and not timer.task.done()
        return {
            "lastTick": None if state.last_tick is None else _iso(state.last_tick),
            "lastFire": state.last_fire,
            "nextFire": _iso(timer.next_tick) if scheduled and timer.next_tick is not None else None,
            "fires": state.fires,
            "failures": state.failures,
            "skipped": state.skipped,
            "missed": state.missed,
            "lastError": state.last_error,
            "running": timer.fire is not None and not timer.fire.done(),
        }

    async def stop(self) -> None:
        """Stop every schedule and fire in flight, and write each trigger's state back, its claim
        reset to the last tick that came (a claimed tick that had not come did not fire)."""
        timers = list(self.timers.values())
        tasks = [task for t in timers for task in (t.task, t.fire) if task is not None and not task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        claims = [t.claiming for t in timers if t.claiming is not None]
        await asyncio.gather(*claims, return_exceptions=True)  # a claim being written lands first
        await self.clock.close()
        for timer in timers:
            timer.state.claimed = timer.settled
        await asyncio.to_thread(self._save_all, [asdict(t.state) for t in timers])

    def _save_all(self, states: list[dict[str, Any]]) -> None:
        for state in states:
            try:
                self.store.save(state)
            except OSError as exc:
                log.error("timer state of %s/%s not saved: %s", state["namespace"], state["name"], exc)

    def _add(self, trigger: TimeTrigger) -> None:
        meta = trigger.meta
        state = self.store.load(meta.uid) or TimerState(meta.uid, meta.namespace, meta.name)
        timer = _Timer(trigger=trigger, schedule=None, state=state, settled=state.claimed)
        self.timers[timer.key] = timer
        self._start(timer)

    def _remove(self, timer: _Timer) -> None:
        """Stop the schedule (a fire in flight runs to its end) and forget the state."""
        del self.timers[timer.key]
        if timer.task is not None:
            timer.task.cancel()
        uid = timer.state.uid
        if timer.claiming is not None and not timer.claiming.done():
            timer.claiming.add_done_callback(lambda _: self.store.remove(uid))  # after it lands
        else:
            self.store.remove(uid)
        log.info("timer %s removed", timer.label())

    def _start(self, timer: _Timer) -> None:
        """(Re)start the trigger's schedule loop; an invalid schedule is recorded, not run."""
        if timer.task is not None:
            timer.task.cancel()
            timer.task = None
        timer.next_tick = None
        try:
            timer.schedule = Schedule.parse(timer.trigger.cron)
        except InvalidSchedule as exc:
            timer.schedule = None
            self._error(timer, f"invalid schedule {timer.trigger.cron!r}: {exc}")
            log.error("timer %s not scheduled: %s", timer.label(), exc)
            return
        timer.task = asyncio.create_task(self._run(timer, timer.schedule), name=f"timer {timer.label()}")

    async def _run(self, timer: _Timer, schedule: Schedule) -> None:
        tick = self._resume(timer, schedule)
        log.info("timer %s: schedule %r, next fire at %s", timer.label(), schedule.expr, _iso(tick))
        while True:
            timer.next_tick = tick
            await _sleep_until(tick - CLAIM_LEAD)
            claimed = await self._claim(timer, tick)
            following = _next_tick(schedule, tick)  # now, so that at the tick only the call starts
            fire = functools.partial(self._fire, timer, tick) if claimed else None
            now = await self.clock.at(tick, fire)
            if not claimed:
                timer.settled = tick
            tick = self._after(timer, schedule, tick, now, following)

    def _resume(self, timer: _Timer, schedule: Schedule) -> int:
        """The first tick to fire: after now and after every tick that has come. Ticks that fell
        while the runtime was down (after the last claim on disk) are counted as missed."""
        now = time.time()
        settled = timer.settled
        if timer.from_disk and settled is not None and settled < now:
            missed = schedule.count_between(_moment(settled), _moment(now), MISSED_LIMIT)
            self._missed(timer, missed, "while the runtime was not running")
        elif timer.from_disk and settled is not None:
            log.warning("timer %s: tick %s was claimed by a runtime that stopped before it came; it does not"
                        " fire (at most once)", timer.label(), _iso(settled))  # fmt: skip
        timer.from_disk = False
        after = max(now, settled) if settled is not None else now
        timer.settled = math.floor(after)
        return _next_tick(schedule, after)

    def _after(self, timer: _Timer, schedule: Schedule, tick: int, now: float, following: int) -> int:
        """The tick after ``tick`` (``following``) unless it has passed while the loop was held up:
        then every tick that passed is missed, and the next is the first after ``now``."""
        if following > now:
            return following
        missed = schedule.count_between(_moment(tick), _moment(now), MISSED_LIMIT)
        self._missed(timer, missed, f"while the tick of {_iso(tick)} came {now - tick:.3f} s late")
        timer.settled = math.floor(now)
        return _next_tick(schedule, now)

    async def _claim(self, timer: _Timer, tick: int) -> bool:
        """Write ``tick`` as claimed, durably; False (a failure, recorded) when it cannot be."""
        if timer.claiming is not None and not timer.claiming.done():
            await asyncio.wait({timer.claiming})  # the claim of a schedule just replaced: in order
        previous = timer.state.claimed
        timer.state.claimed = tick
        loop = asyncio.get_running_loop()
        timer.claiming = loop.run_in_executor(None, self.store.save, asdict(timer.state))
        try:
            # Shielded: a stop or a change waits for the write rather than racing it.
            await asyncio.shield(timer.claiming)
        except OSError as exc:
            timer.state.claimed = previous
            self._error(timer, f"tick {_iso(tick)} not fired: it could not be recorded ({exc})")
            timer.state.failures += 1
            self._event(timer, "failed")
            log.error("timer %s: tick %s not fired: its claim could not be written: %s",
                      timer.label(), _iso(tick), exc)  # fmt: skip
            return False
        return True

    def _fire(self, timer: _Timer, tick: int, now: float) -> None:
        """Call the function for ``tick`` unless the previous fire still runs (then: skipped)."""
        timer.settled = tick
        timer.state.last_tick = tick
        if timer.fire is not None and not timer.fire.done():
            timer.state.skipped += 1
            self._event(timer, "skipped_overlap")
            log.warning("timer %s: tick %s skipped: the previous fire is still running",
                        timer.label(), _iso(tick))  # fmt: skip
            return
        timer.fire = asyncio.create_task(self._call(timer, tick))

    async def _call(self, timer: _Timer, tick: int) -> None:
        trigger = timer.trigger
        meta = trigger.meta
        request_id = request_id_or_new(None)
        started_at, started = time.time(), time.perf_counter()
        try:
            response = await call_function(
                self.executor, meta.namespace, trigger.function, trigger.method, _target(trigger.subpath),
                [(TIMER_NAME, meta.name.encode())], b"", request_id,
            )  # fmt: skip
            status, body = response.status, response.body
        except asyncio.CancelledError:
            # The runtime is stopping in the middle of the call: the tick did fire, so it is
            # counted (fires go on across restarts), with an outcome nobody saw.
            seconds = time.perf_counter() - started
            body = b"the runtime stopped during the call"
            self._record(timer, tick, 503, body, request_id.decode(), started_at, seconds)
            raise
        except Exception:  # a bug: the call's refusals are answers, not exceptions
            log.exception("timer %s: the fire of tick %s failed", timer.label(), _iso(tick))
            status, body = 500, b"internal error in the runtime's timer"
        seconds = time.perf_counter() - started
        self._record(timer, tick, status, body, request_id.decode(), started_at, seconds)

    def _record(self, timer: _Timer, tick: int, status: int, body: bytes, request_id: str,
                started_at: float, seconds: float) -> None:  # fmt: skip
        trigger, state = timer.trigger, timer.state
        state.fires += 1
        state.last_fire = {
            "tick": _iso(tick), "time": _iso(started_at), "status": status, "requestId": request_id,
            "durationMs": round(seconds * 1000, 1), "lateMs": round((started_at - tick) * 1000, 1),
        }  # fmt: skip
        if status >= 400:
            state.failures += 1
            message = body[:ERROR_CHARS].decode(errors="replace").strip()
            self._error(timer, f"tick {_iso(tick)}: status {status}: {message}", request_id)
        path = f"/fission-function/{trigger.function}"
        metrics.observe_call(trigger.meta.namespace, trigger.function, path, trigger.method, status, seconds)
        self._event(timer, "fired" if status < 400 else "failed")
        log.info("timer %s fired %s for tick %s: status %d in %.1f ms, %.1f ms late, request id %s",
                 timer.label(), trigger.function, _iso(tick), status, seconds * 1000,
                 (started_at - tick) * 1000, request_id)  # fmt: skip

    def _missed(self, timer: _Timer, count: int, when: str) -> None:
        if count <= 0:
            return
        timer.state.missed += count
        for _ in range(count):
            self._event(timer, "missed")
        more = "+" if count >= MISSED_LIMIT else ""
        log.warning("timer %s: %d%s ticks missed %s: not run late", timer.label(), count, more, when)

    def _event(self, timer: _Timer, outcome: str) -> None:
        trigger = timer.trigger
        metrics.observe_event(trigger.meta.namespace, "timer", trigger.meta.name, trigger.function, outcome)

    def _error(self, timer: _Timer, message: str, request_id: str = "") -> None:
        timer.state.last_error = {"time": _iso(time.time()), "message": message, "requestId": request_id}
