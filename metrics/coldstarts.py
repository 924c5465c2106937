"""Cold-start insight, pure: the measured figures of recorded calls, and the what-if of other
scaling settings replayed on them. No ORM, no backend: callers pass the calls in.

The what-if replays the recorded calls of one Fission function (one version, or the draft) in
order of their start against a model of the local runtime's executor (runtime/executor.py, which
follows Fission's poolmgr and newdeploy, FISSION.md section 4), and counts the calls that would
have found no warm worker free.

The model (``simulate``), stated so that anyone can compute it by hand:

* A call is ``(start, duration)``: it holds one slot of one worker from ``start`` to
  ``start + duration``. ``duration`` is the time the worker was busy with it (the recorded
  duration less the cold start it may have waited for): a cold start is assumed to add nothing
  to the time a worker is held, so bursts overlap a little less than they really did.
* A worker has ``requests_per_pod`` slots. A call ending at ``t`` has freed its slot for a call
  starting at ``t``.
* A worker is idle when none of its slots is held; it is reaped once it has been idle for more
  than ``idle_timeout`` seconds (strictly), as the runtime's reaper does (without the reaper's
  one-second tick). newdeploy never reaps below ``min_scale`` workers; poolmgr has no minimum.
* Each call, in order of start (ties in the given order): the function's workers are taken in
  the order they were started, and the first with the fewest held slots among those with a free
  one serves it (a warm call). With none free, a new worker is started for it (a **cold start**)
  if the function has fewer than its limit (newdeploy: ``max_scale``; poolmgr: ``concurrency``).
  At the limit, newdeploy queues the call: it waits for the earliest slot to free and then holds
  it for its duration (``queued``, not cold); poolmgr refuses it with 429 (``refused``).
* newdeploy with min scale ``k``: ``k`` workers are already warm and idle when the window starts,
  and stay. So ``k`` is exactly the number of workers that never cold start.
* poolmgr with pool size ``p``: the pool holds generic, unspecialized workers. Taking one still
  specializes it for the function, and Fission (and the runtime) count that as a cold start: **the
  pool size does not change how many cold starts there are**, only how slow they are. A cold
  start that finds a pooled worker ready only loads the function (Fission: about 100 ms); one that
  finds the pool empty must first start a new worker process (a pod, on a cluster: seconds). So
  for poolmgr the what-if answers both: the cold starts (independent of ``p``) and how many of
  them would have found the pool empty (``from_empty_pool``, which ``p`` changes). The pool is
  full (``p`` ready) when the window starts; a worker taken from it is replaced
  ``pool_refill_s`` seconds later. The pool is shared by every function of the environment:
  this model sees only this function's calls, so for an environment with several busy
  functions it is optimistic.
* The idle timeout is a what-if input too: a longer one keeps workers warm across longer gaps.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

NEWDEPLOY = "newdeploy"
POOLMGR = "poolmgr"
EXECUTORS = (POOLMGR, NEWDEPLOY)
# How long a generic worker taken from the pool takes to be replaced, when the caller does not
# say: the runtime forks it from a warm zygote in well under a second; a cluster starts a pod in
# a few seconds. One second is between the two, and is said next to every poolmgr answer.
POOL_REFILL_S = 1.0
# Cold kinds a recorded call may carry (runtime/calls.py): "" warm, "pool" a pooled worker was
# specialized for it, "new" a new worker process was started for it.
COLD_KINDS = ("pool", "new")


@dataclass(frozen=True)
class Call:
    """One call: when it started (epoch seconds) and how long it held its worker (seconds)."""

    start: float
    duration: float


@dataclass(frozen=True)
class Scaling:
    """The settings a what-if replays the calls under (see the module's docstring)."""

    executor: str
    idle_timeout: float
    requests_per_pod: int = 1
    max_workers: int = 1_000_000  # newdeploy: MaxScale; poolmgr: concurrency
    min_scale: int = 0  # newdeploy only
    pool_size: int = 0  # poolmgr only
    pool_refill_s: float = POOL_REFILL_S

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}")
        if self.idle_timeout < 0 or self.pool_refill_s < 0:
            raise ValueError("idle_timeout and pool_refill_s must not be negative")
        if self.requests_per_pod < 1 or self.max_workers < 1:
            raise ValueError("requests_per_pod and max_workers must be at least 1")
        if self.min_scale < 0 or self.pool_size < 0:
            raise ValueError("min_scale and pool_size must not be negative")


@dataclass(frozen=True)
class Outcome:
    """What the calls would have met under a ``Scaling``."""

    calls: int
    cold_starts: int
    from_empty_pool: int = 0  # poolmgr: cold starts that found no pooled worker ready
    queued: int = 0  # newdeploy at MaxScale: calls that waited for a worker
    refused: int = 0  # poolmgr at its concurrency: calls answered 429

    @property
    def cold_start_rate(self) -> float | None:
        return round(self.cold_starts / self.calls, 4) if self.calls else None


@dataclass
class _Worker:
    ends: list[float] = field(default_factory=list)  # a heap: when each held slot frees
    last_used: float = -math.inf  # when its last call ended

    def settle(self, now: float) -> None:
        """Free the slots whose calls have ended by ``now``."""
        while self.ends and self.ends[0] <= now:
            self.last_used = max(self.last_used, heapq.heappop(self.ends))


def simulate(calls: Iterable[Call], scaling: Scaling) -> Outcome:
    """Replay ``calls`` (sorted by start here; ties keep their order) under ``scaling``."""
    ordered = sorted(calls, key=lambda c: c.start)
    newdeploy = scaling.executor == NEWDEPLOY
    keep = scaling.min_scale if newdeploy else 0
    limit = max(scaling.max_workers, keep)
    workers = [_Worker() for _ in range(keep)]
    pool_taken: deque[float] = deque()  # when each pooled worker not yet replaced was taken
    cold = empty = queued = refused = 0
    for call in ordered:
        now, duration = call.start, max(0.0, call.duration)
        # One pass, oldest worker first: free the slots of ended calls, reap the idle past the
        # timeout (down to the minimum), and find the first of the least busy with a free slot.
        survivors, count, chosen = [], len(workers), None
        for worker in workers:
            worker.settle(now)
            if count > keep and not worker.ends and now - worker.last_used > scaling.idle_timeout:
                count -= 1
                continue
            survivors.append(worker)
            held = len(worker.ends)
            if held < scaling.requests_per_pod and (chosen is None or held < len(chosen.ends)):
                chosen = worker
        workers = survivors
        if chosen is not None:
            heapq.heappush(chosen.ends, now + duration)
            continue
        if len(workers) < limit:
            cold += 1
            if not newdeploy:
                while pool_taken and pool_taken[0] + scaling.pool_refill_s <= now:
                    pool_taken.popleft()  # replaced by now
                if len(pool_taken) < scaling.pool_size:
                    pool_taken.append(now)
                else:
                    empty += 1
            workers.append(_Worker(ends=[now + duration]))
            continue
        if not newdeploy:
            refused += 1
            continue
        queued += 1  # waits for the earliest slot to free, then holds it
        chosen = min(workers, key=lambda w: w.ends[0])
        begins = heapq.heappop(chosen.ends)
        heapq.heappush(chosen.ends, begins + duration)
    return Outcome(calls=len(ordered), cold_starts=cold, from_empty_pool=empty, queued=queued,
                   refused=refused)  # fmt: skip


# ------------------------------------------------------------ measured figures


@dataclass(frozen=True)
class Recorded:
    """A call as the runtime recorded it (runtime/calls.py): ``startup`` is the time it waited
    for a worker (its cold start, when ``cold`` is "pool" or "new")."""

    start: float
    duration: float
    startup: float
    cold: str
    status: int

    @property
    def service(self) -> Call:
        """The call as the what-if replays it: the time its worker was busy with it."""
        return Call(self.start, max(0.0, self.duration - self.startup))


@dataclass(frozen=True)
class Measured:
    """The measured cold-start figures of one version's recorded calls."""

    calls: int
    cold_starts: int
    from_pool: int  # poolmgr: cold starts that specialized a pooled worker
    new_workers: int  # cold starts that had to start a new worker process
    latency_ms: dict[str, float | None]  # p50, p95, max of the cold starts (the wait for a worker)
    warm_ms: dict[str, float | None]  # p50, p95 of the warm calls' whole duration, to compare

    @property
    def cold_start_rate(self) -> float | None:
        return round(self.cold_starts / self.calls, 4) if self.calls else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile ``q`` (0-100) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def measure(calls: Sequence[Recorded]) -> Measured:
    """Cold-start rate (cold calls / calls) and latency (their wait for a worker) of ``calls``."""
    cold = [c for c in calls if c.cold in COLD_KINDS]
    warm = [c.duration for c in calls if c.cold not in COLD_KINDS]
    startups = [c.startup for c in cold]
    return Measured(
        calls=len(calls),
        cold_starts=len(cold),
        from_pool=sum(1 for c in cold if c.cold == "pool"),
        new_workers=sum(1 for c in cold if c.cold == "new"),
        latency_ms={
            "p50": _ms(percentile(startups, 50)),
            "p95": _ms(percentile(startups, 95)),
            "max": _ms(max(startups) if startups else None),
        },
        warm_ms={"p50": _ms(percentile(warm, 50)), "p95": _ms(percentile(warm, 95))},
    )


def suggestions(executor: str, current: int) -> list[int]:
    """The values of min scale (newdeploy) or pool size (poolmgr) a what-if table shows: a few
    small ones and the current one, sorted."""
    base = {0, 1, 2, 3, 5} if executor == NEWDEPLOY else {0, 1, 3, 5, 10}
    return sorted(base | {current})
