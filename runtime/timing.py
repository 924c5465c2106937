"""The router's ``Server-Timing`` header (W3C Server Timing): what the router measured of a call
it answered through a route, so that a caller can tell its own round trip from the router's and
the function's time.

``Server-Timing: router;dur=2.104, function;dur=1.432``, durations in milliseconds:

- ``router``: from the router getting the parsed request to its answer being ready to write (the
  request's parse and the answer's write are not in it). It includes the wait for a worker (a
  cold start) and the quota check. It is the figure of the router's latency histogram
  (``fission_function_overhead_seconds``), which the portal's metrics page shows.
- ``function``: from the router sending the request to the function's worker to the worker's
  whole answer, so at most ``router``. Absent when no worker answered (queued asynchronous call,
  429, 502, timeout).

A function's own ``Server-Timing`` headers go through ahead of the router's, which always comes
last: ``parse`` takes the last ``router`` entry and a ``function`` entry after it, so a function
cannot pass its figures off as the router's. Fission's router sends no such header.
"""

from __future__ import annotations

import math
import re

HEADER = "Server-Timing"
SERVER_TIMING = HEADER.encode()
ROUTER = "router"
FUNCTION = "function"
_BOTH = f"{ROUTER};dur=%.3f, {FUNCTION};dur=%.3f".encode()
_ROUTER_ONLY = f"{ROUTER};dur=%.3f".encode()
# The entries of a value, and the parameters of an entry: separators inside quoted strings
# (a ``desc="a, b"``) do not count.
_ENTRY = re.compile(r'(?:"(?:[^"\\]|\\.)*"|[^,"])+')
_PARAM = re.compile(r'(?:"(?:[^"\\]|\\.)*"|[^;"])+')


def server_timing(router_ns: int, worker_ns: int) -> bytes:
    """The header's value: ``router_ns`` the router's whole time, ``worker_ns`` the worker's
    (negative: no worker answered, so no ``function`` entry). One bytes object, no other work:
    this runs on every routed call."""
    if worker_ns < 0:
        return _ROUTER_ONLY % (router_ns / 1e6)
    return _BOTH % (router_ns / 1e6, worker_ns / 1e6)


def parse(value: str | None) -> tuple[float | None, float | None]:
    """(router ms, function ms) from a ``Server-Timing`` value (several headers joined with ", "),
    each None when absent or malformed; never raises. Only the last ``router`` entry counts, and
    only a ``function`` entry after it (the router writes its own last)."""
    router: float | None = None
    function: float | None = None
    for entry in _ENTRY.findall(value or ""):
        name, *params = _PARAM.findall(entry) or [""]
        name = name.strip()
        if name == ROUTER:
            router, function = _duration(params), None
        elif name == FUNCTION:
            function = _duration(params)
    return router, (function if router is not None else None)


def _duration(params: list[str]) -> float | None:
    """The first ``dur`` parameter's value in milliseconds, when it is a finite number >= 0."""
    for param in params:
        key, _, raw = param.partition("=")
        if key.strip().lower() != "dur":
            continue
        try:
            value = float(raw.strip().strip('"'))
        except ValueError:
            return None
        return value if math.isfinite(value) and value >= 0 else None
    return None
