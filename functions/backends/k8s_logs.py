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
from datetime import UTC, datetime

from functions.backends.base import (
    BackendError,
    InvalidCursor,
    LogPage,
    LogQuery,
    LogRecord,
    portal_function_of,
)
from functions.backends.k8s_adapter import KubeAdapter

FUNCTION_POD_LABEL = "functionName"  # set by Fission on function pods
FETCHER_CONTAINER = "fetcher"
SEARCH_TAIL = 5000
RESCAN_S = 5.0
IDLE_TIMEOUT_S = 30.0


def parse(namespace: str, function: str, line: str, origin: str = "") -> LogRecord:
    """A ``timestamps=true`` log line: ``2026-11-23T10:00:00.123456789Z message``."""
    stamp, _, message = line.partition(" ")
    try:
        when = datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp()
    except ValueError:
        when, message, stamp = time.time(), line, ""
    return LogRecord(
        time=when, namespace=namespace, function=function, request_id="", stream="stdout",
        message=message, id=f"{origin}@{stamp}" if origin else "",
    )  # fmt: skip


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


def recent(adapter: KubeAdapter, namespace: str, query: LogQuery, *, tail: int) -> list[LogRecord]:
    """The matching lines among each container's last ``tail``, oldest first."""
    since_s = int(time.time() - query.since) + 1 if query.since else None
    records: list[LogRecord] = []
    for pod, container, function in function_containers(adapter, namespace, query.fission_name):
        if query.function is not None and portal_function_of(function) != query.function:
            continue
        text = adapter.pod_log(namespace, pod, container, tail_lines=tail, since_s=since_s)
        origin = f"{pod}/{container}"
        records += [parse(namespace, function, line, origin) for line in text.splitlines() if line]
    records.sort(key=lambda r: r.time)
    return [r for r in records if query.matches(r)]


def search(adapter: KubeAdapter, namespace: str, query: LogQuery) -> LogPage:
    """Newest first; the cursor is the time of the page's oldest record (exclusive)."""
    until = query.until
    if query.cursor is not None:
        try:
            until = float(query.cursor)
        except ValueError:
            raise InvalidCursor("the cursor is not one this API gave") from None
    bounded = LogQuery(**{**query.__dict__, "until": until, "cursor": None})
    matches = list(reversed(recent(adapter, namespace, bounded, tail=SEARCH_TAIL)))
    page = matches[: query.limit]
    more = len(matches) > query.limit
    return LogPage(page, f"{page[-1].time:.6f}" if more and page else None)


def tail(
    adapter: KubeAdapter, namespace: str, stop: threading.Event, since: float | None = None
) -> Iterator[list[LogRecord]]:
    """Lines of every function container from ``since`` (now by default), followed
    (``follow=true``) one thread per container; pods are looked for again every RESCAN_S, so
    new ones join (from their first line)."""
    since = time.time() if since is None else since
    lines: queue.Queue[LogRecord] = queue.Queue(maxsize=100_000)
    followers: dict[tuple[str, str], threading.Thread] = {}
    next_scan = 0.0
    while not stop.is_set():
        if time.monotonic() >= next_scan:
            _follow_new(adapter, namespace, followers, (lines, stop, since))
            next_scan = time.monotonic() + RESCAN_S
        yield _drain(lines, wait_s=1.0)


def _follow_new(
    adapter: KubeAdapter,
    namespace: str,
    followers: dict[tuple[str, str], threading.Thread],
    sink: tuple[queue.Queue[LogRecord], threading.Event, float],
) -> None:
    try:
        containers = function_containers(adapter, namespace)
    except BackendError:
        return  # the API is down: keep the followers we have, look again later
    for pod, container, function in containers:
        if (pod, container) in followers and followers[(pod, container)].is_alive():
            continue
        thread = threading.Thread(
            target=_follow, args=(adapter, namespace, pod, container, function, *sink),
            name=f"log-{pod}-{container}", daemon=True,
        )  # fmt: skip
        followers[(pod, container)] = thread
        thread.start()


def _follow(
    adapter: KubeAdapter,
    namespace: str,
    pod: str,
    container: str,
    function: str,
    lines: queue.Queue[LogRecord],
    stop: threading.Event,
    since: float,
) -> None:
    """Follow one container from ``since`` until ``stop`` or its log ends; a stream silent for
    IDLE_TIMEOUT_S or broken is reopened from the last line's time, and lines up to that time
    are skipped."""
    last: LogRecord | None = None
    reopened_after: float | None = None
    while not stop.is_set():
        since_time = _rfc3339(last.time if last is not None else since)
        try:
            for line in adapter.follow_pod_log(
                namespace, pod, container, since_time=since_time, idle_timeout_s=IDLE_TIMEOUT_S
            ):
                if stop.is_set():
                    return
                record = parse(namespace, function, line, f"{pod}/{container}")
                if reopened_after is not None and record.time <= reopened_after:
                    continue  # seen before the stream was reopened
                last = record
                _put(lines, record)
            return  # the log ended: the container exited
        except BackendError:
            reopened_after = last.time if last is not None else None
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
