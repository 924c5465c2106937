"""A record of every call a worker served: when it started, how long it took, how long it waited
for a worker, whether that wait was a cold start, and its status. The portal's cold-start insight
(metrics/coldstarts.py) reads it to measure cold starts per version and to replay the calls under
other scaling settings.

One capped Redis stream per namespace, ``runtime:calls:<namespace>``, as the logs
(runtime/logs.py): a tenant's calls go to its own namespace's stream only, and the portal reads
only the stream of the tenant whose page it serves. Each stream is bounded by count (``maxlen``,
the newest kept) and by age (entries older than ``retention_s``, at least 24 hours, are trimmed).

Fields of an entry: ``function`` (the Fission name, ``f-v3``), ``time`` (epoch seconds the call
reached the executor), ``duration`` (seconds until its answer), ``startup`` (seconds of that it
waited for a worker), ``cold`` ("" warm; "pool" a pooled worker was specialized for it; "new" a new
worker process was started for it) and ``status``.

Calls refused before any worker took them (429 at a limit or quota, a function that does not
load) are not recorded: they are errors, counted by the router's metrics. Recording never slows a
call down nor fails one: entries wait in a bounded queue (dropped, and counted, beyond it) for a
background writer, which retries Redis a few times and then gives up on the batch.
"""

from __future__ import annotations

import logging
import time
from typing import Any, cast

from runtime.streams import StreamWriter

log = logging.getLogger(__name__)
STREAM_PREFIX = "runtime:calls:"
MAXLEN = 200_000  # entries per namespace at most (about 30 MB of Redis at most per namespace)
RETENTION_S = 25 * 3600  # entries older than this are trimmed: a day's window and an hour's margin
QUEUE_LIMIT = 100_000  # entries waiting for Redis, all namespaces together
TRIM_EVERY_S = 60.0


def stream_name(namespace: str) -> str:
    return STREAM_PREFIX + namespace


Pending = tuple[str, dict[str, str]]  # namespace, entry


class CallRecorder(StreamWriter[Pending]):
    what = "call records"

    def __init__(
        self, redis_url: str | None, *, maxlen: int = MAXLEN, retention_s: float = RETENTION_S
    ) -> None:
        if retention_s < 24 * 3600:
            raise ValueError("calls must be kept at least 24 hours")
        super().__init__(redis_url)
        self.maxlen = maxlen
        self.retention_s = retention_s
        self.trimmed_at: dict[str, float] = {}  # namespace -> when its stream was last trimmed by age
        self._trimming: set[str] = set()  # the namespaces the batch being written trims

    def record(self, namespace: str, function: str, *, start: float, duration: float, startup: float,
               cold: str, status: int) -> None:  # fmt: skip
        """Queue one call's entry (never blocks; dropped when the queue is full or there is no Redis)."""
        if self.client is None:
            return
        if self.queue.qsize() >= QUEUE_LIMIT:
            self.dropped += 1
            return
        entry = {"function": function, "time": f"{start:.6f}", "duration": f"{duration:.6f}",
                 "startup": f"{startup:.6f}", "cold": cold, "status": str(status)}  # fmt: skip
        self.queue.put_nowait((namespace, entry))

    def _add(self, pipe: Any, batch: list[Pending]) -> None:
        now = time.time()
        self._trimming = {ns for ns, _ in batch if now - self.trimmed_at.get(ns, 0.0) >= TRIM_EVERY_S}
        for namespace, entry in batch:
            pipe.xadd(
                stream_name(namespace), cast(dict[Any, Any], entry), maxlen=self.maxlen, approximate=True
            )
        # By age (ids are append times in milliseconds), exactly: an approximate trim keeps a node
        # that holds any newer entry, old ones and all.
        for namespace in self._trimming:
            pipe.xtrim(stream_name(namespace), minid=int((now - self.retention_s) * 1000), approximate=False)

    def _written(self, batch: list[Pending]) -> None:
        self.trimmed_at.update(dict.fromkeys(self._trimming, time.time()))
