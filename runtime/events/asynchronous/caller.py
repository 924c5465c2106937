"""Whom the queue and the dispatcher serve: a ``Caller`` says whether a function exists, calls it,
says how many of its calls may run at once, its retries and maximum event age, and where a line
about an invocation goes.

The queue and the dispatcher (the semantics: accept, retry, throttle, dead-letter, redrive) are
written once against this. The runtime's caller (``RuntimeCaller``) calls through its executor
and reads its store; the portal's on Kubernetes (dataplane/backends/k8s_async.py) calls Fission's
router and reads the cluster's Function objects.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

from runtime import metrics
from runtime.events.asynchronous.records import Event, Policy, capacity_of, note, policy_of
from runtime.invoke import call_function

if TYPE_CHECKING:
    from runtime.executor import Executor
    from runtime.http import Response
    from runtime.logs import LogCollector
    from runtime.store import Store


class Caller(Protocol):
    async def exists(self, namespace: str, function: str) -> bool:
        """Whether the function exists (an event is accepted, or redriven, only for one that does)."""

    async def call(self, namespace: str, event: Event) -> Response:
        """One attempt of ``event``, under its request id. Never raises for the function's sake:
        a refusal is an answer (429 a throttle, any other status >= 400 a failure). A function
        that could not be reached at all, so was not called, is a 429 too."""

    async def capacity(self, namespace: str, function: str) -> int:
        """How many of the function's calls may run at once (at least 1)."""

    async def policy(self, namespace: str, function: str) -> Policy:
        """The function's retries and maximum event age (the defaults when it is gone)."""

    def note(self, namespace: str, function: str, request_id: str, message: str) -> None:
        """A line about the invocation ``request_id`` (a retry, a dead letter, a redrive)."""


class RuntimeCaller:
    """The runtime's functions: its store says what exists and how, its executor calls them."""

    def __init__(self, executor: Executor, store: Store, logs: LogCollector) -> None:
        self.executor, self.store, self.logs = executor, store, logs

    async def exists(self, namespace: str, function: str) -> bool:
        return ("functions", namespace, function) in self.store.raw

    async def call(self, namespace: str, event: Event) -> Response:
        started = time.perf_counter()
        response = await call_function(
            self.executor, namespace, event.function, event.method, event.target, event.headers,
            event.body, event.request_id.encode(),
        )  # fmt: skip
        path = f"/fission-function/{event.function}"  # as Fission counts its internal calls
        metrics.observe_call(namespace, event.function, path, event.method, response.status,
                             time.perf_counter() - started)  # fmt: skip
        return response

    async def capacity(self, namespace: str, function: str) -> int:
        return capacity_of(self.store, namespace, function)

    async def policy(self, namespace: str, function: str) -> Policy:
        return policy_of(self.store, namespace, function)

    def note(self, namespace: str, function: str, request_id: str, message: str) -> None:
        """In the function's log, under the invocation's request id."""
        note(self.logs, self.store, namespace, function, request_id, message)
