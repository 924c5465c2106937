"""Function logs on Kubernetes: ``pods/log`` of the pods Fission labels ``functionName``
(FISSION.md section 5), skipping the ``fetcher`` container, with the kubelet's timestamps.

Kubernetes knows neither the request that printed a line nor its stream, so those filters match
nothing here unless empty; a search reads at most the last SEARCH_TAIL lines of each container.

Reference: https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/#get-read-log-of-the-specified-pod
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from dataplane.backends.base import (
    BackendError,
    Forbidden,
    InvalidCursor,
    LogPage,
    LogQuery,
    LogRecord,
    PermanentError,
    portal_function_of,
)
from dataplane.backends.k8s_adapter import KubeAdapter

FUNCTION_POD_LABEL = "functionName"  # set by Fission on function pods
FETCHER_CONTAINER = "fetcher"
SEARCH_TAIL = 5000
RESCAN_S = 5.0
IDLE_TIMEOUT_S = 30.0


def parse(namespace: str, function: str, line: str, origin: str = "", seq: int = 0) -> LogRecord:
    """A ``timestamps=true`` log line: ``2026-11-23T10:00:00.123456789Z message``. Its id is
    ``<pod>/<container>|<stamp>|<n>``: the n-th line with that stamp in that container, which
    stays the same however many lines are read around it."""
    stamp, _, message = line.partition(" ")
    try:
        when = datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp()
    except ValueError:
        when, message, stamp = time.time(), line, ""
    return LogRecord(
        time=when, namespace=namespace, function=function, request_id="", stream="stdout",
        message=message, id=f"{origin}|{stamp}|{seq}" if origin else "",
    )  # fmt: skip


def parse_all(namespace: str, function: str, text: str, origin: str) -> list[LogRecord]:
    seen: dict[str, int] = {}
    records = []
    for line in text.splitlines():
        if line:
            stamp = line.partition(" ")[0]
            seen[stamp] = seen.get(stamp, -1) + 1
            records.append(parse(namespace, function, line, origin, seen[stamp]))
    return records


def function_containers(adapter: KubeAdapter, namespace: str, fission_name: str | None = None) -> list[
    tuple[str, str, str]
]:  # fmt: skip
    """(pod, container, Fission function) of every function container but the fetcher."""
    selector = f"{FUNCTION_POD_LABEL}={fission_name}" if fission_name else FUNCTION_POD_LABEL
    found = []
    for pod in adapter.list("Pod", namespace, selector):
        function = (pod["metadata"].get("labels") or {}).get(FUNCTION_POD_LABEL, "")
        for container in (pod.get("spec") or {}).get("containers") or []:
            if container.get("name") != FETCHER_CONTAINER:
                found.append((pod["metadata"]["name"], container["name"], function))
    return found


def _key(record: LogRecord) -> tuple[float, str]:
    """The order of records: time, then id (ties broken the same way on every page)."""
    return (round(record.time, 6), record.id)


def recent(adapter: KubeAdapter, namespace: str, query: LogQuery, *, tail: int) -> list[LogRecord]:
    """The matching lines among each container's last ``tail``, oldest first. A pod that went
    away meanwhile, or a container not started yet, has none; Forbidden is raised."""
    since_s = int(time.time() - query.since) + 1 if query.since else None
    records: list[LogRecord] = []
    for pod, container, function in function_containers(adapter, namespace, query.fission_name):
        if query.function is not None and portal_function_of(function) != query.function:
            continue
        try:
            text = adapter.pod_log(namespace, pod, container, tail_lines=tail, since_s=since_s)
        except PermanentError as exc:
            if isinstance(exc, Forbidden):
                raise
            continue
        records += parse_all(namespace, function, text, f"{pod}/{container}")
    records.sort(key=_key)
    return [r for r in records if query.matches(r)]


def search(adapter: KubeAdapter, namespace: str, query: LogQuery) -> LogPage:
    """Newest first; the cursor is the page's oldest record's place in the order (exclusive)."""
    before: tuple[float, str] | None = None
    if query.cursor is not None:
        moment, _, record_id = query.cursor.partition("|")
        try:
            before = (float(moment), record_id)
        except ValueError:
            raise InvalidCursor("the cursor is not one this API gave") from None
    unpaged = LogQuery(**{**query.__dict__, "cursor": None})
    matches = [r for r in reversed(recent(adapter, namespace, unpaged, tail=SEARCH_TAIL))
               if before is None or _key(r) < before]  # fmt: skip
    page = matches[: query.limit]
    last = page[-1] if page else None
    more = len(matches) > query.limit and last is not None
    return LogPage(page, f"{last.time:.6f}|{last.id}" if more and last else None)


@dataclass
class _Follower:
    thread: threading.Thread | None = None
    last: float = 0.0  # the time of the last line handed on: a new follower starts after it


def tail(
    adapter: KubeAdapter, namespace: str, stop: threading.Event, since: float | None = None
) -> Iterator[list[LogRecord]]:
    """Lines of every function container from ``since`` (now by default), followed
    (``follow=true``) one thread per container; pods are looked for again every RESCAN_S, so
    new ones join, and a container whose follower ended is followed again after its last line."""
    since = time.time() if since is None else since
    lines: queue.Queue[LogRecord] = queue.Queue(maxsize=100_000)
    followers: dict[tuple[str, str], _Follower] = {}
    next_scan = 0.0
    while not stop.is_set():
        if time.monotonic() >= next_scan:
            _follow_new(adapter, namespace, followers, (lines, stop, since))
            next_scan = time.monotonic() + RESCAN_S
        yield _drain(lines, wait_s=1.0)


def _follow_new(
    adapter: KubeAdapter,
    namespace: str,
    followers: dict[tuple[str, str], _Follower],
    sink: tuple[queue.Queue[LogRecord], threading.Event, float],
) -> None:
    try:
        containers = function_containers(adapter, namespace)
    except BackendError:
        return  # the API is down: keep the followers we have, look again later
    lines, stop, since = sink
    for pod, container, function in containers:
        follower = followers.setdefault((pod, container), _Follower(last=since))
        if follower.thread is not None and follower.thread.is_alive():
            continue
        follower.thread = threading.Thread(
            target=_follow, args=(adapter, namespace, pod, container, function, lines, stop, follower),
            name=f"log-{pod}-{container}", daemon=True,
        )  # fmt: skip
        follower.thread.start()


def _follow(
    adapter: KubeAdapter,
    namespace: str,
    pod: str,
    container: str,
    function: str,
    lines: queue.Queue[LogRecord],
    stop: threading.Event,
    follower: _Follower,
) -> None:
    """Follow one container after ``follower.last`` until ``stop`` or its log ends. A stream
    silent for IDLE_TIMEOUT_S or broken is reopened from the last line's time (lines up to it
    are skipped); a pod gone or a container not started ends it (the rescan starts it again)."""
    while not stop.is_set():
        after = follower.last
        try:
            for line in adapter.follow_pod_log(
                namespace, pod, container, since_time=_rfc3339(after), idle_timeout_s=IDLE_TIMEOUT_S
            ):
                if stop.is_set():
                    return
                record = parse(namespace, function, line, f"{pod}/{container}")
                if record.time <= after:
                    continue  # sinceTime is inclusive and whole: seen already
                follower.last = record.time
                _put(lines, record)
            return  # the log ended: the container exited
        except PermanentError:
            return
        except BackendError:
            stop.wait(1.0)


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _put(lines: queue.Queue[LogRecord], record: LogRecord) -> None:
    with contextlib.suppress(queue.Full):  # nobody reads fast enough: drop, never block the follower
        lines.put_nowait(record)


def _drain(lines: queue.Queue[LogRecord], *, wait_s: float) -> list[LogRecord]:
    batch: list[LogRecord] = []
    try:
        batch.append(lines.get(timeout=wait_s))
        while len(batch) < 500:
            batch.append(lines.get_nowait())
    except queue.Empty:
        pass
    return batch
